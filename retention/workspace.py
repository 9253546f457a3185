"""The workspace: one embedded DuckDB database that keeps everything a user creates.

Datasets (as tables), their column mappings and validation reports, the embedding cache, and
every run (segmentations, policies, ...) with its settings, metrics and artifacts live in
``<folder>/retention.duckdb``. Every write that must be all-or-nothing runs in one transaction,
so a failed ingest or a killed process leaves no half-written dataset or run behind.

One process holds one DuckDB connection per database file (DuckDB allows a single writer
process); each thread works through its own cursor on it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd

from retention.compact import drop_stored
from retention.errors import InputError
from retention.private import make_private_dir, restrict_umask, tighten_tree

SCHEMA_VERSION = 2
DATASET_KINDS = ("events", "campaigns", "snapshot")
RUN_STATUSES = ("running", "done", "failed")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
#: A job in one of these states has not ended yet.
ACTIVE_JOB_STATUSES = ("queued", "running")
DEFAULT_FOLDER = "workspace"
DB_NAME = "retention.duckdb"
#: The folder of background jobs' files (:mod:`retention.jobs`), and the prefix of the copies of
#: datasets its queue keeps for the next job (one per dataset and text model).
JOBS_FOLDER = "jobs"
KEPT_INPUT_PREFIX = "kept-"

_T = TypeVar("_T")

# Migrations: index i brings the schema from version i to i + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE datasets (
            id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, source_name VARCHAR,
            sha256 VARCHAR, shape VARCHAR NOT NULL, rows BIGINT NOT NULL,
            mapping VARCHAR NOT NULL, report VARCHAR NOT NULL, kinds VARCHAR NOT NULL,
            created TIMESTAMP NOT NULL)""",
        """CREATE TABLE embeddings (
            model_id VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (model_id, text_hash))""",
        """CREATE TABLE runs (
            id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, dataset_id VARCHAR,
            created TIMESTAMP NOT NULL, finished TIMESTAMP, status VARCHAR NOT NULL,
            settings VARCHAR NOT NULL, settings_key VARCHAR NOT NULL, metrics VARCHAR,
            error VARCHAR, pid INTEGER)""",
        """CREATE TABLE artifacts (
            run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, format VARCHAR NOT NULL,
            data BLOB NOT NULL, PRIMARY KEY (run_id, name))""",
        """CREATE TABLE segment_names (
            run_id VARCHAR NOT NULL, segment INTEGER NOT NULL, name VARCHAR NOT NULL,
            PRIMARY KEY (run_id, segment))""",
    ),
    (
        # Background work (retention.jobs): one row per job, written by the server process only.
        "CREATE SEQUENCE job_seq",
        """CREATE TABLE jobs (
            id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL DEFAULT nextval('job_seq'),
            kind VARCHAR NOT NULL, dataset_id VARCHAR, owner VARCHAR NOT NULL,
            settings VARCHAR NOT NULL, status VARCHAR NOT NULL,
            progress DOUBLE NOT NULL DEFAULT 0, message VARCHAR,
            created TIMESTAMP NOT NULL, started TIMESTAMP, finished TIMESTAMP,
            run_id VARCHAR, error VARCHAR, pid INTEGER,
            cancel_requested BOOLEAN NOT NULL DEFAULT false)""",
    ),
)


@dataclass(frozen=True)
class DatasetInfo:
    """A stored dataset's metadata."""

    id: str
    name: str
    source_name: str | None
    sha256: str | None
    shape: str
    rows: int
    mapping: dict[str, Any]
    report: dict[str, Any]
    kinds: tuple[str, ...]
    created: pd.Timestamp


@dataclass(frozen=True)
class Run:
    """A stored run: its settings, status, metrics and artifacts."""

    id: str
    kind: str
    dataset_id: str | None
    created: pd.Timestamp
    status: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A piece of background work (see :mod:`retention.jobs`) as the workspace records it."""

    id: str
    kind: str
    dataset_id: str | None
    owner: str
    settings: dict[str, Any]
    status: str
    progress: float
    message: str | None
    created: pd.Timestamp
    started: pd.Timestamp | None
    finished: pd.Timestamp | None
    run_id: str | None
    error: str | None
    cancel_requested: bool

    @property
    def active(self) -> bool:
        """Whether the job is still queued or running."""
        return self.status in ACTIVE_JOB_STATUSES


_JOB_COLUMNS = (
    "id, kind, dataset_id, owner, settings, status, progress, message, created, started, "
    "finished, run_id, error, cancel_requested"
)


def _job(row: Sequence[Any]) -> Job:
    def stamp(value: Any) -> pd.Timestamp | None:
        return None if value is None else pd.Timestamp(value)

    return Job(
        id=row[0],
        kind=row[1],
        dataset_id=row[2],
        owner=row[3],
        settings=json.loads(row[4]),
        status=row[5],
        progress=float(row[6]),
        message=row[7],
        created=pd.Timestamp(row[8]),
        started=stamp(row[9]),
        finished=stamp(row[10]),
        run_id=row[11],
        error=row[12],
        cancel_requested=bool(row[13]),
    )


_connections: dict[Path, duckdb.DuckDBPyConnection] = {}
_connections_lock = threading.Lock()
# One writer at a time per database in this process: DuckDB answers two threads writing the
# same rows at once (e.g. two sessions upserting one meta key) with a transaction or even a
# constraint error, so write transactions queue here instead. Reads never wait.
_write_locks: dict[Path, threading.RLock] = {}


#: The memory limit that :meth:`Workspace.release_cached_memory` sets for a moment.
RELEASE_LIMIT = "32MB"


def duckdb_config() -> dict[str, Any]:
    """DuckDB's settings for our connections: a memory cap (it spills to disk beyond).

    DuckDB would otherwise take up to 80% of the machine's memory for big joins and sorts; the
    cap keeps the whole pipeline under its memory budget at 50 million events (README, Speed).
    2 GB since session 9: at 10M and 50M events the outputs are byte-identical to 3 GB's and the
    command no slower (66.7 s against 68.9 s at 50M), and the segments step's peak fell from
    3,151 to 2,529 MB. Set RETENTION_DUCKDB_MEMORY (e.g. ``8GB``) to change it.
    """
    return {
        "memory_limit": os.environ.get("RETENTION_DUCKDB_MEMORY", "2GB"),
        # Hand freed memory back to the system between queries (measured at 50M events: the
        # segmentation step's peak fell from 4.2 GB to 3.8 GB).
        "allocator_background_threads": True,
    }


def _canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode_artifact(value: Any) -> tuple[str, bytes]:
    if isinstance(value, pd.DataFrame):
        buf = io.BytesIO()
        value.to_parquet(buf, index=True)
        return "parquet", buf.getvalue()
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return "npy", buf.getvalue()
    return "json", json.dumps(value, default=_json_default).encode()


def _decode_artifact(fmt: str, data: bytes) -> Any:
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data))
    if fmt == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    return json.loads(data.decode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"Cannot store {type(value).__name__} as JSON")


class Workspace:
    """A folder holding one DuckDB database with everything the user created.

    ``folder`` defaults to ``$RETENTION_WORKSPACE`` or ``workspace``; it is created when missing.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        chosen = folder if folder is not None else os.environ.get("RETENTION_WORKSPACE")
        self.folder = Path(chosen or DEFAULT_FOLDER).expanduser().resolve()
        restrict_umask()  # DuckDB creates its WAL and spill files whenever it needs them
        try:
            make_private_dir(self.folder)
        except OSError as exc:
            raise InputError(
                f"Cannot create the workspace folder {self.folder}: {exc.strerror}.",
                cli_hint="Choose a folder you can write to (--workspace DIR or "
                "RETENTION_WORKSPACE).",
                ui_hint="Start the app with RETENTION_WORKSPACE set to a folder you can write to.",
            ) from exc
        self.db_path = self.folder / DB_NAME
        #: The most this workspace may hold (bytes), or None: a team server sets each person's.
        self.size_limit: int | None = None
        #: Why nothing may be added here (a team workspace opened read-only), or None.
        self.read_only: str | None = None
        self._local = threading.local()
        with _connections_lock:
            self._write_lock = _write_locks.setdefault(self.db_path, threading.RLock())
        self._con = self._connect()
        for path in self.folder.glob(f"{DB_NAME}*"):  # the database, its WAL and spill folder
            tighten_tree(path)
        self._migrate()
        self._mark_interrupted_runs()
        self._mark_interrupted_jobs()

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        with _connections_lock:
            con = _connections.get(self.db_path)
            if con is not None:
                return con
            last: Exception | None = None
            for attempt in range(20):
                try:
                    con = duckdb.connect(str(self.db_path), config=duckdb_config())
                    break
                except duckdb.IOException as exc:  # locked by another process
                    last = exc
                    time.sleep(min(0.05 * 2**attempt, 0.5))
            else:
                raise InputError(
                    f"The workspace {self.folder} is in use by another program (is the app or "
                    f"another command running on it?) ({last}).",
                    cli_hint="Close it, or use another workspace folder with --workspace DIR.",
                    ui_hint="Close it, or start the app with RETENTION_WORKSPACE set to another "
                    "folder.",
                )
            _connections[self.db_path] = con
            return con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the process-wide connection."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    def release_cached_memory(self) -> bool:
        """Have DuckDB hand back the memory it keeps between queries: its memory limit is set
        to :data:`RELEASE_LIMIT` and back, so its buffer pool drops the blocks of stored tables
        it cached (read again from the file when a query needs them) and its allocator returns
        what it freed. For the command line between its steps, when no query runs (issue 19:
        at 10M events the retention step started 366 MB lower). Results do not change: only
        cached copies go. False when DuckDB refused (it could not free enough: the limit is
        then left as it was)."""
        limit = duckdb_config()["memory_limit"]
        with self._own_cursor() as cur:
            try:
                cur.execute(f"SET memory_limit = '{RELEASE_LIMIT}'")
            except duckdb.Error:
                return False
            finally:
                cur.execute("SET memory_limit = ?", [limit])
        return True

    @contextmanager
    def _own_cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh cursor for the workspace's own statements, so they never collide with a
        result the caller is still reading on :meth:`cursor`."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _q(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for one read statement (closed when garbage-collected)."""
        return self._con.cursor()

    def _fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._own_cursor() as cur:
            return cur.execute(sql, params or []).fetchall()

    def _fetchdf(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._own_cursor() as cur:
            return cur.execute(sql, params or []).df()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._own_cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """Run ``fn`` in one transaction, one writer at a time in this process, retrying on
        write-write conflicts (with a transaction some other code opened on the connection)."""
        for attempt in range(8):
            try:
                with self._write_lock, self._transaction() as cur:
                    return fn(cur)
            except duckdb.TransactionException:
                if attempt == 7:
                    raise
                time.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    def used_bytes(self) -> int:
        """How much the workspace's database holds (its used blocks: deleting a dataset frees
        them, even though the file on disk does not shrink)."""
        row = self._fetchall("SELECT used_blocks * block_size FROM pragma_database_size()")
        return int(row[0][0] or 0) if row else 0

    def check_room(self) -> None:
        """Refuse to add more when the workspace is :attr:`read_only` or holds
        :attr:`size_limit` bytes or more."""
        if self.read_only:
            raise InputError(self.read_only)
        if self.size_limit is None:
            return
        used = self.used_bytes()
        if used >= self.size_limit:
            raise InputError(
                f"Your workspace is full: it holds {used / 1e6:,.0f} MB of the "
                f"{self.size_limit / 1e6:,.0f} MB each person may keep on this server. Delete "
                "datasets you no longer need (Data page) and try again, or ask whoever runs the "
                "server for more room."
            )

    def _migrate(self) -> None:
        with self._own_cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        rows = self._fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
        version = int(rows[0][0]) if rows else 0
        if version > SCHEMA_VERSION:
            raise InputError(
                f"The workspace {self.folder} was written by a newer Retention Studio "
                f"(schema {version}, this one knows {SCHEMA_VERSION}). Upgrade, or use another "
                "workspace folder."
            )

        def apply(cur: duckdb.DuckDBPyConnection) -> None:
            for target in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[target]:
                    cur.execute(statement)
            cur.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

        if version < SCHEMA_VERSION:
            self._write(apply)

    def _mark_interrupted_runs(self) -> None:
        rows = self._q().execute("SELECT id, pid FROM runs WHERE status = 'running'").fetchall()
        for run_id, pid in rows:
            if pid != os.getpid() and not _pid_alive(pid):
                self.fail_run(run_id, "interrupted: the program stopped before the run finished")

    def _mark_interrupted_jobs(self) -> None:
        """Jobs left ``running`` by a program that stopped become ``interrupted`` (queued ones
        stay queued: the app's job queue takes them up again, :class:`retention.jobs.JobQueue`)."""
        rows = self._fetchall("SELECT id, pid FROM jobs WHERE status = 'running'")
        for job_id, pid in rows:
            if pid != os.getpid() and not _pid_alive(pid):
                self.end_job(
                    job_id,
                    "interrupted",
                    error="interrupted: the app stopped while this job ran. Start it again.",
                )

    @staticmethod
    def table(dataset_id: str, kind: str) -> str:
        """The quoted SQL name of one of a dataset's tables."""
        if kind not in DATASET_KINDS:
            raise ValueError(f"The 'kind' parameter must be one of {DATASET_KINDS}. Got {kind!r}.")
        if not dataset_id.isalnum():
            raise ValueError(f"Not a dataset id: {dataset_id!r}")
        return f'"ds_{dataset_id}_{kind}"'

    # -- datasets ---------------------------------------------------------------------------

    def save_dataset(
        self,
        *,
        name: str,
        source_name: str | None,
        sha256: str | None,
        shape: str,
        frames: Mapping[str, Any],
        mapping: dict[str, Any],
        report: dict[str, Any],
    ) -> str:
        """Store a dataset's frames and metadata in one transaction; return its id."""
        unknown = set(frames) - set(DATASET_KINDS)
        if unknown:
            raise ValueError(f"Unknown dataset table kinds {sorted(unknown)}; use {DATASET_KINDS}")
        main = "snapshot" if shape == "snapshot" else "events"
        if main not in frames:
            raise ValueError(f"A {shape} dataset needs a {main!r} frame")
        self.check_room()
        dataset_id = uuid.uuid4().hex[:12]
        name = (name or source_name or "dataset").strip() or "dataset"

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            for kind, frame in frames.items():
                view = f"_incoming_{dataset_id}_{kind}"
                target = self.table(dataset_id, kind)
                store_into = getattr(frame, "store_into", None)  # issue 19: ingest.direct
                if store_into is not None:
                    store_into(cur, target)
                    continue
                staged = getattr(frame, "path", None)  # rows staged on disk (StagedTable)
                if staged is not None:
                    sql = f"CREATE TABLE {target} AS SELECT * FROM read_parquet(?)"  # noqa: S608 - generated identifier
                    cur.execute(sql, [str(staged)])
                    continue
                cur.register(view, frame)
                try:
                    sql = f"CREATE TABLE {target} AS SELECT * FROM {view}"  # noqa: S608 - generated identifiers
                    cur.execute(sql)
                finally:
                    cur.unregister(view)
            cur.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                [
                    dataset_id,
                    name,
                    source_name,
                    sha256,
                    shape,
                    int(len(frames[main])),
                    json.dumps(mapping, default=_json_default),
                    json.dumps(report, default=_json_default),
                    ",".join(sorted(frames)),
                ],
            )

        self._write(write)
        return dataset_id

    def datasets(self) -> pd.DataFrame:
        """All datasets, newest first: id, name, source_name, sha256, shape, rows, created, and
        engine ('spark' for a dataset whose events live in Spark, else 'duckdb')."""
        return (
            self._q()
            .execute(
                "SELECT id, name, source_name, sha256, shape, rows, created, "
                "coalesce(json_extract_string(report, '$.engine.name'), 'duckdb') AS engine "
                "FROM datasets ORDER BY created DESC, id"
            )
            .df()
        )

    def dataset(self, dataset_id: str) -> DatasetInfo:
        row = (
            self._q()
            .execute(
                "SELECT id, name, source_name, sha256, shape, rows, mapping, report, kinds, "
                "created FROM datasets WHERE id = ?",
                [dataset_id],
            )
            .fetchone()
        )
        if row is None:
            raise InputError(
                f"There is no dataset {dataset_id!r} in the workspace {self.folder}. "
                "Pick one from the list of datasets, or upload the file again."
            )
        return DatasetInfo(
            id=row[0],
            name=row[1],
            source_name=row[2],
            sha256=row[3],
            shape=row[4],
            rows=int(row[5]),
            mapping=json.loads(row[6]),
            report=json.loads(row[7]),
            kinds=tuple(k for k in row[8].split(",") if k),
            created=pd.Timestamp(row[9]),
        )

    def load(self, dataset_id: str, kind: str) -> pd.DataFrame:
        """One of a dataset's tables as a DataFrame."""
        info = self.dataset(dataset_id)
        if kind not in info.kinds:
            raise InputError(f"The dataset {info.name!r} has no {kind} table.")
        return self._q().execute(f"SELECT * FROM {self.table(dataset_id, kind)}").df()  # noqa: S608

    def rename_dataset(self, dataset_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise InputError("A dataset name cannot be empty. Type a name.")
        self.dataset(dataset_id)
        self._write(
            lambda cur: cur.execute("UPDATE datasets SET name = ? WHERE id = ?", [name, dataset_id])
        )

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset, its tables and every run made on it."""
        info = self.dataset(dataset_id)

        def delete(cur: duckdb.DuckDBPyConnection) -> None:
            for kind in info.kinds:
                cur.execute(f"DROP TABLE IF EXISTS {self.table(dataset_id, kind)}")
                drop_stored(cur, self.table(dataset_id, kind).strip('"'))  # issue 18: its copy
            run_ids = [
                r[0]
                for r in cur.execute(
                    "SELECT id FROM runs WHERE dataset_id = ?", [dataset_id]
                ).fetchall()
            ]
            for run_id in run_ids:
                cur.execute("DELETE FROM artifacts WHERE run_id = ?", [run_id])
                cur.execute("DELETE FROM segment_names WHERE run_id = ?", [run_id])
            cur.execute("DELETE FROM runs WHERE dataset_id = ?", [dataset_id])
            cur.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])

        self._write(delete)
        # issue 19 (s4-cmd19): the dataset's kept user vectors (retention.segments.vectors) go too
        for path in (self.folder / "segment_vectors").glob(f"{dataset_id}.*.npz"):
            path.unlink(missing_ok=True)
        from retention.command_cache import forget_dataset  # and the command's kept outputs

        forget_dataset(self.folder, dataset_id)
        # and the job queue's kept copies of its events (retention.jobs.JobQueue.kept_input)
        for path in (self.folder / JOBS_FOLDER).glob(f"{KEPT_INPUT_PREFIX}{dataset_id}.*"):
            shutil.rmtree(path, ignore_errors=True)

    # -- embedding cache ------------------------------------------------------------------

    def cached_vectors(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already cached for ``model_id``, by text hash (misses are absent)."""
        if len(hashes) == 0:
            return {}
        wanted = pd.DataFrame({"text_hash": pd.unique(np.asarray(hashes, dtype=object))})
        with self._own_cursor() as cur:
            cur.register("_wanted_hashes", wanted)
            rows = cur.execute(
                "SELECT e.text_hash, e.vector FROM embeddings e "
                "JOIN _wanted_hashes w ON e.text_hash = w.text_hash WHERE e.model_id = ?",
                [model_id],
            ).fetchall()
        return {h: np.frombuffer(v, dtype=np.float32) for h, v in rows}

    def cache_vectors(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (float32) for ``model_id`` by text hash; existing entries are kept."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(hashes)} hashes but {len(vectors)} vectors")
        if len(hashes) == 0:
            return
        frame = pd.DataFrame(
            {
                "model_id": model_id,
                "text_hash": list(hashes),
                "vector": [row.tobytes() for row in vectors],
            }
        ).drop_duplicates("text_hash")

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            cur.register("_new_vectors", frame)
            try:
                cur.execute(
                    "INSERT OR IGNORE INTO embeddings SELECT model_id, text_hash, vector "
                    "FROM _new_vectors"
                )
            finally:
                cur.unregister("_new_vectors")

        self._write(write)

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, kind: str, dataset_id: str | None, settings: dict[str, Any]) -> str:
        """Record a run as ``running``; finish it with :meth:`finish_run` or :meth:`fail_run`."""
        self.check_room()
        run_id = uuid.uuid4().hex[:12]
        key = _canonical(settings)
        self._write(
            lambda cur: cur.execute(
                "INSERT INTO runs (id, kind, dataset_id, created, status, settings, settings_key, "
                "metrics, pid) VALUES (?, ?, ?, now()::TIMESTAMP, 'running', ?, ?, '{}', ?)",
                [
                    run_id,
                    kind,
                    dataset_id,
                    json.dumps(settings, default=_json_default),
                    key,
                    os.getpid(),
                ],
            )
        )
        return run_id

    def finish_run(
        self,
        run_id: str,
        *,
        metrics: dict[str, Any],
        artifacts: dict[str, Any],
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Store a run's artifacts and metrics and mark it done, all in one transaction."""
        encoded = {name: _encode_artifact(value) for name, value in artifacts.items()}

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("DELETE FROM artifacts WHERE run_id = ?", [run_id])
            for name, (fmt, data) in encoded.items():
                cur.execute("INSERT INTO artifacts VALUES (?, ?, ?, ?)", [run_id, name, fmt, data])
            cur.execute(
                "UPDATE runs SET status = 'done', finished = now()::TIMESTAMP, metrics = ? "
                "WHERE id = ?",
                [json.dumps(metrics, default=_json_default), run_id],
            )
            if settings is not None:  # the full settings, known only once the run is done
                cur.execute(
                    "UPDATE runs SET settings = ?, settings_key = ? WHERE id = ?",
                    [json.dumps(settings, default=_json_default), _canonical(settings), run_id],
                )

        self._write(write)

    def fail_run(self, run_id: str, reason: str) -> None:
        self._write(
            lambda cur: cur.execute(
                "UPDATE runs SET status = 'failed', finished = now()::TIMESTAMP, error = ? "
                "WHERE id = ?",
                [reason, run_id],
            )
        )

    def runs(self, kind: str | None = None, dataset_id: str | None = None) -> pd.DataFrame:
        """Runs, newest first, optionally of one kind and/or dataset."""
        frame = (
            self._q()
            .execute(
                "SELECT id, kind, dataset_id, created, finished, status, settings, metrics, error "
                "FROM runs WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR dataset_id = ?) "
                "ORDER BY created DESC, id",
                [kind, kind, dataset_id, dataset_id],
            )
            .df()
        )
        frame["settings"] = frame["settings"].map(json.loads)
        frame["metrics"] = frame["metrics"].map(lambda m: json.loads(m) if m else {})
        return frame

    def load_run(self, run_id: str, *, artifacts: bool = True) -> Run:
        rows = self._fetchall(
            "SELECT id, kind, dataset_id, created, status, settings, metrics, error "
            "FROM runs WHERE id = ?",
            [run_id],
        )
        if not rows:
            raise InputError(f"There is no run {run_id!r} in the workspace {self.folder}.")
        row = rows[0]
        loaded: dict[str, Any] = {}
        if artifacts:
            for name, fmt, data in self._fetchall(
                "SELECT name, format, data FROM artifacts WHERE run_id = ? ORDER BY name", [run_id]
            ):
                loaded[name] = _decode_artifact(fmt, data)
        return Run(
            id=row[0],
            kind=row[1],
            dataset_id=row[2],
            created=pd.Timestamp(row[3]),
            status=row[4],
            settings=json.loads(row[5]),
            metrics=json.loads(row[6]) if row[6] else {},
            error=row[7],
            artifacts=loaded,
        )

    def find_run(self, kind: str, dataset_id: str | None, settings: dict[str, Any]) -> Run | None:
        """The latest finished run of ``kind`` on ``dataset_id`` with exactly these settings."""
        row = (
            self._q()
            .execute(
                "SELECT id FROM runs WHERE kind = ? AND dataset_id IS NOT DISTINCT FROM ? "
                "AND settings_key = ? AND status = 'done' ORDER BY created DESC LIMIT 1",
                [kind, dataset_id, _canonical(settings)],
            )
            .fetchone()
        )
        return self.load_run(row[0]) if row else None

    def latest_run(self, kind: str, dataset_id: str | None) -> Run | None:
        """The latest finished run of ``kind`` on ``dataset_id``."""
        row = (
            self._q()
            .execute(
                "SELECT id FROM runs WHERE kind = ? AND dataset_id IS NOT DISTINCT FROM ? "
                "AND status = 'done' ORDER BY created DESC LIMIT 1",
                [kind, dataset_id],
            )
            .fetchone()
        )
        return self.load_run(row[0]) if row else None

    # -- jobs -----------------------------------------------------------------------------

    def add_job(
        self, kind: str, dataset_id: str | None, settings: dict[str, Any], owner: str
    ) -> str:
        """Record a ``queued`` job; return its id (:mod:`retention.jobs` runs it)."""
        job_id = uuid.uuid4().hex[:12]
        self._write(
            lambda cur: cur.execute(
                "INSERT INTO jobs (id, kind, dataset_id, owner, settings, status, created) "
                "VALUES (?, ?, ?, ?, ?, 'queued', now()::TIMESTAMP)",
                [job_id, kind, dataset_id, owner, json.dumps(settings, default=_json_default)],
            )
        )
        return job_id

    def job(self, job_id: str) -> Job:
        rows = self._fetchall(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", [job_id])  # noqa: S608 - constant column list
        if not rows:
            raise InputError(f"There is no job {job_id!r} in the workspace {self.folder}.")
        return _job(rows[0])

    def jobs(
        self,
        *,
        kind: str | None = None,
        dataset_id: str | None = None,
        owner: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[Job]:
        """Jobs in the order they were submitted, optionally filtered."""
        wanted = list(statuses) if statuses is not None else list(JOB_STATUSES)
        rows = self._fetchall(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE (? IS NULL OR kind = ?) "  # noqa: S608 - constant column list
            "AND (? IS NULL OR dataset_id = ?) AND (? IS NULL OR owner = ?) "
            "AND list_contains(?, status) ORDER BY seq",
            [kind, kind, dataset_id, dataset_id, owner, owner, wanted],
        )
        return [_job(row) for row in rows]

    def start_job(self, job_id: str) -> bool:
        """Mark a queued job ``running`` (by this process); False when it is no longer queued
        (cancelled meanwhile)."""

        def write(cur: duckdb.DuckDBPyConnection) -> bool:
            row = cur.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
            if row is None or row[0] != "queued":
                return False
            cur.execute(
                "UPDATE jobs SET status = 'running', started = now()::TIMESTAMP, pid = ? "
                "WHERE id = ?",
                [os.getpid(), job_id],
            )
            return True

        return self._write(write)

    def job_progress(self, job_id: str, progress: float, message: str | None) -> None:
        self._write(
            lambda cur: cur.execute(
                "UPDATE jobs SET progress = ?, message = ? WHERE id = ? AND status = 'running'",
                [float(progress), message, job_id],
            )
        )

    def request_job_cancel(self, job_id: str) -> None:
        self._write(
            lambda cur: cur.execute(
                "UPDATE jobs SET cancel_requested = true WHERE id = ?", [job_id]
            )
        )

    def end_job(
        self,
        job_id: str,
        status: str,
        *,
        run_id: str | None = None,
        error: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Record how a job ended; False (and nothing changed) when it had already ended."""
        if status not in JOB_STATUSES or status in ACTIVE_JOB_STATUSES:
            raise ValueError(f"Not a final job status: {status!r}")

        def write(cur: duckdb.DuckDBPyConnection) -> bool:
            row = cur.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
            if row is None or row[0] not in ACTIVE_JOB_STATUSES:
                return False
            cur.execute(
                "UPDATE jobs SET status = ?, finished = now()::TIMESTAMP, run_id = ?, error = ?, "
                "message = coalesce(?, message), progress = CASE WHEN ? = 'done' THEN 1.0 "
                "ELSE progress END WHERE id = ?",
                [status, run_id, error, message, status, job_id],
            )
            return True

        return self._write(write)

    # -- job inputs (a worker process cannot open this database) ------------------------------

    def export_job_input(self, folder: Path, dataset_id: str, model_id: str | None) -> Path:
        """A private workspace in ``folder`` holding one dataset (same id, same tables) and the
        vectors cached for ``model_id``: what a worker process reads instead of this database,
        which only one process may open."""
        job_ws = Workspace(folder)
        job_ws.close()
        info = self.dataset(dataset_id)
        alias = f"job_{uuid.uuid4().hex[:12]}"
        with self._own_cursor() as cur:
            cur.execute(f"ATTACH ? AS {alias}", [str(job_ws.db_path)])
            try:
                for kind in info.kinds:
                    table = self.table(dataset_id, kind)
                    cur.execute(f"CREATE TABLE {alias}.{table} AS SELECT * FROM {table}")  # noqa: S608 - generated identifiers
                cur.execute(
                    f"INSERT INTO {alias}.datasets SELECT * FROM datasets WHERE id = ?",  # noqa: S608
                    [dataset_id],
                )
                if model_id is not None:
                    cur.execute(
                        f"INSERT INTO {alias}.embeddings SELECT * FROM embeddings "  # noqa: S608
                        "WHERE model_id = ?",
                        [model_id],
                    )
            finally:
                cur.execute(f"DETACH {alias}")
        return job_ws.db_path

    def import_vectors(self, db_path: Path, model_id: str) -> None:
        """Add the vectors a worker cached in its job workspace (``db_path``) to this cache."""
        alias = f"job_{uuid.uuid4().hex[:12]}"
        with self._own_cursor() as cur:
            cur.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(db_path)])
            try:
                self._write(
                    lambda w: w.execute(
                        f"INSERT OR IGNORE INTO embeddings SELECT model_id, text_hash, vector "  # noqa: S608
                        f"FROM {alias}.embeddings WHERE model_id = ?",
                        [model_id],
                    )
                )
            finally:
                cur.execute(f"DETACH {alias}")

    # -- preferences ----------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A small persisted preference (e.g. the last dataset the user looked at)."""
        row = self._q().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.set_metas({key: value})

    def set_metas(self, items: dict[str, str]) -> None:
        """Several preferences in one write (one transaction: a page run saves its settings
        together instead of queueing once per setting for the workspace's one writer)."""
        if not items:
            return

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            for key, value in items.items():
                cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

        self._write(write)

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Every preference whose key starts with ``prefix`` (key -> value), sorted by key."""
        rows = (
            self._q()
            .execute("SELECT key, value FROM meta WHERE starts_with(key, ?) ORDER BY key", [prefix])
            .fetchall()
        )
        return dict(rows)

    def delete_meta(self, key: str) -> None:
        """Forget one preference (nothing happens when there is none)."""
        self._write(lambda cur: cur.execute("DELETE FROM meta WHERE key = ?", [key]))

    # -- segment names --------------------------------------------------------------------

    def segment_names(self, run_id: str) -> dict[int, str]:
        rows = (
            self._q()
            .execute("SELECT segment, name FROM segment_names WHERE run_id = ?", [run_id])
            .fetchall()
        )
        return {int(s): n for s, n in rows}

    def rename_segment(self, run_id: str, segment: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise InputError("A segment name cannot be empty. Type a name.")
        self.load_run(run_id, artifacts=False)
        self._write(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO segment_names VALUES (?, ?, ?)",
                [run_id, int(segment), name],
            )
        )

    def close(self) -> None:
        """Close this process's connection to the database (all Workspaces on it)."""
        with _connections_lock:
            con = _connections.pop(self.db_path, None)
        if con is not None:
            con.close()

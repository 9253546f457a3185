"""Workspace backups: one zip file that holds everything a workspace keeps, and its restore.

A backup is a zip with ``manifest.json`` and one Parquet file per table: the workspace's own
tables (``meta``, ``datasets``, ``embeddings``, ``runs``, ``artifacts``, ``segment_names``) and
every dataset's tables. All tables are read in one transaction, so the backup is a consistent
snapshot even while other threads write. The manifest records the format, the workspace schema
version, and each table's row count and SHA-256, which a restore checks before it writes
anything.

A restore never runs SQL from the backup: it creates the schema this program knows (up to the
backup's schema version), loads the Parquet files into it with bound parameters, checks the row
counts, migrates to the current schema and only then moves the new database into place (an
atomic rename), so a failed or killed restore leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from retention.errors import InputError
from retention.private import PRIVATE_DIR, restrict_umask
from retention.sql import quote_ident
from retention.workspace import (
    _MIGRATIONS,
    DATASET_KINDS,
    DB_NAME,
    SCHEMA_VERSION,
    Workspace,
    _connections,
    _pid_alive,
)

BACKUP_FORMAT = "retention-studio-backup"
FORMAT_VERSION = 1
#: The workspace's own tables, in the order they are restored.
CORE_TABLES = ("meta", "datasets", "embeddings", "runs", "artifacts", "segment_names")
_MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 64 * 1024**2
_BATCH_ROWS = 50_000
_INTERRUPTED = "interrupted: the run was still going when the backup was made"


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds (from its manifest)."""

    path: Path
    schema_version: int
    created: str
    tables: dict[str, int]  # table name -> rows
    datasets: int
    runs: int
    size_bytes: int


# -- staging folders ----------------------------------------------------------------------------


def staging_folder(target: Path, tag: str = "") -> Path:
    """A new hidden folder beside ``target`` (same file system, so a rename publishes it).

    Its name, ``.<target>.<tag><pid>.<random>``, carries the owning process id so that
    :func:`remove_stale_staging` can tell a folder left by a killed process from one in use.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}{os.getpid()}.", dir=target.parent))


def remove_stale_staging(target: Path, tag: str = "") -> list[Path]:
    """Delete staging folders beside ``target`` whose process is gone; return what was removed."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.{re.escape(tag)}(\d+)\.[A-Za-z0-9_]{{8}}$")
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def publish_folder(staging: Path, target: Path) -> None:
    """Make ``staging`` appear as ``target`` in one atomic rename (``target`` absent or empty)."""
    umask = restrict_umask()
    os.umask(umask)  # only read it here; the caller's umask stays as it was
    staging.chmod(PRIVATE_DIR & ~umask)
    os.replace(staging, target)


# -- backup -------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024**2):
            digest.update(block)
    return digest.hexdigest()


def _write_parquet(cur: duckdb.DuckDBPyConnection, table: str, path: Path) -> int:
    """Stream one table (a quoted identifier) into a Parquet file; return its row count."""
    reader = cur.sql(f"SELECT * FROM {table}").to_arrow_reader(_BATCH_ROWS)  # noqa: S608
    rows = 0
    with pq.ParquetWriter(path, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def backup(workspace: Workspace, to: str | os.PathLike[str], *, force: bool = False) -> BackupInfo:
    """Write a consistent backup of ``workspace`` to the zip file ``to``.

    The file appears only when complete (written beside it, then renamed). An existing file is
    refused unless ``force``.
    """
    target = Path(to).expanduser().resolve()
    if target.is_dir():
        raise InputError(f"--to {target}: is a folder. Give the path of the backup file to write.")
    if target.exists() and not force:
        raise InputError(
            f"--to {target}: the file exists. Choose another name, or add --force to replace it."
        )
    remove_stale_staging(target)
    staging = staging_folder(target)
    try:
        tables_dir = staging / "tables"
        tables_dir.mkdir()
        entries: dict[str, dict[str, Any]] = {}
        cur = workspace.cursor().cursor()
        try:
            cur.execute("BEGIN TRANSACTION")  # one snapshot for every table
            try:
                version = int(
                    cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
                )
                datasets = cur.execute("SELECT id, kinds FROM datasets ORDER BY id").fetchall()
                names = [(t, {"kind": "core"}) for t in CORE_TABLES]
                for dataset_id, kinds in datasets:
                    for kind in (k for k in kinds.split(",") if k):
                        names.append(
                            (
                                Workspace.table(dataset_id, kind).strip('"'),
                                {"kind": "dataset", "dataset_id": dataset_id, "table": kind},
                            )
                        )
                for name, extra in names:
                    file = tables_dir / f"{name}.parquet"
                    rows = _write_parquet(cur, quote_ident(name), file)
                    entries[name] = {"file": f"tables/{name}.parquet", "rows": rows, **extra}
                n_runs = int(cur.execute("SELECT count(*) FROM runs").fetchone()[0])
            finally:
                cur.execute("ROLLBACK")
        finally:
            cur.close()
        for entry in entries.values():
            path = staging / entry["file"]
            entry["sha256"] = _sha256(path)
            entry["bytes"] = path.stat().st_size
        manifest = {
            "format": BACKUP_FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": version,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duckdb": duckdb.__version__,
            "workspace": str(workspace.folder),
            "datasets": len(datasets),
            "runs": n_runs,
            "tables": entries,
        }
        packed = staging / "backup.zip"
        with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_MANIFEST, json.dumps(manifest, indent=2), zipfile.ZIP_DEFLATED)
            for entry in entries.values():
                zf.write(staging / entry["file"], entry["file"])
        with packed.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(packed, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _info(target, manifest)


def _info(path: Path, manifest: dict[str, Any]) -> BackupInfo:
    return BackupInfo(
        path=path,
        schema_version=int(manifest["schema_version"]),
        created=str(manifest.get("created", "")),
        tables={name: int(e["rows"]) for name, e in manifest["tables"].items()},
        datasets=int(manifest.get("datasets", 0)),
        runs=int(manifest.get("runs", 0)),
        size_bytes=path.stat().st_size,
    )


# -- reading and checking a backup ---------------------------------------------------------------


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    if not path.is_file():
        raise InputError(f"Backup file '{path}' does not exist (or is not a file). Check the path.")
    try:
        with zipfile.ZipFile(path) as zf:
            yield zf
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise InputError(
            f"'{path}' is not a Retention Studio backup (not a readable zip file: {exc}). "
            "Give the file written by `python -m retention backup`."
        ) from None


def _bad(path: Path, what: str) -> InputError:
    return InputError(
        f"'{path}' is not a usable Retention Studio backup: {what}. Make a new backup with "
        "`python -m retention backup`, or use another backup file."
    )


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        member = zf.getinfo(_MANIFEST)
    except KeyError:
        raise _bad(path, "it has no manifest.json") from None
    if member.file_size > _MAX_MANIFEST_BYTES:
        raise _bad(path, "its manifest is implausibly large")
    try:
        manifest = json.loads(zf.read(member).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise _bad(path, f"its manifest cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise _bad(path, "its manifest is not a Retention Studio backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _bad(
            path,
            f"backup format {manifest.get('format_version')!r}; this program reads format "
            f"{FORMAT_VERSION}",
        )
    version = manifest.get("schema_version")
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise InputError(
            f"'{path}' holds a workspace of schema version {version!r}; this program knows "
            f"versions 1 to {SCHEMA_VERSION}. Upgrade Retention Studio to restore it."
        )
    tables = manifest.get("tables")
    if not isinstance(tables, dict) or any(t not in tables for t in CORE_TABLES):
        raise _bad(path, "its manifest does not list the workspace tables")
    for name, entry in tables.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("rows"), int):
            raise _bad(path, f"the manifest entry of table {name!r} is malformed")
        if entry.get("kind") == "dataset":
            dataset_id, kind = str(entry.get("dataset_id", "")), entry.get("table")
            if not dataset_id.isalnum() or kind not in DATASET_KINDS:
                raise _bad(path, f"the manifest names an unknown table {name!r}")
            if Workspace.table(dataset_id, kind).strip('"') != name:
                raise _bad(path, f"the manifest names an unknown table {name!r}")
        elif name not in CORE_TABLES:
            raise _bad(path, f"the manifest names an unknown table {name!r}")
    return manifest


def verify_backup(path: str | os.PathLike[str]) -> BackupInfo:
    """Check a backup's manifest and every table file's SHA-256; raise InputError if broken."""
    path = Path(path).expanduser().resolve()
    with _open_zip(path) as zf:
        manifest = _manifest(zf, path)
        for name, entry in manifest["tables"].items():
            digest = hashlib.sha256()
            try:
                with zf.open(str(entry["file"])) as fh:
                    while block := fh.read(1024**2):
                        digest.update(block)
            except KeyError:
                raise _bad(path, f"the file of table {name!r} is missing") from None
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise _bad(path, f"the file of table {name!r} is damaged ({exc})") from None
            if digest.hexdigest() != entry.get("sha256"):
                raise _bad(path, f"the file of table {name!r} does not match its checksum")
    return _info(path, manifest)


# -- restore ------------------------------------------------------------------------------------


def _create_schema(con: duckdb.DuckDBPyConnection, version: int) -> None:
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for target in range(version):
        for statement in _MIGRATIONS[target]:
            con.execute(statement)


def _load(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any], files: Path) -> None:
    """Load every table of the backup in one transaction and check the row counts."""
    con.execute("BEGIN TRANSACTION")
    try:
        for name, entry in manifest["tables"].items():
            file = str(files / f"{len(name)}_{hashlib.sha256(name.encode()).hexdigest()}.parquet")
            if entry.get("kind") == "dataset":
                table = Workspace.table(entry["dataset_id"], entry["table"])
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)", [file])  # noqa: S608
            else:
                table = quote_ident(name)
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [file])  # noqa: S608
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            if rows != entry["rows"]:
                raise InputError(
                    f"Restoring table {name!r} gave {rows:,} rows; the backup lists "
                    f"{entry['rows']:,}. The backup is damaged: use another one."
                )
        con.execute(
            "UPDATE runs SET status = 'failed', finished = now()::TIMESTAMP, error = ? "
            "WHERE status = 'running'",
            [_INTERRUPTED],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _is_empty_folder(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def restore(
    path: str | os.PathLike[str], folder: str | os.PathLike[str], *, force: bool = False
) -> BackupInfo:
    """Restore the backup at ``path`` into the workspace folder ``folder``, all or nothing.

    A folder that already holds anything is refused unless ``force``; with ``force`` the
    workspace database in it is replaced (other files in the folder are kept).
    """
    path = Path(path).expanduser().resolve()
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--workspace {folder}: exists and is not a folder. Choose a folder path.")
    if folder.exists() and not _is_empty_folder(folder) and not force:
        raise InputError(
            f"The workspace folder {folder} is not empty. Restore into a new folder, or add "
            "--force to replace the workspace in it with the backup."
        )
    if folder / DB_NAME in _connections:
        raise InputError(
            f"The workspace {folder} is open in this program. Close it before restoring into it."
        )
    info = verify_backup(path)
    remove_stale_staging(folder, "restore.")
    staging = staging_folder(folder, "restore.")
    try:
        files = staging / "tables"
        files.mkdir()
        with _open_zip(path) as zf:
            manifest = _manifest(zf, path)
            for name, entry in manifest["tables"].items():
                out = files / f"{len(name)}_{hashlib.sha256(name.encode()).hexdigest()}.parquet"
                with zf.open(str(entry["file"])) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024**2)
        con = duckdb.connect(str(staging / DB_NAME))
        try:
            _create_schema(con, info.schema_version)
            _load(con, manifest, files)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        shutil.rmtree(files)
        migrated = Workspace(staging)  # brings an older schema up to this program's
        migrated.close()
        if not folder.exists() or _is_empty_folder(folder):
            publish_folder(staging, folder)
        else:
            _replace_database(staging / DB_NAME, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _replace_database(new_db: Path, folder: Path) -> None:
    """Swap the database file of an existing workspace folder for ``new_db`` (atomic rename)."""
    old_db = folder / DB_NAME
    wal = folder / f"{DB_NAME}.wal"
    if old_db.exists():
        try:  # fold the old write-ahead log in (and make sure nobody is using the workspace)
            con = duckdb.connect(str(old_db))
            con.execute("CHECKPOINT")
            con.close()
        except duckdb.IOException as exc:
            raise InputError(
                f"The workspace {folder} is in use by another program (is the app running on "
                f"it?). Stop it, then restore again. ({exc})"
            ) from None
        except duckdb.Error:
            pass  # a damaged old database is what a restore replaces
    wal.unlink(missing_ok=True)
    os.replace(new_db, old_db)

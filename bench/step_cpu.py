"""CPU seconds of each step of one whole command (issue 19, 50M events).

    python bench/step_cpu.py FILE [--duckdb NAME=VALUE ...] [--keep-freed-memory]
                                  [--checkpoint-each-step] [--glibc-keep-freed-memory]
                                  [--text-chunk-users N] [--phases]

Runs ``python -m retention run FILE`` in this process on an empty workspace in a temporary
folder and adds, to each step the pipeline times, the process's user and system CPU seconds
during it (``getrusage``: every thread), so a step's cores in use show beside its wall time.
Also prints how long closing the workspace took and how much write-ahead log it had.

The options are the experiments of ``bench/results/scale_50m_s14_runs.md``: ``--duckdb`` adds a
DuckDB setting to the workspace's connection (e.g. ``block_allocator_memory=2GB``);
``--keep-freed-memory`` skips the hand-back of freed memory before each step (glibc's
``malloc_trim`` and DuckDB's cached blocks); ``--checkpoint-each-step`` runs a DuckDB
``CHECKPOINT`` after each step and times it. Without options nothing changes but the timing.

Session 15's options (``bench/results/scale_50m_s15_runs.md``): ``--glibc-keep-freed-memory``
has glibc serve every allocation from its heap and keep up to 1 GiB of freed memory
(``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``; it implies
``--keep-freed-memory``), so freed pages are reused instead of cleared again by the kernel;
``--text-chunk-users N`` builds the users' text vectors N users a chunk
(:data:`retention.segments.reduce.CHUNK_USERS`); ``--phases`` prints, as they end, the wall
and CPU seconds of the parts of each step that took over 0.2 s (the DuckDB passes, the text
vectors, k-means, the curves, the policy, writing the outputs, ...); it imports the modules it
wraps before the run, so their import time leaves the steps.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import importlib
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import retention.timing as timing  # noqa: E402
import retention.workspace as workspace  # noqa: E402

Row = tuple[str, float, float, float]

#: ``--phases``: (module, attribute, label) of the parts timed inside the steps. Functions are
#: wrapped where the pipeline looks them up (the module that imported them).
PHASES = (
    ("retention.ingest.direct", "DirectTable.store_into", "store: CREATE TABLE AS (DuckDB)"),
    ("retention.user_pass", "kept", "the per-user pass (DuckDB; later calls reuse it)"),
    ("retention.segments.features", "_coded_items", "segments: (user, text) counts (DuckDB)"),
    ("retention.segments.pipeline", "aggregate_users", "segments: the users' facts and items"),
    ("retention.segments.pipeline", "embed_user_text", "segments: embedding the texts"),
    ("retention.segments.pipeline", "reduce_users", "segments: text vectors, projected"),
    ("retention.segments.pipeline", "Segmenter.fit", "segments: k-means"),
    ("retention.user_pass", "kept_periods", "the per-(user, period) pass (DuckDB)"),
    ("retention.pipeline", "churn_durations", "retention: churn durations"),
    ("retention.pipeline", "retention_curves", "retention: curves"),
    ("retention.pipeline", "segment_matrix", "retention: analyses"),
    ("retention.pipeline", "train_or_reuse_policy", "policy"),
    ("retention.pipeline", "user_actions", "strategies: actions per user"),
    ("retention.pipeline", "crm_users", "strategies: CRM columns"),
    ("retention.pipeline", "_write_outputs", "writing the four outputs"),
    ("retention.command_cache", "keep", "closing the workspace, keeping the outputs"),
)


def _time_phase(module: str, attribute: str, label: str) -> None:
    owner_name, _, name = attribute.rpartition(".")
    mod = importlib.import_module(module)
    owner = getattr(mod, owner_name) if owner_name else mod
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: object, **kwargs: object) -> object:
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            if wall > 0.2:
                user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
                print(f"phase {label}: {wall:.2f} s ({user:.1f} user + {system:.1f} system CPU-s)")

    setattr(owner, name, timed)


def _glibc_keep_freed_memory() -> None:
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 1 << 30)):
        raise SystemExit("glibc refused mallopt: --glibc-keep-freed-memory needs glibc")


def _wal_mb(db_path: Path) -> float:
    wal = db_path.with_name(db_path.name + ".wal")
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


def instrument(args: argparse.Namespace, rows: list[Row]) -> None:
    """Wrap the pipeline's step timer (and, as asked, the workspace's settings and close)."""
    settings = dict(item.split("=", 1) for item in args.duckdb)
    base_config = workspace.duckdb_config
    workspace.duckdb_config = lambda: {**base_config(), **settings}
    if args.glibc_keep_freed_memory:
        _glibc_keep_freed_memory()
    if args.text_chunk_users is not None:
        if args.text_chunk_users < 1:
            raise SystemExit("--text-chunk-users must be 1 or more")
        from retention.segments import reduce

        reduce.CHUNK_USERS = args.text_chunk_users
    if args.phases:
        for phase in PHASES:
            _time_phase(*phase)
    if args.keep_freed_memory or args.glibc_keep_freed_memory:
        timing.release_freed_memory = lambda: False
        workspace.Workspace.release_cached_memory = lambda self: True

    close = workspace.Workspace.close

    def timed_close(self: workspace.Workspace) -> None:
        wal, start = _wal_mb(self.db_path), time.perf_counter()
        close(self)
        print(f"closing the workspace: {time.perf_counter() - start:.2f} s ({wal:.1f} MB of log)")

    workspace.Workspace.close = timed_close
    step = timing.StepTimer.step

    @contextlib.contextmanager
    def cpu_step(self: timing.StepTimer, name: str) -> Iterator[None]:
        with step(self, name):
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            try:
                yield
            finally:
                after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
                rows.append(
                    (name, wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
                )
                if args.checkpoint_each_step:
                    _checkpoint(name)

    timing.StepTimer.step = cpu_step


def _checkpoint(step: str) -> None:
    for db_path, con in list(workspace._connections.items()):
        wal, start = _wal_mb(db_path), time.perf_counter()
        con.cursor().execute("CHECKPOINT")
        print(f"after {step}: CHECKPOINT {time.perf_counter() - start:.2f} s ({wal:.1f} MB of log)")


def report(rows: list[Row]) -> None:
    print(f"{'step':12s} {'wall s':>7s} {'user':>7s} {'system':>7s} {'cores':>6s}")
    for name, wall, user, system in rows:
        print(f"{name:12s} {wall:7.2f} {user:7.2f} {system:7.2f} {(user + system) / wall:6.2f}")
    wall, user, system = (sum(r[i] for r in rows) for i in (1, 2, 3))
    print(f"{'all steps':12s} {wall:7.2f} {user:7.2f} {system:7.2f} {(user + system) / wall:6.2f}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"whole process: {time.perf_counter() - T0:.1f} s, "
        f"{usage.ru_utime:.1f} user + {usage.ru_stime:.1f} system CPU-s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--duckdb", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--keep-freed-memory", action="store_true")
    parser.add_argument("--checkpoint-each-step", action="store_true")
    parser.add_argument("--glibc-keep-freed-memory", action="store_true")
    parser.add_argument("--text-chunk-users", type=int, default=None, metavar="N")
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args()
    rows: list[Row] = []
    instrument(args, rows)
    from retention.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        code = cli(
            ["run", str(args.source), "--out", f"{tmp}/out", "--workspace", f"{tmp}/ws", "--quiet"]
        )
    report(rows)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

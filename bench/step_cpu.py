"""CPU seconds of each step of one whole command (issue 19, 50M events).

    python bench/step_cpu.py FILE [--duckdb NAME=VALUE ...] [--keep-freed-memory]
                                  [--checkpoint-each-step]

Runs ``python -m retention run FILE`` in this process on an empty workspace in a temporary
folder and adds, to each step the pipeline times, the process's user and system CPU seconds
during it (``getrusage``: every thread), so a step's cores in use show beside its wall time.
Also prints how long closing the workspace took and how much write-ahead log it had.

The options are the experiments of ``bench/results/scale_50m_s14_runs.md``: ``--duckdb`` adds a
DuckDB setting to the workspace's connection (e.g. ``block_allocator_memory=2GB``);
``--keep-freed-memory`` skips the hand-back of freed memory before each step (glibc's
``malloc_trim`` and DuckDB's cached blocks); ``--checkpoint-each-step`` runs a DuckDB
``CHECKPOINT`` after each step and times it. Without options nothing changes but the timing.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _wal_mb(db_path: Path) -> float:
    wal = db_path.with_name(db_path.name + ".wal")
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


def instrument(args: argparse.Namespace, rows: list[Row]) -> None:
    """Wrap the pipeline's step timer (and, as asked, the workspace's settings and close)."""
    settings = dict(item.split("=", 1) for item in args.duckdb)
    base_config = workspace.duckdb_config
    workspace.duckdb_config = lambda: {**base_config(), **settings}
    if args.keep_freed_memory:
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

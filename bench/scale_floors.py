"""What the 50M-event command's main DuckDB passes cost alone on this machine (issue 19).

Each pass runs here by itself, through the library's own functions, on a table stored from the
file: checking the file (the ingest step), storing it (a plain ``CREATE TABLE AS``: the floor
the store step, which also applies the checks, cannot beat), the automatic period choice, the
shared per-user pass, the per-(user, text) counts and the shared per-(user, period) pass on the
chosen period (:mod:`retention.user_pass`), each with its result fetched into Python as the
command fetches it. Their sum is most of the command's DuckDB work (a few small queries are not
timed); the rest of the command's time is the numeric work (text vectors, k-means, curves, the
policy) and writing the outputs. Wall seconds, and the process's CPU seconds split into user
and system time (the system time is mostly the kernel handing over fresh memory pages).

    python bench/scale_floors.py FILE.parquet [--out bench/results/scale_floors.md]

The temporary database goes in ``$RETENTION_BENCH_TMP`` (default ``/tmp``), as the other
scale benches' workspaces do.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retention import user_pass  # noqa: E402
from retention.ingest import LOCAL_FILE_BYTES, ingest  # noqa: E402
from retention.periods import period_grid, resolve_period  # noqa: E402
from retention.segments.features import aggregate_users  # noqa: E402
from retention.workspace import duckdb_config  # noqa: E402

Row = tuple[str, float, float, float, str]


def _timed(what: str, fn: Callable[[], str]) -> Row:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    note = fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    row = (what, wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, note)
    cpu = f"{row[2]:.1f} user + {row[3]:.1f} system CPU-s"
    print(f"{what}: {wall:.1f} s ({cpu}) {note}", flush=True)
    return row


def measure(source: Path) -> list[Row]:
    """The passes, in the command's order, on a fresh database in a temporary folder."""
    folder = Path(tempfile.mkdtemp(dir=os.environ.get("RETENTION_BENCH_TMP", "/tmp")))
    con = duckdb.connect(str(folder / "floors.duckdb"), config=duckdb_config())
    ref = '"events"'
    rows: list[Row] = []
    user_pass.share_user_facts(True)
    try:

        def check() -> str:
            return (
                f"({len(ingest(source, max_bytes=LOCAL_FILE_BYTES).frames['events']):,} rows kept)"
            )

        rows.append(_timed("ingest: checking the file (the command's own step)", check))

        def store() -> str:
            con.execute(f"CREATE TABLE {ref} AS SELECT * FROM read_parquet(?)", [str(source)])  # noqa: S608
            return f"({con.execute(f'SELECT count(*) FROM {ref}').fetchone()[0]:,} events)"  # noqa: S608

        rows.append(_timed("store: CREATE TABLE AS from the Parquet file", store))
        chosen: list[str] = []

        def period() -> str:
            chosen.append(resolve_period(con, ref, "auto"))
            return f"({chosen[0]})"

        rows.append(_timed("period: the automatic choice (sampled users' days)", period))

        def per_user() -> str:
            facts = user_pass.kept(con, ref)
            return f"({len(facts.users) if facts is not None else 0:,} users)"

        rows.append(_timed("segments: the shared per-user pass", per_user))

        def items() -> str:
            # The per-user facts are kept, so the events are read once more here: for the
            # counts (the behaviour table is rebuilt from the kept facts, a million rows).
            data = aggregate_users(con, ref)
            return f"({len(data.items):,} (user, text) rows)"

        rows.append(
            _timed("segments: the per-(user, text) counts (and the behaviour table)", items)
        )

        def per_period() -> str:
            grid = period_grid(con, ref, chosen[0])
            found = user_pass.kept_periods(con, ref, grid)
            return f"({len(found or ()):,} (user, {chosen[0]}) rows)"

        rows.append(_timed("retention: the shared per-(user, period) pass", per_period))
    finally:
        user_pass.share_user_facts(False)
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def table(rows: list[Row], source: Path) -> str:
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    lines = [
        "# Floors: the 50M-event command's main DuckDB passes alone (issue 19)",
        "",
        f"Command: `python bench/scale_floors.py {source.name}`; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, memory cap "
        f"{duckdb_config()['memory_limit']}; load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| pass | wall s | user CPU-s | system CPU-s | result |",
        "|---|---:|---:|---:|---|",
        *(f"| {w} | {s:.1f} | {u:.1f} | {k:.1f} | {n.strip('()')} |" for w, s, u, k, n in rows),
        f"| **all of them** | **{total[0]:.1f}** | {total[1]:.1f} | {total[2]:.1f} | |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, help="write the table as Markdown here")
    args = parser.parse_args()
    text = table(measure(args.source), args.source)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

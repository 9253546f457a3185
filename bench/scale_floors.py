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

``--stores table view`` (session 15) runs the passes twice, side by side in one run: on the
stored table as the command stores it (``table``), and on a view over a copy of the Parquet
file in the database's folder (``view``: what the store step would cost if the workspace kept
the file instead of DuckDB's own copy, and what every later pass would pay for reading Parquet
instead: the view computes the checked columns from the file's at every read, as the stored
table holds them), and ``raw-view``, a view of the file's columns as they are (no checks: not a
design, the floor any view could reach). Each way also times the ``CHECKPOINT`` that follows
the store (the command pays it when it closes the workspace).

    python bench/scale_floors.py FILE.parquet [--stores table view] [--out bench/results/scale_floors.md]

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


def measure(source: Path, store_as: str = "table") -> list[Row]:
    """The passes, in the command's order, on a fresh database in a temporary folder, with the
    events stored as a table or as a view over a copy of the file (``store_as``: ``table``,
    ``view`` or ``raw-view``, see the module docstring)."""
    folder = Path(tempfile.mkdtemp(dir=os.environ.get("RETENTION_BENCH_TMP", "/tmp")))
    con = duckdb.connect(str(folder / "floors.duckdb"), config=duckdb_config())
    ref = '"events"'
    rows: list[Row] = []
    user_pass.share_user_facts(True)
    try:
        checked: list = []

        def check() -> str:
            checked.append(ingest(source, max_bytes=LOCAL_FILE_BYTES).frames["events"])
            return f"({len(checked[0]):,} rows kept)"

        rows.append(_timed("ingest: checking the file (the command's own step)", check))

        def store() -> str:
            con.execute(f"CREATE TABLE {ref} AS SELECT * FROM read_parquet(?)", [str(source)])  # noqa: S608
            return f"({con.execute(f'SELECT count(*) FROM {ref}').fetchone()[0]:,} events)"  # noqa: S608

        def copy() -> str:
            kept = folder / "events.parquet"
            shutil.copyfile(source, kept)
            with open(kept, "rb") as f:  # on disk, as a store must be
                os.fsync(f.fileno())
            path = str(kept).replace("'", "''")
            if store_as == "raw-view":  # the file's columns as they are: no checks at all
                con.execute(f"CREATE VIEW {ref} AS SELECT * FROM read_parquet('{path}')")  # noqa: S608
            else:
                direct = checked[0]  # the checked columns, computed from the copy at every read
                con.execute(f"CREATE VIEW {direct.alias} AS SELECT * FROM read_parquet('{path}')")  # noqa: S608
                select = direct.select_sql().removesuffix(" WHERE _reason IS NULL")
                for name, value in (direct.params or {}).items():
                    listed = ", ".join("'" + str(v).replace("'", "''") + "'" for v in value)
                    select = select.replace(f"${name}", f"[{listed}]")
                con.execute(f"CREATE VIEW {ref} AS {select}")  # noqa: S608
            return f"({con.execute(f'SELECT count(*) FROM {ref}').fetchone()[0]:,} events)"  # noqa: S608

        if store_as in ("view", "raw-view"):
            rows.append(_timed("store: copying the file, a view over the copy", copy))
        else:
            rows.append(_timed("store: CREATE TABLE AS from the Parquet file", store))

        def checkpoint() -> str:
            con.execute("CHECKPOINT")
            return ""

        rows.append(_timed("store: the CHECKPOINT after it", checkpoint))
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


def table(runs: dict[str, list[Row]], source: Path) -> str:
    stores = " ".join(runs)
    lines = [
        "# Floors: the 50M-event command's main DuckDB passes alone (issue 19)",
        "",
        f"Command: `python bench/scale_floors.py {source.name} --stores {stores}`; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, memory cap "
        f"{duckdb_config()['memory_limit']}; load average {os.getloadavg()[0]:.1f} at the end.",
    ]
    for store_as, rows in runs.items():
        total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
        lines += [
            "",
            f"## The events stored as a {store_as}",
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
    parser.add_argument(
        "--stores", nargs="+", choices=("table", "view", "raw-view"), default=["table"]
    )
    args = parser.parse_args()
    text = table({store: measure(args.source, store) for store in args.stores}, args.source)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

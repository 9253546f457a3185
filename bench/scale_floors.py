"""What the 50M-event command's main DuckDB passes cost alone on this machine (issue 19).

Each pass runs here by itself, through the library's own functions, on the events stored from
the file: checking the file (the ingest step), storing it, the automatic period choice, the
shared per-user pass, the per-(user, text) counts and the shared per-(user, period) pass on the
chosen period (:mod:`retention.user_pass`), each with its result fetched into Python as the
command fetches it. Their sum is most of the command's DuckDB work (a few small queries are not
timed); the rest of the command's time is the numeric work (text vectors, k-means, curves, the
policy) and writing the outputs. Wall seconds, and the process's CPU seconds split into user
and system time (the system time is mostly the kernel handing over fresh memory pages).

How the events are stored (``--stores``, one or more, each measured in turn in this process,
in the order given; session 15 added all but ``table``, and the ``CHECKPOINT`` that follows the
store, which the command pays when it closes the workspace, is timed in every way):

* ``table`` (the default, session 14's floor): a plain ``CREATE TABLE AS`` of the file's
  columns, without the checks;
* ``checked-table``: the command's own store (the checked columns, rejected rows left out:
  :meth:`retention.ingest.direct.DirectTable.store_into`);
* ``checked-view``: a copy of the Parquet file in the database's folder and a view over it that
  computes the checked columns and leaves out rejected rows at every read: what keeping the
  file instead of a table would cost the store step and every later pass;
* ``raw-view``: a view of the copy's columns as they are. Not a design (nothing is checked):
  the floor any view could reach, right only for a file the checks would not change.

    python bench/scale_floors.py FILE.parquet [--stores table checked-table checked-view raw-view]
                                 [--out bench/results/scale_floors.md]

The temporary database goes in ``$RETENTION_BENCH_TMP`` (default ``/tmp``), as the other
scale benches' workspaces do. Later ways read a copy of the file that is likely still in the
page cache, and one run is one sample: compare the ways within a run, and across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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
from retention.sql import quote_ident  # noqa: E402
from retention.workspace import duckdb_config  # noqa: E402

Row = tuple[str, float, float, float, str]
#: The ways of storing the events (the module docstring).
STORES = ("table", "checked-table", "checked-view", "raw-view")
#: What each way's table heading says.
TITLES = {
    "table": "a table of the file's columns (no checks: session 14's floor)",
    "checked-table": "a table of the checked rows (the command's own store)",
    "checked-view": "a view over a copy of the file that checks at every read",
    "raw-view": "a view of the copy's raw columns (no checks: not a design, a floor)",
}


def _inlined(sql: str, params: dict | None) -> str:
    """``sql`` with its bound parameters written in as SQL literals (a view keeps none): each
    ``$name`` of ``params``, a list of strings, as a quoted list."""
    for name, value in (params or {}).items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"Parameter ${name} is not a list of strings: {value!r}")
        listed = ", ".join("'" + v.replace("'", "''") + "'" for v in value)
        sql = re.sub(rf"\${re.escape(name)}\b", lambda _m, lit=f"[{listed}]": lit, sql)
    if re.search(r"\$[A-Za-z_]", sql):
        raise ValueError("A parameter of the checks' query was left unbound")
    return sql


FAILED = "(failed: "


def _timed(what: str, fn: Callable[[], str]) -> Row:
    """``fn`` timed; its note says what it found, or why DuckDB failed (out of memory, above all:
    a way of storing that needs more than the command's memory cap; its later passes are not
    run, and the other ways still are)."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        note = fn()
    except duckdb.Error as error:  # out of memory, above all: the way is reported, not lost
        note = f"{FAILED}{str(error).splitlines()[0]})"
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    row = (what, wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, note)
    cpu = f"{row[2]:.1f} user + {row[3]:.1f} system CPU-s"
    print(f"{what}: {wall:.1f} s ({cpu}) {note}", flush=True)
    return row


def measure(source: Path, store_as: str = "table") -> list[Row]:
    """The passes, in the command's order, on a fresh database in a temporary folder, with the
    events stored one of :data:`STORES` ways (the module docstring)."""
    folder = Path(tempfile.mkdtemp(dir=os.environ.get("RETENTION_BENCH_TMP", "/tmp")))
    con = duckdb.connect(str(folder / "floors.duckdb"), config=duckdb_config())
    ref = '"events"'
    rows: list[Row] = []
    user_pass.share_user_facts(True)
    try:
        checked: list = []

        def check() -> str:
            checked.append(ingest(source, max_bytes=LOCAL_FILE_BYTES).frames["events"])
            if store_as.startswith("checked") and not hasattr(checked[0], "store_into"):
                raise SystemExit(
                    f"--stores {store_as} needs the command's direct path: a Parquet file of "
                    "32 MB or more whose columns it stores as they are (this file was read "
                    "into memory instead)."
                )
            return f"({len(checked[0]):,} rows kept)"

        passes: list[tuple[str, Callable[[], str]]] = []
        passes.append(("ingest: checking the file (the command's own step)", check))

        def count() -> str:
            return f"({con.execute(f'SELECT count(*) FROM {ref}').fetchone()[0]:,} events)"  # noqa: S608

        def store() -> str:
            if store_as == "checked-table":
                checked[0].store_into(con, ref)
            else:
                con.execute(f"CREATE TABLE {ref} AS SELECT * FROM read_parquet(?)", [str(source)])  # noqa: S608
            return count()

        def copy() -> str:
            kept = folder / "events.parquet"
            shutil.copyfile(source, kept)
            with open(kept, "rb") as f:  # on disk, as a store must be
                os.fsync(f.fileno())
            path = str(kept).replace("'", "''")
            if store_as == "raw-view":
                con.execute(f"CREATE VIEW {ref} AS SELECT * FROM read_parquet('{path}')")  # noqa: S608
            else:
                direct = checked[0]
                source_view = quote_ident(direct.alias)  # the name the checks' query reads
                con.execute(f"CREATE VIEW {source_view} AS SELECT * FROM read_parquet('{path}')")  # noqa: S608
                con.execute(f"CREATE VIEW {ref} AS {_inlined(direct.select_sql(), direct.params)}")  # noqa: S608
            return count()

        if store_as.endswith("view"):
            passes.append((f"store: copying the file, a {store_as} over the copy", copy))
        elif store_as == "checked-table":
            passes.append(("store: the command's own store (checked, CREATE TABLE AS)", store))
        else:
            passes.append(("store: CREATE TABLE AS from the Parquet file", store))

        def checkpoint() -> str:
            con.execute("CHECKPOINT")
            return ""

        passes.append(("store: the CHECKPOINT after it", checkpoint))
        chosen: list[str] = []

        def period() -> str:
            chosen.append(resolve_period(con, ref, "auto"))
            return f"({chosen[0]})"

        passes.append(("period: the automatic choice (sampled users' days)", period))

        def per_user() -> str:
            facts = user_pass.kept(con, ref)
            return f"({len(facts.users) if facts is not None else 0:,} users)"

        passes.append(("segments: the shared per-user pass", per_user))

        def items() -> str:
            # The per-user facts are kept, so the events are read once more here: for the
            # counts (the behaviour table is rebuilt from the kept facts, a million rows).
            data = aggregate_users(con, ref)
            return f"({len(data.items):,} (user, text) rows)"

        passes.append(("segments: the per-(user, text) counts (and the behaviour table)", items))

        def per_period() -> str:
            grid = period_grid(con, ref, chosen[0])
            found = user_pass.kept_periods(con, ref, grid)
            return f"({len(found or ()):,} (user, {chosen[0]}) rows)"

        passes.append(("retention: the shared per-(user, period) pass", per_period))
        for what, fn in passes:
            rows.append(_timed(what, fn))
            if rows[-1][4].startswith(FAILED):
                break
    finally:
        user_pass.share_user_facts(False)
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _bare(note: str) -> str:
    """A pass's note without its outer parentheses."""
    return note[1:-1] if note.startswith("(") and note.endswith(")") else note


def table(runs: dict[str, list[Row]], source: Path) -> str:
    stores = " ".join(runs)
    lines = [
        "# Floors: the 50M-event command's main DuckDB passes alone (issue 19)",
        "",
        f"Command: `python bench/scale_floors.py {source.name} --stores {stores}`; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, memory cap "
        f"{duckdb_config()['memory_limit']}; load average {os.getloadavg()[0]:.1f} at the end. "
        "Each way in turn in one process, in this order; every total includes the checkpoint "
        "after the store (session 14's totals did not).",
    ]
    for store_as, rows in runs.items():
        total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
        lines += [
            "",
            f"## The events stored as {TITLES[store_as]}",
            "",
            "| pass | wall s | user CPU-s | system CPU-s | result |",
            "|---|---:|---:|---:|---|",
            *(f"| {w} | {s:.1f} | {u:.1f} | {k:.1f} | {_bare(n)} |" for w, s, u, k, n in rows),
            f"| **all of them** | **{total[0]:.1f}** | {total[1]:.1f} | {total[2]:.1f} | |"
            if not rows[-1][4].startswith(FAILED)
            else "| **all of them** | **failed** (the passes after the failed one not run) | | | |",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, help="write the table as Markdown here")
    parser.add_argument(
        "--stores",
        nargs="+",
        choices=STORES,
        default=["table"],
        help="how the events are stored, each measured in turn (the module docstring)",
    )
    args = parser.parse_args()
    stores = list(dict.fromkeys(args.stores))  # each way once, in the order given
    text = table({store: measure(args.source, store) for store in stores}, args.source)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

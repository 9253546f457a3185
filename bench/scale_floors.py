"""Floors of the 50M-event command on this machine (issue 19): DuckDB storing the file as a
table (what the store step cannot beat), and one GROUP BY (user, week) over the stored table
(the shared per-(user, period) pass's query, :mod:`retention.user_pass`).

    python bench/scale_floors.py FILE.parquet
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def main(source: str) -> None:
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        con = duckdb.connect(str(folder / "floors.duckdb"))
        con.execute("SET memory_limit='2GB'")  # the command's default cap
        t = time.perf_counter()
        con.execute("CREATE TABLE e AS SELECT * FROM read_parquet(?)", [source])
        print(f"store (CTAS from the Parquet file): {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        (users,) = con.execute(
            "SELECT count(*) FROM (SELECT CAST(user_id AS VARCHAR), count(*) FROM e GROUP BY 1)"
        ).fetchone()
        print(f"GROUP BY user: {time.perf_counter() - t:.1f} s ({users:,} users)", flush=True)
        t = time.perf_counter()
        (cells,) = con.execute(
            "SELECT count(*) FROM (SELECT CAST(user_id AS VARCHAR), "
            "date_trunc('week', CAST(ts AS TIMESTAMP)) AS w, min(ts), sum(amount), count(*) "
            "FROM e GROUP BY 1, 2)"
        ).fetchone()
        print(
            f"GROUP BY (user, week): {time.perf_counter() - t:.1f} s ({cells:,} user-weeks)",
            flush=True,
        )
        con.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])

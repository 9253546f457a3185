"""The workspace hands DuckDB's cached memory back between the command's steps (issue 19, the
50M peak): a stored table's cached blocks go, down to the moment's limit (DuckDB's own ``duckdb_memory()`` says so),
queries give the same answers after it (pandas as the oracle), and the memory limit is the one
it was."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention import workspace as workspace_module
from retention.workspace import Workspace


def _cached_table_bytes(cur) -> int:
    sql = "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    return int(cur.execute(sql).fetchone()[0])


def _limit(cur) -> str:
    return cur.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_cached_blocks_go_and_answers_stay(tmp_path):
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"user_id": rng.integers(0, 5_000, 6_000_000),
                          "amount": rng.random(6_000_000)})  # fmt: skip
    ws = Workspace(tmp_path / "ws")
    try:
        cur = ws.cursor()
        cur.execute("CREATE TABLE t AS SELECT * FROM frame")
        cur.execute("CHECKPOINT")  # on disk: its blocks can be dropped and read again
        limit = _limit(cur)
        sql = "SELECT user_id, sum(amount) AS s, count(*) AS n FROM t GROUP BY 1 ORDER BY 1"
        first = cur.execute(sql).df()
        before = _cached_table_bytes(cur)
        assert before > 40_000_000  # the table, compressed: about 56 MB
        assert ws.release_cached_memory()
        assert _cached_table_bytes(cur) <= 32_000_000  # workspace_module.RELEASE_LIMIT
        assert _limit(cur) == limit
        again = cur.execute(sql).df()
        oracle = frame.groupby("user_id").agg(s=("amount", "sum"), n=("amount", "size"))
        pd.testing.assert_frame_equal(first, again)
        assert np.array_equal(again["user_id"], oracle.index)
        assert np.array_equal(again["n"], oracle["n"])
        assert np.allclose(again["s"], oracle["s"], rtol=1e-12)
    finally:
        ws.close()


def test_a_refused_release_leaves_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace_module, "RELEASE_LIMIT", "not a size")
    ws = Workspace(tmp_path / "ws")
    try:
        cur = ws.cursor()
        limit = _limit(cur)
        assert ws.release_cached_memory() is False
        assert _limit(cur) == limit
        assert cur.execute("SELECT 41 + 1").fetchone()[0] == 42
    finally:
        ws.close()

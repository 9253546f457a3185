"""Issue 19: a big Parquet event log is validated by DuckDB and stored straight from the file
(:mod:`retention.ingest.direct`). The oracle is the streaming path it replaces (batches through
Python, staged to a Parquet file on disk): the same counts, samples, notes and users, and the
same stored table, row for row and type for type."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from retention.ingest import StagedTable, ingest, limits
from retention.ingest.direct import DirectTable
from retention.workspace import Workspace

#: The module (``retention.ingest.prepare`` the name is its function).
prepare_module = importlib.import_module("retention.ingest.prepare")


def _bad_log(n: int, seed: int = 3) -> pd.DataFrame:
    """An event log full of bad rows of every kind an event log can have: no user, no time,
    unparseable time, cancellations, negative quantities, unparseable amounts, mixed ids."""
    rng = np.random.default_rng(seed)
    times = (
        pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
    ).strftime("%Y-%m-%d %H:%M:%S")
    frame = pd.DataFrame(
        {
            "CustomerID": [f"{v}.0" for v in rng.integers(1, 400, n)],
            "InvoiceNo": rng.integers(500000, 600000, n).astype(str),
            "InvoiceDate": times.to_numpy(dtype=object),
            "Description": rng.choice(["red mug", "blue bag", "green lamp", None, " "], n),
            "Quantity": rng.integers(-2, 12, n).astype(str).astype(object),
            "UnitPrice": rng.normal(5, 2, n).round(2),
            "Country": rng.choice(["UK", "FR", None], n),
        }
    )
    frame.loc[::37, "CustomerID"] = None
    frame.loc[5::53, "CustomerID"] = "guest-7"
    frame.loc[2::41, "InvoiceDate"] = None
    frame.loc[4::43, "InvoiceDate"] = "not a date"
    frame.loc[6::47, "InvoiceDate"] = "1200-01-01 00:00:00"
    frame.loc[3::61, "InvoiceNo"] = "C" + frame.loc[3::61, "InvoiceNo"]
    frame.loc[7::59, "Quantity"] = "three"
    frame.loc[8::67, "Quantity"] = ""
    return frame


def _both(path, monkeypatch):
    """The file ingested the streaming way (staged) and the direct way."""
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    monkeypatch.setattr(limits, "BATCH_ROWS", 512)
    monkeypatch.setattr(limits, "SPILL_ROWS", 1000)
    direct = ingest(path)
    monkeypatch.setattr(prepare_module, "_direct_source", lambda source, shape: False)
    staged = ingest(path)
    return staged, direct


@pytest.mark.parametrize("seed", [3, 4])
def test_direct_ingest_reports_what_the_streaming_path_reports(tmp_path, monkeypatch, seed):
    path = tmp_path / "bad.parquet"
    _bad_log(6000, seed).to_parquet(path, index=False, row_group_size=900)
    staged, direct = _both(path, monkeypatch)
    assert isinstance(staged.events, StagedTable)
    assert isinstance(direct.events, DirectTable)
    assert direct.mapping == staged.mapping
    a, b = staged.report, direct.report
    assert (b.rows, b.rows_used, b.rows_rejected, b.users) == (
        a.rows, a.rows_used, a.rows_rejected, a.users,
    )  # fmt: skip
    assert a.rows_rejected > 500 and len(a.reasons) >= 6  # the log is really full of bad rows
    pd.testing.assert_frame_equal(b.reasons, a.reasons)
    assert b.samples.keys() == a.samples.keys()
    for reason, sample in a.samples.items():
        pd.testing.assert_frame_equal(b.samples[reason], sample)
    assert b.notes == a.notes
    assert len(direct.events) == len(staged.events) == a.rows_used
    pd.testing.assert_frame_equal(direct.events.to_pandas(), staged.events.to_pandas())


def test_direct_ingest_stores_the_same_table(tmp_path, monkeypatch):
    path = tmp_path / "bad.parquet"
    _bad_log(5000).to_parquet(path, index=False, row_group_size=700)
    staged, direct = _both(path, monkeypatch)
    ws = Workspace(tmp_path / "ws")
    try:
        ids = [
            ws.save_dataset(name="x", source_name=p.source_name, sha256=p.sha256, shape=p.shape,
                            frames=p.frames, mapping=p.mapping, report={})
            for p in (staged, direct)
        ]  # fmt: skip
        con = ws.cursor()
        a, b = (ws.table(i, "events") for i in ids)
        assert con.execute(f"DESCRIBE {a}").fetchall() == con.execute(f"DESCRIBE {b}").fetchall()
        # row for row, in the stored order (rowid)
        left = con.execute(f"SELECT * FROM {a} ORDER BY rowid").fetchall()  # noqa: S608
        right = con.execute(f"SELECT * FROM {b} ORDER BY rowid").fetchall()  # noqa: S608
        assert left == right and len(left) == staged.report.rows_used
        assert ws.dataset(ids[1]).rows == staged.report.rows_used
        # the source view the store made is gone
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        assert not [v for (v,) in views if v.startswith("_src_")]
    finally:
        ws.close()


def test_clean_big_parquet_goes_direct_and_small_files_do_not(tmp_path, monkeypatch):
    path = tmp_path / "small.parquet"
    _bad_log(3000).to_parquet(path, index=False)
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    assert isinstance(ingest(path).events, pd.DataFrame)  # under SPILL_ROWS: in memory as before
    monkeypatch.setattr(limits, "SPILL_ROWS", 100)
    assert isinstance(ingest(path).events, DirectTable)

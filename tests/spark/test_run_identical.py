"""``retention run --engine spark`` against ``--engine duckdb`` on the same input (issue 15).

The same file through both engines gives byte-identical ``strategies.csv`` and
``user_segments.csv``, the same input counts (rows used / left out, by reason) and retention
curves equal to 1e-9; a Parquet folder and a Spark table are validated to the same counts as
the file they hold; Spark-side bad input (a table that does not exist, a column type Spark
cannot read) exits 2 with one line and leaves the workspace untouched.

All on the one Spark session of ``tests/spark/conftest.py`` (the command asks for the same
``local[2]`` master, so it reuses it). Each command is a whole run (embedding, learning): the
tests are few and each checks many things.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.cli import main
from retention.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"
MASTER = "local[2]"  # the test session's master: the command reuses that session


def _run(source, tmp_path: Path, engine: str, *extra: str) -> tuple[int, Path, Path]:
    out, ws = tmp_path / f"out_{engine}", tmp_path / f"ws_{engine}"
    argv = ["run", str(source), "--out", str(out), "--workspace", str(ws), "--quiet"]
    argv += ["--engine", engine, *extra]
    if engine == "spark":
        argv += ["--spark-master", MASTER]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    return code, out, ws


def _reasons(ws_folder: Path, dataset_id: str) -> tuple[dict, list]:
    ws = Workspace(ws_folder)
    try:
        info = ws.dataset(dataset_id)
        table = ws.table(dataset_id, "events")
        rows = ws.cursor().execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - quoted name
        stored = rows.fetchone()[0]
    finally:
        ws.close()
    reasons = [(r["reason"], r["rows"]) for r in info.report["reasons"]]
    return {**info.report, "stored_rows": stored, "record_rows": info.rows}, reasons


@pytest.mark.parametrize(
    "sample", ["online_retail_sample.csv.gz", "planted_events.csv.gz", "reviews_sample.csv.gz"]
)
def test_spark_run_gives_the_duckdb_outputs(spark, tmp_path, sample):
    source = SAMPLES / sample
    # Spark first, the order measured by hand (on a starved machine a fresh JVM's first queries
    # take minutes: jstack showed it compiling and verifying jars, not stuck).
    code_s, out_s, ws_s = _run(source, tmp_path, "spark")
    code_d, out_d, ws_d = _run(source, tmp_path, "duckdb")
    assert (code_d, code_s) == (0, 0)

    # The outputs a marketer uses: byte for byte.
    for name in ("strategies.csv", "user_segments.csv"):
        assert (out_s / name).read_bytes() == (out_d / name).read_bytes(), name

    s_sum = json.loads((out_s / "summary.json").read_text())
    d_sum = json.loads((out_d / "summary.json").read_text())
    assert s_sum["input"] == d_sum["input"]  # rows, used, left out, users, file, sha256
    assert s_sum["mapping"] == d_sum["mapping"] and s_sum["period"] == d_sum["period"]
    assert s_sum["segments"] == d_sum["segments"] and s_sum["policy"] == d_sum["policy"]
    s_ret, d_ret = s_sum["retention"], d_sum["retention"]
    assert s_ret["curves"].keys() == d_ret["curves"].keys() and s_ret["curves"]
    for seg, curve in d_ret["curves"].items():
        np.testing.assert_allclose(s_ret["curves"][seg], curve, rtol=0, atol=1e-9)
    assert s_ret["logrank_p"] == pytest.approx(d_ret["logrank_p"], abs=1e-9)

    # Rows left out, and why: the same reasons and counts in both dataset records.
    s_report, s_reasons = _reasons(ws_s, s_sum["workspace"]["dataset"])
    d_report, d_reasons = _reasons(ws_d, d_sum["workspace"]["dataset"])
    assert s_reasons == d_reasons
    assert (s_report["rows"], s_report["rows_used"]) == (d_report["rows"], d_report["rows_used"])

    # Where the events live is said, and they were not copied into the workspace.
    engine = s_sum["engine"]
    assert engine["name"] == "spark" and engine["master"] == MASTER
    assert engine["source"] == str(source) and engine["queries"]["spark"] > 0
    assert s_report["engine"]["name"] == "spark" and s_report["stored_rows"] == 0
    assert s_report["record_rows"] == d_report["record_rows"] == d_sum["input"]["rows_used"]
    assert "engine" not in d_sum and "analyses_skipped" not in d_ret
    # The analyses that read every event into memory are skipped, and the report says so.
    assert "skipped" in s_ret["analyses_skipped"] and "analyses" in d_ret
    assert "were skipped" in (out_s / "report.html").read_text()


def test_parquet_folder_and_spark_table_validate_like_the_file(spark, tmp_path):
    """The planted events as a Parquet folder (two files) and as a Spark table: the same
    mapping and the same counts, by reason, as the DuckDB path reading the CSV file."""
    from retention.engine.inputs import ingest_spark
    from retention.ingest import LOCAL_FILE_BYTES, ingest

    source = SAMPLES / "online_retail_sample.csv.gz"
    expected = ingest(source, max_bytes=LOCAL_FILE_BYTES)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    folder = tmp_path / "events.parquet"
    folder.mkdir()
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[half:].to_parquet(folder / "part-1.parquet", index=False)
    spark.createDataFrame(frame).createOrReplaceTempView("retention_test_events")

    for text, kind in [(str(folder), "parquet folder"), ("retention_test_events", "table")]:
        got = ingest_spark(text, spark=spark, max_bytes=LOCAL_FILE_BYTES)
        events = got.frames["events"]
        assert events.kind == kind
        assert got.mapping == expected.mapping
        assert (got.report.rows, got.report.rows_used, got.report.users) == (
            expected.report.rows,
            expected.report.rows_used,
            expected.report.users,
        )
        got_reasons = got.report.reasons[["reason", "rows"]].values.tolist()
        assert got_reasons == expected.report.reasons[["reason", "rows"]].values.tolist()
        # Spark's examples of left-out rows have no row numbers, and the report says so.
        assert got_reasons and all(got.report.reasons["sample"].map(len) == 0)
        assert any(n.startswith("Validated in Spark") for n in got.report.notes)
        assert all(s["row"].isna().all() for s in got.report.samples.values())
        assert len(events) == expected.report.rows_used
        events.discard()


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_spark_side_bad_input_exits_2_and_touches_nothing(spark, tmp_path, capsys):
    """A table that does not exist, and a Parquet file with a type Spark cannot read
    (nanosecond timestamps): one line saying what to fix; no workspace, no outputs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    nanos = tmp_path / "nanos.parquet"
    table = pa.table(
        {
            "user_id": ["a", "b", "c"],
            "ts": pa.array([1_600_000_000_000_000_000 + i for i in range(3)], pa.timestamp("ns")),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    pq.write_table(table, nanos, version="2.6")  # TIMESTAMP(NANOS): Spark refuses it
    cases = [
        ("shop.no_such_events", "There is no Spark table 'shop.no_such_events'"),
        (nanos, "Spark cannot read a column type of 'nanos.parquet'"),
    ]
    for source, needle in cases:
        before = _tree(tmp_path)
        code, out, ws = _run(source, tmp_path, "spark")
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert "--engine duckdb" in lines[0] or "Check the name" in lines[0]
        assert not out.exists() and not ws.exists()
        assert _tree(tmp_path) == before

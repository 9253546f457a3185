"""``retention run --engine spark``: bad input and bad options exit 2 with one line that says what
to install or fix, and leave the workspace and the output folder untouched (issue 15).

Most of these need no JVM: they are refused before Spark starts, or Spark cannot start. The ones
that need Spark to answer (a table that does not exist, a column type Spark cannot read) are in
:mod:`tests.spark.test_run_identical`, on the shared session.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from retention.cli import main

ROOT = Path(__file__).resolve().parents[2]
PLANTED = ROOT / "sample_data" / "planted_events.csv.gz"


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(tmp_path: Path, capsys, source, args, needle: str) -> str:
    """Run the command; assert exit 2, one ``error:`` line holding ``needle``, and nothing
    written: no workspace, no output folder, no staging folder. Returns the line."""
    out, ws = tmp_path / "out", tmp_path / "ws"
    before = _tree(tmp_path)
    argv = ["run", str(source), "--out", str(out), "--workspace", str(ws), "--quiet", *args]
    assert _exit_code(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists() and not ws.exists()
    assert _tree(tmp_path) == before  # no partial files, no staging folder
    return lines[0]


@pytest.fixture
def no_spark(monkeypatch):
    """Starting Spark fails the test: these are refused before."""

    def forbidden(*args, **kwargs):
        raise AssertionError("Spark started before the options were checked")

    monkeypatch.setattr("retention.engine.routing.open_spark", forbidden)
    monkeypatch.setattr("retention.pipeline.ingest", forbidden)


def test_engine_options_are_checked_before_any_work(tmp_path, capsys, monkeypatch, no_spark):
    # --spark-master without the Spark engine
    refused(tmp_path, capsys, PLANTED, ["--spark-master", "local[2]"], "--spark-master goes")
    # an unknown engine, on the command line and in the environment
    refused(tmp_path, capsys, PLANTED, ["--engine", "polars"], "--engine")
    monkeypatch.setenv("RETENTION_ENGINE", "hadoop")
    refused(tmp_path, capsys, PLANTED, [], "RETENTION_ENGINE='hadoop' is not an engine")
    monkeypatch.setenv("RETENTION_ENGINE", "spark")  # the environment chooses Spark...
    refused(tmp_path, capsys, tmp_path / "no such.csv", [], "not a Spark table name")
    monkeypatch.delenv("RETENTION_ENGINE")
    # neither a file, a folder nor a table name
    spark = ["--engine", "spark"]
    refused(tmp_path, capsys, tmp_path / "missing.parquet", spark, "no such file or folder")
    refused(tmp_path, capsys, "sales-2024!", spark, "not a Spark table name")
    # a campaign log is not read on Spark yet
    campaigns = ["--campaigns", str(ROOT / "sample_data" / "planted_campaigns.csv.gz")]
    refused(tmp_path, capsys, PLANTED, [*spark, *campaigns], "--campaigns is not read on Spark")


def test_spark_missing_says_what_to_install(tmp_path, capsys, monkeypatch):
    """No pyspark: one line naming the package to install; nothing written."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "pyspark" or name.startswith("pyspark."):
            return None  # as if it were not installed
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    line = refused(tmp_path, capsys, PLANTED, ["--engine", "spark"], "pyspark")
    assert "install" in line.lower()


def test_java_missing_says_what_to_install(tmp_path, capsys, monkeypatch):
    """pyspark but no Java runtime: one line saying to install Java; nothing written."""
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    line = refused(tmp_path, capsys, PLANTED, ["--engine", "spark"], "Java")
    assert "install" in line.lower()


def test_unreachable_spark_connect_server(tmp_path, capsys):
    """A Spark Connect URL where nothing listens: one line naming the URL; nothing written."""
    args = ["--engine", "spark", "--spark-master", "sc://127.0.0.1:9"]
    refused(tmp_path, capsys, PLANTED, args, "127.0.0.1:9")

"""The DuckDB -> Spark SQL translation and the engine's "cannot start" messages. No Spark and no
JVM needed: the Spark SQL is read back with SQLGlot's Spark parser (an independent reading of
what Spark will be given), and the missing pyspark / Java / cluster cases are simulated."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from retention import engine
from retention.engine import spark as spark_engine
from retention.engine.translate import TranslationError, to_spark_sql


def _spark_literals(sql: str) -> list[exp.Expression]:
    """The projections of a Spark SELECT, as SQLGlot's Spark parser reads them."""
    return sqlglot.parse_one(sql, read="spark").expressions


def test_named_and_positional_parameters_become_typed_literals():
    when = dt.datetime(2024, 1, 1, 6, 30, 0, 250)
    text = 'it\'s a \\ "gift" -- not a comment; DROP TABLE x'
    sql = to_spark_sql(
        "SELECT $when AS a, $day, $n, $x, $text, $none, $flag, $big, $np_int, $np_float",
        {
            "when": when,
            "day": dt.date(2024, 2, 29),
            "n": -7,
            "x": 0.1,
            "text": text,
            "none": None,
            "flag": True,
            "big": 2**62,
            "np_int": np.int64(5),
            "np_float": np.float64(2.5),
        },
    )
    a, day, n, x, quoted, none, flag, big, np_int, np_float = _spark_literals(sql)
    assert a.unalias().sql("spark") == "CAST('2024-01-01 06:30:00.000250' AS TIMESTAMP_LTZ)"
    assert day.sql("spark") == "CAST('2024-02-29' AS DATE)"
    assert n.sql("spark") == "-7"
    assert x.sql("spark") == "CAST(0.1 AS DOUBLE)"
    assert isinstance(quoted, exp.Literal) and quoted.this == text  # one string, unbroken
    assert isinstance(none, exp.Null) and isinstance(flag, exp.Boolean) and flag.this is True
    assert big.sql("spark") == str(2**62) and np_int.sql("spark") == "5"
    assert np_float.sql("spark") == "CAST(2.5 AS DOUBLE)"
    # Positional '?' in the order written, whatever the nesting.
    sql = to_spark_sql("SELECT f(?, g(?)) FROM t WHERE a = ? AND b IN (?, ?)", [1, 2, 3, "x", "y"])
    assert sql == "SELECT F(1, G(2)) FROM t WHERE a = 3 AND b IN ('x', 'y')"


def test_special_values_and_time_zones():
    sql = to_spark_sql(
        "SELECT $aware, $pd, $np, $nan, $inf",
        {
            "aware": dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "pd": pd.Timestamp("2024-03-01 00:00:00.5"),
            "np": np.datetime64("2024-03-02T10:00:00"),
            "nan": float("nan"),
            "inf": float("-inf"),
        },
    )
    assert "'2024-01-01 10:00:00.000000'" in sql  # aware times as naive UTC
    assert "'2024-03-01 00:00:00.500000'" in sql and "'2024-03-02 10:00:00.000000'" in sql
    assert "CAST('NaN' AS DOUBLE)" in sql and "CAST('-Infinity' AS DOUBLE)" in sql


def test_parameter_mistakes_are_named():
    with pytest.raises(TranslationError, match=r"\$origin"):
        to_spark_sql("SELECT $origin", {"other": 1})
    with pytest.raises(TranslationError, match="more \\? parameters"):
        to_spark_sql("SELECT ?, ?", [1])
    with pytest.raises(TranslationError, match="object"):
        to_spark_sql("SELECT $x", {"x": object()})


@pytest.mark.parametrize(
    ("duckdb_sql", "expected"),
    [
        # date_diff counts boundaries (DuckDB), not whole units elapsed (Spark's DATEDIFF(unit)).
        (
            "SELECT date_diff('day', a, b)",
            "CAST((DATEDIFF(CAST(b AS DATE), CAST(a AS DATE))) AS BIGINT)",
        ),
        (
            "SELECT date_diff('month', a, b)",
            "CAST(((YEAR(b) * 12 + MONTH(b)) - (YEAR(a) * 12 + MONTH(a))) AS BIGINT)",
        ),
        (
            "SELECT date_diff('second', a, b)",
            "CAST((UNIX_SECONDS(CAST(b AS TIMESTAMP)) - UNIX_SECONDS(CAST(a AS TIMESTAMP)))"
            " AS BIGINT)",
        ),
        ("SELECT date_diff('year', a, b)", "CAST((YEAR(b) - YEAR(a)) AS BIGINT)"),
        ("SELECT epoch_us(ts)", "UNIX_MICROS(CAST(ts AS TIMESTAMP))"),
        ("SELECT fsum(x)", "SUM(x)"),
        (
            "SELECT grouping(a, b, c)",
            "CAST((GROUPING(a) * 4 + GROUPING(b) * 2 + GROUPING(c) * 1) AS BIGINT)",
        ),
        ("WITH g AS MATERIALIZED (SELECT 1 AS x) SELECT x FROM g", "WITH g AS (SELECT 1 AS x)"),
        ("SELECT s / 86400.0", "s / CAST(86400.0 AS DOUBLE)"),
        ("SELECT chr(65)", "'A'"),
        ("SELECT arg_min(x, (ts, k))", "MIN_BY(x, STRUCT(ts, k))"),
        ("SELECT CAST('a' AS ENUM('a', 'b'))", "CAST('a' AS STRING)"),
        ("SELECT CAST(t AS TIMESTAMP)", "CAST(t AS TIMESTAMP_LTZ)"),
        ("SELECT TRY_CAST(u AS HUGEINT)", "TRY_CAST(u AS DECIMAL(38, 0))"),
        (
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()",
            "FROM (SELECT CONCAT('spark:', CURRENT_DATABASE()) AS path, CURRENT_DATABASE() AS "
            "database_name) AS duckdb_databases",
        ),
        # What SQLGlot itself translates, kept here so an upgrade that changes it is noticed.
        ("SELECT x // 7", "x DIV 7"),
        (
            "SELECT unnest(range(n)) AS r FROM s",
            "EXPLODE(IF((n - 1) < 0, ARRAY(), SEQUENCE(0, (n - 1))))",
        ),
        (
            "SELECT u FROM v QUALIFY row_number() OVER (PARTITION BY u ORDER BY n) = 1",
            "WHERE _w = 1",
        ),
        ('SELECT "a""b" FROM "my table"', 'SELECT `a"b` FROM `my table`'),
    ],
)
def test_each_shim(duckdb_sql, expected):
    assert expected in to_spark_sql(duckdb_sql)


def test_the_last_code_point_is_kept():
    (lit,) = _spark_literals(to_spark_sql("SELECT chr(1114111)"))
    assert lit.this == chr(1114111)


def test_engine_name_and_the_default_path_imports():
    assert engine.engine_name("Spark") == "spark"
    with pytest.raises(engine.EngineUnavailable, match="--engine duckdb or --engine spark"):
        engine.engine_name("presto")
    code = (
        "import os, sys; os.environ.pop('RETENTION_ENGINE', None)\n"
        "import retention.engine as e; assert e.engine_name() == 'duckdb'\n"
        "os.environ['RETENTION_ENGINE'] = 'spark'; assert e.engine_name() == 'spark'\n"
        "print(sorted(m for m in ('pyspark', 'sqlglot', 'py4j') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def no_session(monkeypatch):
    """No Spark session started in this process (the simulated failures come first)."""
    monkeypatch.setattr(spark_engine, "_session", None)
    monkeypatch.setattr(spark_engine, "_session_master", None)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_no_pyspark_says_what_to_install(monkeypatch, no_session):
    real = spark_engine.importlib.util.find_spec
    monkeypatch.setattr(
        spark_engine.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyspark" else real(name, *a),
    )
    with pytest.raises(engine.EngineUnavailable) as exc:
        spark_engine.spark_session("local[2]")
    assert "pip install -r requirements-spark.txt" in _one_line(exc)


def test_no_java_says_what_to_install(monkeypatch, tmp_path, no_session):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(engine.EngineUnavailable) as exc:
        spark_engine.spark_session("local[2]")
    text = _one_line(exc)
    assert "JAVA_HOME" in text and str(tmp_path / "nowhere") in text
    assert "openjdk-17-jre-headless" in text
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(engine.EngineUnavailable) as exc:
        spark_engine.spark_session("local[2]")
    assert "no 'java' on the PATH" in _one_line(exc)


def test_unreachable_cluster_says_what_to_fix(no_session):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for master, what in (
        (f"sc://127.0.0.1:{port}", "Spark Connect server"),
        (f"spark://127.0.0.1:{port}", "Spark master"),
    ):
        with pytest.raises(engine.EngineUnavailable) as exc:
            spark_engine.spark_session(master)
        text = _one_line(exc)
        assert f"Cannot reach the {what} at 127.0.0.1:{port}" in text
        assert "--spark-master" in text
    assert spark_engine._session is None

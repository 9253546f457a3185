"""The settings the Spark session builder gets (issue 15, the 10M run): the driver heap in local
mode, and nothing of it for a Spark Connect client or a cluster master. No JVM, no pyspark: the
session builder is a stand-in that records what it is given."""

from __future__ import annotations

import sys
import types

import pytest

from retention.engine import EngineUnavailable
from retention.engine import spark as spark_engine

GB = 1024


@pytest.fixture
def memory(monkeypatch):
    """This computer's memory (MB) as the test sets it; no Spark variables in the environment."""
    monkeypatch.delenv(spark_engine.DRIVER_MEMORY_ENV, raising=False)
    monkeypatch.delenv("SPARK_DRIVER_MEMORY", raising=False)
    size = {"mb": 16 * GB}
    monkeypatch.setattr(spark_engine, "memory_mb", lambda: size["mb"])
    return size


@pytest.mark.parametrize(
    ("total_mb", "heap"),
    [(16 * GB, "8192m"), (23 * GB, "8192m"), (256 * GB, "8192m"), (6 * GB, "3072m"),
     (1536, "1024m"), (512, "1024m")],
)  # fmt: skip
def test_local_default_is_half_the_memory_between_1g_and_8g(memory, total_mb, heap):
    memory["mb"] = total_mb
    assert spark_engine.local_driver_memory() == heap
    for master in ("local", "local[2]", "local[*]"):
        assert spark_engine.session_settings(master)["spark.driver.memory"] == heap


def test_the_variable_sets_it(memory, monkeypatch):
    for given, heap in (("4g", "4g"), ("6144m", "6144m"), (" 3G ", "3g"), ("2gb", "2g"),
                        ("512", "512m")):  # fmt: skip
        monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, given)
        assert spark_engine.session_settings("local[2]")["spark.driver.memory"] == heap
    for bad in ("lots", "4 gigabytes", "0", "-1g", "1.5g"):
        monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, bad)
        with pytest.raises(EngineUnavailable, match=spark_engine.DRIVER_MEMORY_ENV) as exc:
            spark_engine.session_settings("local[2]")
        assert "\n" not in str(exc.value) and "'4g'" in str(exc.value)


def test_sparks_own_variable_and_an_unknown_memory_keep_sparks_default(memory, monkeypatch):
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "2g")  # spark-submit reads it itself
    assert "spark.driver.memory" not in spark_engine.session_settings("local[2]")
    monkeypatch.delenv("SPARK_DRIVER_MEMORY")
    memory["mb"] = None
    assert "spark.driver.memory" not in spark_engine.session_settings("local[2]")


def test_given_config_wins(memory):
    settings = spark_engine.session_settings("local[2]", {"spark.driver.memory": "1g"})
    assert settings["spark.driver.memory"] == "1g"


def test_remote_and_cluster_masters_get_no_driver_memory(memory, monkeypatch):
    monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, "4g")
    connect = spark_engine.session_settings("sc://spark.internal:15002")
    assert connect and all(key.startswith("spark.sql.") for key in connect)
    for master in ("spark://host:7077", "yarn", "k8s://https://host:6443"):
        settings = spark_engine.session_settings(master)
        assert "spark.driver.memory" not in settings
        assert settings["spark.sql.session.timeZone"] == "UTC"


def test_memory_mb_reads_this_computer():
    total = spark_engine.memory_mb()
    assert total is None or total > 0


class _Builder:
    """SparkSession.builder as far as spark_session uses it, recording what it is given."""

    def __init__(self, log: dict) -> None:
        self.log = log

    def master(self, url):
        self.log["master"] = url
        return self

    def remote(self, url):
        self.log["remote"] = url
        return self

    def config(self, key, value):
        self.log.setdefault("config", {})[key] = value
        return self

    def appName(self, name):  # noqa: N802 -- pyspark's name
        return self

    def getOrCreate(self):  # noqa: N802 -- pyspark's name
        session = types.SimpleNamespace(
            sparkContext=types.SimpleNamespace(setLogLevel=lambda level: None),
            stop=lambda: None,
        )
        self.log["session"] = session
        return session


@pytest.fixture
def fake_builder(monkeypatch, memory):
    """A pyspark.sql stand-in whose SparkSession.builder records its settings; no session
    started in this process before or after."""
    log: dict = {}

    class SparkSession:
        pass

    SparkSession.builder = _Builder(log)
    monkeypatch.setitem(
        sys.modules, "pyspark.sql", types.SimpleNamespace(SparkSession=SparkSession)
    )
    for check in ("check_pyspark", "check_java", "check_reachable"):
        monkeypatch.setattr(spark_engine, check, lambda *a, **k: None)
    monkeypatch.setattr(spark_engine, "_session", None)
    monkeypatch.setattr(spark_engine, "_session_master", None)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    return log


def test_the_builder_gets_the_heap_for_a_local_master(fake_builder, memory, monkeypatch):
    memory["mb"] = 12 * GB
    spark_engine.spark_session("local[2]")
    assert fake_builder["master"] == "local[2]"
    assert fake_builder["config"]["spark.driver.memory"] == "6144m"
    monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, "3g")
    spark_engine.spark_session("local[*]")  # another master: a new session, read again
    assert fake_builder["config"]["spark.driver.memory"] == "3g"


def test_the_builder_gets_no_heap_for_spark_connect(fake_builder, monkeypatch):
    monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, "3g")
    spark_engine.spark_session("sc://spark.internal:15002")
    assert fake_builder["remote"] == "sc://spark.internal:15002"
    assert "spark.driver.memory" not in fake_builder["config"]
    assert fake_builder["config"]["spark.sql.session.timeZone"] == "UTC"


def test_a_bad_value_stops_before_any_session(fake_builder, monkeypatch):
    monkeypatch.setenv(spark_engine.DRIVER_MEMORY_ENV, "plenty")
    with pytest.raises(EngineUnavailable):
        spark_engine.spark_session("local[2]")
    assert "config" not in fake_builder and spark_engine._session is None

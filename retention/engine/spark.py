"""The Spark side of the engine: one Spark session per process and :class:`SparkCursor`, the
part of DuckDB's connection API the library uses, running the library's DuckDB SQL on Spark
(transpiled by :func:`retention.engine.translate.to_spark_sql`).

pyspark is imported only here, and only when a session is asked for: the default (DuckDB)
path never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from retention.engine import EngineUnavailable, shims, translate

DEFAULT_MASTER = "local[*]"
#: Spark Connect's default port (``sc://host`` without one).
CONNECT_PORT = 15002
#: How long to wait for a cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 5.0

#: Environment variable: the driver JVM's heap in local mode (``4g``, ``6144m``).
DRIVER_MEMORY_ENV = "RETENTION_SPARK_DRIVER_MEMORY"
#: The default driver heap in local mode is half of this computer's memory, between these.
DRIVER_MEMORY_MIN_MB = 1024
DRIVER_MEMORY_MAX_MB = 8192
_MEMORY_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)b?\s*$", re.IGNORECASE)

_lock = threading.Lock()
_session: Any = None
_session_master: str | None = None


def check_pyspark() -> None:
    """An :class:`EngineUnavailable` when pyspark cannot be imported."""
    if importlib.util.find_spec("pyspark") is None:
        raise EngineUnavailable(
            "The Spark engine needs pyspark, which is not installed: run "
            "'pip install -r requirements-spark.txt' (or 'make spark')."
        )


def check_java() -> str:
    """The Java runtime a local Spark would start (``$JAVA_HOME/bin/java`` or ``java`` on the
    PATH); an :class:`EngineUnavailable` when there is none."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not java.is_file():
            raise EngineUnavailable(
                f"JAVA_HOME is {home}, which has no bin/java: point JAVA_HOME at a Java 17 or "
                "21 runtime, or unset it (on Debian/Ubuntu: "
                "'sudo apt-get install openjdk-17-jre-headless')."
            )
        return str(java)
    java = shutil.which("java")
    if java is None:
        raise EngineUnavailable(
            "The Spark engine needs a Java runtime (17 or 21) and there is no 'java' on the "
            "PATH: install one (on Debian/Ubuntu: 'sudo apt-get install "
            "openjdk-17-jre-headless') or set JAVA_HOME."
        )
    return java


def check_reachable(master: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """For a cluster master (``sc://``, ``spark://``): an :class:`EngineUnavailable` when its
    address does not answer within ``timeout`` seconds (instead of Spark's long retries)."""
    url = urlparse(master)
    if url.scheme not in ("sc", "spark") or not url.hostname:
        return
    port = url.port or (CONNECT_PORT if url.scheme == "sc" else 7077)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        what = "Spark Connect server" if url.scheme == "sc" else "Spark master"
        raise EngineUnavailable(
            f"Cannot reach the {what} at {url.hostname}:{port} ({exc.strerror or exc}): check "
            "the --spark-master address and that the server is running, or use "
            "--spark-master 'local[*]' to run Spark on this computer."
        ) from exc


def spark_session(master: str = DEFAULT_MASTER, config: Mapping[str, str] | None = None) -> Any:
    """The process's Spark session on ``master`` (``local[*]``, ``spark://host:7077``,
    ``yarn``, or a ``sc://host:15002`` Spark Connect URL), started once and reused.

    Session time zone UTC (timestamps are naive UTC wall-clock, as in DuckDB), Arrow transfer
    to and from pandas, Spark UI off, log level ERROR. ``config`` adds Spark settings (read only
    when the session starts). Asking for another master stops the old session first.
    """
    global _session, _session_master
    with _lock:
        if _session is not None and _session_master == master:
            return _session
        check_pyspark()
        remote = master.startswith("sc://")
        if not remote:
            check_java()
        if master.startswith("local"):
            # spark-embed (issue 15): local Python workers (the embedding UDF) run this Python,
            # not whichever python3 is first on PATH (it may lack pandas and the model).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        check_reachable(master)
        settings = session_settings(master, config)
        if _session is not None:
            _stop_locked()
        from pyspark.sql import SparkSession

        builder = (
            SparkSession.builder.remote(master) if remote else SparkSession.builder.master(master)
        )
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            session = builder.appName("retention").getOrCreate()
        except Exception as exc:  # JVM that does not start, Connect handshake refused
            raise EngineUnavailable(
                f"Spark did not start on {master}: {_first_line(exc)}. Check the Java runtime "
                "(17 or 21) and the --spark-master address."
            ) from exc
        if not remote:
            session.sparkContext.setLogLevel("ERROR")
        _session, _session_master = session, master
        return session


def session_settings(
    master: str,
    config: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The Spark settings :func:`spark_session` gives the session builder for ``master``.

    UTC, Arrow, no UI; for a local master also the driver JVM's heap (``spark.driver.memory``,
    :func:`local_driver_memory`): in local mode that JVM is the whole of Spark (it caches the
    events, runs every task and receives what is collected), and Spark's own default heap of
    1 GB is sized for a shell, not for millions of events. A Spark Connect client sends only ``spark.sql.*`` settings, and a
    cluster master (``spark://``, ``yarn``, ``k8s://``) keeps its own driver memory (the
    cluster's spark-defaults or ``spark-submit --driver-memory``). ``config`` comes last and
    wins.
    """
    environ = os.environ if environ is None else environ
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }
    if master.startswith("sc://"):  # a Connect client sets only SQL settings
        settings = {k: v for k, v in settings.items() if k.startswith("spark.sql.")}
    elif master.startswith("local"):
        memory = local_driver_memory(environ)
        if memory is not None:
            settings["spark.driver.memory"] = memory
    settings.update(config or {})
    return settings


def local_driver_memory(environ: Mapping[str, str] | None = None) -> str | None:
    """The driver heap for local mode: ``RETENTION_SPARK_DRIVER_MEMORY`` when set (a JVM size:
    ``4g``, ``6144m``), else half of this computer's memory (or of the container's limit), at
    least 1g and at most 8g; ``None`` (Spark's own default, 1g) when ``SPARK_DRIVER_MEMORY`` is
    set (Spark reads it) or the memory cannot be read.

    Half, because in local mode the same computer also holds this Python process (which
    receives the per-user tables and does the learning: 2.2 GB at 10M events with DuckDB) and
    the Python workers that embed texts. At most 8g, because the heap is a ceiling the JVM
    grows into (a collector lets garbage pile up to it before working hard) and local mode is
    for one computer's worth of events: more data belongs on a cluster, where the cluster's
    own settings size the driver (``bench/results/spark_10m_niced.md``).
    """
    environ = os.environ if environ is None else environ
    given = environ.get(DRIVER_MEMORY_ENV, "").strip()
    if given:
        match = _MEMORY_SIZE.match(given)
        if match is None or int(match.group(1)) == 0:
            raise EngineUnavailable(
                f"{DRIVER_MEMORY_ENV}={given!r} is not a memory size: give it as Java does, "
                "e.g. '4g' or '6144m' (or unset it for half of this computer's memory)."
            )
        return f"{int(match.group(1))}{match.group(2).lower() or 'm'}"
    if environ.get("SPARK_DRIVER_MEMORY"):
        return None
    total = memory_mb()
    if total is None:
        return None
    half = min(max(total // 2, DRIVER_MEMORY_MIN_MB), DRIVER_MEMORY_MAX_MB)
    return f"{half}m"


def memory_mb() -> int | None:
    """This computer's memory in MB, or its container's limit when lower; ``None`` when it
    cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system (Windows)
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
        break
    return int(total // 2**20) if total > 0 else None


def stop_session() -> None:
    """Stop the process's Spark session, if one was started."""
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    global _session, _session_master
    if _session is not None:
        try:
            _session.stop()
        finally:
            _session, _session_master = None, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- results -------------------------------------------------------------------------------

#: Spark type name -> the DuckDB type name :meth:`SparkRelation.types` reports.
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "double": "DOUBLE",
    "float": "FLOAT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "timestamp_ntz": "TIMESTAMP",
    "date": "DATE",
    "binary": "BLOB",
    "void": "NULL",
}

_INT_DTYPES = {"bigint": "int64", "int": "int32", "smallint": "int16", "tinyint": "int8"}


def duckdb_type(spark_type: Any) -> str:
    """The DuckDB name of a Spark data type (``decimal(p,s)`` -> ``DECIMAL(p,s)``)."""
    name = spark_type.simpleString()
    return _DUCKDB_TYPES.get(name, name.upper())


class SparkResult:
    """The result of :meth:`SparkCursor.execute`: ``df()``, ``fetchall()``, ``fetchone()`` and
    ``columns``/``types``/``description`` as DuckDB's result has them."""

    def __init__(self, frame: Any, tree: Any) -> None:
        self._frame = frame
        self._enums = shims.enum_outputs(tree)
        self._sums = shims.sum_outputs(tree)
        self._count_stars = shims.unnamed_count_star_outputs(tree)
        self._rows: list[tuple[Any, ...]] | None = None
        self._pandas: pd.DataFrame | None = None
        self._pos = 0

    @property
    def columns(self) -> list[str]:
        """The column names; an unnamed ``count(*)`` is ``count_star()`` as in DuckDB."""
        return [
            "count_star()" if i in self._count_stars else name
            for i, name in enumerate(self._frame.columns)
        ]

    @property
    def types(self) -> list[str]:
        return [duckdb_type(f.dataType) for f in self._frame.schema.fields]

    @property
    def description(self) -> list[tuple[Any, ...]]:
        return [
            (c, t, None, None, None, None, None)
            for c, t in zip(self.columns, self.types, strict=True)
        ]

    def _ntz(self) -> Any:
        """The frame with session-time timestamps as naive ones (UTC wall-clock), so pandas and
        Python values come back naive whatever the Python process's own time zone."""
        from pyspark.sql import functions as F

        frame = self._frame
        for field in frame.schema.fields:
            if field.dataType.simpleString() == "timestamp":
                quoted = "`" + field.name.replace("`", "``") + "`"
                frame = frame.withColumn(field.name, F.col(quoted).cast("timestamp_ntz"))
        return frame

    def df(self) -> pd.DataFrame:
        """The result as pandas with DuckDB ``df()``'s dtypes: int32/int64 (nullable Int32/Int64
        when NULLs), bool (nullable ``boolean`` when NULLs), float64 for doubles, decimals and sums of integers (DuckDB's HUGEINT),
        datetime64[us] for timestamps and dates, categoricals for ENUM columns, object strings."""
        fields = self._frame.schema.fields
        out = self._ntz().toPandas()
        out.columns = self.columns
        for i, field in enumerate(fields):
            col = out.columns[i]
            kind = field.dataType.simpleString()
            series = out.iloc[:, i]
            if i in self._enums:
                series = pd.Categorical(series, categories=list(self._enums[i]), ordered=True)
            elif kind in _INT_DTYPES:
                if i in self._sums:
                    series = series.astype("float64")
                elif series.isna().any():
                    series = series.astype(_INT_DTYPES[kind].capitalize())
                else:
                    series = series.astype(_INT_DTYPES[kind])
            elif kind == "boolean" and series.dtype == object:  # NULLs among them
                series = series.astype("boolean")
            elif kind.startswith("decimal"):
                series = series.astype("float64")
            elif kind in ("timestamp", "timestamp_ntz", "date"):
                series = pd.to_datetime(series).astype("datetime64[us]")
            else:
                continue
            out[col] = series
        return out

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        """Column name -> numpy array, from :meth:`df` (what is left of the result)."""
        frame = self._rest()
        return {name: frame[name].to_numpy() for name in frame.columns}

    def fetch_df_chunk(self, vectors_per_chunk: int = 1) -> pd.DataFrame:
        """The next ``vectors_per_chunk`` × 2048 rows (DuckDB's vector size) of :meth:`df`; an
        empty frame when none are left."""
        frame = self._frame_rows()
        size = max(1, int(vectors_per_chunk)) * 2048
        chunk = frame.iloc[self._pos : self._pos + size].reset_index(drop=True)
        self._pos += len(chunk)
        return chunk

    def fetch_df(self) -> pd.DataFrame:
        return self._rest()

    def _frame_rows(self) -> pd.DataFrame:
        if self._pandas is None:
            self._pandas = self.df()
        return self._pandas

    def _rest(self) -> pd.DataFrame:
        frame = self._frame_rows()
        rest = frame.iloc[self._pos :].reset_index(drop=True)
        self._pos = len(frame)
        return rest

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._all()[self._pos :]
        self._pos = len(self._all())
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._all()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._all()[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows

    def _all(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = [tuple(row) for row in self._ntz().collect()]
        return self._rows


class SparkCursor:
    """DuckDB's connection API as the library uses it, on a Spark session: ``execute(sql,
    params)`` runs DuckDB SQL (transpiled) and returns a :class:`SparkResult`; ``sql(sql)`` the
    same (DuckDB's relation: ``columns``, ``types``, ``df()``); ``register(name, frame)`` /
    ``unregister(name)`` make a pandas frame a temporary view."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._last: SparkResult | None = None

    def execute(self, sql: str, params: translate.Params = None) -> SparkResult:
        tree = translate.parse_duckdb(sql)
        spark_tree = shims.apply(translate.inline_params(tree.copy(), params))
        try:
            frame = self.session.sql(spark_tree.sql(dialect="spark"))
        except Exception as exc:
            missing = _missing_table(exc)
            if missing is None:
                raise
            # The library tells a missing table by DuckDB's exception (periods.columns_of).
            import duckdb

            raise duckdb.CatalogException(missing) from exc
        self._last = SparkResult(frame, tree)
        return self._last

    def sql(self, sql: str, params: translate.Params = None) -> SparkResult:
        return self.execute(sql, params)

    # DuckDB's connection answers fetch calls for its last result.
    def df(self) -> pd.DataFrame:
        return self._require_last().df()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._require_last().fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._require_last().fetchone()

    def _require_last(self) -> SparkResult:
        if self._last is None:
            raise RuntimeError("No statement has been executed on this cursor.")
        return self._last

    def register(self, name: str, frame: Any) -> SparkCursor:
        """``frame`` (pandas, or an Arrow table) as the temporary view ``name`` (replacing one
        of that name)."""
        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_pandas()
        self.session.createDataFrame(_for_spark(frame)).createOrReplaceTempView(name)
        return self

    def unregister(self, name: str) -> SparkCursor:
        self.session.catalog.dropTempView(name)
        return self

    def cursor(self) -> SparkCursor:
        return SparkCursor(self.session)

    def close(self) -> None:
        self._last = None


def _missing_table(exc: Exception) -> str | None:
    """Spark's message when ``exc`` says a table or view does not exist, else None."""
    condition = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    try:
        name = condition() if condition else None
    except Exception:  # noqa: BLE001 -- an exception without Spark's error class
        name = None
    if name == "TABLE_OR_VIEW_NOT_FOUND" or "TABLE_OR_VIEW_NOT_FOUND" in str(exc)[:200]:
        return _first_line(exc)
    return None


def _for_spark(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` ready for ``createDataFrame``: categoricals as their values, tz-aware times as
    naive UTC, object columns of mixed types as strings (Arrow needs one type per column)."""
    out = frame.copy(deep=False)
    for col in out.columns:
        series = out[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            out[col] = series.astype(series.cat.categories.dtype)
        elif isinstance(series.dtype, pd.DatetimeTZDtype):
            out[col] = series.dt.tz_convert("UTC").dt.tz_localize(None)
        elif series.dtype == object and not _one_type(series):
            out[col] = series.map(
                lambda v: (
                    None
                    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                    else str(v)
                )
            )
    return out


def _one_type(series: pd.Series) -> bool:
    kinds = {type(v) for v in series.dropna()}
    return len(kinds) <= 1

"""Routing the pipeline's queries (``--engine spark``): a query over a dataset whose events live
in Spark runs in Spark, everything else in the local DuckDB workspace.

The library's steps keep calling ``con.execute(sql, params)`` on ``ws.cursor()``; a
:class:`RoutedWorkspace` hands out a :class:`RoutingCursor` instead of the DuckDB cursor. The
cursor looks at each statement: one that names a Spark-resident table (the dataset's quoted
events table, ``"ds_<id>_events"``) goes to :class:`retention.engine.SparkCursor` (transpiled
from DuckDB's dialect), any other to DuckDB. Small frames the steps register (segment
assignments, ...) are registered in DuckDB at once and in Spark when a Spark query first names
them. What comes back is small (per-user facts, counts) and lands in the workspace as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import duckdb
import pandas as pd

from retention.workspace import Workspace

#: Spark SQL type names → the DuckDB names the library compares column types with.
_DUCK_TYPES = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "double": "DOUBLE",
               "float": "FLOAT", "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP",
               "date": "DATE", "boolean": "BOOLEAN", "smallint": "SMALLINT",
               "tinyint": "TINYINT"}  # fmt: skip


class _Relation:
    """What ``con.sql(...)`` answers for a Spark query: ``columns`` and ``types`` (DuckDB's
    names) without reading rows."""

    def __init__(self, schema: Any) -> None:
        self.columns = [f.name for f in schema.fields]
        self.types = [
            _DUCK_TYPES.get(f.dataType.simpleString(), f.dataType.simpleString().upper())
            for f in schema.fields
        ]


class RoutingCursor:
    """The subset of DuckDB's connection API the library uses, sending each statement to
    Spark or DuckDB (see the module docstring). ``execute`` returns the cursor itself, as
    DuckDB's does, so ``con.execute(sql).df()`` reads the last result wherever it ran."""

    def __init__(
        self,
        duck: duckdb.DuckDBPyConnection,
        spark: Any,
        tables: Mapping[str, str],
        counts: dict[str, int] | None = None,
    ):
        self.duck = duck
        self.spark = spark  # a retention.engine.SparkCursor
        self.tables = dict(tables)  # quoted DuckDB name -> Spark view name
        self._frames: dict[str, pd.DataFrame] = {}
        self._in_spark: dict[str, int] = {}  # registered name -> id() of the frame sent
        self._last: Any = None
        #: How many statements ran where (for the summary and the tests; shared by cursors).
        self.counts = counts if counts is not None else {"spark": 0, "duckdb": 0}

    # -- routing ------------------------------------------------------------------------------

    def on_spark(self, sql: str) -> bool:
        """Whether ``sql`` reads a Spark-resident table."""
        return any(name in sql for name in self.tables)

    def _spark_sql(self, sql: str) -> str:
        for quoted, view in self.tables.items():
            if quoted != f'"{view}"':
                sql = sql.replace(quoted, f'"{view}"')
        for name, frame in self._frames.items():
            named = re.search(rf'(?<![\w"]){re.escape(name)}(?![\w"])|"{re.escape(name)}"', sql)
            if named and self._in_spark.get(name) != id(frame):
                self.spark.register(name, frame)
                self._in_spark[name] = id(frame)
        return sql

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        if self.on_spark(sql):
            self.counts["spark"] += 1
            self._last = self.spark.execute(self._spark_sql(sql), params)
        else:
            self.counts["duckdb"] += 1
            self._last = self.duck.execute(sql, params) if params is not None else (
                self.duck.execute(sql)
            )  # fmt: skip
        return self

    def sql(self, query: str) -> Any:
        if self.on_spark(query):
            if hasattr(self.spark, "sql"):
                return self.spark.sql(self._spark_sql(query))
            from retention.engine import to_spark_sql

            session = self.spark.spark
            return _Relation(session.sql(to_spark_sql(self._spark_sql(query), None)).schema)
        return self.duck.sql(query)

    # -- results of the last statement -----------------------------------------------------------

    def df(self) -> pd.DataFrame:
        return self._last.df()

    fetchdf = df

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._last.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._last.fetchone()

    def fetchnumpy(self) -> dict[str, Any]:
        if hasattr(self._last, "fetchnumpy"):
            return self._last.fetchnumpy()
        frame = self._last.df()
        return {c: frame[c].to_numpy() for c in frame.columns}

    # -- frames ---------------------------------------------------------------------------------

    def register(self, name: str, frame: pd.DataFrame) -> RoutingCursor:
        self.duck.register(name, frame)
        self._frames[name] = frame
        self._in_spark.pop(name, None)
        return self

    def unregister(self, name: str) -> RoutingCursor:
        self.duck.unregister(name)
        self._frames.pop(name, None)
        if self._in_spark.pop(name, None) is not None:
            self.spark.unregister(name)
        return self

    def cursor(self) -> RoutingCursor:
        """A cursor of its own on the same engines (as DuckDB's ``con.cursor()``)."""
        return RoutingCursor(self.duck.cursor(), self.spark, self.tables, self.counts)

    def close(self) -> None:
        self.duck.close()

    def __getattr__(self, name: str) -> Any:  # anything else: DuckDB's
        return getattr(self.duck, name)


class RoutedWorkspace(Workspace):
    """A workspace whose cursors route queries over Spark-resident tables to Spark."""

    def __init__(self, folder: Any, spark: Any) -> None:
        super().__init__(folder)
        self.spark = spark  # a retention.engine.SparkCursor
        self.spark_tables: dict[str, str] = {}
        #: Statements run in Spark and in DuckDB by this workspace's routed cursors.
        self.query_counts = {"spark": 0, "duckdb": 0}

    def route(self, quoted: str, view: str) -> None:
        """Send queries over the table ``quoted`` (its DuckDB name) to the Spark view."""
        self.spark_tables[quoted] = view
        self._local.routed = None

    def cursor(self) -> Any:
        base = super().cursor()
        if not self.spark_tables:
            return base
        routed = getattr(self._local, "routed", None)
        if routed is None or routed.duck is not base:
            routed = RoutingCursor(base, self.spark, self.spark_tables, self.query_counts)
            self._local.routed = routed
        return routed


# -- the command's Spark steps (retention.pipeline calls these) ---------------------------------

#: Why the report and summary have no retention analyses on Spark.
ANALYSES_SKIPPED = (
    "The retention analyses by segment (retention, revenue retention and lifetime value lines) "
    "were skipped: they read every event into this computer's memory, and with --engine spark "
    "the events stay in Spark. Run with --engine duckdb on a copy that fits one machine to "
    "get them."
)


def open_spark(master: str) -> Any:
    """A :class:`retention.engine.SparkCursor` on the session for ``master``; an InputError
    (one line: what to install or fix) when Spark cannot start or be reached."""
    from retention.engine import SparkCursor, spark_session
    from retention.errors import InputError

    # pyspark logs each failed query's JVM stack trace on stderr: the command's contract is one
    # line there (errors are raised as InputError, or reported by the command).
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    try:
        return SparkCursor(spark_session(master))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever Spark raised: one line for the user
        from retention.engine.inputs import spark_error_line

        raise InputError(
            f"Spark could not start or be reached at --spark-master {master} "
            f"({spark_error_line(exc)}).",
            cli_hint="Check the URL and that the cluster is running, or run with --engine "
            "duckdb (the default).",
        ) from None


def spark_ingest(config: Any) -> tuple[Any, Any]:
    """(SparkCursor, Prepared) for ``config.input`` read and validated in Spark."""
    from retention.engine.inputs import ingest_spark
    from retention.ingest import LOCAL_FILE_BYTES

    cursor = open_spark(config.spark_master)
    prepared = ingest_spark(
        str(config.input),
        spark=cursor.session,
        overrides=config.overrides,
        max_bytes=LOCAL_FILE_BYTES,
    )
    return cursor, prepared


def engine_record(prepared: Any, master: str) -> dict[str, Any]:
    """Where a Spark dataset's events live: stored with the dataset and in summary.json."""
    events = prepared.frames["events"]
    return {
        "name": "spark",
        "master": master,
        "source": events.source,
        "source_kind": events.kind,
        "note": "The events of this dataset live in Spark, not in this workspace: the "
        "workspace keeps the results (segments, policy, strategies) and no event rows.",
    }


def store_spark_dataset(ws: RoutedWorkspace, prepared: Any, name: str, master: str) -> str:
    """Store the dataset record (no event rows: an empty events table with its columns) and
    route its events table to Spark; the same file and mapping reuse the stored record."""
    from retention.runs import store_dataset

    events = prepared.frames["events"]
    # Stored and found under "spark:<sha256>": a DuckDB run of the same file must never reopen
    # this record (its events table holds no rows), nor this run a DuckDB record.
    prepared = replace(prepared, sha256=f"spark:{prepared.sha256}" if prepared.sha256 else None)
    try:
        dataset_id = store_dataset(
            ws, prepared, name, report_extra={"engine": engine_record(prepared, master)}
        )
    finally:
        events.discard()
    quoted = ws.table(dataset_id, "events")
    events.rename(quoted.strip('"'))
    ws.route(quoted, events.view)
    return dataset_id


def spark_dataset(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``engine`` record of a dataset whose events live in Spark (None otherwise): pages
    that need the raw events say so instead of showing an empty table."""
    engine = (report or {}).get("engine")
    return engine if isinstance(engine, dict) and engine.get("name") == "spark" else None


def spark_events_note(report: Mapping[str, Any] | None, *, needs_events: bool) -> str | None:
    """What an app page says about a dataset whose events live in Spark (None for any other):
    the page cannot read the events, and how to get results for them."""
    engine = spark_dataset(report)
    if engine is None:
        return None
    where = f"{engine.get('source_kind', 'input')} {engine.get('source', '')}".strip()
    first = (
        f"This dataset's events live in Spark ({where}, Spark master "
        f"{engine.get('master', 'local[*]')}), not in this workspace, so the app cannot read them."
    )
    if needs_events:
        return (
            f"{first} This page works from the events themselves. The results of the Spark run "
            "are in its outputs (report.html, strategies.csv, user_segments.csv); to explore "
            "them here, add the data on the Data page or run the command with --engine duckdb."
        )
    return (
        f"{first} The policy computed by the command line is shown; what needs the events "
        "themselves (segments, strategies per user, new runs) cannot be computed here."
    )

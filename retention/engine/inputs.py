"""Reading the command's input in Spark (``--engine spark``): a CSV or Parquet file, a Parquet
folder or a Spark table, validated by the same SQL as the DuckDB path, run in Spark.

The steps are those of :func:`retention.ingest.ingest`, with the rows staying in Spark:

1. **Detection on a sample.** A local file is opened exactly as today
   (:func:`~retention.ingest.open_source`: the whole file when small, its first rows when big),
   so the column roles, the time format and the column types the validation is written for are
   the DuckDB path's. A Parquet folder or a Spark table is sampled in Spark (its first
   :data:`SAMPLE_ROWS` rows) and the sample is what detection and the types are read from.
2. **Validation in Spark.** :func:`retention.ingest.validate.plan` writes the validation query
   (DuckDB dialect) over the sample's relation; :func:`retention.engine.to_spark_sql` turns it
   into Spark SQL over the Spark source. Spark counts the rows by reason (one aggregate) and
   keeps up to five rejected rows per reason as examples; the kept rows become a cached temp
   view with the columns of the stored events table.
3. **Dataset checks** (rows left, two or more users) as on the DuckDB path.

Every problem raises :class:`~retention.errors.InputError` before anything is written to the
workspace: the command then exits with status 2 and the workspace is as it was.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.errors import InputError

#: Rows read from a Parquet folder or a Spark table for role detection and value samples.
SAMPLE_ROWS = 20_000
#: How a Spark table is named: ``table``, ``db.table`` or ``catalog.db.table``.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
#: Spark parquet errors that mean "a column type Spark cannot read".
_TYPE_ERRORS = ("Illegal Parquet type", "PARQUET_TYPE_ILLEGAL", "PARQUET_TYPE_NOT_SUPPORTED",
                "Unsupported", "UNSUPPORTED_DATATYPE", "PARQUET_CONVERSION_FAILURE")  # fmt: skip

USE_DUCKDB = "or run with --engine duckdb (the default)"


@dataclass
class SparkEvents:
    """The clean events of a dataset, living in Spark as the temp view ``view``.

    ``len()`` is the number of rows kept. ``path`` is an empty Parquet file with the events
    table's columns: the workspace stores that (no rows) beside the dataset record, so a page
    that opens the table finds the columns and no rows, and says the events live in Spark.
    """

    view: str
    rows: int
    frame: Any  # the cached pyspark DataFrame behind ``view``
    columns: list[str]
    path: Path | None = None
    source: str = ""
    kind: str = ""  # "file", "parquet folder" or "table"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.rows

    def discard(self) -> None:
        """Forget the empty Parquet file (the cached rows go with the Spark session)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def rename(self, view: str) -> None:
        """Make the rows visible under ``view`` too (the dataset's table name)."""
        self.frame.createOrReplaceTempView(view)
        self.view = view


def spark_error_line(exc: BaseException) -> str:
    """The first line of a Spark error without the JVM stack trace."""
    text = str(getattr(exc, "desc", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


def _analysis_errors() -> tuple[type[BaseException], ...]:
    from pyspark.errors import AnalysisException, PySparkException

    try:
        from py4j.protocol import Py4JJavaError
    except ImportError:  # pragma: no cover - Spark Connect only
        return (AnalysisException, PySparkException)
    return (AnalysisException, PySparkException, Py4JJavaError)


def _type_error(exc: BaseException, name: str) -> InputError | None:
    line = spark_error_line(exc)
    if any(marker in str(exc) for marker in _TYPE_ERRORS):
        return InputError(
            f"Spark cannot read a column type of '{name}' ({line}).",
            cli_hint="Write the data with types Spark reads (e.g. timestamps in microseconds: "
            f"pyarrow's coerce_timestamps='us'), {USE_DUCKDB}.",
        )
    return None


def classify(text: str) -> str:
    """What the input names: ``file``, ``parquet folder`` or ``table`` (or raise)."""
    path = Path(text)
    if path.is_dir():
        return "parquet folder"
    if path.is_file():
        return "file"
    if path.exists():
        raise InputError(f"{text}: not a file or a folder. Give a CSV or Parquet file, a Parquet "
                         "folder or a Spark table name.")  # fmt: skip
    if TABLE_NAME.match(text) and not text.lower().endswith((".csv", ".parquet", ".gz")):
        return "table"
    raise InputError(
        f"{text}: no such file or folder, and not a Spark table name (letters, digits and "
        "underscores, as table, db.table or catalog.db.table).",
        cli_hint="Check the path, or give the table's name.",
    )


# -- reading ----------------------------------------------------------------------------------


def _read_local_file(spark: Any, path: Path, source: Any) -> Any:
    """The file in Spark, read the way the DuckDB path read it (CSV as text, Parquet typed)."""
    from retention.ingest.sources import FileSource

    info = source.info
    fmt = (info.format if info is not None else "") or ""
    if isinstance(source, FileSource):
        plan = source.plan
        is_parquet, delimiter, header = plan.kind == "parquet", plan.delimiter, plan.header
        encoding = "UTF-8"
    else:
        is_parquet = fmt.startswith("parquet")
        delimiter = info.delimiter if info is not None else None
        header = info.header if info is not None else True
        encoding = (info.encoding if info is not None else None) or "UTF-8"
        if not is_parquet and not fmt.startswith("csv"):
            raise InputError(
                f"'{path.name}' is {fmt.upper() or 'not CSV or Parquet'}: with --engine spark the "
                "input is a CSV or Parquet file, a Parquet folder or a Spark table.",
                cli_hint=f"Save it as CSV or Parquet, {USE_DUCKDB}.",
            )
        if not is_parquet and delimiter in (None, "whitespace"):
            raise InputError(
                f"'{path.name}' is separated by spaces, which Spark's CSV reader cannot split.",
                cli_hint=f"Save it with commas, semicolons or tabs, {USE_DUCKDB}.",
            )
    if is_parquet:
        frame = spark.read.parquet(str(path))
    else:
        # As the DuckDB path: every field as text, double quotes, empty = missing.
        frame = (
            spark.read.option("header", bool(header))
            .option("sep", delimiter)
            .option("quote", '"')
            .option("escape", '"')
            .option("multiLine", True)
            .option("encoding", encoding)
            .option("mode", "DROPMALFORMED")
            .option("inferSchema", False)
            .csv(str(path))
        )
    columns = [str(c) for c in source.columns]
    if len(frame.columns) != len(columns):
        raise InputError(
            f"Spark reads {len(frame.columns)} columns in '{path.name}' where {len(columns)} were "
            "expected. Check the delimiter and quotes."
        )
    return frame.toDF(*columns)


def _open(spark: Any, text: str, kind: str, max_bytes: int | None) -> tuple[Any, Any, str]:
    """(Spark frame, local source for detection, display name)."""
    from retention.ingest import FrameSource, open_source

    errors = _analysis_errors()
    if kind == "file":
        path = Path(text)
        source = open_source(path, max_bytes=max_bytes)
        try:
            frame = _read_local_file(spark, path.resolve(), source)
            frame.schema  # noqa: B018 - resolves the schema now (type errors surface here)
        except errors as exc:
            raise _type_error(exc, path.name) or InputError(
                f"Spark cannot read '{path.name}' ({spark_error_line(exc)}).",
                cli_hint=f"Check the file, {USE_DUCKDB}.",
            ) from None
        return frame, source, path.name
    try:
        if kind == "table":
            frame = spark.table(text)
        else:
            frame = spark.read.parquet(str(Path(text).resolve()))
        frame.schema  # noqa: B018
        sample = frame.limit(SAMPLE_ROWS).toPandas()
    except errors as exc:
        found = _type_error(exc, text)
        if found is not None:
            raise found from None
        line = spark_error_line(exc)
        if kind == "table":
            raise InputError(
                f"There is no Spark table '{text}' ({line}).",
                cli_hint="Check the name (db.table), the catalog the session uses "
                "(--spark-master), or give a file or folder instead.",
            ) from None
        raise InputError(
            f"Spark cannot read the folder '{text}' as Parquet ({line}).",
            cli_hint="Give a folder of Parquet files, or a CSV or Parquet file.",
        ) from None
    if sample.empty:
        raise InputError(f"'{text}' has no rows. Give a table or folder with the events.")
    sample.columns = [str(c) for c in sample.columns]
    for col in sample.columns:  # Spark's decimals arrive as Python Decimals: numbers here
        if (
            sample[col].dtype == object
            and sample[col].map(type).astype(str).str.contains("Decimal").any()
        ):
            sample[col] = pd.to_numeric(sample[col], errors="coerce")
    name = text if kind == "table" else Path(text).name
    return frame, FrameSource(sample, name), name


# -- validation -------------------------------------------------------------------------------


def _first_rows(spark: Any, view: str, plan: Any, counts: dict[int, int]) -> dict[int, Any]:
    """Up to five rejected rows per reason (their raw values), in one query."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    wanted = [code for code, n in counts.items() if code >= 0 and n]
    if not wanted:
        return {}
    rows = spark.table(view).where(F.col("_reason").isin(wanted))
    ranked = rows.withColumn(
        "_n", F.row_number().over(Window.partitionBy("_reason").orderBy(F.lit(1)))
    )
    picked = ranked.where("_n <= 5").select("_reason", *plan.raw_aliases).toPandas()
    return {int(code): group for code, group in picked.groupby("_reason")}


def _report(plan: Any, counts: dict[int, int], firsts: dict[int, Any], malformed: Any) -> Any:
    """A :class:`ValidationReport` like the DuckDB path's, from Spark's counts."""
    from retention.ingest.validate import build_report

    def reasons() -> Any:
        for code, reason in enumerate(plan.reasons):
            frame = firsts.get(code)
            if frame is not None:
                frame = frame[plan.raw_aliases].set_axis(plan.raw_columns, axis=1)
                frame = frame.reset_index(drop=True)
                frame.insert(0, "row", pd.array([None] * len(frame), dtype="Int64"))
            yield reason, int(counts.get(code, 0)), frame, []

    rows = sum(counts.values())
    note = ("Validated in Spark: the examples of left-out rows are any five of each reason, "
            "without their row numbers.")  # fmt: skip
    return build_report(plan, reasons(), rows, int(counts.get(-1, 0)), malformed, note)


def _stats(spark: Any, view: str) -> Any:
    """:class:`retention.ingest.validate.Stats` of the kept rows, by Spark."""
    from retention.ingest.validate import Stats

    numeric = r"user_id RLIKE '^[+-]?[0-9]+$'"
    users, first_user, text_ids, total = spark.sql(
        f"SELECT count(DISTINCT user_id), min(user_id), count_if(NOT ({numeric})), count(*) "  # noqa: S608
        f"FROM {view}"
    ).collect()[0]
    examples: tuple[str, ...] = ()
    if 0 < text_ids < total:
        found = spark.sql(
            f"SELECT DISTINCT user_id FROM {view} WHERE NOT ({numeric}) ORDER BY 1 LIMIT 3"  # noqa: S608
        ).collect()
        examples = tuple(row[0] for row in found)
    return Stats(int(users), first_user, examples, 0, None)


#: DuckDB strptime codes → Spark datetime pattern letters (one-letter month, day and hour
#: fields read one or two digits, as DuckDB's %m, %d and %H do).
_STRPTIME = {"%Y": "yyyy", "%y": "yy", "%m": "M", "%d": "d", "%H": "H", "%I": "h", "%M": "mm",
             "%S": "ss", "%f": "SSSSSS", "%p": "a", "%b": "MMM", "%B": "MMMM", "%a": "EEE",
             "%%": "%"}  # fmt: skip


def spark_pattern(duckdb_format: str) -> str:
    """A DuckDB ``strptime`` format (our own constants, :data:`retention.ingest.times.
    TIME_FAMILIES`) as a Spark datetime pattern; literal text is quoted."""
    out, i = [], 0
    while i < len(duckdb_format):
        code = duckdb_format[i : i + 2]
        if code in _STRPTIME:
            out.append(_STRPTIME[code])
            i += 2
            continue
        char = duckdb_format[i]
        out.append(char if char in " /-:.," else f"'{char}'")
        i += 1
    return "".join(out)


def _validation_shim(node: Any) -> Any:
    """The DuckDB functions only the validation query uses, as Spark computes them:

    * ``try_strptime(x, [f1, f2, ...])`` (the first format that parses) →
      ``coalesce(try_to_timestamp(x, p1), try_to_timestamp(x, p2), ...)``;
    * ``timezone('UTC', TRY_CAST(x AS TIMESTAMPTZ))`` → the cast alone: with the session in UTC,
      Spark's cast of a text with an offset already gives the UTC wall-clock time;
    * ``isfinite(x)`` → ``NOT isnan(x) AND abs(x) < +inf``;
    * ``regexp_replace(x, re, '\\1')``: a group in the replacement is ``$1`` in Java.
    """
    from sqlglot import exp

    if isinstance(node, exp.RegexpReplace):
        replacement = node.args.get("replacement")
        if isinstance(replacement, exp.Literal) and "\\" in replacement.this:
            # DuckDB (RE2) writes a group as \1, Java's regex as $1 ('\1' is a literal 1 there).
            spark_text = re.sub(r"\\(\d)", r"$\1", replacement.this)
            node.set("replacement", exp.Literal.string(spark_text))
        return node
    if not isinstance(node, exp.Anonymous):
        return node
    name = node.name.lower()
    args = node.expressions
    if name == "try_strptime" and len(args) == 2 and isinstance(args[1], exp.Array):
        formats = [f.this for f in args[1].expressions if isinstance(f, exp.Literal)]
        calls = [
            exp.Anonymous(
                this="try_to_timestamp",
                expressions=[args[0].copy(), exp.Literal.string(spark_pattern(f))],
            )
            for f in formats
        ]
        return exp.Coalesce(this=calls[0], expressions=calls[1:]) if len(calls) > 1 else calls[0]
    if name == "timezone" and len(args) == 2 and args[0].name.upper() == "UTC":
        return args[1]
    if name == "isfinite" and len(args) == 1:
        value = args[0]
        nan = exp.Anonymous(this="isnan", expressions=[value.copy()])
        infinite = exp.LT(
            this=exp.Abs(this=value.copy()),
            expression=exp.Cast(
                this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE")
            ),
        )
        return exp.Paren(this=exp.And(this=exp.Not(this=nan), expression=infinite))
    return node


def validation_sql(query: Any) -> str:
    """The validation query in Spark's dialect: :func:`retention.engine.translate.parse` (the
    shared shims) and :func:`_validation_shim`. Its one parameter, ``$missing`` (the
    placeholder tokens of :data:`~retention.ingest.expressions.MISSING_TOKENS`: our constants,
    no user text), is written into the SQL as a list first."""
    from retention.engine.translate import parse

    sql, params = query.sql, dict(query.params or {})
    missing = params.pop("missing", None)
    if missing is not None:
        tokens = ", ".join("'" + str(t).replace("'", "''") + "'" for t in missing)
        sql = sql.replace("$missing", f"[{tokens}]")
    tree = parse(sql, params or None).transform(_validation_shim)
    return tree.sql(dialect="spark")


def _empty_table(frame: Any, folder: Path) -> Path:
    """An empty Parquet file with the Spark frame's columns (see :class:`SparkEvents`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = frame.limit(0).toPandas()
    for col in empty.columns:
        if empty[col].dtype == object:
            empty[col] = empty[col].astype("string")
    path = folder / f"_spark_events_{uuid.uuid4().hex[:12]}.parquet"
    pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
    return path


def ingest_spark(
    text: str,
    *,
    spark: Any,
    overrides: dict[str, str] | None = None,
    max_bytes: int | None = None,
    scratch: Path | None = None,
) -> Any:
    """Read, detect, validate in Spark; a :class:`~retention.ingest.Prepared` whose events are
    a :class:`SparkEvents` (the rows stay in Spark). Raises InputError, touching nothing."""
    import tempfile
    from dataclasses import replace

    from retention.ingest import FrameSource, Prepared, detect_roles
    from retention.ingest.db import new_connection
    from retention.ingest.model import EVENT_ROLES
    from retention.ingest.prepare import _finish_report, _time_format
    from retention.ingest.validate import plan, resolve_mapping

    kind = classify(text)
    frame, source, name = _open(spark, text, kind, max_bytes)
    overrides = dict(overrides or {})
    detection = detect_roles(source.detection_frame)
    if detection.shape != "events":
        raise InputError(
            f"'{name}' looks like a campaign snapshot (one row per user with an action and an "
            "outcome); --engine spark runs event logs.",
            cli_hint=f"Give an event log, {USE_DUCKDB}.",
        )
    roles = {**detection.roles, **overrides}
    alias = f"_src_{uuid.uuid4().hex[:12]}"
    con = new_connection()
    try:
        relation = source.open(con, alias)
        resolved = resolve_mapping(roles, EVENT_ROLES, relation.columns, "events", name)
        time_format = _time_format(None, detection, resolved)
        query = plan(relation, "events", resolved, time_format, source.read_notes())
        # Lines the local reader skipped (a FileSource counts them only after a full read).
        malformed = source.malformed(con) if isinstance(source, FrameSource) else (0, ())
    finally:
        con.close()
    notes = [n for n in query.notes if not n.startswith(("Read by DuckDB", "Read as"))]
    source_note = {"file": f"Read by Spark from the file '{name}'.",
                   "parquet folder": f"Read by Spark from the Parquet folder '{name}'.",
                   "table": f"Read by Spark from the table '{name}'."}[kind]  # fmt: skip
    query = replace(query, notes=[source_note, *notes])

    errors = _analysis_errors()
    checked_view = f"_checked_{alias[5:]}"
    try:
        frame.createOrReplaceTempView(alias)
        spark.sql(validation_sql(query)).createOrReplaceTempView(checked_view)
        counted = spark.sql(
            f"SELECT _reason, count(*) FROM {checked_view} GROUP BY _reason"  # noqa: S608
        ).collect()
        counts = {(-1 if r[0] is None else int(r[0])): int(r[1]) for r in counted}
        firsts = _first_rows(spark, checked_view, query, counts)
        cols = ", ".join(f"`{c}`" for c in query.columns)
        kept = spark.sql(f"SELECT {cols} FROM {checked_view} WHERE _reason IS NULL")  # noqa: S608
        kept = kept.persist()
        view = f"_events_{alias[5:]}"
        kept.createOrReplaceTempView(view)
        report = _report(query, counts, firsts, malformed)
        stats = _stats(spark, view) if report.rows_used else None
    except errors as exc:
        raise _type_error(exc, name) or InputError(
            f"Spark could not validate '{name}' ({spark_error_line(exc)}).",
            cli_hint=f"Check the input's columns and types, {USE_DUCKDB}.",
        ) from None
    if stats is None:
        from retention.ingest.prepare import _nothing_left_error

        raise _nothing_left_error(name, report)
    report = replace(report, users=stats.users)
    report = _finish_report(report, stats, "events", name, resolved)
    folder = scratch or Path(tempfile.gettempdir())
    events = SparkEvents(
        view=view,
        rows=report.rows_used,
        frame=kept,
        columns=list(query.columns),
        path=_empty_table(kept, folder),
        source=str(Path(text).resolve()) if kind != "table" else text,
        kind=kind,
    )
    sha = getattr(source, "sha256", None) if kind == "file" else None
    return Prepared(
        shape="events",
        mapping=dict(resolved),
        frames={"events": events},
        report=report,
        source_name=name,
        sha256=sha,
        detection=detection,
        source=getattr(source, "info", None) if kind == "file" else None,
    )


def counts_equal(a: Any, b: Any) -> bool:
    """Two validation reports count the same rows, left out for the same reasons."""
    left = a.reasons[["reason", "rows"]].reset_index(drop=True)
    right = b.reasons[["reason", "rows"]].reset_index(drop=True)
    return (a.rows, a.rows_used, a.rows_rejected, a.users) == (
        b.rows,
        b.rows_used,
        b.rows_rejected,
        b.users,
    ) and bool(np.array_equal(left.values, right.values))

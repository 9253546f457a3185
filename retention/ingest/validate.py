"""Validation: the mapped columns of a relation → canonical rows, each rejected row by reason.

:func:`validate` is one streaming DuckDB query in three steps:

1. :func:`plan` writes the SQL, role by role: ``parsed`` values (over the source columns),
   ``derived`` values (over parsed ones) and the ``checks`` — the first failed check is the row's
   rejection reason, stored as its index so no text goes into the SQL.
2. :func:`_run` streams the result in batches (DuckDB keeps input order, so position = row),
   counting and sampling reasons per batch and handing kept rows to a :class:`Sink`, which moves
   them to a Parquet file on disk once they outgrow memory.
3. :func:`_report` turns the counts and samples into a :class:`ValidationReport`.

The relation comes from a source (:mod:`retention.ingest.sources`): a registered pandas frame or
a file DuckDB reads from disk; this module does not know which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retention.errors import InputError
from retention.ingest import limits
from retention.ingest.db import duckdb_input_error, to_pandas
from retention.ingest.detect import name_tokens
from retention.ingest.expressions import (
    MISSING_TOKENS,
    blank_expr,
    id_expr,
    number_expr,
    prepared_value,
    text_expr,
    time_expr,
)
from retention.ingest.model import REQUIRED_ROLES, ValidationReport, role_hints
from retention.ingest.staging import Sink, StagedTable, exposed
from retention.ingest.times import TIME_NAME_RE, best_time_family
from retention.sql import quote_ident

#: Names an extra (unmapped) column may not take: the canonical columns.
_EXTRA_RESERVED = {"user_id", "ts", "amount", "text", "event", "action", "outcome", "propensity"}
_EXTRA_RESERVED |= {"recency"}
MALFORMED = "malformed line (wrong number of fields)"

#: How many malformed lines a source skipped, and the first few line numbers.
Malformed = tuple[int, tuple[int, ...]]


class Relation:
    """A relation in a private DuckDB connection, with its column types and a pandas sample."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, relation: str, name: str, sample: pd.DataFrame
    ):
        self.con = con
        self.relation = relation
        self.name = name
        self.sample = sample
        described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()  # noqa: S608
        self.types = {str(row[0]): row[1] for row in described}
        self.columns = list(self.types)


def _safe_name(name: str, taken: set[str]) -> str:
    """Letters, digits and underscores only; unique (case-insensitively) among ``taken``."""
    base = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "column"
    if base[0].isdigit():
        base = "c_" + base
    candidate, n = base, 2
    while candidate.lower() in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate.lower())
    return candidate


def resolve_mapping(
    mapping: Mapping[str, str | None],
    roles: tuple[str, ...],
    columns: list[str],
    kind: str,
    name: str,
) -> dict[str, str]:
    """Check the mapping: known roles, existing columns, required roles present."""
    resolved: dict[str, str] = {}
    for role, col in mapping.items():
        if role not in roles:
            raise InputError(
                f"Unknown role '{role}' for {'a ' + kind if kind != 'events' else 'an event log'}. "
                f"Allowed roles: {', '.join(roles)}."
            )
        if col is None or str(col).strip() == "":
            continue
        col = str(col)
        parts = [col] if col in columns or role != "amount" or "*" not in col else col.split("*")
        missing = [c for c in parts if c not in columns]
        if missing:
            shown = ", ".join(repr(c) for c in columns[:30]) + (" ..." if len(columns) > 30 else "")
            raise InputError(
                f"Column '{missing[0]}' (mapped to {role}) is not in '{name}'. Its columns are: "
                f"{shown}.",
                **role_hints(role, kind),
            )
        resolved[role] = col
    for role in REQUIRED_ROLES[kind]:
        if role not in resolved:
            raise _missing_role_error(role, kind, name, columns)
    return resolved


def _missing_role_error(role: str, kind: str, name: str, columns: list[str]) -> InputError:
    what = {
        "user": "that identifies the user (customer id, user id, ...)",
        "time": "with the date/time of each event",
        "action": "with the treatment each user got (e.g. 'segment', 'treatment')",
        "outcome": "with the outcome (e.g. 'visit', 'conversion', 'spend')",
    }[role]
    shape_name = {
        "events": "an event log",
        "snapshot": "a campaign snapshot",
        "campaigns": "a campaign log",
    }[kind]
    shown = ", ".join(repr(c) for c in columns[:30]) + (" ..." if len(columns) > 30 else "")
    return InputError(
        f"No column {what} was found in '{name}', which {shape_name} needs. Columns: {shown}.",
        **role_hints(role, kind, verb="Name"),
    )


# --- plan: the SQL, role by role ------------------------------------------------------------


@dataclass
class _Layers:
    """The SQL of one validation while it is being written (see :func:`plan`)."""

    relation: Relation
    notes: list[str]
    parsed: list[tuple[str, str]] = field(default_factory=list)  # (SQL over source, alias)
    derived: list[tuple[str, str]] = field(default_factory=list)  # (SQL over parsed, alias)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (reason, SQL condition)
    output: list[str] = field(default_factory=list)  # canonical columns, in order
    values: dict[str, str] = field(default_factory=dict)  # column -> its prepared value's alias
    passed: list[tuple[str, str]] = field(default_factory=list)  # flags over source columns

    def v(self, col: str) -> str:
        """The alias of ``col``'s prepared value (first layer), added on first use."""
        if col not in self.values:
            self.values[col] = f"_v{len(self.values)}"
        return self.values[col]

    def type(self, col: str) -> Any:
        return self.relation.types[col]

    def number(self, col: str) -> str:
        return number_expr(self.v(col), self.type(col), self.relation.sample.get(col))


@dataclass(frozen=True)
class Plan:
    """One validation query and what reading its result needs."""

    sql: str
    params: dict[str, Any] | None
    reasons: tuple[str, ...]  # check i's reason is reasons[i]
    columns: list[str]  # the canonical (and kept extra) columns
    raw_columns: list[str]  # mapped source columns, shown beside rejected rows
    raw_aliases: list[str]
    notes: list[str]


def _plan_user(q: _Layers, user: str | None) -> None:
    if user:
        q.parsed.append((id_expr(q.v(user), q.type(user)), "user_id"))
        q.checks.append(("no user id", "user_id IS NULL"))
    else:
        q.parsed.append(("CAST(_row AS VARCHAR)", "user_id"))
        q.notes.append("No user column: each row is its own user (user_id = row number).")
    q.output.append("user_id")


def _plan_time(q: _Layers, tcol: str, time_format: str | None, kind: str) -> None:
    ttype = q.type(tcol)
    if str(ttype).startswith(("TIMESTAMP", "DATE")):
        family: str | None = "native"
    else:
        family = time_format or _time_family_for(q.relation, tcol)
    if family is None:
        examples = q.relation.sample[tcol].dropna().astype(str).head(3).tolist()
        raise InputError(
            f"No value in the time column '{tcol}' of '{q.relation.name}' reads as a date/time "
            f"(e.g. {examples}). Use dates like 2011-12-09 14:30, 12/9/2011 14:30 or "
            f"20111209.",
            **role_hints("time", kind),
        )
    q.parsed.append((time_expr(q.v(tcol), ttype, family), "_ts"))
    q.derived.append(("CASE WHEN year(_ts) BETWEEN 1900 AND 2100 THEN _ts END", "ts"))
    # Blank checks sit inside the reason's CASE, so they only run on rows that failed.
    q.checks.append(("no time", f"ts IS NULL AND {blank_expr(q.v(tcol), ttype)}"))
    q.checks.append(("unparseable time", "ts IS NULL"))
    q.output.append("ts")
    if family not in ("native", "iso"):
        q.notes.append(f"Times in '{tcol}' were read as {family}.")


def _plan_amount(q: _Layers, amount: str | None, mapped: set[str]) -> None:
    if not amount:
        q.derived.append(("CAST(NULL AS DOUBLE)", "amount"))
        q.output.append("amount")
        return
    parts = [amount] if amount in q.relation.types else amount.split("*")
    for i, part in enumerate(parts):
        q.parsed.append((q.number(part), f"_n{i}"))
    q.derived.append((" * ".join(f"_n{i}" for i in range(len(parts))), "amount"))
    cancel = _cancel_column(q.relation, mapped)
    if cancel:
        flag = f"coalesce(upper(trim(CAST({quote_ident(cancel)} AS VARCHAR))) LIKE 'C%', false)"
        q.passed.append((flag, "_cancel"))
        q.checks.append((f"cancellation ({cancel} starts with C)", "_cancel"))
    negative = " OR ".join(f"_n{i} < 0" for i in range(len(parts)))
    q.checks.append(("negative quantity or amount", f"({negative} OR amount < 0)"))
    blank = " OR ".join(blank_expr(q.v(p), q.type(p)) for p in parts)
    q.checks.append(("unparseable amount", f"amount IS NULL AND NOT ({blank})"))
    q.output.append("amount")


def _plan_texts(q: _Layers, mapping: Mapping[str, str]) -> None:
    for role in ("text", "event"):
        col = mapping.get(role)
        expr = text_expr(q.v(col), q.type(col)) if col else "CAST(NULL AS VARCHAR)"
        q.parsed.append((expr, role))
        q.output.append(role)


def _plan_action(q: _Layers, acol: str) -> None:
    q.parsed.append((text_expr(q.v(acol), q.type(acol)), "action"))
    q.checks.append(("no action", "action IS NULL"))
    q.output.append("action")


def _plan_outcome(q: _Layers, ocol: str) -> None:
    q.parsed.append((q.number(ocol), "outcome"))
    blank = blank_expr(q.v(ocol), q.type(ocol))
    q.checks.append(("no outcome", f"outcome IS NULL AND {blank}"))
    q.checks.append(("unparseable outcome", "outcome IS NULL"))
    q.output.append("outcome")


def _plan_propensity(q: _Layers, pcol: str | None) -> None:
    q.parsed.append((q.number(pcol) if pcol else "CAST(NULL AS DOUBLE)", "propensity"))
    if pcol:
        q.checks.append(
            (
                "propensity missing or outside (0, 1]",
                "propensity IS NULL OR propensity <= 0 OR propensity > 1",
            )
        )
    q.output.append("propensity")


def _plan_recency(q: _Layers, rcol: str | None) -> None:
    if rcol:
        q.parsed.append((q.number(rcol), "recency"))
        blank = blank_expr(q.v(rcol), q.type(rcol))
        q.checks.append(
            ("unparseable or negative recency", f"(recency IS NULL AND NOT {blank}) OR recency < 0")
        )
    else:
        q.parsed.append(("CAST(NULL AS DOUBLE)", "recency"))
    q.output.append("recency")


def _raw_columns(mapping: Mapping[str, str], types: Mapping[str, Any]) -> list[str]:
    """The mapped source columns (both parts of a product), in mapping order, once each."""
    raw_cols: list[str] = []
    for col in mapping.values():
        for part in [col] if col in types else col.split("*"):
            if part not in raw_cols:
                raw_cols.append(part)
    return raw_cols


def _extras(q: _Layers, mapping: Mapping[str, str]) -> list[tuple[str, str]]:
    """Unmapped source columns, kept under safe names: (source column, safe name)."""
    direct = {c for c in mapping.values() if c in q.relation.types}
    taken = {c.lower() for c in q.output} | _EXTRA_RESERVED
    extras: list[tuple[str, str]] = []
    for col in q.relation.columns:
        if col in direct:
            continue
        safe = _safe_name(col, taken)
        if safe != col:
            q.notes.append(f"Column {col!r} is kept as '{safe}'.")
        extras.append((col, safe))
    return extras


def _select(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"{expr} AS {alias}" for expr, alias in items)


def _sql(
    q: _Layers, raw: list[tuple[str, str]], extras: list[tuple[str, str]], numbered: bool
) -> str:
    """The query: first layer → parsed → derived → reason → only what is read afterwards.

    SQL text holds only identifiers quoted by ``quote_ident`` and our own constants; user values are
    data in the relation and bound parameters ($missing). Row numbers are the input order
    (DuckDB keeps it); only a table without a user column needs them in the query, as user ids.
    """
    reason = "CAST(NULL AS INTEGER)"
    if q.checks:  # the reason is stored as its index in ``checks``: no text goes into the SQL
        whens = " ".join(f"WHEN {cond} THEN {i}" for i, (_, cond) in enumerate(q.checks))
        reason = f"CASE {whens} END"
    prepared = [(prepared_value(col, q.type(col)), alias) for col, alias in q.values.items()]
    first = _select(
        prepared + q.passed + raw + [(quote_ident(c), quote_ident(s)) for c, s in extras]
    )
    middle = f", {_select(q.derived)}" if q.derived else ""
    source = q.relation.relation
    if numbered:
        rows = f"SELECT row_number() OVER () AS _row, * FROM {source}"  # noqa: S608
        first_rows = f"SELECT _row, {first} FROM ({rows})"  # noqa: S608
    else:
        first_rows = f"SELECT {first} FROM {source}"  # noqa: S608
    parsed_rows = f"SELECT *, {_select(q.parsed)} FROM ({first_rows})"  # noqa: S608
    derived_rows = f"SELECT *{middle} FROM ({parsed_rows})"  # noqa: S608
    checked = f"SELECT *, {reason} AS _reason FROM ({derived_rows})"  # noqa: S608
    # Raw values only for rejected rows (the samples).
    kept = ["_reason", *q.output, *(quote_ident(safe) for _, safe in extras)]
    kept += [f"CASE WHEN _reason IS NOT NULL THEN {alias} END AS {alias}" for _, alias in raw]
    return f"SELECT {', '.join(kept)} FROM ({checked})"  # noqa: S608


def plan(
    relation: Relation,
    kind: str,
    mapping: Mapping[str, str],
    time_format: str | None = None,
    read_notes: Iterable[str] = (),
) -> Plan:
    """The validation query for ``kind`` (events, snapshot or campaigns) over ``relation``.

    Checks run in the order they are added here; a row's reason is the first that fails.
    """
    q = _Layers(relation, list(read_notes))
    _plan_user(q, mapping.get("user"))
    if kind in ("events", "campaigns"):
        _plan_time(q, mapping["time"], time_format, kind)
    if kind == "events":
        _plan_amount(q, mapping.get("amount"), set(mapping.values()))
        _plan_texts(q, mapping)
    if kind in ("snapshot", "campaigns"):
        _plan_action(q, mapping["action"])
    if kind == "snapshot":
        _plan_outcome(q, mapping["outcome"])
    if kind in ("snapshot", "campaigns"):
        _plan_propensity(q, mapping.get("propensity"))
    if kind == "snapshot":
        _plan_recency(q, mapping.get("recency"))
    raw_cols = _raw_columns(mapping, relation.types)
    raw = [(f"CAST({quote_ident(c)} AS VARCHAR)", f"_raw{i}") for i, c in enumerate(raw_cols)]
    extras = _extras(q, mapping) if kind != "campaigns" else []
    sql = _sql(q, raw, extras, numbered=not mapping.get("user"))
    return Plan(
        sql=sql,
        params={"missing": MISSING_TOKENS} if "$missing" in sql else None,
        reasons=tuple(reason for reason, _ in q.checks),
        columns=q.output + [safe for _, safe in extras],
        raw_columns=raw_cols,
        raw_aliases=[alias for _, alias in raw],
        notes=q.notes,
    )


# --- run: one streaming pass ------------------------------------------------------------------


class _Tally:
    """Rows per reason and the first five rows of each (positions and raw values)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.per_code = np.zeros(len(plan.reasons) + 1, dtype=np.int64)  # [ok, check 0, ...]
        self.firsts: dict[int, list[np.ndarray]] = {c: [] for c in range(len(plan.reasons))}
        self.shown: dict[int, list[pa.Table]] = {c: [] for c in range(len(plan.reasons))}
        self.rows = 0

    def add(self, batch: pa.RecordBatch, codes: np.ndarray) -> None:
        self.per_code += np.bincount(codes + 1, minlength=len(self.plan.reasons) + 1)
        for code in range(len(self.plan.reasons)):
            have = sum(len(f) for f in self.firsts[code])
            if have < 5 and self.per_code[code + 1]:
                found = np.flatnonzero(codes == code)[: 5 - have]
                if len(found):
                    self.firsts[code].append(found + self.rows)
                    part = pa.Table.from_batches([batch]).select(self.plan.raw_aliases)
                    self.shown[code].append(part.take(pa.array(found)))
        self.rows += len(codes)


def _run(relation: Relation, plan: Plan) -> tuple[pa.Table | StagedTable, _Tally]:
    """Run the plan: count and sample reasons per batch, keep the rows that pass."""
    tally = _Tally(plan)
    sink = Sink(plan.columns)
    try:
        reader = relation.con.sql(plan.sql, params=plan.params).fetch_record_batch(
            limits.BATCH_ROWS
        )
        sink.schema = pa.schema([reader.schema.field(c) for c in plan.columns])
        for batch in reader:
            codes = pc.fill_null(batch.column("_reason"), -1).to_numpy(zero_copy_only=False)
            tally.add(batch, codes)
            ok = codes == -1
            kept = batch if ok.all() else batch.filter(pa.array(ok))
            sink.add(pa.Table.from_batches([kept]).select(plan.columns))
    except duckdb.Error as exc:
        sink.discard()
        raise duckdb_input_error(exc, relation.name) from None
    return sink.finish(), tally


# --- report -----------------------------------------------------------------------------------


#: One reason's left-out rows: (reason, how many, a sample of them or None, their row numbers).
ReasonCount = tuple[str, int, "pd.DataFrame | None", list[int]]


def build_report(
    plan: Plan,
    reasons: Iterable[ReasonCount],
    rows: int,
    rows_used: int,
    malformed: Malformed,
    unnumbered: str | None = None,
) -> ValidationReport:
    """The validation report from one engine's counts (DuckDB's pass here; Spark's in
    :mod:`retention.engine.inputs`). ``rows`` counts the parsed rows, without malformed lines.
    ``unnumbered``: the samples carry no row numbers, and this note says so when any row was
    left out."""
    notes = list(plan.notes)
    skipped_count, skipped = malformed
    samples: dict[str, pd.DataFrame] = {}
    reason_rows: list[dict[str, Any]] = []
    if skipped_count:
        reason_rows.append(
            {"reason": MALFORMED, "rows": skipped_count, "sample": list(skipped[:5])}
        )
        if unnumbered is None:
            notes.append("Malformed lines are numbered by file line, other samples by data row.")
    for reason, count, sample, numbers in reasons:
        if not count:
            continue
        if sample is not None:
            samples[reason] = sample
        reason_rows.append({"reason": reason, "rows": int(count), "sample": numbers})
    if reason_rows and unnumbered:
        notes.append(unnumbered)
    rows += skipped_count
    return ValidationReport(
        rows=int(rows),
        rows_used=int(rows_used),
        rows_rejected=int(rows - rows_used),
        reasons=pd.DataFrame(reason_rows, columns=["reason", "rows", "sample"]),
        samples=samples,
        notes=tuple(notes),
    )


def _report(plan: Plan, tally: _Tally, malformed: Malformed) -> ValidationReport:
    def reasons() -> Iterable[ReasonCount]:
        for code, reason in enumerate(plan.reasons):
            count = int(tally.per_code[code + 1])
            if not count:
                continue
            first = np.concatenate(tally.firsts[code])
            shown = pa.concat_tables(tally.shown[code]).rename_columns(plan.raw_columns)
            frame = shown.to_pandas()
            frame.insert(0, "row", first + 1)
            yield reason, count, frame, [int(x) for x in first + 1]

    return build_report(plan, reasons(), tally.rows, int(tally.per_code[0]), malformed)


def validate(
    relation: Relation,
    kind: str,
    mapping: Mapping[str, str],
    *,
    time_format: str | None = None,
    read_notes: Iterable[str] = (),
    malformed: Callable[[], Malformed] = lambda: (0, ()),
) -> tuple[pd.DataFrame | StagedTable, ValidationReport, Stats]:
    """Parse the mapped columns, tag each row with its first rejection reason, keep the rest.

    ``malformed`` is asked after the pass (a file read by DuckDB knows its bad lines only then).
    """
    query = plan(relation, kind, mapping, time_format, read_notes)
    result, tally = _run(relation, query)
    try:
        report = _report(query, tally, malformed())
        stats = _stats(relation.con, result, "action" in query.columns)
    except BaseException:
        if isinstance(result, StagedTable):
            result.discard()
        raise
    report = replace(report, users=stats.users)
    return (result if isinstance(result, StagedTable) else to_pandas(result)), report, stats


# --- helpers ----------------------------------------------------------------------------------


def _time_family_for(relation: Relation, col: str) -> str | None:
    """The format family that parses most of the column's sample (None when none parses)."""
    family, _ = best_time_family(
        relation.con,
        relation.sample[col].astype("string"),
        allow_epoch=bool(TIME_NAME_RE.search(col)),
    )
    return family


def _cancel_column(relation: Relation, mapped: set[str]) -> str | None:
    """An invoice/order number column whose values starting with 'C' mark cancellations."""
    for col in relation.columns:
        tokens = name_tokens(col)
        if col in mapped or not ({"invoice", "order", "invoiceno", "transaction"} & set(tokens)):
            continue
        values = relation.sample[col].dropna().astype(str).str.strip()
        if (
            len(values)
            and values.str.match(r"^[Cc]\d").any()
            and values.str.match(r"^\d").mean() > 0.5
        ):
            return col
    return None


@dataclass(frozen=True)
class Stats:
    """Dataset-level facts about the rows kept, for the checks after validation."""

    users: int
    first_user: str | None
    text_ids: tuple[str, ...]  # up to 3 non-numeric ids, when ids mix numbers and text
    actions: int
    first_action: str | None


def _stats(
    con: duckdb.DuckDBPyConnection, table: pa.Table | StagedTable, has_action: bool
) -> Stats:
    """Distinct users/actions and mixed id kinds, by DuckDB over the result (parallel)."""
    with exposed(con, "_result", table):
        action = "count(DISTINCT action), min(action)" if has_action else "0, NULL"
        text = "count(*) FILTER (WHERE TRY_CAST(user_id AS HUGEINT) IS NULL)"
        sql = f"SELECT count(DISTINCT user_id), min(user_id), {text}, {action} FROM _result"  # noqa: S608
        users, first_user, text_ids, actions, first_action = con.execute(sql).fetchall()[0]
        examples: tuple[str, ...] = ()
        if 0 < text_ids < len(table):
            found = con.execute(
                "SELECT DISTINCT user_id FROM _result "
                "WHERE TRY_CAST(user_id AS HUGEINT) IS NULL ORDER BY 1 LIMIT 3"
            ).fetchall()
            examples = tuple(row[0] for row in found)
    return Stats(int(users), first_user, examples, int(actions), first_action)

"""SQL expressions that parse one mapped value: ids, numbers, text, times, blanks.

Each builder takes ``v``: the name of a value prepared by the first layer of the validation query
(see :func:`prepared_value`) — the source column itself for typed columns (numbers, timestamps),
or the column trimmed and cast to VARCHAR for text. Trimming once there keeps per-row work small.
Only identifiers quoted by :func:`~retention.sql.quote_ident` and our own constants go into the
SQL text; user values stay data (the registered table and the bound ``$missing`` list).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from retention.ingest.times import EPOCH_FAMILIES, ts_from_text
from retention.sql import quote_ident

#: Placeholders that mean "no user id" in an id column (bound to the query as ``$missing``).
MISSING_TOKENS = ["", "nan", "null", "none", "na", "n/a", "#n/a", "-", "?", "unknown"]


def is_number_type(t: duckdb.typing.DuckDBPyType | str) -> bool:
    return str(t).split("(")[0] in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
    }  # fmt: skip


def is_float_type(t: Any) -> bool:
    return str(t).split("(")[0] in {"FLOAT", "DOUBLE", "DECIMAL"}


def is_text_type(t: Any) -> bool:
    return not (is_number_type(t) or str(t).startswith(("TIMESTAMP", "DATE", "BOOLEAN")))


def prepared_value(col: str, t: Any) -> str:
    """SQL for the first layer: the column, trimmed to VARCHAR when it holds text."""
    if not is_text_type(t):
        return quote_ident(col)
    text = f"CAST({quote_ident(col)} AS VARCHAR)"
    # trim() only where needed: the LIKE tests are twice as fast as trimming every value.
    return f"(CASE WHEN {text} LIKE ' %' OR {text} LIKE '% ' THEN trim({text}) ELSE {text} END)"


def text_expr(v: str, t: Any) -> str:
    """VARCHAR, NULL when blank."""
    return f"NULLIF({v}, '')" if is_text_type(t) else f"CAST({v} AS VARCHAR)"


def id_expr(v: str, t: Any) -> str:
    """String ids: 17850.0 → '17850'; '00123' kept; blank and placeholder tokens → NULL."""
    if is_float_type(t):
        return (
            f"(CASE WHEN isfinite(CAST({v} AS DOUBLE)) AND {v} = round({v}) AND abs({v}) < 1e15 "
            f"THEN CAST(CAST({v} AS BIGINT) AS VARCHAR) ELSE CAST({v} AS VARCHAR) END)"
        )
    if not is_text_type(t):
        return f"CAST({v} AS VARCHAR)"
    return (
        f"(CASE WHEN length({v}) <= 7 AND list_contains($missing, lower({v})) THEN NULL "
        f"WHEN contains({v}, '.') THEN regexp_replace({v}, '^([0-9]+)\\.0+$', '\\1') "
        f"ELSE {v} END)"
    )


def _decimal_comma(values: pd.Series) -> bool:
    text = values.dropna().astype(str).str.strip().head(2000)
    comma = text.str.match(r"^[-+]?[$€£¥]?\d{1,3}(\.\d{3})*,\d+$|^[-+]?\d+,\d{1,2}$").sum()
    dot = text.str.match(r"^[-+]?[$€£¥]?\d+\.\d+$|^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$").sum()
    return bool(comma > dot)


def number_expr(v: str, t: Any, sample: pd.Series | None) -> str:
    """DOUBLE from a numeric or text value (currency signs, thousands separators, booleans)."""
    if not is_text_type(t):
        return f"CAST({v} AS DOUBLE)"
    text = f"lower({v})"
    decimal_comma = sample is not None and _decimal_comma(sample)
    if decimal_comma:
        cleaned = f"replace(regexp_replace({text}, '[\\s$€£¥.]', '', 'g'), ',', '.')"
    else:
        cleaned = f"regexp_replace({text}, '[\\s$€£¥,]', '', 'g')"
    slow = (
        f"(CASE WHEN {text} IN ('true', 'yes', 'y', 't') THEN 1.0 "
        f"WHEN {text} IN ('false', 'no', 'n', 'f') THEN 0.0 "
        f"ELSE TRY_CAST({cleaned} AS DOUBLE) END)"
    )
    if decimal_comma:  # "1.234" means 1234 here, so no plain cast first
        return slow
    return f"coalesce(TRY_CAST({v} AS DOUBLE), {slow})"  # plain numbers skip the regex


def blank_expr(v: str, t: Any) -> str:
    """TRUE when a cell is missing (NULL, blank or a placeholder like 'NA')."""
    if not is_text_type(t):
        return f"({v} IS NULL)"
    return f"({v} IS NULL OR list_contains($missing, lower({v})))"


def time_expr(v: str, t: Any, family: str | None) -> str:
    kind = str(t)
    if kind.startswith("TIMESTAMP WITH TIME ZONE") or kind == "TIMESTAMPTZ":
        return f"timezone('UTC', {v})"
    if kind.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({v} AS TIMESTAMP)"
    if family in (None, "native"):
        return "CAST(NULL AS TIMESTAMP)"
    if is_number_type(t) and family not in EPOCH_FAMILIES:
        text = f"CAST(TRY_CAST({v} AS BIGINT) AS VARCHAR)"
    else:
        text = f"CAST({v} AS VARCHAR)"
    return f"CAST({ts_from_text(text, family)} AS TIMESTAMP)"

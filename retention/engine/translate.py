"""DuckDB SQL -> Spark SQL: the library's SQL strings, transpiled by SQLGlot, with the DuckDB
named parameters (``$origin``) and positional ``?`` parameters inlined as typed literals.

The library writes its SQL once, in DuckDB's dialect (the one source of truth); the Spark
engine runs the same strings through :func:`to_spark_sql`. What SQLGlot does not translate the
way DuckDB computes it is handled in :mod:`retention.engine.shims`. Nothing here imports pyspark.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import exp

from retention.engine import shims

Params = Mapping[str, Any] | Sequence[Any] | None


class TranslationError(ValueError):
    """A DuckDB statement that cannot be run on Spark (a parameter missing or of a type that
    has no literal, or SQL SQLGlot cannot read)."""


def to_spark_sql(sql: str, params: Params = None) -> str:
    """``sql`` (DuckDB dialect) as one Spark SQL statement, ``params`` inlined."""
    return parse(sql, params).sql(dialect="spark")


def parse(sql: str, params: Params = None) -> exp.Expression:
    """The SQLGlot tree of ``sql`` with ``params`` inlined and the Spark shims applied."""
    tree = parse_duckdb(sql)
    tree = inline_params(tree, params)
    return shims.apply(tree)


def parse_duckdb(sql: str) -> exp.Expression:
    """The SQLGlot tree of one DuckDB statement, as written."""
    try:
        return sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise TranslationError(f"SQLGlot cannot read this DuckDB SQL: {exc}") from exc


def inline_params(tree: exp.Expression, params: Params) -> exp.Expression:
    """``tree`` with each ``$name`` / ``?`` placeholder replaced by the literal of its value."""
    holders = list(tree.find_all(exp.Placeholder))
    if not holders:
        return tree
    # find_all walks breadth-first; positional '?' must follow the text's order.
    holders.sort(key=lambda node: _position(node))
    positional = iter(
        params if isinstance(params, Sequence) and not isinstance(params, str) else []
    )
    for node in holders:
        name = node.name
        if name and name != "?":
            if not isinstance(params, Mapping) or name not in params:
                raise TranslationError(f"The SQL needs the parameter ${name}, which was not given.")
            value = params[name]
        else:
            try:
                value = next(positional)
            except StopIteration:
                raise TranslationError("The SQL has more ? parameters than values.") from None
        node.replace(literal(value))
    return tree


def _position(node: exp.Expression) -> tuple[int, ...]:
    path: list[int] = []
    while node.parent is not None:
        parent = node.parent
        index = 0
        for i, child in enumerate(parent.iter_expressions()):
            if child is node:
                index = i
                break
        path.append(index)
        node = parent
    return tuple(reversed(path))


def literal(value: Any) -> exp.Expression:
    """A typed Spark literal of a Python value: timestamps ``TIMESTAMP '...'`` (naive UTC),
    dates ``DATE '...'``, ints, doubles (``CAST(... AS DOUBLE)``, NaN and infinities included),
    strings quoted by SQLGlot's Spark generator (quotes and backslashes escaped)."""
    import numpy as np  # the library's own dependency; not pyspark

    if value is None:
        return exp.null()
    if isinstance(value, np.datetime64):
        import pandas as pd

        value = None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
        if value is None:
            return exp.null()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        text = (
            repr(value)
            if math.isfinite(value)
            else ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
        )
        inner = exp.Literal.number(text) if math.isfinite(value) else exp.Literal.string(text)
        return exp.cast(inner, exp.DataType.build("DOUBLE"))
    if isinstance(value, decimal.Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    if hasattr(value, "to_pydatetime") and not isinstance(value, dt.date):
        value = value.to_pydatetime()  # numpy datetime64 wrapped by pandas
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return exp.cast(
            exp.Literal.string(value.isoformat(sep=" ", timespec="microseconds")),
            exp.DataType.build("TIMESTAMPLTZ"),
        )
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    raise TranslationError(
        f"A SQL parameter of type {type(value).__name__} cannot be written as a Spark literal."
    )

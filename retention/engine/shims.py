"""The Spark shim: SQLGlot transforms for the DuckDB constructs the library's SQL uses that
SQLGlot's ``duckdb -> spark`` translation does not compute the way DuckDB does (or not at all).

Each transform says which DuckDB construct it handles and why. :func:`apply` runs them all on a
parsed DuckDB statement (parameters already inlined), before it is written as Spark SQL.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

Shim = Callable[[exp.Expression], exp.Expression | None]


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    """A Spark function call written as is (SQLGlot does not rename it)."""
    return exp.Anonymous(this=name, expressions=list(args))


def _cast(node: exp.Expression, to: str) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build(to, dialect="spark"))


def timestamps_are_session_time(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``TIMESTAMP`` (naive) -> Spark ``TIMESTAMP`` (session time zone, UTC here).

    SQLGlot writes DuckDB's naive TIMESTAMP as Spark's ``TIMESTAMP_NTZ``. Spark's date functions
    (``date_trunc``, ``unix_micros``) return the session-time ``TIMESTAMP`` and the events
    registered from pandas arrive as ``TIMESTAMP`` too; with the session time zone fixed at UTC
    (:func:`retention.engine.spark.spark_session`) that type holds the same wall-clock values as
    DuckDB's naive timestamps, and mixing the two Spark types would cast back and forth."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMPNTZ:
        return exp.DataType.build("TIMESTAMPLTZ")
    return None


def enums_are_strings(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``ENUM('active', ...)`` casts (the stage labels) -> ``STRING``: Spark has no
    enum type. The cursor turns such an output column back into a pandas categorical with the
    same categories, as DuckDB's ``df()`` gives (:func:`enum_outputs`)."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.ENUM:
        return exp.DataType.build("STRING")
    return None


def date_diff_counts_boundaries(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``date_diff(part, a, b)`` counts the part boundaries crossed between ``a`` and
    ``b`` (23:00 to 01:00 the next day is 1 day; 31 January to 1 February is 1 month); SQLGlot
    writes Spark's ``DATEDIFF(unit, a, b)``, which counts whole units elapsed (0 in both cases).
    Rewritten per unit to boundary counts, as BIGINT like DuckDB's result:
    day = ``datediff(date(b), date(a))``; month = year*12+month difference; year = year
    difference; second/millisecond/microsecond = difference of the truncated epoch counts."""
    if not isinstance(node, exp.DateDiff):
        return None
    unit = (node.text("unit") or "DAY").upper()
    later, earlier = node.this, node.expression
    if unit in ("DAY", "DAYS", "D"):
        out = _fn("datediff", _cast(later.copy(), "DATE"), _cast(earlier.copy(), "DATE"))
    elif unit in ("WEEK", "WEEKS"):
        # DuckDB's week boundaries are ISO weeks (Mondays), like date_trunc('week').
        mondays = [
            _fn("date_trunc", exp.Literal.string("WEEK"), side.copy()) for side in (later, earlier)
        ]
        days = _fn("datediff", _cast(mondays[0], "DATE"), _cast(mondays[1], "DATE"))
        out = exp.IntDiv(this=days, expression=exp.Literal.number(7))
    elif unit in ("MONTH", "MONTHS"):

        def months(side: exp.Expression) -> exp.Expression:
            return exp.Add(
                this=exp.Mul(this=_fn("year", side.copy()), expression=exp.Literal.number(12)),
                expression=_fn("month", side.copy()),
            )

        out = exp.Sub(
            this=exp.Paren(this=months(later)), expression=exp.Paren(this=months(earlier))
        )
    elif unit in ("YEAR", "YEARS"):
        out = exp.Sub(this=_fn("year", later.copy()), expression=_fn("year", earlier.copy()))
    elif unit in (
        "SECOND",
        "SECONDS",
        "MILLISECOND",
        "MILLISECONDS",
        "MICROSECOND",
        "MICROSECONDS",
    ):
        fn = (
            "unix_seconds"
            if unit.startswith("SECOND")
            else "unix_millis"
            if unit.startswith("MILLI")
            else "unix_micros"
        )
        out = exp.Sub(
            this=_fn(fn, _cast(later.copy(), "TIMESTAMP")),
            expression=_fn(fn, _cast(earlier.copy(), "TIMESTAMP")),
        )
    else:
        return None  # other parts: SQLGlot's own translation
    return _cast(exp.Paren(this=out), "BIGINT")


def epoch_us_is_unix_micros(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``epoch_us(ts)`` (microseconds since 1970, the phase of a campaign within its
    period) -> Spark ``unix_micros(ts)``; SQLGlot leaves the DuckDB name, unknown to Spark."""
    if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
        return _fn("unix_micros", _cast(node.expressions[0].copy(), "TIMESTAMP"))
    return None


def fsum_is_sum(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``fsum`` (Kahan-compensated sum, used for revenue) -> Spark ``sum``: Spark has no
    compensated sum; the difference is rounding in the last digits (the differential tests
    compare such sums to 1e-9 relative)."""
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("fsum", "sumkahan", "kahan_sum"):
        return exp.Sum(this=node.expressions[0].copy())
    return None


def grouping_of_several_is_a_bit_sum(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``grouping(a, b, c)`` (a bit mask over some of the grouping columns, as in
    ``mdp.summarize_events``) -> ``grouping(a) * 4 + grouping(b) * 2 + grouping(c)`` as BIGINT:
    Spark's ``grouping`` takes one column, and its ``grouping_id`` must list every grouping
    column (``GROUPING_ID_COLUMN_MISMATCH`` otherwise)."""
    if not isinstance(node, exp.Grouping) or len(node.expressions) < 2:
        return None
    cols = list(node.expressions)
    total: exp.Expression | None = None
    for i, col in enumerate(cols):
        bit = exp.Mul(
            this=exp.Grouping(expressions=[col.copy()]),
            expression=exp.Literal.number(2 ** (len(cols) - 1 - i)),
        )
        total = bit if total is None else exp.Add(this=total, expression=bit)
    return _cast(exp.Paren(this=total), "BIGINT")


def no_materialized_cte(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``WITH g AS MATERIALIZED (...)`` (a hint to compute the CTE once) -> a plain CTE:
    Spark has no such keyword; the result is the same."""
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)
        return node
    return None


def decimal_literals_divide_as_double(node: exp.Expression) -> exp.Expression | None:
    """``x / 86400.0``: in DuckDB a decimal literal in a division gives a DOUBLE; in Spark it
    gives a DECIMAL (an object column in pandas, rounded to the decimal's scale). The decimal
    literal is cast to DOUBLE in divisions, so Spark divides in floating point like DuckDB."""
    if not isinstance(node, exp.Div):
        return None
    for key in ("this", "expression"):
        side = node.args.get(key)
        if isinstance(side, exp.Literal) and not side.is_string and not side.is_int:
            node.set(key, _cast(side.copy(), "DOUBLE"))
    return None


def chr_of_a_constant_is_the_character(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``chr(1114111)`` (the last Unicode code point, sorting after every text) -> that
    character as a string literal: Spark's ``chr(n)`` is ``n % 256``."""
    if isinstance(node, exp.Chr) and len(node.expressions) == 1:
        arg = node.expressions[0]
        if isinstance(arg, exp.Literal) and arg.is_int:
            return exp.Literal.string(chr(int(arg.this)))
    return None


def tuples_in_calls_are_structs(node: exp.Expression) -> exp.Expression | None:
    """DuckDB row values ``(a, b)`` as a function argument (``arg_min(x, (ts, key))``: the
    first by time, ties by key) -> Spark ``struct(a, b)``, which orders the same way."""
    if isinstance(node, exp.Tuple) and isinstance(node.parent, exp.Func):
        return exp.Struct(expressions=[e.copy() for e in node.expressions])
    return None


def hugeint_is_decimal38(node: exp.Expression) -> exp.Expression | None:
    """DuckDB ``HUGEINT`` (128-bit integers; ``TRY_CAST(user_id AS HUGEINT)`` tells numeric ids
    from text ones in the validation counts) -> Spark ``DECIMAL(38, 0)``, its widest integer
    type; SQLGlot writes ``INT128``, which Spark does not know."""
    if isinstance(node, exp.DataType) and node.this in (
        exp.DataType.Type.INT128,
        exp.DataType.Type.UINT128,
    ):
        return exp.DataType.build("DECIMAL(38, 0)")
    return None


def duckdb_databases_is_the_current_database(node: exp.Expression) -> exp.Expression | None:
    """DuckDB's catalog table function ``duckdb_databases()`` (``user_pass`` keys the per-user
    facts it shares by the database's file) -> one row for Spark's current database, with the
    columns the library reads (``database_name``, ``path`` = ``spark:<database>``)."""
    if (
        isinstance(node, exp.Table)
        and isinstance(node.this, exp.Anonymous)
        and node.this.name.lower() == "duckdb_databases"
    ):
        row = exp.select(
            exp.alias_(
                exp.func("concat", exp.Literal.string("spark:"), _fn("current_database")), "path"
            ),
            exp.alias_(_fn("current_database"), "database_name"),
        )
        return exp.Subquery(
            this=row,
            alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name or "duckdb_databases")),
        )
    return None


SHIMS: tuple[Shim, ...] = (
    hugeint_is_decimal38,
    duckdb_databases_is_the_current_database,
    timestamps_are_session_time,
    enums_are_strings,
    date_diff_counts_boundaries,
    epoch_us_is_unix_micros,
    fsum_is_sum,
    grouping_of_several_is_a_bit_sum,
    no_materialized_cte,
    decimal_literals_divide_as_double,
    chr_of_a_constant_is_the_character,
    tuples_in_calls_are_structs,
)


def apply(tree: exp.Expression) -> exp.Expression:
    """``tree`` with every shim applied (each node visited once per shim)."""
    for shim in SHIMS:

        def visit(node: exp.Expression, shim: Shim = shim) -> exp.Expression:
            out = shim(node)
            return node if out is None else out

        tree = tree.transform(visit, copy=False)
    return tree


def enum_outputs(tree: exp.Expression) -> dict[int, tuple[str, ...]]:
    """For a parsed DuckDB query (before the shims): the output columns (by position) that are
    DuckDB ENUMs, with their categories — DuckDB's ``df()`` gives them as pandas categoricals."""
    out: dict[int, tuple[str, ...]] = {}
    for i, proj in enumerate(_outer_projections(tree)):
        for dtype in proj.find_all(exp.DataType):
            if dtype.this == exp.DataType.Type.ENUM:
                out[i] = tuple(e.name for e in dtype.expressions)
                break
        if isinstance(proj.unalias(), exp.Cast) and not proj.unalias().to.is_type("enum"):
            out.pop(i, None)  # CAST(stage AS VARCHAR): a plain string again
    return out


def sum_outputs(tree: exp.Expression) -> set[int]:
    """The output columns (by position) that are a ``sum(...)`` in some branch: DuckDB sums
    integers into HUGEINT, which its ``df()`` gives as float64."""
    found: set[int] = set()
    selects = [tree]
    while selects and isinstance(selects[0], exp.SetOperation):
        op = selects.pop(0)
        selects[:0] = [op.this, op.expression]
    for select in selects:
        if isinstance(select, exp.Subquery):
            select = select.this
        for i, proj in enumerate(getattr(select, "expressions", [])):
            if isinstance(proj.unalias(), exp.Sum):
                found.add(i)
    return found


def unnamed_count_star_outputs(tree: exp.Expression) -> set[int]:
    """The output columns (by position) that are an unnamed ``count(*)``: DuckDB names them
    ``count_star()``, Spark ``count(1)``."""
    return {
        i
        for i, proj in enumerate(_outer_projections(tree))
        if isinstance(proj, exp.Count) and isinstance(proj.this, exp.Star)
    }


def _outer_projections(tree: exp.Expression) -> list[exp.Expression]:
    node = tree
    while isinstance(node, exp.SetOperation):
        node = node.this
    if isinstance(node, exp.Subquery):
        node = node.this
    return list(getattr(node, "expressions", []))

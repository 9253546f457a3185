"""Retention analyses the way Amplitude, Mixpanel and PostHog users expect them, in DuckDB SQL.

A **definition** says who starts and what counts as coming back: the start event (each user's
first event of that type; any event by default) puts the user in the cohort of its period, and
return events (of one type, or any) at or after that moment count as returns. Cohorts can be
limited to those that started within a date range.

Three ways to count a return, each a :class:`RetentionMatrix` of (group, cohort, column) cells:

* ``classic`` (N-day / N-week / N-month): returned in period ``k`` after the start period;
* ``unbounded`` ("on or after"): returned in period ``k`` or any later one;
* ``brackets``: returned on a day inside a range of days since the start (e.g. 1–7, 8–30,
  31–90; the last range may be open, "91 or later").

**Incomplete cells.** A cell the data has not fully observed yet is marked, not shown as a drop:
in periods, the cohort's cell in the data's last period when the data ends before that period
does; in day ranges, a cohort some of whose users have not yet been followed to the range's
last day. Averages over cohorts (the line chart) use complete cells only; a line falls back to
its incomplete cells, marked as such, only where no complete cell exists.

**Money**: the same period cells carry the revenue of the return events, which gives revenue
retention (revenue in period ``k`` as a share of the cohort's period-0 revenue) and the
cumulative revenue per user (the LTV curve).

The aggregation is one scan of the events in SQL; what comes back is a few thousand cells at
most, and everything after that is pandas on those cells.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from retention.cohorts import ALL_USERS, DEFAULT_TOP_N, MISSING, OTHER, _ordered
from retention.errors import InputError
from retention.periods import (
    EventsSource,
    PeriodGrid,
    columns_of,
    events_source,
    period_grid,
    period_index_sql,
)
from retention.sql import quote_ident

MATRIX_MODES: tuple[str, ...] = ("classic", "unbounded", "brackets")
DEFAULT_BRACKETS: tuple[tuple[int, int | None], ...] = ((1, 7), (8, 30), (31, 90))
MAX_BRACKETS = 12
#: What a cell means in each mode, in plain words.
MATRIX_EXPLANATIONS: dict[str, str] = {
    "classic": (
        "A cell is the share of the cohort that came back in that exact period; someone who "
        "skips a period and comes back later counts again when they come back."
    ),
    "unbounded": (
        "A cell is the share of the cohort that came back in that period or any later one, "
        "i.e. had not yet left for good; it never goes up along a row."
    ),
    "brackets": (
        "A cell is the share of the cohort that came back at least once on a day within that "
        "range, counted over the users the data has followed to the range's first day."
    ),
}
COMPLETE, INCOMPLETE, UNOBSERVED = "complete", "incomplete", "unobserved"
AVERAGE = "Average (all users)"
TOTAL = "All users (total)"  # the same line when it counts users
#: Breakdowns by a user property that are not plain columns (see :func:`property_groups`).
ACQUISITION = "acquisition"
FIRST_PREFIX = "first:"
MAX_EVENT_TYPES = 50


@dataclass(frozen=True)
class Definition:
    """Who starts and what counts as coming back (``None``: any event), and the cohorts' dates:
    only users whose start falls on or after ``start`` and on or before ``end`` (days)."""

    start_event: str | None = None
    return_event: str | None = None
    start: date | None = None
    end: date | None = None

    def describe(self) -> str:
        """ "first purchase → any purchase" style words."""
        first = f"first {self.start_event}" if self.start_event else "first event"
        back = f"any {self.return_event}" if self.return_event else "any event"
        return f"{first} → {back}"


def parse_brackets(text: str) -> tuple[tuple[int, int | None], ...]:
    """Day ranges from what a marketer types: "1-7, 8-30, 31-90" or "1-7, 8+" (an open last
    range). Each range is whole days since the start, the first day after the start being 1;
    ranges must go up and not overlap."""
    parts = [p.strip() for p in re.split(r"[,;\n]", text or "") if p.strip()]
    if not parts:
        raise InputError("Enter at least one range of days, such as 1-7, 8-30, 31-90.")
    if len(parts) > MAX_BRACKETS:
        raise InputError(f"At most {MAX_BRACKETS} ranges of days; you entered {len(parts)}.")
    out: list[tuple[int, int | None]] = []
    for part in parts:
        text_part = re.sub(r"^days?\s*", "", part, flags=re.IGNORECASE)
        m = re.fullmatch(
            r"(\d+)\s*(?:(?:-|–|—|to)\s*(\d+)|(\+|or later|or more))?",
            text_part,
            flags=re.IGNORECASE,
        )
        if not m:
            raise InputError(
                f"Cannot read the range {part!r}: write ranges of days like 1-7, 8-30, 31-90, "
                "or 91+ for 'day 91 or later'."
            )
        lo = int(m.group(1))
        hi = None if m.group(3) else int(m.group(2) or lo)
        if hi is not None and hi < lo:
            raise InputError(f"The range {part!r} ends before it starts: write it as {hi}-{lo}.")
        if out and (out[-1][1] is None or lo <= out[-1][1]):
            raise InputError(
                f"The range {part!r} overlaps the one before it: ranges must go up without "
                "overlapping, such as 1-7, 8-30, 31-90."
            )
        out.append((lo, hi))
    return tuple(out)


def bracket_label(lo: int, hi: int | None) -> str:
    """ "days 1–7", "day 0", "days 91+"."""
    if hi is None:
        return f"days {lo}+"
    return f"day {lo}" if lo == hi else f"days {lo}–{hi}"


def event_types(con: duckdb.DuckDBPyConnection, events: EventsSource) -> list[str]:
    """The event types of the ``event`` column, most frequent first ([] without one)."""
    with events_source(con, events) as ref:
        if "event" not in columns_of(con, ref):
            return []
        rows = con.execute(
            f"SELECT CAST(event AS VARCHAR) AS e, count(*) AS n FROM {ref} "  # noqa: S608
            "WHERE event IS NOT NULL AND user_id IS NOT NULL AND ts IS NOT NULL "
            "GROUP BY e ORDER BY n DESC, e LIMIT $n",
            {"n": MAX_EVENT_TYPES},
        ).fetchall()
    return [str(r[0]) for r in rows]


# -- groups by a user property --------------------------------------------------------------


def property_options(con: duckdb.DuckDBPyConnection, events: EventsSource) -> list[str]:
    """Breakdowns by a property of each user's start: their acquisition period, and the first
    value of ``text`` (the first product bought, the first review) and of ``country`` when the
    events have them."""
    with events_source(con, events) as ref:
        cols = columns_of(con, ref)
    firsts = [c for c in ("text", "country", "Country", "category") if c in cols]
    return [ACQUISITION] + [FIRST_PREFIX + c for c in firsts]


def property_groups(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    prop: str,
    *,
    period: str = "month",
    top_n: int = DEFAULT_TOP_N,
) -> pd.DataFrame:
    """Each user's group by a property of their first event, as ``user_id, group`` (ordered).

    ``acquisition``: the period of the first event (each cohort its own group, oldest first);
    ``first:<column>``: the column's value on the user's first event (ties in time: the
    alphabetically first value), the ``top_n`` values with most users, the rest "Other", users
    without a value "(missing)".
    """
    with events_source(con, events) as ref:
        cols = columns_of(con, ref)
        if prop == ACQUISITION:
            grid = period_grid(con, events, period)
            index = period_index_sql(grid.period, "first_ts")
            frame = con.execute(
                f"""
                SELECT user_id, {index} AS t FROM (
                    SELECT CAST(user_id AS VARCHAR) AS user_id, min(CAST(ts AS TIMESTAMP))
                        AS first_ts
                    FROM {ref} WHERE user_id IS NOT NULL AND ts IS NOT NULL GROUP BY 1
                ) ORDER BY user_id
                """,  # noqa: S608 -- fixed fragments and quoted identifiers only
                {"origin": grid.origin.to_pydatetime()},
            ).df()
            ts = sorted(frame["t"].unique().tolist())
            labels = {t: f"Acquired {grid.label(int(t))}" for t in ts}
            return _ordered(
                pd.DataFrame({"user_id": frame["user_id"], "group": frame["t"].map(labels)}),
                [labels[t] for t in ts],
            )
        column = prop.removeprefix(FIRST_PREFIX)
        if not prop.startswith(FIRST_PREFIX) or column not in cols or column in ("user_id", "ts"):
            raise InputError(
                f"Cannot group users by {prop!r}: use 'acquisition' or 'first:<column>' with a "
                f"column of the events ({', '.join(c for c in cols if c not in ('user_id', 'ts'))})."
            )
        col = quote_ident(column)
        frame = con.execute(
            f"""
            SELECT CAST(user_id AS VARCHAR) AS user_id,
                   arg_min(CAST({col} AS VARCHAR), (CAST(ts AS TIMESTAMP),
                           coalesce(CAST({col} AS VARCHAR), chr(1114111)))) AS value
            FROM {ref} WHERE user_id IS NOT NULL AND ts IS NOT NULL
            GROUP BY 1 ORDER BY 1
            """  # noqa: S608 -- quoted identifiers only
        ).df()
    value = frame["value"].fillna(MISSING).astype(str)
    counts = value[value != MISSING].value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    top = list(counts.index[:top_n])
    group = value.where(value.isin(top) | (value == MISSING), OTHER)
    return _ordered(
        pd.DataFrame({"user_id": frame["user_id"], "group": group}), top + [OTHER, MISSING]
    )


def property_word(prop: str) -> str:
    """How a property breakdown is named: "acquisition period", "first text"."""
    if prop == ACQUISITION:
        return "acquisition period"
    return f"first {prop.removeprefix(FIRST_PREFIX)}"


# -- the matrix ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionMatrix:
    """Retention cells of one definition, per group and cohort.

    ``cells`` has one row per (``group``, ``cohort_t``, ``column``) with ``cohort`` (the
    cohort's start), ``users`` (the cohort's size), ``observed`` (users the data followed into
    that column), ``complete`` (users followed through all of it), ``returned`` (users counted
    as retained), ``returned_complete`` (the same among the ``complete`` users), ``status``
    (``complete`` / ``incomplete`` / ``unobserved``) and, in periods, ``revenue`` (of the return
    events in that period), ``revenue0`` (the cohort's period-0 revenue) and ``cum_revenue``
    (revenue from period 0 through this one). ``columns`` names the columns (periods since the
    start, or day ranges).
    """

    grid: PeriodGrid
    definition: Definition
    mode: str
    columns: tuple[str, ...]
    groups: tuple[str, ...]
    cells: pd.DataFrame
    brackets: tuple[tuple[int, int | None], ...] = field(default=())

    @property
    def period(self) -> str:
        return self.grid.period

    def sizes(self, group: str | None = None) -> pd.Series:
        """Users per cohort (all groups, or one), indexed by cohort start."""
        cells = self._of(group)
        first = cells[cells["column"] == 0]
        return first.groupby("cohort")["users"].sum().astype("int64").rename("users")

    def table(self, group: str | None = None, measure: str = "percent") -> pd.DataFrame:
        """The cohort × column table (``percent``: share of the cohort's users followed there;
        ``count``: users retained), NaN where the data has not reached."""
        cells = self._of(group)
        agg = cells.groupby(["cohort", "column"])[["returned", "observed"]].sum()
        if measure == "count":
            values = agg["returned"].astype(float)
        else:
            values = agg["returned"] / agg["observed"].where(agg["observed"] > 0)
        wide = values.unstack("column").reindex(columns=range(len(self.columns)))
        seen = agg["observed"].unstack("column").reindex(columns=range(len(self.columns)))
        return wide.where(seen > 0)

    def status(self, group: str | None = None) -> pd.DataFrame:
        """Each cell's status (``complete``/``incomplete``/``unobserved``), as :meth:`table`."""
        cells = self._of(group)
        agg = cells.groupby(["cohort", "column"])[["observed", "complete", "users"]].sum()
        status = np.where(
            agg["observed"] == 0,
            UNOBSERVED,
            np.where(agg["complete"] >= agg["users"], COMPLETE, INCOMPLETE),
        )
        wide = pd.Series(status, index=agg.index).unstack("column")
        return wide.reindex(columns=range(len(self.columns))).fillna(UNOBSERVED)

    def curves(self, measure: str = "percent", *, average: bool = True) -> pd.DataFrame:
        """The line chart's data: one row per (``line``, ``column``) with ``value``, ``users``
        (the users it rests on) and ``incomplete`` (True where no complete cell exists and the
        value rests on cells not yet fully observed). Lines: each group, then
        :data:`AVERAGE` over all users (:data:`TOTAL` when counting users; with ``average``,
        left out with one group only).

        Measures: ``percent`` / ``count`` (users retained), ``revenue_retention`` (revenue in
        the period as a share of the same cohorts' period-0 revenue), ``ltv`` (cumulative
        revenue per user)."""
        if measure not in _MEASURES:
            raise InputError(
                f"The 'measure' parameter must be one of {', '.join(MEASURES)}. Got {measure!r}."
            )
        if measure in _COHORT_MEASURES and "revenue" not in self.cells:
            raise InputError("Revenue needs retention counted in periods, not in day ranges.")
        total = TOTAL if measure == "count" else AVERAGE
        frames = [_points(self.cells, measure)]
        if average and len(self.groups) > 1:
            frames.append(_points(self.cells.assign(group=total), measure))
        out = pd.concat(frames, ignore_index=True)
        order = [*self.groups, total]
        out["line"] = pd.Categorical(out["line"], categories=order, ordered=True)
        out = out.sort_values(["line", "column"]).reset_index(drop=True)
        out["line"] = out["line"].astype(str)
        return out

    def _of(self, group: str | None) -> pd.DataFrame:
        if group is None or group == ALL_USERS:
            return self.cells
        if group not in self.groups:
            raise InputError(f"There is no group {group!r}. Groups: {', '.join(self.groups)}.")
        return self.cells[self.cells["group"] == group]


def _points(cells: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The points of each group's line: over the users (percent, count) or the cohorts
    (revenue) followed through the whole column; where there are none, marked incomplete, over
    those followed into it."""
    key = ["group", "column"]
    if measure in _COHORT_MEASURES:
        num, den = _MEASURES[measure]
        cols = list(dict.fromkeys([num, den, "users"]))
        seen = cells[cells["observed"] > 0].groupby(key)[cols].sum()
        done = cells[cells["status"] == COMPLETE].groupby(key)[cols].sum()
        agg = seen.astype(float)
        agg.loc[done.index] = done.astype(float)
        incomplete = ~agg.index.isin(done.index)
        top, bottom, users = agg[num].to_numpy(), agg[den].to_numpy(), agg["users"].to_numpy()
    else:
        cols = ["returned_complete", "complete", "returned", "observed"]
        agg = cells.groupby(key)[cols].sum()
        incomplete = (agg["complete"] == 0).to_numpy()
        top = np.where(incomplete, agg["returned"], agg["returned_complete"]).astype(float)
        bottom = np.where(incomplete, agg["observed"], agg["complete"]).astype(float)
        users = bottom
    with np.errstate(divide="ignore", invalid="ignore"):
        value = top if measure == "count" else np.where(bottom > 0, top / bottom, np.nan)
    out = pd.DataFrame(
        {
            "line": agg.index.get_level_values("group").astype(str),
            "column": agg.index.get_level_values("column").astype("int64"),
            "value": value,
            "users": users.astype("int64"),
            "incomplete": incomplete,
        }
    )
    return out[out["users"] > 0]


# measure -> (numerator, denominator) columns of the cells
_MEASURES: dict[str, tuple[str, str]] = {
    "percent": ("returned", "observed"),
    "count": ("returned", "observed"),
    "revenue_retention": ("revenue", "revenue0"),
    "ltv": ("cum_revenue", "users"),
}
#: Measures averaged over whole cohorts (complete cells), not users.
_COHORT_MEASURES = ("revenue_retention", "ltv")
MEASURES: tuple[str, ...] = tuple(_MEASURES)


def _start_sql(con: duckdb.DuckDBPyConnection, ref: str, definition: Definition) -> tuple:
    """The events (with ``event`` as text when present) and each user's start, as SQL text with
    its bound parameters."""
    cols = columns_of(con, ref)
    has_event = "event" in cols
    if (definition.start_event or definition.return_event) and not has_event:
        raise InputError(
            "Start and return events need an event-type column (purchase, review, ...): this "
            "dataset has none, so retention counts any event."
        )
    # Exact decimal sums: summing doubles in parallel threads differs in the last bits from run
    # to run, and the report and summary.json must be the same for the same input and seed.
    amount = (
        "CAST(amount AS DECIMAL(38, 6))" if "amount" in cols else "CAST(NULL AS DECIMAL(38, 6))"
    )
    event = "CAST(event AS VARCHAR)" if has_event else "CAST(NULL AS VARCHAR)"
    ev = (
        f"SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(ts AS TIMESTAMP) AS ts, "  # noqa: S608
        f"coalesce({amount}, 0) AS amount, {event} AS event FROM {ref} "
        "WHERE user_id IS NOT NULL AND ts IS NOT NULL"
    )
    params: dict[str, object] = {}
    start_where, ret_where, range_where = "", "", []
    if definition.start_event:
        start_where, params["start_event"] = "WHERE event = $start_event", definition.start_event
    if definition.return_event:
        ret_where, params["return_event"] = "AND e.event = $return_event", definition.return_event
    if definition.start is not None:
        range_where.append("start_ts >= CAST($from_day AS TIMESTAMP)")
        params["from_day"] = pd.Timestamp(definition.start).to_pydatetime()
    if definition.end is not None:
        range_where.append("start_ts < CAST($to_day AS TIMESTAMP) + INTERVAL 1 DAY")
        params["to_day"] = pd.Timestamp(definition.end).to_pydatetime()
    where = ("WHERE " + " AND ".join(range_where)) if range_where else ""
    starts = (
        f"SELECT * FROM (SELECT user_id, min(ts) AS start_ts FROM ev {start_where} "  # noqa: S608
        f"GROUP BY user_id) {where}"
    )
    return ev, starts, ret_where, params


# One query per matrix: the cohorts' sizes (part 0) and the returns (part 1; part 2: users by
# their last period, for "then or later"), so the starts are computed once.
_SIZES_SQL = """
    SELECT 0 AS part, grp, cohort_t, start_day, 0 AS column, count(*) AS n, 0.0 AS revenue
    FROM st GROUP BY ALL
"""
_PERIODS_SQL = """
    , per AS MATERIALIZED (
        SELECT user_id, grp, cohort_t, k, sum(amount) AS revenue FROM ret GROUP BY ALL
    )
    {sizes}
    UNION ALL
    SELECT 1, grp, cohort_t, -1, k, count(*), sum(revenue) FROM per GROUP BY ALL
"""
_LAST_SQL = """
    UNION ALL
    SELECT 2, grp, cohort_t, -1, k, count(*), 0.0
    FROM (SELECT grp, cohort_t, max(k) AS k FROM per GROUP BY user_id, grp, cohort_t)
    GROUP BY ALL
"""
_BRACKETS_SQL = """
    {sizes}
    UNION ALL
    SELECT 1, grp, cohort_t, start_day, i, count(*), 0.0
    FROM (SELECT DISTINCT r.user_id, r.grp, r.cohort_t, r.start_day, b.i
          FROM ret r JOIN {brackets} b ON r.d BETWEEN b.lo AND b.hi)
    GROUP BY ALL
"""


def _groups_join(con: duckdb.DuckDBPyConnection, groups: pd.DataFrame | None) -> tuple[str, str]:
    """A join adding ``grp`` to the starts (all users one group without ``groups``)."""
    if groups is None:
        return "", f"'{ALL_USERS}'"
    name = f"_groups_{uuid.uuid4().hex}"
    frame = pd.DataFrame(
        {"user_id": groups["user_id"].astype(str), "grp": groups["group"].astype(str)}
    )
    con.register(name, frame)
    return name, "g.grp"


def _base_sql(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    definition: Definition,
    grid: PeriodGrid,
    groups: pd.DataFrame | None,
) -> tuple[str, dict[str, object], str]:
    """The common head of every matrix query, and of the users of one of its cells: ``st``,
    each user's start (``user_id, start_ts, grp, cohort_t, start_day``) and ``ret``, each return
    event (``user_id, grp, cohort_t, start_day, k`` periods and ``d`` days since the start,
    ``amount``). Returns the SQL, its bound parameters and the registered groups view ("" when
    none; the caller unregisters it)."""
    ev, starts, ret_where, params = _start_sql(con, ref, definition)
    view, grp = _groups_join(con, groups)
    join = f"JOIN {quote_ident(view)} g USING (user_id)" if view else ""
    params["origin"] = grid.origin.to_pydatetime()
    index = period_index_sql(grid.period, "{col}")
    base = f"""
        WITH ev AS ({ev}),
        st AS MATERIALIZED (
            SELECT s.user_id, s.start_ts, {grp} AS grp,
                   {index.format(col="s.start_ts")} AS cohort_t,
                   date_diff('day', CAST($origin AS TIMESTAMP),
                             date_trunc('day', s.start_ts)) AS start_day
            FROM ({starts}) s {join}
        ),
        ret AS (
            SELECT s.user_id, s.grp, s.cohort_t, s.start_day,
                   {index.format(col="e.ts")} - s.cohort_t AS k,
                   date_diff('day', date_trunc('day', s.start_ts),
                             date_trunc('day', e.ts)) AS d,
                   e.amount
            FROM ev e JOIN st s USING (user_id)
            WHERE e.ts >= s.start_ts {ret_where}
        )
    """  # noqa: S608 -- fixed fragments and quoted identifiers only; values bound
    return base, params, view


def retention_matrix(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    mode: str = "classic",
    definition: Definition | None = None,
    brackets: Sequence[tuple[int, int | None]] = DEFAULT_BRACKETS,
    groups: pd.DataFrame | None = None,
    grid: PeriodGrid | None = None,
) -> RetentionMatrix:
    """Retention cells of ``definition`` per group of ``groups`` (``user_id, group``, e.g.
    :func:`~retention.cohorts.user_groups`; users without a group are left out; all users one
    group when ``None``) and cohort, counted in periods (``classic``/``unbounded``) or in day
    ``brackets``. ``grid``: the events' period grid when the caller has it."""
    if mode not in MATRIX_MODES:
        raise InputError(
            f"The 'mode' parameter must be one of {', '.join(MATRIX_MODES)}. Got {mode!r}."
        )
    definition = definition or Definition()
    grid = grid or period_grid(con, events, period)
    brackets = tuple(brackets)
    if mode == "brackets" and not brackets:
        raise InputError("Bracketed retention needs at least one range of days.")
    with events_source(con, events) as ref:
        base, params, view = _base_sql(con, ref, definition, grid, groups)
        bview = f"_brackets_{uuid.uuid4().hex}"
        if mode == "brackets":
            his = [np.iinfo(np.int32).max if b[1] is None else b[1] for b in brackets]
            frame = pd.DataFrame({"i": range(len(brackets)), "lo": [b[0] for b in brackets]})
            con.register(bview, frame.assign(hi=his))
            tail = _BRACKETS_SQL.format(sizes=_SIZES_SQL, brackets=quote_ident(bview))
        else:
            tail = _PERIODS_SQL.format(sizes=_SIZES_SQL)
            tail += _LAST_SQL if mode == "unbounded" else ""
        try:
            parts = con.execute(base + tail, params).df()
        finally:
            for name in (view, bview if mode == "brackets" else None):
                if name:
                    con.unregister(name)
    sizes = parts[parts["part"] == 0].rename(columns={"n": "users"})
    sizes = sizes[["grp", "cohort_t", "start_day", "users"]]
    long = parts[parts["part"] == 1].rename(columns={"n": "returned"})
    if mode == "brackets":
        long = long[["grp", "cohort_t", "start_day", "column", "returned"]]
    else:
        last = parts[parts["part"] == 2].rename(columns={"n": "last"})
        long = long[["grp", "cohort_t", "column", "returned", "revenue"]].merge(
            last[["grp", "cohort_t", "column", "last"]],
            on=["grp", "cohort_t", "column"],
            how="left",
        )
    order = _group_order(groups, sizes["grp"])
    if mode == "brackets":
        cells = _bracket_cells(sizes, long, grid, brackets)
        columns = tuple(bracket_label(lo, hi) for lo, hi in brackets)
    else:
        cells = _period_cells(sizes, long, grid, mode)
        columns = tuple(str(k) for k in range(grid.n_periods))
    cells = cells.rename(columns={"grp": "group"})
    starts = {t: grid.start_of(int(t)) for t in cells["cohort_t"].unique()}
    cells.insert(2, "cohort", cells["cohort_t"].map(starts))
    return RetentionMatrix(
        grid=grid,
        definition=definition,
        mode=mode,
        columns=columns,
        groups=tuple(order),
        cells=cells.reset_index(drop=True),
        brackets=brackets if mode == "brackets" else (),
    )


#: The users of one cell (after :func:`_base_sql`'s head; bound: cohort_t, grp (NULL: all
#: groups), column, lo, hi), per mode.
_CELL_SQL = {
    "classic": """
        SELECT DISTINCT user_id FROM ret
        WHERE cohort_t = $cohort_t AND (CAST($grp AS VARCHAR) IS NULL OR grp = $grp)
          AND k = $column
        ORDER BY user_id
    """,
    "unbounded": """
        SELECT user_id FROM ret
        WHERE cohort_t = $cohort_t AND (CAST($grp AS VARCHAR) IS NULL OR grp = $grp)
        GROUP BY user_id HAVING max(k) >= $column
        ORDER BY user_id
    """,
    "brackets": """
        SELECT DISTINCT user_id FROM ret
        WHERE cohort_t = $cohort_t AND (CAST($grp AS VARCHAR) IS NULL OR grp = $grp)
          AND d BETWEEN $lo AND $hi
        ORDER BY user_id
    """,
}


def cell_users(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    cohort: pd.Timestamp | date | str,
    column: int,
    *,
    period: str = "auto",
    mode: str = "classic",
    definition: Definition | None = None,
    brackets: Sequence[tuple[int, int | None]] = DEFAULT_BRACKETS,
    groups: pd.DataFrame | None = None,
    group: str | None = None,
    grid: PeriodGrid | None = None,
) -> list[str]:
    """The ids (sorted) of the users :func:`retention_matrix` counts as retained in one cell:
    the cohort starting on ``cohort`` (the start of its period), column ``column`` (periods
    since the start, or the index of a day range), of ``group`` (all groups when ``None``).
    The same start and return events, dates, groups and rules as the matrix, from the same SQL
    head: in that period (``classic``), in it or any later one (``unbounded``: the user's last
    return is there or later), or on a day inside the range (``brackets``)."""
    if mode not in MATRIX_MODES:
        raise InputError(
            f"The 'mode' parameter must be one of {', '.join(MATRIX_MODES)}. Got {mode!r}."
        )
    definition = definition or Definition()
    grid = grid or period_grid(con, events, period)
    start = pd.Timestamp(cohort)
    cohort_t = next((t for t in range(grid.n_periods) if grid.start_of(t) == start), None)
    if cohort_t is None:
        raise InputError(
            f"There is no {grid.period} starting on {start:%Y-%m-%d} in this data: pick a cohort "
            "of the table shown."
        )
    brackets = tuple(brackets)
    width = len(brackets) if mode == "brackets" else grid.last_t - cohort_t + 1
    if not 0 <= int(column) < width:
        raise InputError(
            f"The cohort of {start:%Y-%m-%d} has no column {column}: pick a cell of the table "
            "shown."
        )
    with events_source(con, events) as ref:
        base, params, view = _base_sql(con, ref, definition, grid, groups)
        one = group is not None and group != ALL_USERS and groups is not None
        params.update(cohort_t=int(cohort_t), grp=str(group) if one else None)
        if mode == "brackets":
            lo, hi = brackets[int(column)]
            params.update(lo=int(lo), hi=int(np.iinfo(np.int32).max if hi is None else hi))
        else:
            params["column"] = int(column)
        tail = _CELL_SQL[mode]
        try:
            rows = con.execute(base + tail, params).fetchall()
        finally:
            if view:
                con.unregister(view)
    return [str(r[0]) for r in rows]


def _group_order(groups: pd.DataFrame | None, present: pd.Series) -> list[str]:
    have = set(present.astype(str))
    if groups is None:
        return [ALL_USERS] if have else []
    col = groups["group"]
    order = (
        [str(c) for c in col.cat.categories]
        if isinstance(col.dtype, pd.CategoricalDtype)
        else sorted(col.astype(str).unique())
    )
    return [g for g in order if g in have]


def _last_day(grid: PeriodGrid) -> int:
    """The data's last day, as days since the grid's origin."""
    last = grid.last_ts if grid.last_ts is not None else grid.start_of(grid.last_t + 1)
    return int((pd.Timestamp(last).normalize() - grid.origin.normalize()).days)


def _period_cells(
    sizes: pd.DataFrame, long: pd.DataFrame, grid: PeriodGrid, mode: str
) -> pd.DataFrame:
    """Cells per (group, cohort, k) for k = 0 .. T - cohort; the last period incomplete when the
    data ends inside it."""
    per_cohort = sizes.groupby(["grp", "cohort_t"], as_index=False)["users"].sum()
    n = (grid.last_t - per_cohort["cohort_t"] + 1).to_numpy()
    cells = per_cohort.loc[per_cohort.index.repeat(n)].reset_index(drop=True)
    cells["column"] = np.concatenate([np.arange(m) for m in n]) if len(n) else []
    cells["column"] = cells["column"].astype("int64")
    long = long.astype({"cohort_t": "int64", "column": "int64"})
    cells = cells.merge(long, on=["grp", "cohort_t", "column"], how="left")
    cells[["returned", "last", "revenue"]] = cells[["returned", "last", "revenue"]].fillna(0)
    if mode == "unbounded":  # returned in k or later = users whose last return is at k or later
        cells = cells.sort_values(["grp", "cohort_t", "column"])
        cells["returned"] = cells.iloc[::-1].groupby(["grp", "cohort_t"])["last"].cumsum()
    cells["returned"] = cells["returned"].astype("int64")
    at_end = (cells["cohort_t"] + cells["column"]) == grid.last_t
    partial = at_end & grid.ends_mid_period
    cells["observed"] = cells["users"]
    cells["complete"] = np.where(partial, 0, cells["users"])
    cells["returned_complete"] = np.where(partial, 0, cells["returned"])
    cells["status"] = np.where(partial, INCOMPLETE, COMPLETE)
    cells = cells.sort_values(["grp", "cohort_t", "column"]).reset_index(drop=True)
    key = ["grp", "cohort_t"]
    cells["revenue0"] = cells.groupby(key)["revenue"].transform("first")
    cells["cum_revenue"] = cells.groupby(key)["revenue"].cumsum()
    return cells.drop(columns=["last"])[
        [
            "grp", "cohort_t", "column", "users", "observed", "complete", "returned",
            "returned_complete", "status", "revenue", "revenue0", "cum_revenue",
        ]
    ]  # fmt: skip


def _bracket_cells(
    sizes: pd.DataFrame,
    long: pd.DataFrame,
    grid: PeriodGrid,
    brackets: tuple[tuple[int, int | None], ...],
) -> pd.DataFrame:
    """Cells per (group, cohort, day range): a user is observed in a range when the data runs
    to its first day, complete when it runs to its last (an open range: to its first)."""
    last_day = _last_day(grid)
    follow = last_day - sizes["start_day"].to_numpy()  # days each start day was followed
    frames = []
    for i, (lo, hi) in enumerate(brackets):
        part = sizes.copy()
        part["column"] = i
        observed = follow >= lo
        complete = follow >= (lo if hi is None else hi)
        part["observed"] = np.where(observed, part["users"], 0)
        part["complete"] = np.where(complete, part["users"], 0)
        part["is_complete"] = complete
        frames.append(part)
    cells = pd.concat(frames, ignore_index=True)
    long = long.astype({"cohort_t": "int64", "start_day": "int64", "column": "int64"})
    cells = cells.merge(long, on=["grp", "cohort_t", "start_day", "column"], how="left")
    cells["returned"] = cells["returned"].fillna(0).astype("int64")
    cells["returned_complete"] = np.where(cells["is_complete"], cells["returned"], 0)
    by = ["grp", "cohort_t", "column"]
    cells = cells.groupby(by, as_index=False)[
        ["users", "observed", "complete", "returned", "returned_complete"]
    ].sum()
    cells["status"] = np.where(
        cells["observed"] == 0,
        UNOBSERVED,
        np.where(cells["complete"] >= cells["users"], COMPLETE, INCOMPLETE),
    )
    return cells.sort_values(by).reset_index(drop=True)


# -- by segment, for the report and summary.json ---------------------------------------------


def segment_matrix(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    assignments: pd.DataFrame,
    *,
    period: str = "auto",
    definition: Definition | None = None,
) -> RetentionMatrix:
    """N-period retention (with revenue) per segment: groups are the segment ids as text
    ("0", "1", ...), in id order; users without a segment are left out."""
    seg = assignments.assign(user_id=assignments["user_id"].astype(str))
    seg = seg.drop_duplicates("user_id")
    ids = sorted({int(s) for s in seg["segment"]}, key=lambda s: (s < 0, s))
    groups = pd.DataFrame(
        {
            "user_id": seg["user_id"],
            "group": pd.Categorical(
                seg["segment"].astype(int).astype(str), categories=[str(s) for s in ids]
            ),
        }
    )
    return retention_matrix(con, events, period=period, definition=definition, groups=groups)


def analyses_summary(matrix: RetentionMatrix) -> dict[str, object]:
    """The retention analyses as data (``summary.json``'s ``retention.analyses``): per group
    (and ``"all"``), N-period retention, revenue retention and revenue per user (LTV) at
    periods 0, 1, 2, ... (``null`` where the data has not reached), and from which period on the
    values are not complete yet (``incomplete_from``; ``null`` when all are)."""

    def lines(measure: str) -> tuple[dict[str, list], dict[str, int | None]]:
        curves = matrix.curves(measure)
        values: dict[str, list] = {}
        first_incomplete: dict[str, int | None] = {}
        for line, part in curves.groupby("line", sort=False):
            key = "all" if line in (AVERAGE, TOTAL) else str(line)
            series = part.set_index("column")["value"].reindex(range(len(matrix.columns)))
            last = series.last_valid_index()
            series = series.loc[: last if last is not None else -1]
            values[key] = [None if pd.isna(v) else round(float(v), 6) for v in series]
            late = part.loc[part["incomplete"], "column"]
            first_incomplete[key] = int(late.min()) if len(late) else None
        if len(matrix.groups) == 1:  # one group: it is everyone
            only = str(matrix.groups[0])
            values.setdefault("all", values.get(only, []))
            first_incomplete.setdefault("all", first_incomplete.get(only))
        return values, first_incomplete

    retention, incomplete = lines("percent")
    users = matrix.cells[matrix.cells["column"] == 0].groupby("group")["users"].sum()
    return {
        "definition": matrix.definition.describe(),
        "period": matrix.period,
        "mode": matrix.mode,
        "retention": retention,
        "revenue_retention": lines("revenue_retention")[0],
        "ltv": lines("ltv")[0],
        "incomplete_from": incomplete,
        "users": {str(g): int(n) for g, n in users.items()} | {"all": int(users.sum())},
    }

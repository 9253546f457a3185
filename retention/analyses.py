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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from retention import user_pass
from retention.cohorts import ALL_USERS, DEFAULT_TOP_N, MISSING, OTHER
from retention.compact import PROPERTY_COLUMNS, CompactEvents, compact_events, day_number
from retention.errors import InputError
from retention.periods import (
    EventsSource,
    PeriodGrid,
    columns_of,
    events_source,
    period_grid,
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
    column = prop.removeprefix(FIRST_PREFIX)
    if prop != ACQUISITION and (
        not prop.startswith(FIRST_PREFIX) or column not in cols or column in ("user_id", "ts")
    ):
        raise InputError(
            f"Cannot group users by {prop!r}: use 'acquisition' or 'first:<column>' with a "
            f"column of the events ({', '.join(c for c in cols if c not in ('user_id', 'ts'))})."
        )
    if prop == ACQUISITION or column in PROPERTY_COLUMNS:  # kept in the compact events
        compact = compact_events(con, events)
        if prop == ACQUISITION:
            grid = period_grid(con, events, period)
            lookup, first_day = _period_lookup(compact, grid)
            firsts = _memo(compact, ("first of user",), lambda: np.flatnonzero(_runs(compact.uid)))
            t = lookup[compact.day[firsts].astype(np.int64) - first_day]
            ts, codes = np.unique(t, return_inverse=True)
            labels = [f"Acquired {grid.label(int(x))}" for x in ts]
            group = pd.Categorical.from_codes(codes, categories=labels, ordered=True)
            return pd.DataFrame({"user_id": compact.user_ids[compact.uid[firsts]], "group": group})
        frame = pd.DataFrame({"user_id": compact.user_ids, "value": compact.firsts[column]})
    else:
        with events_source(con, events) as ref:
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
    # The top_n values by users (ties: alphabetical), the rest Other, none (missing).
    codes, uniques = pd.factorize(frame["value"])
    names = np.asarray(uniques, dtype=object).astype(str)
    codes = np.where((codes >= 0) & (names[np.maximum(codes, 0)] == MISSING), -1, codes)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    ranked = sorted(
        (i for i in range(len(names)) if counts[i]), key=lambda i: (-counts[i], names[i])
    )
    top = ranked[:top_n]
    position = np.full(len(names) + 1, len(top), dtype=np.int64)  # Other
    position[top] = np.arange(len(top))
    position[-1] = len(top) + 1  # code -1: missing
    group = position[codes]
    order = [str(names[i]) for i in top] + [OTHER, MISSING]
    present = np.flatnonzero(np.bincount(group, minlength=len(order)))
    renumber = np.full(len(order), -1, dtype=np.int64)
    renumber[present] = np.arange(len(present))
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].to_numpy(),
            "group": pd.Categorical.from_codes(
                renumber[group], categories=[order[i] for i in present], ordered=True
            ),
        }
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


def _check_events(con: duckdb.DuckDBPyConnection, events: EventsSource, definition: Definition):
    """Refuse start or return events on data without an event-type column."""
    if not (definition.start_event or definition.return_event):
        return
    with events_source(con, events) as ref:
        has_event = "event" in columns_of(con, ref)
    if not has_event:
        raise InputError(
            "Start and return events need an event-type column (purchase, review, ...): this "
            "dataset has none, so retention counts any event."
        )


@dataclass(frozen=True, eq=False)
class _Returns:
    """Each user's start and each return event of one definition, over the compact events
    (:mod:`retention.compact`). Per user (``uid``): ``valid`` (started, in the date range and in
    a group), ``grp`` (group code), ``cohort_t``, ``start_day`` (days since 1970) and
    ``start_day0`` (days since the grid's origin). The return events: ``rows`` of the compact
    events (``None``: all of them), sorted by user and time."""

    compact: CompactEvents
    group_names: tuple[str, ...]
    valid: np.ndarray
    grp: np.ndarray
    cohort_t: np.ndarray
    start_day: np.ndarray
    start_day0: np.ndarray
    rows: np.ndarray | None
    n_periods: int
    event_t: np.ndarray  # the period of every compact event
    grid_key: tuple[str, str]

    def take(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per compact event) of the return events."""
        return values if self.rows is None else values[self.rows]

    @property
    def u(self) -> np.ndarray:
        return self.take(self.compact.uid)

    def k(self, u: np.ndarray) -> np.ndarray:
        """Periods since the start period of each return event (``u``: their users)."""
        return self.take(self.event_t) - self.cohort_t[u]

    def d(self, u: np.ndarray) -> np.ndarray:
        """Days since the start day of each return event."""
        return self.take(self.compact.day) - self.start_day[u]


def _period_lookup(compact: CompactEvents, grid: PeriodGrid) -> tuple[np.ndarray, int]:
    """The grid's period index of each day from the data's first day (indexed by day - first),
    and that first day."""
    if not len(compact.day):
        return np.zeros(0, dtype=np.int32), 0
    first, last = int(compact.day.min()), int(compact.day.max())
    days = np.arange(first, last + 1, dtype=np.int64)
    origin = day_number(grid.origin)
    if grid.period == "day":
        t = days - origin
    elif grid.period == "week":  # 1970-01-01 was a Thursday: Monday is weekday (day + 3) % 7
        t = (days - (days + 3) % 7 - origin) // 7
    else:
        month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        t = month - np.datetime64(grid.origin.to_period("M").start_time, "M").astype(np.int64)
    return t.astype(np.int32), first


def _memo(compact: CompactEvents, key: tuple, make):
    """An array derived from the compact events, made once and kept with them."""
    hit = compact.memo.get(key)
    if hit is None:
        hit = compact.memo[key] = make()
    return hit


def _grid_key(grid: PeriodGrid) -> tuple[str, str]:
    return grid.period, str(grid.origin)


def _event_periods(compact: CompactEvents, grid: PeriodGrid) -> np.ndarray:
    """The grid's period of every compact event (kept with the compact events, per grid)."""

    def make() -> np.ndarray:
        lookup, first = _period_lookup(compact, grid)
        return lookup[compact.day - first] if len(lookup) else np.zeros(0, dtype=np.int32)

    return _memo(compact, ("periods", _grid_key(grid)), make)


def _group_codes(compact: CompactEvents, groups: pd.DataFrame) -> tuple[np.ndarray, tuple]:
    """Each user's group code (-1: none) and the groups' names by code."""
    col = groups["group"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy(dtype=np.int64)
        names = tuple(str(c) for c in col.cat.categories)
    else:
        codes, uniques = pd.factorize(col.astype(str), sort=True)
        names = tuple(str(g) for g in uniques)
    ids = groups["user_id"].to_numpy()
    if len(ids) == compact.n_users and (ids == compact.user_ids).all():  # in uid order already
        return codes, names
    at = compact.uids_of(groups["user_id"])
    keep = at >= 0
    grp = np.full(compact.n_users, -1, dtype=np.int64)
    grp[at[keep][::-1]] = codes[keep][::-1]  # a user listed twice: their first group
    return grp, names


def _returns(
    compact: CompactEvents,
    definition: Definition,
    grid: PeriodGrid,
    groups: pd.DataFrame | None,
) -> _Returns:
    c = compact
    if definition.start_event and definition.start_event == definition.return_event:
        # First X -> any X: the same as first event -> any event over the X events alone.
        c = _of_kind(c, c.code(definition.start_event))
        definition = replace(definition, start_event=None, return_event=None)
    n_users = c.n_users
    event_t = _event_periods(c, grid)
    # The start: each user's first event (of the start type); rows are sorted by user and time.
    if definition.start_event:
        code = c.code(definition.start_event)
        rows = np.flatnonzero(c.ev == code) if code is not None else np.zeros(0, np.int64)
        who = c.uid[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = who[1:] != who[:-1]
        started, rows = who[first], rows[first]
    else:
        rows = _memo(c, ("first of user",), lambda: np.flatnonzero(_runs(c.uid)))
        started = c.uid[rows]
    valid = np.zeros(n_users, dtype=bool)
    valid[started] = True
    start_ts = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    start_ts[started] = c.ts[rows]
    start_day = np.zeros(n_users, dtype=np.int32)
    start_day[started] = c.day[rows]
    cohort_t = np.zeros(n_users, dtype=np.int32)
    cohort_t[started] = event_t[rows]
    if definition.start is not None:
        valid &= start_day >= day_number(pd.Timestamp(definition.start))
    if definition.end is not None:
        valid &= start_day <= day_number(pd.Timestamp(definition.end))
    # Groups: a code per user, -1 (left out) for users without one.
    grp = np.zeros(n_users, dtype=np.int64)
    names: tuple[str, ...] = (ALL_USERS,)
    if groups is not None:
        grp, names = _group_codes(c, groups)
        valid &= grp >= 0
    # The returns: events at or after the start (of the return type). Starting at the first
    # event of any type, every event of a user in the cohorts is at or after their start.
    everyone = bool(valid[started].all())  # every user with events here
    if definition.start_event is None and definition.return_event is None and everyone:
        rows = None
    else:
        start_ts[~valid] = np.iinfo(np.int64).max
        keep = valid[c.uid] if definition.start_event is None else c.ts >= start_ts[c.uid]
        if definition.return_event:
            code = c.code(definition.return_event)
            keep &= (c.ev == code) if code is not None else False
        rows = np.flatnonzero(keep)
    return _Returns(
        compact=c,
        group_names=names,
        valid=valid,
        grp=grp,
        cohort_t=cohort_t,
        start_day=start_day,
        start_day0=start_day.astype(np.int64) - day_number(grid.origin),
        rows=rows,
        n_periods=int(event_t.max()) + 1 if len(event_t) else 1,
        event_t=event_t,
        grid_key=_grid_key(grid),
    )


def _of_kind(compact: CompactEvents, code: int | None) -> CompactEvents:
    """The compact events of one event type only (kept with the compact events)."""

    def make() -> CompactEvents:
        rows = np.flatnonzero(compact.ev == code) if code is not None else np.zeros(0, np.int64)
        return CompactEvents(
            user_ids=compact.user_ids,
            kinds=compact.kinds,
            firsts=compact.firsts,
            **{a: getattr(compact, a)[rows] for a in ("uid", "day", "ts", "ev", "amount")},
        )

    return _memo(compact, ("kind", code), make)


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Where a new run of equal ``keys`` starts (the rows are sorted so that equal keys are
    adjacent)."""
    n = len(keys[0])
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for key in keys:
            new[1:] |= key[1:] != key[:-1]
    return new


def _last_of_runs(u: np.ndarray) -> np.ndarray:
    """Where each run of equal ``u`` ends."""
    last = np.zeros(len(u), dtype=bool)
    if len(u):
        last[-1] = True
        last[:-1] = u[1:] != u[:-1]
    return last


def _tally(
    columns: dict[str, np.ndarray], weights: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Rows per distinct combination of ``columns`` (non-negative integers) as ``n``, with the
    sums of ``weights``."""
    weights = weights or {}
    names = list(columns)
    if not len(columns[names[0]]):
        empty = np.zeros(0, dtype=np.int64)
        return pd.DataFrame({**{c: empty for c in names}, "n": empty, **{w: [] for w in weights}})
    sizes = [int(columns[c].max()) + 1 for c in names]
    key = np.zeros(len(columns[names[0]]), dtype=np.int64)
    for c, size in zip(names, sizes, strict=True):
        key = key * size + columns[c]
    return _decode(key, names, sizes, weights)


def _decode(
    key: np.ndarray, names: list[str], sizes: list[int], weights: dict[str, np.ndarray]
) -> pd.DataFrame:
    """:func:`_tally` of keys already combined (``key = (c0 * size1 + c1) * size2 + c2 ...``)."""
    total = int(np.prod(sizes, dtype=np.float64))
    if total <= 20_000_000:
        n = np.bincount(key, minlength=total)
        at = np.flatnonzero(n)
        sums = {w: np.bincount(key, weights=v, minlength=total)[at] for w, v in weights.items()}
        n = n[at]
    else:
        at, inverse = np.unique(key, return_inverse=True)
        n = np.bincount(inverse)
        sums = {w: np.bincount(inverse, weights=v) for w, v in weights.items()}
    out = {}
    for c, size in zip(reversed(names), reversed(sizes), strict=True):
        out[c] = at % size
        at = at // size
    return pd.DataFrame({c: out[c] for c in names} | {"n": n} | sums)


def _matrix_parts(r: _Returns, mode: str, brackets: tuple[tuple[int, int | None], ...]):
    """The cohorts' sizes (``grp, cohort_t, start_day, users``) and the returns: per period
    (``grp, cohort_t, column, returned, revenue, last``: users active in that period, the
    revenue of their return events, users whose last return is in it) or per day range
    (``grp, cohort_t, start_day, column, returned``)."""
    who = np.flatnonzero(r.valid)
    sizes = _tally(
        {"grp": r.grp[who], "cohort_t": r.cohort_t[who], "start_day": r.start_day0[who]}
    ).rename(columns={"n": "users"})
    u = r.u
    if mode == "brackets":
        d = r.d(u)
        top = int(d.max()) + 1 if len(d) else 1
        which = np.full(top, -1, dtype=np.int64)  # days since the start -> its range (-1: none)
        for n, (lo, hi) in enumerate(brackets):
            which[min(lo, top) : top if hi is None else min(hi + 1, top)] = n
        i = which[d]
        inside = i >= 0
        u, i = u[inside], i[inside]
        once = _runs(u, i)  # within a user, days (and so ranges) never go down
        u, i = u[once], i[once]
        long = _tally(
            {"grp": r.grp[u], "cohort_t": r.cohort_t[u], "start_day": r.start_day0[u], "column": i}
        ).rename(columns={"n": "returned"})
        return sizes, long
    # One key per (group, cohort, period since the start) = (group * T + cohort) * T + k, with
    # k = the event's period - cohort: a per-user offset plus the event's period. A user's
    # periods never go down, so a user's events in one period are adjacent.
    n_t = r.n_periods
    event_t = r.take(r.event_t)
    cell = (r.grp * (n_t * n_t) + r.cohort_t * (n_t - 1))[u] + event_t
    if r.rows is None:  # all events: the runs are the same for every view on this grid
        once = _memo(r.compact, ("period runs", r.grid_key), lambda: _runs(u, event_t))
        last = _memo(r.compact, ("last of user",), lambda: _last_of_runs(u))
    else:
        once, last = _runs(u * n_t + event_t), _last_of_runs(u)
    names, dims = ["grp", "cohort_t", "column"], [len(r.group_names), n_t, n_t]
    long = _decode(cell[once], names, dims, {}).rename(columns={"n": "returned"})
    revenue = _decode(cell, names, dims, {"revenue": r.take(r.compact.amount)})
    long = long.merge(revenue.drop(columns="n"), on=names, how="left")
    lasts = _decode(cell[last], names, dims, {}).rename(columns={"n": "last"})
    long = long.merge(lasts, on=names, how="left")
    return sizes, long.fillna({"last": 0})


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
    ``brackets``. ``grid``: the events' period grid when the caller has it.

    Computed over the dataset's compact events (:func:`retention.compact.compact_events`,
    built once per dataset and kept), so each view is a few passes over integer arrays."""
    if mode not in MATRIX_MODES:
        raise InputError(
            f"The 'mode' parameter must be one of {', '.join(MATRIX_MODES)}. Got {mode!r}."
        )
    definition = definition or Definition()
    _check_events(con, events, definition)
    grid = grid or period_grid(con, events, period)
    brackets = tuple(brackets)
    if mode == "brackets" and not brackets:
        raise InputError("Bracketed retention needs at least one range of days.")
    compact = _shared_compact(con, events, grid, mode, definition)
    r = _returns(compact or compact_events(con, events), definition, grid, groups)
    sizes, long = _matrix_parts(r, mode, brackets)
    # Groups stay integer codes through the cells (renumbered in the names' order, so that
    # sorting by code sorts by name) and become names at the end.
    names = np.array(r.group_names, dtype=object)
    by_name = np.argsort(names.astype(str), kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_name] = np.arange(len(names))
    names = names[by_name]
    for frame in (sizes, long):
        frame["grp"] = rank[frame["grp"].to_numpy(dtype=np.int64)]
    order = _group_order(groups, pd.Series(names[np.unique(sizes["grp"].to_numpy())]))
    if mode == "brackets":
        cells = _bracket_cells(sizes, long, grid, brackets)
        columns = tuple(bracket_label(lo, hi) for lo, hi in brackets)
    else:
        cells = _period_cells(sizes, long, grid, mode)
        columns = tuple(str(k) for k in range(grid.n_periods))
    cells["grp"] = names[cells["grp"].to_numpy(dtype=np.int64)] if len(cells) else []
    cells["grp"] = cells["grp"].astype(object)
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


def _shared_compact(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    grid: PeriodGrid,
    mode: str,
    definition: Definition,
) -> CompactEvents | None:
    """The command's shared per-(user, period) pass as compact events
    (:func:`retention.user_pass.as_compact`) where it gives the same cells as the events (the
    default definition, counted in periods); ``None`` otherwise or when nothing is shared."""
    if mode == "brackets" or definition != Definition():
        return None
    facts = user_pass.kept(con, events)
    shared = user_pass.kept_periods(con, events, grid) if facts is not None else None
    return None if facts is None or shared is None else user_pass.as_compact(facts, shared)


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
    The same start and return events, dates, groups and rules as the matrix, from the same
    returns: in that period (``classic``), in it or any later one (``unbounded``: the user's
    last return is there or later), or on a day inside the range (``brackets``)."""
    if mode not in MATRIX_MODES:
        raise InputError(
            f"The 'mode' parameter must be one of {', '.join(MATRIX_MODES)}. Got {mode!r}."
        )
    definition = definition or Definition()
    _check_events(con, events, definition)
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
    compact = compact_events(con, events)
    r = _returns(compact, definition, grid, groups)
    u = r.u
    mine = r.cohort_t[u] == cohort_t
    if group is not None and group != ALL_USERS and groups is not None:
        code = r.group_names.index(str(group)) if str(group) in r.group_names else -1
        mine &= r.grp[u] == code
    if mode == "classic":
        mine &= r.k(u) == int(column)
    elif mode == "unbounded":  # the user's last return is in that period or later
        mine &= _last_of_runs(u) & (r.k(u) >= int(column))
    else:
        lo, hi = brackets[int(column)]
        d = r.d(u)
        mine &= (d >= lo) & (d <= (np.iinfo(np.int64).max if hi is None else hi))
    users = np.unique(u[mine])  # uids follow the ids' order as text
    return [str(x) for x in compact.user_ids[users]]


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

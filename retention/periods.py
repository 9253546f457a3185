"""Periods and engagement stages in SQL: the panel every later step reads (SPEC §3).

Time is cut into periods (``day``, ``week`` starting Monday, ``month``). The global period index
``t`` counts periods from the data's first period (``t = 0``); ``T`` is the data's last period,
which is censored. The **panel** has one row per user and period from the user's first period
``first_t`` to ``T`` inclusive::

    user_id, t, k (= t - first_t), active, recency, stage, revenue, n_events

``recency`` is the number of consecutive inactive periods ending at ``t`` (0 when active) and
``stage`` is ``active`` (r = 0), ``lapsing`` (r = 1), ``at_risk`` (2 <= r < W) or ``churned``
(r >= W) with W = ``churn_after``.

How it stays fast at tens of millions of events: the events are aggregated to one row per active
user-period, and each active row is expanded (``unnest(range(...))``) into the run of periods up to
the user's next active period (or ``T``). Recency is then just the offset inside that run, so no
user × period cross join and no window over the whole panel is ever built. All of it runs inside
DuckDB; :func:`build_panel` returns a pandas frame, or writes a DuckDB table (``out_table``) when
the panel is too big to hold in memory comfortably (e.g. 500k users × 100 weeks). Steps that need
only a little of it read that straight from the runs: :func:`user_stages` (each user's stage
now) and :func:`retention.mdp.summarize_events` (the MDP's counts).

``events`` arguments are either a DuckDB table reference (a plain table name, which is quoted
here, or an already quoted name such as ``Workspace.table(ds, "events")``) or a pandas DataFrame
with the canonical events columns (registered on the connection for the call).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import overload

import duckdb
import numpy as np
import pandas as pd

from retention import user_pass
from retention.errors import InputError
from retention.sql import quote_ident
from retention.words import period_word, period_word_singular

PERIODS: tuple[str, ...] = ("day", "week", "month")
STAGES: tuple[str, ...] = ("active", "lapsing", "at_risk", "churned")
DEFAULT_CHURN_AFTER = 4

# choose_period: the shortest period whose typical gap between a user's active periods is at
# most this many periods (see choose_period's docstring).
MAX_TYPICAL_GAP = 1.5

EventsSource = str | pd.DataFrame

_QUOTED = re.compile(r'^"(?:[^"]|"")+"(?:\."(?:[^"]|"")+")*$')

# Fixed SQL fragments per period. Only these constant strings (chosen from PERIODS, never from
# user text) and quoted identifiers are ever formatted into SQL; all values are bound parameters.
_TRUNC = {
    "day": "date_trunc('day', {col})",
    "week": "date_trunc('week', {col})",
    "month": "date_trunc('month', {col})",
}
# The stage column is a DuckDB ENUM (one byte a row; a pandas categorical on the way out).
_STAGE_TYPE = "ENUM(" + ", ".join(f"'{s}'" for s in STAGES) + ")"
_INDEX = {
    "day": "date_diff('day', {origin}, date_trunc('day', {col}))",
    "week": "date_diff('day', {origin}, date_trunc('week', {col})) // 7",
    "month": "date_diff('month', {origin}, date_trunc('month', {col}))",
}


@dataclass(frozen=True)
class PeriodGrid:
    """The global period grid of an event log: period length, start of ``t = 0``, last ``t``."""

    period: str
    origin: pd.Timestamp
    last_t: int
    #: The data's last event (``None`` when not known): the last period ``T`` is complete only
    #: when the data runs to its last day.
    last_ts: pd.Timestamp | None = None

    @property
    def n_periods(self) -> int:
        """Number of periods from the data's first to its last (``T + 1``)."""
        return self.last_t + 1

    def start_of(self, t: int) -> pd.Timestamp:
        """The first instant of period ``t``."""
        if self.period == "day":
            return self.origin + pd.Timedelta(days=t)
        if self.period == "week":
            return self.origin + pd.Timedelta(weeks=t)
        return self.origin + pd.DateOffset(months=t)

    def label(self, t: int) -> str:
        """A short human label of period ``t`` (``2024-01-01``, ``week of 2024-01-01``, ``2024-01``)."""
        start = self.start_of(t)
        if self.period == "month":
            return start.strftime("%Y-%m")
        if self.period == "week":
            return f"week of {start:%Y-%m-%d}"
        return f"{start:%Y-%m-%d}"

    @property
    def ends_mid_period(self) -> bool:
        """Whether the data ends before the last day of its last period ``T`` (so that period
        holds only part of its time: its shares are lower than they will be)."""
        if self.last_ts is None:
            return False
        last_day = (self.start_of(self.last_t + 1) - pd.Timedelta(days=1)).normalize()
        return pd.Timestamp(self.last_ts).normalize() < last_day


def table_ref(name: str) -> str:
    """A safe SQL reference for a table: kept when already quoted, else quoted as one identifier."""
    if not isinstance(name, str) or not name:
        raise InputError(f"The events table must be a non-empty table name. Got {name!r}.")
    return name if _QUOTED.match(name) else quote_ident(name)


def check_period(period: str) -> str:
    """Validate a period name (not ``auto``)."""
    if period not in PERIODS:
        raise InputError(
            f"The 'period' parameter must be one of {', '.join(PERIODS)} (or 'auto' where "
            f"offered). Got {period!r}."
        )
    return period


def check_churn_after(churn_after: int) -> int:
    """Validate the churn window W (periods of inactivity after which a user counts as churned)."""
    if isinstance(churn_after, bool) or not isinstance(churn_after, int) or churn_after < 2:
        raise InputError(
            "The 'churn_after' parameter must be an int >= 2 (periods of inactivity after which "
            f"a user counts as churned; 1 period is 'lapsing'). Got {churn_after!r}."
        )
    return churn_after


#: Days in one period, to carry a churn window over when the period changes (a month is the mean
#: Gregorian month).
PERIOD_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.2425 / 12}


def convert_churn_after(churn_after: int, from_period: str, to_period: str) -> int:
    """The same churn window, as nearly the same length of time, in another period: 4 months
    are 17 weeks or 122 days (and 17 weeks are 4 months again). Never below 2."""
    return churn_after_in(churn_after * PERIOD_DAYS[check_period(from_period)], to_period)


def churn_after_in(days: float, period: str) -> int:
    """A churn window of ``days`` days in whole periods (nearest; never below 2)."""
    return max(2, round(days / PERIOD_DAYS[check_period(period)]))


@dataclass(frozen=True)
class InactiveRuns:
    """How long users are seen inactive, on a period grid: which churn windows the data can show.

    ``longest`` counts users by their longest run of consecutive inactive periods (the index,
    in periods; 0 for users active every period up to the data's end). A user counts as churned
    under a window ``W`` exactly when that run reaches ``W`` (:func:`retention.cohorts.
    churn_durations`), so :meth:`churners` is how many users any curve can see churning.
    """

    grid: PeriodGrid
    longest: pd.Series

    @property
    def users(self) -> int:
        return int(self.longest.sum())

    @property
    def longest_run(self) -> int:
        """The longest run of inactive periods of any user (0 when none is ever inactive)."""
        return int(self.longest.index.max()) if len(self.longest) else 0

    def churners(self, churn_after: int) -> int:
        """Users seen churning (inactive ``churn_after`` periods in a row) at least once."""
        return int(self.longest[self.longest.index >= churn_after].sum())


def inactive_runs(
    con: duckdb.DuckDBPyConnection, events: EventsSource, period: str = "auto"
) -> InactiveRuns:
    """Each user's longest run of inactive periods, counted per length (see
    :class:`InactiveRuns`): after each active period ``t``, the periods up to the user's next
    active one, or up to the data's last period ``T`` after their last."""
    grid = period_grid(con, events, period)
    with events_source(con, events) as ref:
        index = period_index_sql(grid.period, "ts")
        sql = f"""
            WITH act AS (SELECT DISTINCT user_id, {index} AS t FROM ({clean_events_sql(con, ref)})),
            gaps AS (
                SELECT user_id, coalesce(lead(t) OVER w, $last_t + 1) - t - 1 AS gap
                FROM act WINDOW w AS (PARTITION BY user_id ORDER BY t)
            ),
            per_user AS (SELECT user_id, max(gap) AS longest FROM gaps GROUP BY user_id)
            SELECT CAST(longest AS INTEGER) AS longest, count(*) AS users
            FROM per_user GROUP BY longest ORDER BY longest
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
        params = {"origin": grid.origin.to_pydatetime(), "last_t": grid.last_t}
        rows = con.execute(sql, params).df()
    longest = pd.Series(
        rows["users"].to_numpy(dtype="int64"),
        index=pd.Index(rows["longest"].to_numpy(dtype="int64"), name="periods"),
        name="users",
    )
    return InactiveRuns(grid=grid, longest=longest)


@dataclass(frozen=True)
class ChurnWindowCheck:
    """Whether the data can show a churn window: ``problem`` (refuse it: no curve could show a
    churn), ``caution`` (it can, but few users are seen that long) and a ``suggested`` window the
    data shows well, all in the user's words."""

    churn_after: int
    problem: str | None
    caution: str | None
    suggested: int


#: Above half the data's span, a churn window that fewer than this share of users can be seen
#: reaching is refused (the curves would stay nearly flat); a larger share is a caution.
MIN_SEEN_CHURNING = 0.05


def check_churn_window(runs: InactiveRuns, churn_after: int) -> ChurnWindowCheck:
    """Which churn windows ``runs``' data can show.

    Refused (``problem``): a window as long as the data's span (nobody can be seen inactive
    that long); one that no user ever reaches (nobody churns: every curve stays at 100%); one
    longer than half the span that fewer than :data:`MIN_SEEN_CHURNING` (5%) of the users can
    be seen reaching (only users active early and then gone that long can: the curves stay
    nearly flat, as 12 months on 13 months of data). Cautioned: any other window longer than
    half the span (the curves look flatter than they are). ``suggested``: the default window
    (:data:`DEFAULT_CHURN_AFTER`) or, where the data is short, the longest window within half
    its span that some user reaches.
    """
    check_churn_after(churn_after)
    grid = runs.grid
    n, words, word = grid.n_periods, period_word(grid.period), period_word_singular(grid.period)
    half = max(2, n // 2)
    suggested = max(2, min(DEFAULT_CHURN_AFTER, half, runs.longest_run))
    span = f"The data covers {n:,} {words} ({grid.label(0)} to {grid.label(grid.last_t)})"
    flat = "so nobody would count as churned and every curve would stay at 100%"
    seen = runs.churners(churn_after)
    early = (
        f"only users active in the first {_counted(n - churn_after, word, words)} and then "
        f"gone for {churn_after:,} {words} can be seen churning ({seen:,} of "
        f"{_counted(runs.users, 'user', 'users')}, {seen / max(runs.users, 1):.1%})"
    )
    problem = caution = None
    if runs.longest_run < 2:
        problem = (
            f"No user in this data is ever inactive for 2 {words} in a row, {flat}. Choose a "
            "shorter period, or add data over a longer time."
        )
    elif churn_after >= n:
        problem = (
            f"{span}: nobody can be seen inactive for {churn_after:,} {words} in a row, {flat}. "
            f"Try a churn window of {suggested} {words}."
        )
    elif seen == 0:
        problem = (
            f"No user in this data is inactive for {churn_after:,} {words} in a row (the longest "
            f"gap is {runs.longest_run:,} {words}), {flat}. Try a churn window of {suggested} "
            f"{words}."
        )
    elif churn_after > half and seen < MIN_SEEN_CHURNING * runs.users:
        problem = (
            f"{span}: with a churn window of {churn_after:,} {words}, {early}, so every curve "
            f"would stay nearly flat. Try a churn window of {suggested} {words}."
        )
    elif churn_after > half:
        caution = (
            f"{span}: with a churn window of {churn_after:,} {words}, {early}, so the curves "
            f"look flatter than they are. A window of {suggested} {words} shows more."
        )
    return ChurnWindowCheck(churn_after, problem, caution, suggested)


def _counted(n: int, singular: str, plural: str) -> str:
    return f"{n:,} {singular if n == 1 else plural}"


@contextlib.contextmanager
def events_source(con: duckdb.DuckDBPyConnection, events: EventsSource) -> Iterator[str]:
    """Yield a SQL reference to ``events`` (a table name or a DataFrame registered for the call)
    after checking that it has the ``user_id`` and ``ts`` columns."""
    if isinstance(events, pd.DataFrame):
        name = f"_events_{uuid.uuid4().hex}"
        con.register(name, events)
        try:
            check_event_columns(con, quote_ident(name), "the events frame")
            yield quote_ident(name)
        finally:
            con.unregister(name)
    else:
        ref = table_ref(events)
        check_event_columns(con, ref, f"the events table {ref}")
        yield ref


def columns_of(con: duckdb.DuckDBPyConnection, ref: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table reference."""
    try:
        rel = con.sql(f"SELECT * FROM {ref} LIMIT 0")  # noqa: S608 -- quoted identifier only
    except duckdb.CatalogException as exc:
        raise InputError(f"There is no table {ref} in the workspace database.") from exc
    return dict(zip(rel.columns, map(str, rel.types), strict=True))


def check_event_columns(con: duckdb.DuckDBPyConnection, ref: str, what: str) -> list[str]:
    """The columns of the events table ``ref``; an :class:`InputError` naming ``what`` when it
    lacks ``user_id`` or ``ts`` (every step over events needs both)."""
    cols = columns_of(con, ref)
    missing = [c for c in ("user_id", "ts") if c not in cols]
    if missing:
        raise InputError(
            f"{what.capitalize()} lacks the column(s) {', '.join(missing)}: events need "
            f"'user_id' and 'ts' columns. Columns present: {', '.join(cols) or 'none'}."
        )
    return cols


def clean_events_sql(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    """SELECT of the usable events (user and time present), with ``amount`` NULL when absent."""
    amount = "amount" if "amount" in columns_of(con, ref) else "CAST(NULL AS DOUBLE)"
    return (
        f"SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(ts AS TIMESTAMP) AS ts, "  # noqa: S608
        f"CAST({amount} AS DOUBLE) AS amount FROM {ref} "
        "WHERE user_id IS NOT NULL AND ts IS NOT NULL"
    )


def choose_period(con: duckdb.DuckDBPyConnection, events: EventsSource) -> str:
    """Pick ``day``, ``week`` or ``month`` from the data's inter-event gaps.

    Rule: the shortest period in which returning users typically come back in the very next
    period. For each candidate period, each user with at least two distinct active periods gets
    the median gap (in periods) between their consecutive active periods; if the median of that
    over users is at most :data:`MAX_TYPICAL_GAP` (1.5) periods, that period is chosen. If no
    period qualifies (slow buyers) -> ``month``; with no repeat activity at all -> ``week``.

    Why not a gap in days with fixed cut-offs: users active several days within one week have
    day gaps of 1-3 days that would pull weekly data towards ``day``; counting gaps in periods
    asks the question the stages ask (does the user come back next period?).
    """
    gaps = typical_gaps(con, events)
    if all(g is None for g in gaps.values()):
        return "week"
    for period in PERIODS:
        gap = gaps[period]
        if gap is not None and gap <= MAX_TYPICAL_GAP:
            return period
    return "month"


# Each period's index of a DATE ``d`` for choose_period (fixed strings; Monday-aligned weeks).
_GAP_INDEX = {
    "day": "date_diff('day', DATE '2000-01-03', d)",
    "week": "date_diff('day', DATE '2000-01-03', CAST(date_trunc('week', d) AS DATE)) // 7",
    "month": "date_diff('month', DATE '2000-01-01', CAST(date_trunc('month', d) AS DATE))",
}


#: Users whose gaps decide the automatic period; more users are hash-sampled down to about this.
GAP_SAMPLE_USERS = 100_000


def typical_gaps(con: duckdb.DuckDBPyConnection, events: EventsSource) -> dict[str, float | None]:
    """Per period: the median over users of their median gap (in periods) between consecutive
    active periods; ``None`` when no user is active in two different periods.

    How: DuckDB returns each (sampled) user's distinct active days as one sorted list; the
    periods, gaps and medians are counted in NumPy (:func:`_typical_gap`): a user's median is
    the mean of their two middle gaps, or the middle one. (A per-user ``median`` in DuckDB held
    every gap of every user at once and ran out of its memory cap at 10 million events; the
    window queries that replaced it cost ~2 s per period at 10M.)
    """
    out: dict[str, float | None] = {}
    with events_source(con, events) as ref:
        clean = clean_events_sql(con, ref)
        # Above GAP_SAMPLE_USERS users, a fixed hash-sample of about that many users (a median
        # of medians barely moves; at 50 million events this cut the choice from 34 s to a few).
        users = con.execute(f"SELECT approx_count_distinct(user_id) FROM ({clean})").fetchall()  # noqa: S608
        every = max(1, -(-int(users[0][0] or 0) // GAP_SAMPLE_USERS))
        if every > 1:
            clean = f"SELECT * FROM ({clean}) WHERE hash(user_id) % {every} = 0"  # noqa: S608
        # Issue 19 (store50): each sampled user's distinct active days come back once, as one
        # sorted list per user; the three periods' gaps and medians are counted in NumPy from
        # them (the window functions over every user-period cost ~2 s per period at 10M).
        sql = f"""
            SELECT list(DISTINCT day ORDER BY day) AS days FROM (
                SELECT user_id, date_diff('day', DATE '2000-01-03', CAST(ts AS DATE)) AS day
                FROM ({clean})
            ) GROUP BY user_id
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
        if isinstance(con, duckdb.DuckDBPyConnection):
            lists = con.sql(sql).to_arrow_table().column("days").combine_chunks()
            days = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
            user = np.repeat(np.arange(len(lists)), np.diff(lists.offsets.to_numpy()))
        else:  # another engine's cursor (Spark): the distinct (user, day) rows, sorted
            user, days = _sorted_user_days(con, clean)
        for period in PERIODS:
            out[period] = _typical_gap(user, _gap_periods(days, period))
    return out


def _sorted_user_days(con: duckdb.DuckDBPyConnection, clean: str) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct active days (days since Monday 2000-01-03), sorted by user then
    day, as (user number, day) arrays: the form :func:`typical_gaps` needs, by plain SQL that
    any engine's cursor runs (no list aggregate)."""
    sql = f"""
        SELECT DISTINCT user_id, date_diff('day', DATE '2000-01-03', CAST(ts AS DATE)) AS day
        FROM ({clean}) ORDER BY user_id, day
    """  # noqa: S608 -- fixed fragments and a quoted identifier only
    rows = con.execute(sql).df()
    ids = rows["user_id"].to_numpy()
    user = np.zeros(len(ids), dtype=np.int64)
    if len(ids):
        user[1:] = np.cumsum(ids[1:] != ids[:-1])
    return user, rows["day"].to_numpy(dtype=np.int64)


def _gap_periods(days: np.ndarray, period: str) -> np.ndarray:
    """:data:`_GAP_INDEX` in NumPy: days since Monday 2000-01-03 → that period's index."""
    if period == "day":
        return days
    if period == "week":
        return days // 7  # Monday-aligned weeks: the origin is a Monday
    dates = np.datetime64("2000-01-03", "D") + days
    return dates.astype("datetime64[M]").astype(np.int64) - (2000 - 1970) * 12


def _typical_gap(user: np.ndarray, t: np.ndarray) -> float | None:
    """The median over users of each user's median gap between consecutive distinct periods
    ``t`` (``user``, ``t``: sorted by user, then by ``t``); ``None`` without any gap. A user's
    median is the middle gap, or the mean of the two middle ones, as :func:`typical_gaps`."""
    same_user = user[1:] == user[:-1]
    fresh = np.ones(len(t), dtype=bool)
    fresh[1:] = ~same_user | (t[1:] != t[:-1])  # each user's distinct periods
    user, t = user[fresh], t[fresh]
    has_prev = user[1:] == user[:-1]
    gap_user, gap = user[1:][has_prev], (t[1:] - t[:-1])[has_prev]
    if not len(gap):
        return None
    span = int(gap.max()) + 1
    ordered = np.sort(gap_user.astype(np.int64) * span + gap)  # by user, then by gap
    gap_user, gap = ordered // span, ordered % span
    starts = np.flatnonzero(np.r_[True, gap_user[1:] != gap_user[:-1]])
    total = np.diff(np.r_[starts, len(gap)])
    low = gap[starts + (total + 1) // 2 - 1]
    high = gap[starts + total // 2]
    return float(np.median((low + high) / 2))


def resolve_period(con: duckdb.DuckDBPyConnection, events: EventsSource, period: str) -> str:
    """``period`` itself, or :func:`choose_period`'s pick when it is ``auto``."""
    if period == "auto":
        return choose_period(con, events)
    return check_period(period)


def period_grid(
    con: duckdb.DuckDBPyConnection, events: EventsSource, period: str = "auto"
) -> PeriodGrid:
    """The data's period grid: where ``t = 0`` starts and the last period ``T``."""
    period = resolve_period(con, events, period)
    index = _INDEX[period].format(origin="origin", col="last_ts")
    facts = user_pass.kept(con, events)
    if facts is not None:  # the run's shared per-user pass: the first and last events are there
        with user_pass.registered(con, facts) as f:
            trunc = _TRUNC[period].format(col="min(first_ts)")
            sql = f"""
                WITH b AS (SELECT {trunc} AS origin, max(last_ts) AS last_ts FROM {f})
                SELECT origin, {index}, last_ts FROM b
            """  # noqa: S608 -- fixed fragments and a quoted identifier only
            origin, last_t, last_ts = con.execute(sql).fetchall()[0]
    else:
        with events_source(con, events) as ref:
            trunc = _TRUNC[period].format(col="min(ts)")
            sql = f"""
                WITH b AS (
                    SELECT {trunc} AS origin, max(ts) AS last_ts
                    FROM ({clean_events_sql(con, ref)})
                )
                SELECT origin, {index}, last_ts FROM b
            """  # noqa: S608 -- fixed fragments and a quoted identifier only
            origin, last_t, last_ts = con.execute(sql).fetchall()[0]
    if origin is None:
        raise InputError("The events have no rows with both a user and a time: nothing to analyse.")
    return PeriodGrid(
        period=period,
        origin=pd.Timestamp(origin),
        last_t=int(last_t),
        last_ts=pd.Timestamp(last_ts),
    )


def period_index_sql(period: str, col: str = "ts", origin: str = "$origin") -> str:
    """SQL expression of the global period index of timestamp column ``col`` (a quoted
    identifier or expression) relative to ``origin`` (a bound parameter by default)."""
    return _INDEX[check_period(period)].format(origin=f"CAST({origin} AS TIMESTAMP)", col=col)


def period_of(
    con: duckdb.DuckDBPyConnection,
    table: EventsSource,
    grid: PeriodGrid,
    *,
    ts_column: str = "ts",
) -> pd.DataFrame:
    """Every row of ``table`` (e.g. the campaign log) with its global period index ``t`` (the
    period containing the row's time) and ``phase`` (how far into that period the time falls,
    0 at its start, < 1) added, on the same grid as the events (``grid`` from
    :func:`period_grid`).

    Rows before the data's first period get ``t < 0`` and rows after its last get ``t > T``;
    rows without a time get ``t`` NULL. Which transition a campaign row is credited to is
    :func:`credit_period` of these two columns.
    """
    if isinstance(table, pd.DataFrame):
        name = f"_rows_{uuid.uuid4().hex}"
        con.register(name, table)
        ref = quote_ident(name)
    else:
        name, ref = "", table_ref(table)
    try:
        cols = columns_of(con, ref)
        if ts_column not in cols:
            raise InputError(
                f"The column {ts_column!r} is not in {ref}: cannot place its rows in periods. "
                f"Columns present: {', '.join(cols)}."
            )
        ts = f"CAST({quote_ident(ts_column)} AS TIMESTAMP)"
        index = period_index_sql(grid.period, ts)
        start = _TRUNC[grid.period].format(col=ts)
        end = f"({start} + INTERVAL 1 {grid.period.upper()})"
        phase = f"(epoch_us({ts}) - epoch_us({start})) / (epoch_us({end}) - epoch_us({start}))"
        sql = f"SELECT *, {index} AS t, {phase} AS phase FROM {ref}"  # noqa: S608 -- fixed/quoted
        out = con.execute(sql, {"origin": grid.origin.to_pydatetime()}).df()
    finally:
        if name:
            con.unregister(name)
    out["t"] = out["t"].astype("Int64")
    out["phase"] = out["phase"].astype(float)
    return out


#: How a campaign send is credited to a move between periods (SPEC §1 "Timing"), first = default.
TIMINGS: tuple[str, ...] = ("nearest", "start", "next")
DEFAULT_TIMING = "nearest"
#: What each timing rule means, in plain words (the Data page, the report, the CLI help).
TIMING_HELP: dict[str, str] = {
    "nearest": "a send counts for the period whose start is nearest to it (a Sunday-evening or "
    "a Monday-morning e-mail both count for the week that starts that Monday)",
    "start": "a send counts for the period that contains it",
    "next": "a send counts for the period after the one that contains it",
}


def check_timing(timing: str) -> str:
    """Validate a campaign timing rule name."""
    if timing not in TIMINGS:
        raise InputError(
            f"The 'campaign timing' setting must be one of {', '.join(TIMINGS)}. Got {timing!r}."
        )
    return timing


def credit_period(t: np.ndarray, phase: np.ndarray, timing: str) -> np.ndarray:
    """The transition index each send is credited to: the move ``t' - 1 -> t'`` into period
    ``t'``, from the period ``t`` that contains the send and its ``phase`` in it (see
    :func:`period_of`).

    ``start``: ``t' = t``; ``next``: ``t' = t + 1``; ``nearest``: the period whose start is
    nearest to the send, ``t`` in the first half of its period and ``t + 1`` from the middle on
    (a tie goes to the later period). A campaign acts on what happens after it is sent, so a
    send late in a period cannot have caused the move into that same period.
    """
    t = np.asarray(t, dtype=np.int64)
    if check_timing(timing) == "start":
        return t
    if timing == "next":
        return t + 1
    return t + (np.asarray(phase, dtype=float) >= 0.5)


def stage_sql(recency: str) -> str:
    """SQL expression of the stage (ENUM of :data:`STAGES`) of a recency expression.

    Bound parameter: ``$churn_after``. The one place the stage rule of SPEC §3 is written in SQL.
    """
    return f"""CASE WHEN {recency} = 0 THEN CAST('active' AS {_STAGE_TYPE})
                    WHEN {recency} = 1 THEN CAST('lapsing' AS {_STAGE_TYPE})
                    WHEN {recency} < $churn_after THEN CAST('at_risk' AS {_STAGE_TYPE})
                    ELSE CAST('churned' AS {_STAGE_TYPE}) END"""


def spans_sql(clean_events: str, period: str) -> str:
    """The CTEs (text after ``WITH``) that every panel query starts from, over a SELECT of clean
    events (``user_id, ts, amount``).

    ``act``: one row per active user-period (``user_id, t, revenue, n_events``); ``last``: the
    data's last period ``last_t``; ``spans``: each active row with the user's first period
    ``first_t``, their previous active period ``prev_t`` (NULL on the first) and their next one
    ``next_t`` (``last_t + 1`` after the last). Periods ``t .. next_t - 1`` are the run that
    starts at an active period: recency ``t' - t`` in period ``t'``.
    """
    trunc = _TRUNC[check_period(period)].format(col="min(ts)")
    index = _INDEX[period].format(origin="o.origin", col="e.ts")
    return f"""
        ev AS ({clean_events}),
        o AS (SELECT {trunc} AS origin FROM ev),
        act AS (
            SELECT e.user_id, {index} AS t,
                   coalesce(sum(e.amount), 0) AS revenue, count(*) AS n_events
            FROM ev AS e, o
            GROUP BY e.user_id, t
        ),
        last AS (SELECT max(t) AS last_t FROM act),
        spans AS (
            SELECT a.user_id, a.t, a.revenue, a.n_events,
                   first_value(a.t) OVER w AS first_t,
                   lag(a.t) OVER w AS prev_t,
                   coalesce(lead(a.t) OVER w, l.last_t + 1) AS next_t
            FROM act AS a, last AS l
            WINDOW w AS (PARTITION BY a.user_id ORDER BY a.t)
        )
    """  # noqa: S608 -- fixed fragments only


def panel_sql(clean_events: str, period: str) -> str:
    """The panel query over a SELECT of clean events (``user_id, ts, amount``).

    Bound parameter: ``$churn_after``. Columns: ``user_id, t, k, active, recency, stage (ENUM
    of STAGES), revenue, n_events``; unordered.
    """
    return f"""
        WITH {spans_sql(clean_events, period)},
        runs AS (
            SELECT user_id, t AS active_t, first_t, revenue, n_events,
                   unnest(range(next_t - t)) AS r
            FROM spans
        )
        SELECT user_id,
               CAST(active_t + r AS INTEGER) AS t,
               CAST(active_t + r - first_t AS INTEGER) AS k,
               r = 0 AS active,
               CAST(r AS INTEGER) AS recency,
               {stage_sql("r")} AS stage,
               CASE WHEN r = 0 THEN revenue ELSE 0.0 END AS revenue,
               CAST(CASE WHEN r = 0 THEN n_events ELSE 0 END AS INTEGER) AS n_events
        FROM runs
    """  # noqa: S608 -- fixed fragments only


def user_stages_sql(clean_events: str, period: str, facts: str | None = None) -> str:
    """Each user's stage in the data's last period (``user_id, stage``; unordered).

    Only each user's last event matters: their recency in the last period ``T`` is ``T`` minus
    the period of that event, so one row per user is aggregated (no per-period rows, no window).
    ``facts``: the quoted name of the run's per-user facts (:mod:`retention.user_pass`), which
    already hold each user's last event (``clean_events`` is not read then).
    Bound parameter: ``$churn_after``.
    """
    index = _INDEX[check_period(period)].format(origin="o.origin", col="u.last_ts")
    if facts is None:
        trunc = _TRUNC[period].format(col="min(ts)")
        head = f"""ev AS ({clean_events}),
        o AS (SELECT {trunc} AS origin FROM ev),
        u AS (SELECT user_id, max(ts) AS last_ts FROM ev GROUP BY user_id)"""  # noqa: S608
    else:
        trunc = _TRUNC[period].format(col="min(first_ts)")
        head = f"""o AS (SELECT {trunc} AS origin FROM {facts}),
        u AS (SELECT user_id, last_ts FROM {facts})"""  # noqa: S608
    return f"""
        WITH {head},
        per_user AS (SELECT u.user_id, {index} AS t FROM u, o),
        last AS (SELECT max(t) AS last_t FROM per_user)
        SELECT p.user_id, {stage_sql("(l.last_t - p.t)")} AS stage
        FROM per_user AS p, last AS l
    """  # noqa: S608 -- fixed fragments only


def user_stages(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
) -> pd.DataFrame:
    """Each user's stage in the data's last period, ``user_id, stage`` (text) sorted by
    ``user_id``: what :func:`retention.strategies.current_stages` reads off the panel, computed
    in DuckDB so the panel is never built (one row per user comes back, not one per period)."""
    check_churn_after(churn_after)
    period = resolve_period(con, events, period)
    facts = user_pass.kept(con, events)
    if facts is not None:  # the run's shared per-user pass
        with user_pass.registered(con, facts) as f:
            sql = user_stages_sql("", period, facts=f)
            query = f"SELECT user_id, CAST(stage AS VARCHAR) AS stage FROM ({sql}) ORDER BY user_id"  # noqa: S608
            return con.execute(query, {"churn_after": churn_after}).df()
    with events_source(con, events) as ref:
        sql = user_stages_sql(clean_events_sql(con, ref), period)
        query = f"SELECT user_id, CAST(stage AS VARCHAR) AS stage FROM ({sql}) ORDER BY user_id"  # noqa: S608
        return con.execute(query, {"churn_after": churn_after}).df()


@overload
def build_panel(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = ...,
    churn_after: int = ...,
    out_table: None = ...,
) -> pd.DataFrame: ...


@overload
def build_panel(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = ...,
    churn_after: int = ...,
    out_table: str,
) -> str: ...


def build_panel(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
    out_table: str | None = None,
) -> pd.DataFrame | str:
    """Build the panel (module docstring) from an event log.

    Without ``out_table``: a DataFrame sorted by ``user_id, t`` with ``stage`` an ordered
    categorical over :data:`STAGES`. With ``out_table``: the panel is written to that DuckDB
    table (replaced if present; nothing is loaded into Python) and its quoted name is returned —
    use this for large logs. Use :func:`period_grid` for the grid (origin, ``T``) behind ``t``.
    """
    check_churn_after(churn_after)
    period = resolve_period(con, events, period)
    with events_source(con, events) as ref:
        sql = panel_sql(clean_events_sql(con, ref), period)
        params = {"churn_after": churn_after}
        if out_table is not None:
            target = table_ref(out_table)
            con.execute(f"CREATE OR REPLACE TABLE {target} AS {sql}", params)
            return target
        panel = _fetch_compact(con.execute(f"{sql} ORDER BY user_id, t", params))
    return _typed_panel(panel)


# Rows per chunk when the panel comes back to pandas (in DuckDB vectors of 2048 rows: ~1M rows).
_CHUNK_VECTORS = 512


def _fetch_compact(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The result as a DataFrame whose equal user ids share one string object.

    Fetched a chunk at a time: a plain ``.df()`` makes one Python string per row, so a user with
    78 periods costs 78 copies of their id (about 4 GB of ids alone at 1M users × 78 weeks).
    Column by column, the chunks are joined and let go, so the panel is held about once.
    """
    chunks = []
    while True:
        chunk = result.fetch_df_chunk(_CHUNK_VECTORS)
        if chunks and chunk.empty:
            break
        codes, uniques = pd.factorize(chunk["user_id"])
        chunk["user_id"] = np.asarray(uniques, dtype=object)[codes]
        chunks.append(chunk)
        if chunk.empty:
            break
    if len(chunks) == 1:
        return chunks[0]
    columns = {}
    for name in list(chunks[0].columns):
        columns[name] = pd.concat([c.pop(name) for c in chunks], ignore_index=True)
    return pd.DataFrame(columns, copy=False)


def _typed_panel(panel: pd.DataFrame) -> pd.DataFrame:
    panel["stage"] = pd.Categorical(panel["stage"], categories=list(STAGES), ordered=True)
    panel["active"] = panel["active"].astype(bool)
    return panel

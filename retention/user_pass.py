"""One pass over the events per user, shared by the steps of one run (issue 19, 50M events).

Segments, retention and stages each used to scan the whole event log for a few facts per user:
the segments' behaviour features (first and last event, active days, spend), each user's first
and last period (the segment profile's retention), each user's stage now (their last period),
the list of users (the retention curves' groups) and the data's period grid (its first and last
event). All of these are exact functions of one small table, a row per user::

    user_id, first_ts, last_ts, days, amount, n_events, n_amounts

(first and last event, distinct active days, the sum of ``amount`` — NULL when the user has no
amount —, events and events with an amount), sorted by ``user_id``. A user's first and last
period are the periods of ``first_ts`` and ``last_ts`` (a period index never decreases with
time), so every step above reads this table (a million rows at 50 million events) instead of
the events.

The per-period steps share a second table, a row per active (user, period) on the data's grid
(:class:`PeriodFacts`: the user's row in the per-user table, the period, the period's first
event, its revenue and events), sorted by user and period: the churn durations, the MDP's
transition counts, the CRM columns (active periods) and the retention analyses by segment read
it instead of each grouping all events by user and period again (:func:`kept_periods`).

Sharing is opt-in, for one run at a time: :func:`share_user_facts` (the command line's
pipeline calls it when a run starts) turns it on and forgets what an earlier run kept; then
the first step that needs the facts of a stored events table computes them (the segments'
aggregation does, as part of its own work) and later steps reuse them. At most one table's
facts are kept. Without sharing (the app's pages, DataFrames of events) every step computes
what it needs from the events as before; ``tests/unit/test_user_pass.py`` checks that both ways
give the same results, bit for bit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from retention.sql import quote_ident

#: The per-user facts' columns (see the module docstring).
COLUMNS: tuple[str, ...] = (
    "user_id", "first_ts", "last_ts", "days", "amount", "n_events", "n_amounts",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class UserFacts:
    """The per-user facts of one events table (module docstring), ``users`` sorted by id."""

    users: pd.DataFrame


@dataclass(frozen=True, eq=False)
class PeriodFacts:
    """One row per active (user, period) of one events table on one period grid, sorted by
    ``uid`` then ``t``: ``uid`` (the user's row in :class:`UserFacts` ``users``), ``t`` (the
    grid's period index), ``first_us`` (the period's first event, microseconds since 1970),
    ``revenue`` (the sum of ``amount``, 0 without one) and ``n_events``. ``last_t``: the grid's
    last period (the last active period of anyone)."""

    grid_key: tuple[str, str]
    uid: np.ndarray
    t: np.ndarray
    first_us: np.ndarray
    revenue: np.ndarray
    n_events: np.ndarray
    last_t: int

    def __len__(self) -> int:
        return len(self.uid)

    def starts(self) -> np.ndarray:
        """Where each user's rows start (one per user, in ``uid`` order)."""
        new = np.ones(len(self.uid), dtype=bool)
        new[1:] = self.uid[1:] != self.uid[:-1]
        return np.flatnonzero(new)


_lock = threading.Lock()
_enabled = False
_kept: dict[tuple[str, str], UserFacts] = {}
_kept_periods: dict[tuple[str, str], PeriodFacts] = {}


def share_user_facts(enabled: bool = True) -> None:
    """Share per-user facts between the steps of the run that starts now (or stop sharing);
    whatever an earlier run kept is forgotten either way."""
    global _enabled
    with _lock:
        _enabled = enabled
        _kept.clear()
        _kept_periods.clear()


@contextmanager
def shared_for_this_run() -> Iterator[None]:
    """Share per-user facts between the steps of one run (the command line's), then forget
    them and stop sharing however the run ends: nothing kept outlives it, and whatever runs
    next in this process (another run, the app's pages, a test) reads its events itself."""
    share_user_facts(True)
    try:
        yield
    finally:
        share_user_facts(False)


def sharing() -> bool:
    """Whether per-user facts are shared now (:func:`share_user_facts`)."""
    return _enabled


#: Up to this many calendar days between the events' first and last day, a user's distinct
#: active days are counted in a bitmap of those days (:func:`days_count_sql`; at most 250 bytes
#: a user); over it, with ``count(DISTINCT ...)``.
BITMAP_MAX_DAYS = 2_000

_DAY = "CAST(date_diff('day', DATE '1970-01-01', CAST({ts} AS DATE)) AS INTEGER)"


def days_count_sql(
    con: duckdb.DuckDBPyConnection, ref: str, ts: str = "ts"
) -> tuple[str, dict[str, int]]:
    """An aggregate over events of the table ``ref`` (quoted) that counts distinct calendar
    days of the column ``ts`` (a TIMESTAMP, e.g. ``CAST(ts AS TIMESTAMP)`` of ``ref``), with
    its bound parameters: ``count(DISTINCT CAST(ts AS DATE))``'s value.

    Issue 19 (50M events): ``count(DISTINCT ...)`` keeps a hash set per user and was most of
    the per-user pass's time; numbering the days from 1970 and setting one bit per active day
    in a bitmap from the data's first to its last day (``bitstring_agg``), then counting the
    bits, gives the same count; the whole per-user pass then takes about a quarter less CPU
    at 10M events (7.4–8.0 → 5.3–6.1 s side by side on a busy machine). The range comes from
    one scan of ``ts`` alone; above :data:`BITMAP_MAX_DAYS` days (or without events) the plain
    ``count(DISTINCT ...)`` is used, and so it is when ``con`` is not DuckDB's own connection
    (the Spark engine's routing cursor: Spark SQL has no ``bitstring_agg``)."""
    distinct = f"count(DISTINCT CAST({ts} AS DATE))", {}
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return distinct
    day = _DAY.format(ts=ts)
    lo, hi = con.execute(
        f"SELECT min({_DAY.format(ts='t')}), max({_DAY.format(ts='t')}) "  # noqa: S608
        f"FROM (SELECT CAST(ts AS TIMESTAMP) AS t FROM {ref} WHERE ts IS NOT NULL)"
    ).fetchone()
    if lo is None or hi - lo + 1 > BITMAP_MAX_DAYS:
        return distinct
    return f"bit_count(bitstring_agg({day}, $day_lo, $day_hi))", {"day_lo": lo, "day_hi": hi}


def user_facts_sql(clean_events: str, days: str = "count(DISTINCT CAST(ts AS DATE))") -> str:
    """The per-user facts (module docstring) of a SELECT of clean events (``user_id, ts,
    amount``), sorted by ``user_id``; ``days``: the distinct active days' aggregate
    (:func:`days_count_sql`'s, with its parameters)."""
    return f"""
        SELECT user_id, min(ts) AS first_ts, max(ts) AS last_ts,
               {days} AS days, sum(amount) AS amount,
               count(*) AS n_events, count(amount) AS n_amounts
        FROM ({clean_events}) GROUP BY user_id ORDER BY user_id
    """  # noqa: S608 -- fixed fragments only


def _key(con: duckdb.DuckDBPyConnection, ref: str) -> tuple[str, str]:
    """Which stored table ``ref`` is: the database's file (or name) and the reference."""
    row = con.execute(
        "SELECT coalesce(path, database_name) FROM duckdb_databases() "
        "WHERE database_name = current_database()"
    ).fetchall()
    return (str(row[0][0]) if row else "", ref)


def kept(con: duckdb.DuckDBPyConnection, events: object) -> UserFacts | None:
    """The shared facts of the stored events table ``events`` (a table reference), computing
    and keeping them when sharing is on and they are not kept yet; ``None`` when sharing is
    off or ``events`` is a DataFrame (then the caller reads the events itself)."""
    if not _enabled or not isinstance(events, str):
        return None
    from retention.periods import clean_events_sql, events_source, table_ref

    ref = table_ref(events)
    key = _key(con, ref)
    with _lock:
        found = _kept.get(key)
    if found is not None:
        return found
    with events_source(con, ref) as checked:
        days, params = days_count_sql(con, checked)
        users = con.execute(user_facts_sql(clean_events_sql(con, checked), days), params).df()
    return keep(con, ref, users)


def keep(con: duckdb.DuckDBPyConnection, ref: str, users: pd.DataFrame) -> UserFacts | None:
    """Keep ``users`` (the facts of the stored table ``ref``, :data:`COLUMNS`) for the later
    steps of this run when sharing is on; returns them (``None`` when sharing is off)."""
    if not _enabled:
        return None
    facts = UserFacts(users=users[list(COLUMNS)])
    key = _key(con, ref)
    with _lock:
        _kept.clear()  # one table's facts at a time
        _kept_periods.clear()
        _kept[key] = facts
    return facts


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, facts: UserFacts) -> Iterator[str]:
    """``facts.users`` as a quoted DuckDB view name for the duration of the block."""
    name = f"_user_facts_{uuid.uuid4().hex}"
    con.register(name, facts.users)
    try:
        yield quote_ident(name)
    finally:
        con.unregister(name)


def grid_key(grid: object) -> tuple[str, str]:
    """A period grid's identity: its period and origin."""
    return str(grid.period), str(grid.origin)  # type: ignore[attr-defined]


def kept_periods(
    con: duckdb.DuckDBPyConnection, events: object, grid: object
) -> PeriodFacts | None:
    """The shared per-(user, period) facts of the stored events table ``events`` on ``grid``
    (a :class:`retention.periods.PeriodGrid`), computed and kept on first use when sharing is
    on; ``None`` when sharing is off or ``events`` is a DataFrame."""
    facts = kept(con, events)
    if facts is None:
        return None
    from retention.periods import clean_events_sql, events_source, period_index_sql, table_ref

    ref = table_ref(events)  # type: ignore[arg-type]
    key = (*_key(con, ref), *grid_key(grid))
    with _lock:
        found = _kept_periods.get(key)  # type: ignore[arg-type]
    if found is not None:
        return found
    index = period_index_sql(grid.period, "ts")  # type: ignore[attr-defined]
    ids = pd.DataFrame(
        {"user_id": facts.users["user_id"], "uid": np.arange(len(facts.users), dtype=np.int32)}
    )
    name = f"_user_ids_{uuid.uuid4().hex}"
    with events_source(con, ref) as checked:
        con.register(name, ids)
        try:
            sql = period_facts_sql(clean_events_sql(con, checked), index, quote_ident(name))
            params = {"origin": grid.origin.to_pydatetime()}  # type: ignore[attr-defined]
            got = con.execute(sql, params).fetchnumpy()
        finally:
            con.unregister(name)
    t = np.asarray(got["t"], dtype=np.int32)
    periods = PeriodFacts(
        grid_key=grid_key(grid),
        uid=np.asarray(got["uid"], dtype=np.int32),
        t=t,
        first_us=np.asarray(got["first_us"], dtype=np.int64),
        revenue=np.asarray(got["revenue"], dtype=np.float64),
        n_events=np.asarray(got["n_events"], dtype=np.int64),
        last_t=int(t.max()) if len(t) else 0,
    )
    with _lock:
        _kept_periods.clear()  # one table and grid at a time
        _kept_periods[key] = periods  # type: ignore[index]
    return periods


def period_facts_sql(clean_events: str, index: str, ids: str) -> str:
    """The per-(user, period) facts' query (:func:`kept_periods`): ``clean_events`` (a SELECT of
    ``user_id, ts, amount``), ``index`` (the period index of ``ts``, SQL), ``ids`` (a quoted
    relation of ``user_id, uid``, every user of the events). Store50 (issue 19): each event
    gets its user's integer ``uid`` by a hash join against the small ``ids`` first, and the
    grouping is by the two integers (``uid``, ``t``) instead of by the text id and ``t`` with
    the join afterwards (at 10M events: see the README's 50M paragraphs)."""
    return f"""
        WITH e AS (
            SELECT u.uid, {index} AS t, c.ts, c.amount
            FROM ({clean_events}) AS c JOIN {ids} AS u USING (user_id)
        ), a AS (
            SELECT uid, t, min(ts) AS first_ts, coalesce(sum(amount), 0) AS revenue,
                   count(*) AS n_events
            FROM e GROUP BY uid, t
        )
        SELECT uid, CAST(t AS INTEGER) AS t, epoch_us(first_ts) AS first_us,
               CAST(revenue AS DOUBLE) AS revenue, n_events
        FROM a ORDER BY uid, t
    """  # noqa: S608 -- fixed fragments and quoted identifiers only


def churn_durations(
    facts: UserFacts, periods: PeriodFacts, churn_after: int, last_t: int
) -> pd.DataFrame:
    """:func:`retention.cohorts.churn_durations` from the shared facts: ``user_id, first_t,
    duration, churned``, sorted by ``user_id``. A user churns at the first active period ``t``
    with no return within ``churn_after`` periods (``t + churn_after`` before the next active
    period, or past the last) that the data has followed that long (``t + churn_after <=
    last_t``); the duration counts from the first period, censored at ``last_t``."""
    t = periods.t.astype(np.int64)
    starts = periods.starts()
    if len(starts) != len(facts.users):
        raise ValueError("The per-period facts do not cover every user of the per-user facts.")
    nxt = np.empty_like(t)
    nxt[:-1] = t[1:]
    last_row = np.ones(len(t), dtype=bool)
    last_row[:-1] = periods.uid[1:] != periods.uid[:-1]
    nxt[last_row] = last_t + 1 + churn_after
    churn = t + churn_after
    never = np.iinfo(np.int64).max
    candidate = np.where((churn < nxt) & (churn <= last_t), churn, never)
    churn_t = np.minimum.reduceat(candidate, starts) if len(t) else candidate
    first_t = t[starts]
    churned = churn_t != never
    duration = np.where(churned, churn_t, last_t) - first_t
    return pd.DataFrame(
        {
            "user_id": facts.users["user_id"].to_numpy(),
            "first_t": first_t.astype(np.int32),
            "duration": duration.astype(np.int32),
            "churned": churned,
        }
    )


def active_periods(facts: UserFacts, periods: PeriodFacts) -> np.ndarray:
    """Each user's number of active periods, in the per-user facts' order."""
    return np.bincount(periods.uid, minlength=len(facts.users)).astype(np.int64)


def runs_table(facts: UserFacts, periods: PeriodFacts, segments: pd.DataFrame):  # -> pa.Table
    """What :func:`retention.mdp.summarize_events` groups, from the per-period facts: one row
    per active (user, period) of a user with a segment (``segments``: ``user_id`` as text,
    ``segment``; one row per user): ``segment``, ``len`` (periods to the user's next active
    period, or to just past the data's last one), ``gap`` (periods since the user's previous
    active period; -1 on their first), ``is_last`` (``len`` reaches past the data's last period)
    and ``revenue``. An Arrow table over NumPy arrays: no pandas copy of the rows."""
    import pyarrow as pa

    at = _rows_of(facts.users["user_id"], segments["user_id"])
    known = at >= 0
    has = np.zeros(len(facts.users), dtype=bool)
    has[at[known]] = True
    seg_of = np.zeros(len(facts.users), dtype=np.int64)
    seg_of[at[known]] = segments["segment"].to_numpy(dtype=np.int64)[known]
    t, uid = periods.t, periods.uid
    first = np.ones(len(t), dtype=bool)
    first[1:] = uid[1:] != uid[:-1]
    last_row = np.ones(len(t), dtype=bool)
    last_row[:-1] = first[1:]
    nxt = np.empty_like(t)
    nxt[:-1] = t[1:]
    nxt[last_row] = periods.last_t + 1
    gap = np.empty_like(t)
    gap[1:] = t[1:] - t[:-1]
    gap[first] = -1
    # Issue 19 (50M events): when every user has a segment (the pipeline's case) the columns
    # are the arrays themselves, not copies picked by a mask of every row: at 25 million rows
    # each copy is fresh memory the kernel has to hand over page by page.
    keep = slice(None) if has.all() else has[uid]
    return pa.table(
        {
            "segment": seg_of[uid[keep]],
            "len": (nxt - t)[keep],
            "gap": gap[keep],
            "is_last": (nxt == periods.last_t + 1)[keep],
            "revenue": periods.revenue[keep],
        }
    )


def _rows_of(user_ids: pd.Series, wanted: pd.Series) -> np.ndarray:
    """The row in ``user_ids`` (unique ids) of each of ``wanted``'s ids, -1 when absent; no
    lookup when both list the same users in the same order (a segmentation of the same
    events)."""
    ids = pd.Index(user_ids)
    if ids.equals(pd.Index(wanted)):
        return np.arange(len(ids))
    return ids.get_indexer(wanted)


def as_compact(facts: UserFacts, periods: PeriodFacts):  # -> retention.compact.CompactEvents
    """The per-period facts as compact events (:mod:`retention.compact`), one per active
    (user, period) at the period's first event, worth the period's revenue. For the retention
    analyses' default definition (first event → any event) counted in periods, this gives the
    cells the events themselves give: a user's start is their first event, every period they
    are active in counts once, and a cell's revenue is the sum of its periods' revenue."""
    from retention.compact import CompactEvents

    return CompactEvents(
        user_ids=facts.users["user_id"].astype(str).to_numpy(dtype=object),
        kinds=(),
        firsts={},
        uid=periods.uid,
        day=(periods.first_us // 86_400_000_000).astype(np.int32),
        ts=periods.first_us,
        ev=np.full(len(periods), -1, dtype=np.int16),
        amount=periods.revenue,
    )

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
the events. The per-period steps (churn durations, the MDP's transition counts) still read the
events.

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


_lock = threading.Lock()
_enabled = False
_kept: dict[tuple[str, str], UserFacts] = {}


def share_user_facts(enabled: bool = True) -> None:
    """Share per-user facts between the steps of the run that starts now (or stop sharing);
    whatever an earlier run kept is forgotten either way."""
    global _enabled
    with _lock:
        _enabled = enabled
        _kept.clear()


def sharing() -> bool:
    """Whether per-user facts are shared now (:func:`share_user_facts`)."""
    return _enabled


def user_facts_sql(clean_events: str) -> str:
    """The per-user facts (module docstring) of a SELECT of clean events (``user_id, ts,
    amount``), sorted by ``user_id``."""
    return f"""
        SELECT user_id, min(ts) AS first_ts, max(ts) AS last_ts,
               count(DISTINCT CAST(ts AS DATE)) AS days, sum(amount) AS amount,
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
        users = con.execute(user_facts_sql(clean_events_sql(con, checked))).df()
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

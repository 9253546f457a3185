"""A compact copy of a dataset's events for the retention analyses, built once per dataset.

Every retention view (:mod:`retention.analyses`) needs the same few facts about each event:
whose it is, when, of which type, and how much it was worth. Reading them from the dataset's
own table means casting text ids and timestamps and joining text ids on every view, which on
10 million events takes tens of seconds. This module keeps them instead as integers, sorted by
user and time:

* users: ``uid`` (0, 1, ... in the order of their ids as text), the id, and the value of each
  property column (``text``, ``country``, ...) on their first event;
* events: ``uid``, ``day`` (days since 1970-01-01), ``ts`` (microseconds since 1970), ``ev`` (the
  event type's code, -1 when none) and ``amount`` (0 when none);
* kinds: the event types, by code.

For a dataset table in a database (the workspace's), the copy is stored next to it as three
tables named after the table, its catalog id and row count (``_rx_<table>_<oid>_<rows>_...``)
so that it survives a restart, and it is read into memory once per process (the last
:data:`MEMORY_SLOTS` copies stay there). A dataset replaced by a new table gets a new copy; the
copies of a table that no longer exists in that form are dropped when the new one is built. An
events DataFrame gets a copy for the call, not stored.

Each view is then a few vectorised passes over these arrays (see :mod:`retention.analyses`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from retention.periods import EventsSource, columns_of, events_source
from retention.sql import quote_ident

#: Columns whose value on each user's first event is kept (the "first:<column>" breakdowns).
PROPERTY_COLUMNS: tuple[str, ...] = ("text", "country", "Country", "category")
#: How many compact copies one process keeps in memory (about 26 bytes per event each).
MEMORY_SLOTS = 2
PREFIX = "_rx_"
_EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True, eq=False)
class CompactEvents:
    """The events as sorted integer arrays (see the module's description)."""

    user_ids: np.ndarray  # uid -> the user's id as text
    kinds: tuple[str, ...]  # ev code -> event type
    firsts: dict[str, np.ndarray]  # property column -> its value on each user's first event
    uid: np.ndarray  # int32, sorted
    day: np.ndarray  # int32, days since 1970-01-01; sorted within each user
    ts: np.ndarray  # int64, microseconds since 1970-01-01; sorted within each user
    ev: np.ndarray  # int16, -1 without an event type
    amount: np.ndarray  # float64, 0 without an amount
    #: Arrays derived from these (such as each event's period on a grid), kept with them.
    memo: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def code(self, kind: str) -> int | None:
        """The code of an event type (``None`` when the data has none of it)."""
        try:
            return self.kinds.index(kind)
        except ValueError:
            return None

    def uids_of(self, user_ids: pd.Series) -> np.ndarray:
        """The uid of each id (-1 for ids not in the events)."""
        return pd.Index(self.user_ids).get_indexer(user_ids.astype(str))


_cache: OrderedDict[str, CompactEvents] = OrderedDict()
_cache_lock = threading.Lock()
_build_locks: dict[str, threading.Lock] = {}


def compact_events(con: duckdb.DuckDBPyConnection, events: EventsSource) -> CompactEvents:
    """The compact copy of ``events`` (a table name or a DataFrame): from this process's memory,
    else read from its stored tables, else built (and stored, for a table)."""
    if isinstance(events, pd.DataFrame):
        with events_source(con, events) as ref:
            return _read(con, *_build_temp(con, ref))
    with events_source(con, events) as ref:
        names = _names(con, ref)
        if names is None:  # a view or something else without a catalog id: no stored copy
            return _read(con, *_build_temp(con, ref))
        with _cache_lock:
            lock = _build_locks.setdefault(names["meta"], threading.Lock())
        with lock:
            build_id = _stored_build(con, names)
            if build_id is None:
                build_id = _build_stored(con, ref, names)
                if build_id is None:  # could not store it (read-only, ...): a copy for this call
                    return _read(con, *_build_temp(con, ref))
            with _cache_lock:
                hit = _cache.get(build_id)
                if hit is not None:
                    _cache.move_to_end(build_id)
                    return hit
            compact = _read(con, names["users"], names["kinds"], names["events"])
            with _cache_lock:
                _cache[build_id] = compact
                while len(_cache) > MEMORY_SLOTS:
                    _cache.popitem(last=False)
            return compact


def is_stored(con: duckdb.DuckDBPyConnection, events: str) -> bool:
    """Whether the compact copy of the table ``events`` exists in its database."""
    with events_source(con, events) as ref:
        names = _names(con, ref)
        return names is not None and _stored_build(con, names) is not None


def forget_memory() -> None:
    """Drop the in-memory copies (the stored tables stay): for benchmarks and tests."""
    with _cache_lock:
        _cache.clear()


def drop_stored(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop every stored compact copy of the table named ``table`` (unquoted)."""
    prefix = PREFIX + _slug(table) + "_"
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND starts_with(table_name, $p)",
        {"p": prefix},
    ).fetchall()
    for (name,) in rows:
        con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")


# -- names and the stored copy ---------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:60]


def _names(con: duckdb.DuckDBPyConnection, ref: str) -> dict[str, str] | None:
    """The stored copy's table names for this version of the table ``ref`` (None: not a table
    of the current database)."""
    bare = ref[1:-1].replace('""', '"') if ref.startswith('"') else ref
    row = con.execute(
        "SELECT table_oid, estimated_size FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = current_schema() "
        "AND table_name = $t AND NOT temporary",
        {"t": bare},
    ).fetchall()
    if not row:
        return None
    row = row[0]
    stem = f"{PREFIX}{_slug(bare)}_{int(row[0])}_{int(row[1])}"
    return {
        "stem": stem,
        "table": bare,
        **{part: f"{stem}_{part}" for part in ("users", "kinds", "events", "meta")},
    }


def _stored_build(con: duckdb.DuckDBPyConnection, names: dict[str, str]) -> str | None:
    """The build id of the stored copy (its meta table is written last), or None."""
    try:
        rows = con.execute(f"SELECT build FROM {quote_ident(names['meta'])}").fetchall()  # noqa: S608
    except duckdb.CatalogException:
        return None
    return str(rows[0][0]) if rows else None


def _build_stored(con: duckdb.DuckDBPyConnection, ref: str, names: dict[str, str]) -> str | None:
    """Build and store the copy; its build id, or None when it cannot be stored."""
    build = uuid.uuid4().hex
    cur = con.cursor()
    try:
        drop_stored(cur, names["table"])  # older copies of this table, and a half-built one
        for part, sql in _build_sql(cur, ref, names["users"], names["kinds"]):
            cur.execute(f"CREATE TABLE {quote_ident(names[part])} AS {sql}")  # noqa: S608
        cur.execute(
            f"CREATE TABLE {quote_ident(names['meta'])} AS SELECT $b AS build",  # noqa: S608
            {"b": build},
        )
    except duckdb.Error:
        with contextlib.suppress(duckdb.Error):
            drop_stored(cur, names["table"])
        return None
    finally:
        cur.close()
    return build


def _build_temp(con: duckdb.DuckDBPyConnection, ref: str) -> tuple[str, str, str]:
    """The copy as temporary tables of this connection (for a DataFrame or a view); the caller
    reads them with :func:`_read`, which drops them."""
    stem = f"_rxtmp_{uuid.uuid4().hex}"
    names = {part: f"{stem}_{part}" for part in ("users", "kinds", "events")}
    for part, sql in _build_sql(con, ref, names["users"], names["kinds"]):
        con.execute(f"CREATE TEMP TABLE {quote_ident(names[part])} AS {sql}")  # noqa: S608
    return names["users"], names["kinds"], names["events"]


def _build_sql(con: duckdb.DuckDBPyConnection, ref: str, users: str, kinds: str) -> list:
    """(part, SELECT) of the users, kinds and events tables, in the order to create them."""
    cols = columns_of(con, ref)
    clean = "user_id IS NOT NULL AND ts IS NOT NULL"
    firsts = "".join(
        f", arg_min(CAST({quote_ident(c)} AS VARCHAR), (CAST(ts AS TIMESTAMP), "
        f"coalesce(CAST({quote_ident(c)} AS VARCHAR), chr(1114111)))) AS {quote_ident('first:' + c)}"
        for c in PROPERTY_COLUMNS
        if c in cols
    )
    users_sql = f"""
        SELECT (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS uid, *
        FROM (SELECT CAST(user_id AS VARCHAR) AS user_id {firsts}
              FROM {ref} WHERE {clean} GROUP BY 1)
        ORDER BY uid
    """  # noqa: S608 -- quoted identifiers only
    if "event" in cols:
        kinds_sql = f"""
            SELECT (row_number() OVER (ORDER BY event) - 1)::SMALLINT AS code, event
            FROM (SELECT DISTINCT CAST(event AS VARCHAR) AS event FROM {ref}
                  WHERE {clean} AND event IS NOT NULL)
            ORDER BY code
        """  # noqa: S608
        ev_col = "coalesce(k.code, -1)::SMALLINT"
        kinds_join = f"LEFT JOIN {quote_ident(kinds)} k ON CAST(x.event AS VARCHAR) = k.event"
    else:
        kinds_sql = "SELECT 0::SMALLINT AS code, 'none'::VARCHAR AS event WHERE false"
        ev_col, kinds_join = "(-1)::SMALLINT", ""
    # The same amounts as the SQL analyses had: rounded to 6 decimals, none -> 0.
    amount = (
        "coalesce(CAST(CAST(x.amount AS DECIMAL(38, 6)) AS DOUBLE), 0)"
        if "amount" in cols
        else "0.0::DOUBLE"
    )
    events_sql = f"""
        SELECT u.uid,
               date_diff('day', DATE '1970-01-01', CAST(CAST(x.ts AS TIMESTAMP) AS DATE))::INTEGER
                   AS day,
               epoch_us(CAST(x.ts AS TIMESTAMP)) AS ts,
               {ev_col} AS ev,
               {amount} AS amount
        FROM {ref} x
        JOIN {quote_ident(users)} u ON CAST(x.user_id AS VARCHAR) = u.user_id
        {kinds_join}
        WHERE x.user_id IS NOT NULL AND x.ts IS NOT NULL
        ORDER BY u.uid, ts
    """  # noqa: S608 -- quoted identifiers only
    return [("users", users_sql), ("kinds", kinds_sql), ("events", events_sql)]


def _read(con: duckdb.DuckDBPyConnection, users: str, kinds: str, events: str) -> CompactEvents:
    """The three tables as arrays (temporary ones are dropped after reading)."""
    try:
        u = con.execute(f"SELECT * FROM {quote_ident(users)} ORDER BY uid").fetchnumpy()  # noqa: S608
        k = con.execute(f"SELECT event FROM {quote_ident(kinds)} ORDER BY code").fetchall()  # noqa: S608
        e = con.execute(
            f"SELECT uid, day, ts, ev, amount FROM {quote_ident(events)}"  # noqa: S608
        ).fetchnumpy()
    finally:
        if users.startswith("_rxtmp_"):
            for name in (users, kinds, events):
                con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
    uid = np.asarray(e["uid"], dtype=np.int32)
    ts = np.asarray(e["ts"], dtype=np.int64)
    arrays = {
        "uid": uid,
        "day": np.asarray(e["day"], dtype=np.int32),
        "ts": ts,
        "ev": np.asarray(e["ev"], dtype=np.int16),
        "amount": np.asarray(e["amount"], dtype=np.float64),
    }
    # A table scan keeps the stored order; should it not, sort by user and time here.
    if len(uid) > 1 and not (
        (np.diff(uid) >= 0).all() and (ts[1:] >= ts[:-1])[uid[1:] == uid[:-1]].all()
    ):
        order = np.lexsort((ts, uid))
        arrays = {name: values[order] for name, values in arrays.items()}
    firsts = {
        name.removeprefix("first:"): np.asarray(values, dtype=object)
        for name, values in u.items()
        if name.startswith("first:")
    }
    for name, values in firsts.items():  # masked (NULL) values -> None
        raw = u["first:" + name]
        if np.ma.isMaskedArray(raw):
            values[np.ma.getmaskarray(raw)] = None
    return CompactEvents(
        user_ids=np.asarray(u["user_id"], dtype=object),
        kinds=tuple(str(r[0]) for r in k),
        firsts=firsts,
        **arrays,
    )


def day_number(value: pd.Timestamp) -> int:
    """Days since 1970-01-01 of a time's day."""
    return int((pd.Timestamp(value).normalize() - _EPOCH).days)

"""Steps 1 and 3, features: per-user behaviour and item counts from the events (DuckDB), the
standardised behaviour matrix, and the combination of the text and behaviour blocks.

Aggregation returns integer codes (the user's row, the text's index among the distinct texts):
no per-row strings leave DuckDB. :func:`combine` scales the two blocks so that ``text_weight``
is the text block's share of the total variance.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from retention import user_pass
from retention.errors import InputError
from retention.periods import check_event_columns, columns_of
from retention.sql import quote_ident

BEHAVIOUR: tuple[str, ...] = ("recency", "frequency", "monetary", "tenure")


@dataclass(frozen=True)
class UserData:
    """Per-user behaviour and per-user texts, aggregated from an event log.

    ``users``: ``user_id, recency_days, frequency, monetary, tenure_days, n_events``, one row per
    user, sorted by ``user_id``. ``items``: one row per user and distinct text, as integer codes:
    ``user`` (the row in ``users``), ``text`` (the index in ``texts``), ``n`` (events) and
    ``spend``; sorted by user (a user's rows in no particular order: :func:`ranked_items` puts
    them most frequent first). ``texts``: the distinct texts, sorted.

    ``texts=None`` means ``items`` holds strings instead (``user_id, text, n, spend``);
    :func:`coded` turns such data into codes.
    """

    users: pd.DataFrame
    items: pd.DataFrame
    has_amount: bool
    texts: np.ndarray | None = None
    #: What a segmentation derives from these facts alone (text model choice, term counts,
    #: items' ranking, automatic period), kept with them when a caller keeps the facts for
    #: several runs (:func:`retention.segments.pipeline._kept`).
    derived: dict = field(default_factory=dict, compare=False, repr=False)


def coded(data: UserData) -> UserData:
    """``data`` with integer-coded items (as :func:`aggregate_users` returns it)."""
    if data.texts is not None:
        return data
    items = data.items
    texts, text_index = np.unique(items["text"].to_numpy(dtype=object), return_inverse=True)
    user_index = pd.Index(data.users["user_id"]).get_indexer(items["user_id"])
    if (user_index < 0).any():
        raise ValueError("UserData.items names users that are not in UserData.users")
    frame = pd.DataFrame(
        {
            "user": user_index.astype(np.int32),
            "text": np.asarray(text_index).reshape(-1).astype(np.int32),
            "n": items["n"].to_numpy(),
            "spend": items["spend"].to_numpy(dtype=float)
            if "spend" in items
            else np.zeros(len(items)),
        }
    )
    if (np.diff(user_index) < 0).any():  # rows must be grouped by user, in users' order
        frame = frame.iloc[np.argsort(user_index, kind="stable")].reset_index(drop=True)
    return UserData(data.users, frame, data.has_amount, texts)


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> Iterator[str]:
    """Yield ``frame`` as a quoted DuckDB view name for the duration of the block."""
    name = f"_seg_{uuid.uuid4().hex}"
    con.register(name, frame)
    try:
        yield quote_ident(name)
    finally:
        con.unregister(name)


def aggregate_users(con: duckdb.DuckDBPyConnection, ref: str) -> UserData:
    """Behaviour features and item counts per user, from the events table ``ref`` (quoted).

    recency and tenure are days from the user's last / first event to the data's last event;
    frequency counts distinct active days; monetary is the sum of ``amount`` (0 when none).
    """
    cols = check_event_columns(con, ref, "the events")
    amount = "CAST(amount AS DOUBLE)" if "amount" in cols else "CAST(NULL AS DOUBLE)"
    text = "NULLIF(trim(CAST(text AS VARCHAR)), '')" if "text" in cols else "CAST(NULL AS VARCHAR)"
    clean = (
        f"SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(ts AS TIMESTAMP) AS ts, "  # noqa: S608
        f"{amount} AS amount, {text} AS text FROM {ref} "
        "WHERE user_id IS NOT NULL AND ts IS NOT NULL"
    )
    facts = user_pass.kept(con, ref)  # the run's shared per-user pass, when sharing is on
    if facts is not None:
        with user_pass.registered(con, facts) as f:
            users = _users_from_facts(con, f)
    else:
        days, params = user_pass.days_count_sql(con, ref, "e.ts")
        users = con.execute(
            f"""
            WITH e AS ({clean}), b AS (SELECT max(ts) AS end_ts FROM e)
            SELECT e.user_id,
                   date_diff('second', max(e.ts), any_value(b.end_ts)) / 86400.0 AS recency_days,
                   {days} AS frequency,
                   coalesce(sum(e.amount), 0.0) AS monetary,
                   date_diff('second', min(e.ts), any_value(b.end_ts)) / 86400.0 AS tenure_days,
                   count(*) AS n_events,
                   count(e.amount) AS n_amounts
            FROM e, b GROUP BY e.user_id ORDER BY e.user_id
            """,  # noqa: S608 -- fixed fragments and a quoted identifier only
            params,
        ).df()
    if users.empty:
        raise InputError("The events have no rows with both a user and a time: nothing to segment.")
    found = _coded_items(con, clean, users["user_id"])
    texts = found.pop("texts")
    items = pd.DataFrame({"user": np.asarray(found.pop("user"), dtype=np.int32)})
    for name, dtype in (("text", np.int32), ("n", np.int32), ("spend", np.float64)):
        items[name] = np.asarray(found.pop(name), dtype=dtype)  # one block each: no copies
    has_amount = bool(users.pop("n_amounts").sum() > 0)
    users["frequency"] = users["frequency"].astype(np.int64)
    texts = np.asarray(texts, dtype=object)
    return UserData(users=users, items=items, has_amount=has_amount, texts=texts)


def _users_from_facts(con: duckdb.DuckDBPyConnection, facts: str) -> pd.DataFrame:
    """:func:`aggregate_users`' behaviour table from the per-user facts ``facts`` (a quoted
    view, :mod:`retention.user_pass`): the same expressions on the same per-user values."""
    return con.execute(
        f"""
        WITH b AS (SELECT max(last_ts) AS end_ts FROM {facts})
        SELECT u.user_id,
               date_diff('second', u.last_ts, b.end_ts) / 86400.0 AS recency_days,
               u.days AS frequency,
               coalesce(u.amount, 0.0) AS monetary,
               date_diff('second', u.first_ts, b.end_ts) / 86400.0 AS tenure_days,
               u.n_events,
               u.n_amounts
        FROM {facts} AS u, b ORDER BY u.user_id
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
    ).df()


def _coded_items(con: duckdb.DuckDBPyConnection, clean: str, user_ids: pd.Series) -> dict:
    """The item counts as codes (``user``, ``text``, ``n``, ``spend`` arrays) and the sorted
    distinct ``texts``, from the clean events ``clean`` and ``user_ids``, every user's id
    sorted (a user's code is their position in it: their row in ``users``)."""
    texts = con.execute(
        f"SELECT DISTINCT text FROM ({clean}) WHERE text IS NOT NULL ORDER BY text"  # noqa: S608
    ).fetchnumpy()["text"]
    # issue 19 (50M events): each event is given its user's and its text's code first (two
    # hash joins against small tables: the users and the distinct texts, in sorted order, with
    # their positions), then grouped by the two integers — instead of grouping by the two
    # strings and numbering users and texts afterwards. At 10M events: a third less CPU and
    # about half the memory. Codes, not strings, leave DuckDB. Sorted by user only (a full sort
    # costs a fifth more at 50 million events); the few places that rank a user's texts do it
    # themselves.
    users = pd.DataFrame(
        {"user_id": user_ids.to_numpy(), "code": np.arange(len(user_ids), dtype=np.int32)}
    )
    text_codes = pd.DataFrame({"text": texts, "code": np.arange(len(texts), dtype=np.int32)})
    with registered(con, users) as u, registered(con, text_codes) as t:
        found = con.execute(
            f"""
            SELECT u.code AS "user", t.code AS text, CAST(count(*) AS INTEGER) AS n,
                   sum(greatest(coalesce(e.amount, 0), 0)) AS spend
            FROM ({clean}) AS e JOIN {u} AS u USING (user_id) JOIN {t} AS t USING (text)
            GROUP BY u.code, t.code
            ORDER BY "user"
            """  # noqa: S608 -- fixed fragments and quoted identifiers only
        ).fetchnumpy()
    return {**found, "texts": texts}


def has_text(con: duckdb.DuckDBPyConnection, ref: str) -> bool:
    """Whether the events table ``ref`` (quoted) has any non-blank text to embed."""
    if "text" not in columns_of(con, ref):
        return False
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM {ref} "  # noqa: S608 -- a quoted identifier only
        "WHERE trim(CAST(text AS VARCHAR)) <> '' LIMIT 1)"
    )
    return bool(con.execute(sql).fetchall()[0][0])


def behaviour_matrix(users: pd.DataFrame, has_amount: bool) -> tuple[np.ndarray, list[str]]:
    """log1p of recency, frequency, monetary (when amounts exist) and tenure, standardised.

    Columns without variation become zeros (they carry no information).
    """
    names = [b for b in BEHAVIOUR if has_amount or b != "monetary"]
    raw = {
        "recency": users["recency_days"].clip(lower=0),
        "frequency": users["frequency"].clip(lower=0),
        "monetary": users["monetary"].clip(lower=0),
        "tenure": users["tenure_days"].clip(lower=0),
    }
    B = np.column_stack([np.log1p(raw[b].to_numpy(dtype=float)) for b in names])
    return standardise(B), names


def standardise(B: np.ndarray) -> np.ndarray:
    """Each column as z-scores; a column without variation becomes zeros."""
    B = np.asarray(B, dtype=float)
    sd = B.std(axis=0)
    return np.where(sd > 0, (B - B.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)


def combine(text: np.ndarray | None, behaviour: np.ndarray, text_weight: float) -> np.ndarray:
    """Stack the two blocks, scaled so the text block holds ``text_weight`` of the variance.

    Each block is divided by the square root of its total variance (sum over columns) and
    multiplied by the square root of its weight; a block with weight 0 or no variance is left out.
    """
    scales = (
        block_scale(total_variance(text), text_weight),
        block_scale(total_variance(behaviour), 1.0 - text_weight),
    )
    blocks = [
        block * scale
        for block, scale in zip((text, behaviour), scales, strict=True)
        if block is not None and scale is not None
    ]
    if not blocks:
        return np.zeros((len(behaviour), 1))
    return np.hstack(blocks)


def total_variance(block: np.ndarray | None) -> float | None:
    """Sum of the column variances of a block (``None`` when there is no block)."""
    if block is None or block.shape[1] == 0:
        return None
    return float(block.var(axis=0).sum())


def block_scale(total: float | None, weight: float) -> float | None:
    """A block's factor in :func:`combine`; ``None``: the block is left out (no columns, no
    weight or no variance)."""
    if total is None or weight <= 0 or not total > 0:
        return None
    return np.sqrt(weight / total)

"""Step 2, text: users' documents and their text vectors.

Each distinct text is embedded once (:mod:`retention.embeddings`, cached in the workspace); a
user's vector is the spend- (or frequency-) weighted mean of their items' vectors, built on
demand for any set of users (:class:`UserText`), so at scale they are never all in memory. The
``document`` option embeds each user's whole document instead (slower, rarely better).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from retention.embeddings import Embedder, Progress, l2_normalise
from retention.segments.features import UserData, coded


def user_documents(items: pd.DataFrame, user_ids: Sequence[str]) -> pd.Series:
    """Each user's document: their distinct texts, most frequent first, joined by '; '.

    ``items`` holds strings (``user_id, text``, most frequent first within a user).
    """
    docs = items.groupby("user_id", sort=False)["text"].agg("; ".join)
    return docs.reindex(pd.Index(user_ids, name="user_id")).fillna("")


def _item_rows(items_user: np.ndarray, users: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the (user-sorted) items that belong to ``users`` (sorted user rows, or a
    slice of them), and for each such row the position of its user within ``users``."""
    if isinstance(users, slice):
        bounds = np.array([users.start, users.stop], dtype=items_user.dtype)
        lo, hi = np.searchsorted(items_user, bounds)  # same dtype: no copy of the haystack
        return np.arange(lo, hi), items_user[lo:hi] - users.start
    users = np.asarray(users).astype(items_user.dtype, copy=False)
    starts = np.searchsorted(items_user, users, side="left")
    ends = np.searchsorted(items_user, users, side="right")
    lengths = ends - starts
    owner = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return starts[owner] + offsets, owner


def ranked_items(items: pd.DataFrame, picked: np.ndarray | None = None) -> np.ndarray:
    """Item rows (``picked``, default all) by user, then most frequent first: ``n``, then
    ``spend`` descending, then the text."""
    picked = np.arange(len(items)) if picked is None else np.asarray(picked)
    order = np.lexsort(
        (
            items["text"].to_numpy()[picked],
            -items["spend"].to_numpy()[picked],
            -items["n"].to_numpy()[picked].astype(np.int64),
            items["user"].to_numpy()[picked],
        )
    )
    return picked[order]


def top_items(
    data: UserData, rows: np.ndarray, n: int = 3, ranked: np.ndarray | None = None
) -> list[str]:
    """Per user row in ``rows`` (sorted): their ``n`` most frequent texts, joined by ', '
    (``ranked``: :func:`ranked_items` of all of ``data.items`` when the caller kept it)."""
    if data.texts is None or data.items.empty:
        return [""] * len(rows)
    user = data.items["user"].to_numpy()
    if ranked is None:
        picked = ranked_items(data.items, _item_rows(user, rows)[0])
    else:  # the same order: the rows of these users, taken from the ranking of all rows
        chosen = np.zeros(len(data.users) + 1, dtype=bool)
        chosen[np.asarray(rows, dtype=np.int64)] = True
        picked = ranked[chosen[user[ranked]]]
    owner = np.searchsorted(rows, user[picked])  # the position of each row's user in ``rows``
    first = np.searchsorted(owner, np.arange(len(rows)))
    kept = (np.arange(len(picked)) - first[owner]) < n
    names = data.texts[data.items["text"].to_numpy()[picked[kept]]]
    bounds = np.searchsorted(owner[kept], np.arange(len(rows) + 1))
    return [", ".join(names[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _documents(data: UserData) -> np.ndarray:
    """Each user's document (as :func:`user_documents`), in ``data.users`` order."""
    picked = ranked_items(data.items)
    frame = pd.DataFrame(
        {
            "user": data.items["user"].to_numpy()[picked],
            "text": data.texts[data.items["text"].to_numpy()[picked]],
        }
    )
    docs = frame.groupby("user", sort=False)["text"].agg("; ".join)
    return docs.reindex(pd.RangeIndex(len(data.users))).fillna("").to_numpy(dtype=object)


@dataclass
class UserText:
    """Users' L2-normalised text vectors, built on demand for any set of users.

    ``items``: the weighted mean of the user's distinct texts' vectors (``vectors`` holds one row
    per distinct text); ``document``: the vector of the user's whole document (``vectors`` holds
    one row per user, and ``documents`` tells which users have one). Users without text get a
    zero row (``has`` is False). ``info``: what was embedded (for the run's metrics).
    """

    data: UserData
    vectors: np.ndarray
    user_vector: str
    weighting: str
    info: dict[str, Any]
    documents: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, users: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """float32 vectors of ``users`` (sorted user rows, or a slice) and whether each has text.

        Row by row the same numbers whatever the set of users asked for.
        """
        if self.documents is not None:
            return l2_normalise(self.vectors[users]), self.documents[users]
        items = self.data.items
        picked, owner = _item_rows(items["user"].to_numpy(), users)
        m = (users.stop - users.start) if isinstance(users, slice) else len(users)
        weight = items["n"].to_numpy()[picked].astype(float)
        if self.weighting == "spend" and self.data.has_amount:
            spend = items["spend"].to_numpy()[picked].astype(float)
            user_spend = np.bincount(owner, weights=spend, minlength=m)
            weight = np.where(user_spend[owner] > 0, spend, weight)
        W = sparse.csr_matrix(
            (weight, (owner, items["text"].to_numpy()[picked])), shape=(m, len(self.vectors))
        )
        row_sum = np.asarray(W.sum(axis=1)).ravel()
        has = row_sum > 0
        U = np.asarray(sparse.diags(1.0 / np.where(has, row_sum, 1.0)) @ W @ self.vectors)
        return l2_normalise(U), has


def embed_user_text(
    data: UserData,
    embedder: Embedder,
    *,
    user_vector: str = "items",
    weighting: str = "spend",
    progress: Progress | None = None,
) -> UserText:
    """Embed what :class:`UserText` needs: each distinct text once (``items``), or each user's
    document (``document``)."""
    data = coded(data)
    n_users, documents = len(data.users), None
    if user_vector == "document":
        docs = _documents(data)
        has = docs != ""
        embedded = embedder.embed(docs[has].tolist(), progress=progress)
        vectors = np.zeros((n_users, embedded.shape[1]), dtype=np.float32)
        vectors[has] = embedded
        info: dict[str, Any] = {"texts_needed": int(has.sum())}
        documents = has
    else:
        texts = data.texts if data.texts is not None else np.array([], dtype=object)
        vectors = embedder.embed(texts.tolist(), progress=progress)
        info = {"texts_needed": len(texts)}
    stats = getattr(embedder, "stats", None)
    if stats is not None:
        info.update(texts_cached=stats.cached, texts_embedded=stats.embedded)
    return UserText(data, vectors, user_vector, weighting, info, documents)


def public_info(text: UserText, users_with_text: int) -> dict[str, Any]:
    info = dict(text.info)
    ordered = {"texts_needed": info.pop("texts_needed"), "users_with_text": users_with_text}
    ordered.update(info)
    return ordered


def text_vectors(
    data: UserData,
    embedder: Embedder,
    *,
    user_vector: str = "items",
    weighting: str = "spend",
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One L2-normalised text vector per user (rows in ``data.users`` order), all in memory.

    ``items``: the weighted mean of the user's distinct items' vectors (weights: spend, or the
    count where the user spent nothing; or counts). ``document``: the user's whole document.
    Users without text get the mean of everyone's vector (neutral).
    """
    text = embed_user_text(
        data, embedder, user_vector=user_vector, weighting=weighting, progress=progress
    )
    U, has = text.rows(slice(0, len(text.data.users)))
    return filled(U, has), public_info(text, int(has.sum()))


def filled(U: np.ndarray, has: np.ndarray) -> np.ndarray:
    """float64 text vectors where users without text get the mean vector of the users with text
    (nothing changes when all or none have text)."""
    U = U.astype(np.float64)
    if has.any() and not has.all():
        U[~has] = U[has].mean(axis=0)
    return U

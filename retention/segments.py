"""User segments from what users buy or write and how they behave (SPEC §4).

The pipeline, each step swappable:

1. **Aggregate** (DuckDB): per user the behaviour features (recency, frequency, monetary value,
   tenure) and per user and distinct text a count and a spend, as integer codes (the user's row,
   the text's index among the distinct texts): no per-row strings leave DuckDB.
2. **Embed** each distinct text once (:mod:`retention.embeddings`, cached in the workspace). A
   user's text vector is the spend- (or frequency-) weighted mean of their items' vectors; the
   ``document`` option embeds each user's whole document instead (slower, rarely better).
3. **Combine**: behaviour features are log-transformed and standardised; the text block and the
   behaviour block are scaled so that ``text_weight`` is the text block's share of the total
   variance. Without text, behaviour alone. The result is reduced to its first 50 principal
   components (clustering cost; the first two are the PCA map). Above 50,000 users
   (:data:`REDUCE_SAMPLE`) the user vectors are never all in memory: the scaling and the
   principal axes are fitted on a seeded sample of 50,000 users and every user is projected in
   chunks (:func:`reduce_in_chunks`); up to that, exactly as described.
4. **Cluster** with :class:`Segmenter`: k-means with k chosen by silhouette (on a sample of at
   most 5,000 users, k = 2..12) or set by hand, MiniBatchKMeans above 50,000 users; or HDBSCAN,
   whose noise is segment ``-1``. Segments are numbered by size, largest first.
5. **Label**: class-based TF-IDF (:func:`ctfidf`) over each segment's users' documents; three
   representative users (closest to the segment's centre). Without text, labels describe the
   behaviour ("recent, high spend").
6. **Map**: a 2-D PCA (or UMAP) projection for the scatter plot, computed once with the run,
   of at most 20,000 users (:data:`MAP_SAMPLE`; above that a seeded sample drawn within each
   segment in proportion to its size).
7. **Profile** per segment: users, share, mean recency / frequency / monetary, revenue, and
   retention after 1 and 4 periods.

:func:`retention.runs.run_segmentation` runs it on a workspace dataset and stores a ``segmentation`` run (or
returns the stored one with the same settings); :func:`segment_users` is the same on a plain
events DataFrame; :func:`segment_snapshot` clusters a campaign snapshot (one row per user) on
its feature columns.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import sparse

from retention.embeddings import (
    CachedEmbedder,
    Embedder,
    Progress,
    SentenceTransformerEmbedder,
    describe,
    l2_normalise,
    model_id_for,
)
from retention.errors import InputError
from retention.periods import columns_of, period_grid, period_index_sql, quote_ident
from retention.workspace import Workspace

ALGORITHMS: tuple[str, ...] = ("kmeans", "hdbscan")
USER_VECTORS: tuple[str, ...] = ("items", "document")
WEIGHTINGS: tuple[str, ...] = ("spend", "frequency")
MAP_METHODS: tuple[str, ...] = ("pca", "umap")
PERIOD_CHOICES: tuple[str, ...] = ("auto", "day", "week", "month")
BEHAVIOUR: tuple[str, ...] = ("recency", "frequency", "monetary", "tenure")
# Share of the variance held by the text block. Behaviour (recency, tenure, ...) varies a lot
# within a segment, so an even split lets that noise blur segments that the text separates well;
# at 0.75 planted segments are recovered (ARI >= 0.97) and behaviour still shapes the segments.
DEFAULT_TEXT_WEIGHT = 0.75
K_RANGE: tuple[int, int] = (2, 12)
K_MAX = 50
SILHOUETTE_SAMPLE = 5_000
SILHOUETTE_TOLERANCE = 0.05  # relative
MINIBATCH_ABOVE = 50_000
REDUCED_DIMENSIONS = 50
# Above this many users the text vectors are never all in memory at once: the reduction (the
# no-text fill, the block weights and the principal axes) is fitted on a seeded sample of this
# many users, then every user is projected chunk by chunk. At or below it, the exact computation
# (a full SVD: about 1 GB and a few seconds at 50,000 users, twice that at 100,000).
REDUCE_SAMPLE = 50_000
CHUNK_USERS = 20_000  # users per chunk when building and projecting text vectors
MAP_SAMPLE = 20_000  # the map shows at most this many users (a seeded sample)
UMAP_SAMPLE = MAP_SAMPLE
ITEM_CHUNK = 4_000_000  # user-text rows per step when counting texts per segment
NOISE = -1
RETENTION_AFTER: tuple[int, ...] = (1, 4)
SNAPSHOT_RESERVED: tuple[str, ...] = ("user_id", "action", "outcome", "propensity")
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters; no numbers

# Words that describe a segment's behaviour (z-score of the mean above / below the average).
_BEHAVIOUR_WORDS = {
    "recency": ("lapsed", "recent"),
    "frequency": ("frequent", "occasional"),
    "monetary": ("high spend", "low spend"),
    "tenure": ("long-standing", "new"),
}


# -- settings and results -------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentSettings:
    """Everything that decides a segmentation (stored with the run; same settings, same run)."""

    k: int | str = "auto"
    algorithm: str = "kmeans"
    text_weight: float = DEFAULT_TEXT_WEIGHT
    user_vector: str = "items"
    weighting: str = "spend"
    model_path: str | None = None
    map_method: str = "pca"
    period: str = "auto"
    min_cluster_size: int | None = None
    random_state: int = 0

    def __post_init__(self) -> None:
        _check_k(self.k)
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_choice("user_vector", self.user_vector, USER_VECTORS)
        _check_choice("weighting", self.weighting, WEIGHTINGS)
        _check_choice("map_method", self.map_method, MAP_METHODS)
        _check_choice("period", self.period, PERIOD_CHOICES)
        weight = self.text_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise InputError(
                f"The 'text_weight' parameter must be a number in [0, 1]. Got {weight!r}."
            )
        mcs = self.min_cluster_size
        if mcs is not None and (isinstance(mcs, bool) or not isinstance(mcs, int) or mcs < 2):
            raise InputError(
                f"The 'min_cluster_size' parameter must be None or an int >= 2. Got {mcs!r}."
            )

    @classmethod
    def coerce(cls, settings: SegmentSettings | dict[str, Any] | None) -> SegmentSettings:
        """Settings from a dataclass, a dict of some of its fields, or ``None`` (defaults)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known - {"model"})
        if unknown:
            raise InputError(
                f"Unknown segmentation setting(s) {', '.join(unknown)}. "
                f"Known settings: {', '.join(sorted(known))}."
            )
        return cls(**{k: v for k, v in settings.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentationResult:
    """A segmentation: what :func:`retention.runs.run_segmentation` stores as the run's artifacts.

    * ``assignments``: ``user_id, segment`` (``-1`` = HDBSCAN noise)
    * ``labels``: ``segment, label, keywords, users, representatives``
    * ``map2d``: ``user_id, x, y, segment, hover``
    * ``profile``: one row per segment (users, share, behaviour means, revenue, retention)
    * ``metrics``: k, silhouette by k, what was embedded, ...
    """

    assignments: pd.DataFrame
    labels: pd.DataFrame
    map2d: pd.DataFrame
    profile: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def artifacts(self) -> dict[str, pd.DataFrame]:
        return {
            "assignments": self.assignments,
            "labels": self.labels,
            "map2d": self.map2d,
            "profile": self.profile,
        }


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InputError(
            f"The '{name}' parameter must be one of {', '.join(allowed)}. Got {value!r}."
        )


def _check_k(k: Any) -> None:
    if k == "auto":
        return
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= K_MAX:
        raise InputError(f"The 'k' parameter must be 'auto' or an int in [2, {K_MAX}]. Got {k!r}.")


class _Stage:
    """Maps a sub-step's 0..1 progress onto [lo, hi] of the caller's progress bar."""

    def __init__(self, progress: Progress | None, lo: float, hi: float) -> None:
        self.progress, self.lo, self.hi = progress, lo, hi

    def __call__(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0), message)


# -- clustering ------------------------------------------------------------------------------


class Segmenter:
    """Cluster user vectors into segments.

    Parameters
    ----------
    k:
        ``"auto"`` or an int. ``"auto"`` scores each k in ``k_range`` by silhouette on a seeded
        sample of at most ``sample_size`` users and takes the smallest k whose score is within
        ``tolerance`` (relative, 5%) of the best: near-ties (a real segment split in two by a handful of
        atypical users) resolve towards fewer, larger segments, which a marketer can act on.
    algorithm:
        ``"kmeans"`` (MiniBatchKMeans above ``minibatch_above`` users) or ``"hdbscan"`` (k is
        ignored; noise gets label ``-1``).
    min_cluster_size:
        HDBSCAN's smallest segment; default ``max(10, n_users // 100)``.

    Attributes after :meth:`fit`: ``labels_`` (segments numbered by size, largest first),
    ``k_`` (number of segments, noise excluded), ``cluster_centers_`` (one row per segment
    ``0..k_-1``), ``silhouette_`` (``{k: score}`` of the automatic choice, else empty).
    """

    def __init__(
        self,
        k: int | str = "auto",
        algorithm: str = "kmeans",
        *,
        k_range: tuple[int, int] = K_RANGE,
        sample_size: int = SILHOUETTE_SAMPLE,
        minibatch_above: int = MINIBATCH_ABOVE,
        min_cluster_size: int | None = None,
        tolerance: float = SILHOUETTE_TOLERANCE,
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.algorithm = algorithm
        self.k_range = k_range
        self.sample_size = sample_size
        self.minibatch_above = minibatch_above
        self.min_cluster_size = min_cluster_size
        self.tolerance = tolerance
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> Segmenter:
        _check_k(self.k)
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        X = np.asarray(X)
        if X.dtype != np.float32:  # float32 stays so (half the memory at scale), else float64
            X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if n < 2:
            raise InputError(f"Segmentation needs at least 2 users. Got {n}.")
        self.silhouette_: dict[int, float] = {}
        if self.algorithm == "hdbscan":
            raw = self._hdbscan(X)
        else:
            if self.k == "auto":
                k = self._choose_k(X)
            else:
                k = int(self.k)
                if k > n:
                    raise InputError(
                        f"The 'k' parameter ({k}) is larger than the number of users ({n}). "
                        "Choose a smaller k or 'auto'."
                    )
            raw = self._kmeans(X, k, n_init=4).labels_
        self.labels_ = _relabel_by_size(raw)
        self.k_ = int(self.labels_.max()) + 1 if (self.labels_ >= 0).any() else 0
        self.cluster_centers_ = (
            np.vstack([X[self.labels_ == s].mean(axis=0) for s in range(self.k_)])
            if self.k_
            else np.zeros((0, X.shape[1]))
        )
        self.n_features_in_ = X.shape[1]
        return self

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).labels_

    def _kmeans(self, X: np.ndarray, k: int, n_init: int) -> Any:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if len(X) > self.minibatch_above:
            model = MiniBatchKMeans(
                n_clusters=k, n_init=3, batch_size=4096, random_state=self.random_state
            )
        else:
            model = KMeans(n_clusters=k, n_init=n_init, random_state=self.random_state)
        return model.fit(X)

    def _choose_k(self, X: np.ndarray) -> int:
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        rng = np.random.default_rng(self.random_state)
        sample = X
        if len(X) > self.sample_size:
            sample = X[rng.choice(len(X), size=self.sample_size, replace=False)]
        lo, hi = self.k_range
        hi = min(hi, len(sample) - 1)
        if hi < lo:  # too few users to compare: take the smallest sensible k
            return min(lo, len(X))
        for k in range(lo, hi + 1):
            labels = KMeans(n_clusters=k, n_init=2, random_state=self.random_state).fit_predict(
                sample
            )
            if len(np.unique(labels)) < 2:
                continue
            self.silhouette_[k] = float(silhouette_score(sample, labels))
        if not self.silhouette_:
            return lo
        best = max(self.silhouette_.values())
        return min(k for k, v in self.silhouette_.items() if v >= best - self.tolerance * abs(best))

    def _hdbscan(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import HDBSCAN
        from sklearn.decomposition import PCA

        n = len(X)
        # Density clustering works poorly in hundreds of dimensions: reduce first (as BERTopic
        # does with UMAP), keeping most of the variance.
        dims = min(10, X.shape[1], n - 1)
        Z = X if X.shape[1] <= dims else PCA(dims, random_state=self.random_state).fit_transform(X)
        size = self.min_cluster_size or max(10, n // 100)
        size = max(2, min(size, n))
        return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(Z)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. by size (largest first; ties by first appearance); keep -1."""
    labels = np.asarray(labels)
    ids = [c for c in pd.unique(labels) if c != NOISE]
    sizes = {c: int((labels == c).sum()) for c in ids}
    order = sorted(ids, key=lambda c: -sizes[c])  # stable: ties keep first-appearance order
    out = np.full(len(labels), NOISE, dtype=np.int64)
    for i, c in enumerate(order):
        out[labels == c] = i
    return out


# -- c-TF-IDF labels -------------------------------------------------------------------------


def ctfidf_scores(counts: sparse.spmatrix | np.ndarray) -> np.ndarray:
    """Class-based TF-IDF of a classes × terms count matrix (BERTopic's formula).

    ``tf[c, t] = counts[c, t] / sum_t counts[c, t]``; ``idf[t] = log(1 + A / f[t])`` with ``A``
    the average number of words per class and ``f[t]`` the term's count over all classes.
    """
    counts = np.asarray(counts.todense() if sparse.issparse(counts) else counts, dtype=float)
    per_class = counts.sum(axis=1, keepdims=True)
    tf = counts / np.where(per_class > 0, per_class, 1.0)
    totals = counts.sum(axis=0)
    average = counts.sum() / max(len(counts), 1)
    idf = np.log(1.0 + average / np.where(totals > 0, totals, np.inf))
    return tf * idf


def top_terms(
    counts: sparse.spmatrix | np.ndarray, terms: Sequence[str], top_n: int = 10
) -> list[list[tuple[str, float]]]:
    """Per class, its ``top_n`` terms by c-TF-IDF, best first, keeping only terms that are
    over-represented in the class (a larger share of its words than of all words) and most
    over-represented there, so no term describes two classes.

    Why not simply drop terms found in every class: on real data with few segments nearly every
    common word occurs in every segment, and only rare words would be left (on Online Retail
    with k = 2: "droplet, chests, pom"). A term a class uses more than the rest does describes it.
    """
    dense = np.asarray(counts.todense() if sparse.issparse(counts) else counts, dtype=float)
    scores = ctfidf_scores(dense)
    per_class = dense.sum(axis=1, keepdims=True)
    share = dense / np.where(per_class > 0, per_class, 1.0)
    overall = dense.sum(axis=0) / max(dense.sum(), 1.0)
    if len(dense) > 1:
        # Over-represented here, and most so here: each term describes one class at most.
        keep = (share > overall + 1e-12) & (share >= share.max(axis=0, keepdims=True))
    else:
        keep = dense > 0
    out = []
    for row, kept in zip(scores, keep, strict=True):
        order = np.lexsort((np.asarray(terms), -row))  # score desc, then alphabetical
        out.append([(terms[j], float(row[j])) for j in order if kept[j] and row[j] > 0][:top_n])
    return out


def _vectorizer(ngram_range: tuple[int, int] = (1, 1)) -> Any:
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        stop_words="english", token_pattern=TOKEN_PATTERN, ngram_range=ngram_range
    )


def ctfidf(
    documents: Sequence[str], classes: Sequence[int], top_n: int = 10
) -> dict[int, list[tuple[str, float]]]:
    """Top c-TF-IDF terms of each class, where a class's text is all its documents together.

    English stop words and numbers are ignored; so are terms a class does not use more than the
    others (see :func:`top_terms`).
    """
    classes = np.asarray(classes)
    labels = sorted(pd.unique(classes).tolist())
    vectorizer = _vectorizer()
    try:
        X = vectorizer.fit_transform([str(d) for d in documents])
    except ValueError:  # no words at all
        return {c: [] for c in labels}
    onehot = sparse.csr_matrix(
        (np.ones(len(classes)), (np.searchsorted(labels, classes), np.arange(len(classes)))),
        shape=(len(labels), len(classes)),
    )
    ranked = top_terms(onehot @ X, vectorizer.get_feature_names_out().tolist(), top_n)
    return dict(zip(labels, ranked, strict=True))


# -- aggregation (DuckDB) --------------------------------------------------------------------


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
def _registered(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> Iterator[str]:
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
    cols = columns_of(con, ref)
    missing = [c for c in ("user_id", "ts") if c not in cols]
    if missing:
        raise InputError(
            f"The events lack the column(s) {', '.join(missing)}; segmentation needs 'user_id' "
            f"and 'ts'. Columns present: {', '.join(cols)}."
        )
    amount = "CAST(amount AS DOUBLE)" if "amount" in cols else "CAST(NULL AS DOUBLE)"
    text = "NULLIF(trim(CAST(text AS VARCHAR)), '')" if "text" in cols else "CAST(NULL AS VARCHAR)"
    clean = (
        f"SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(ts AS TIMESTAMP) AS ts, "  # noqa: S608
        f"{amount} AS amount, {text} AS text FROM {ref} "
        "WHERE user_id IS NOT NULL AND ts IS NOT NULL"
    )
    users = con.execute(
        f"""
        WITH e AS ({clean}), b AS (SELECT max(ts) AS end_ts FROM e)
        SELECT e.user_id,
               date_diff('second', max(e.ts), any_value(b.end_ts)) / 86400.0 AS recency_days,
               count(DISTINCT CAST(e.ts AS DATE)) AS frequency,
               coalesce(sum(e.amount), 0.0) AS monetary,
               date_diff('second', min(e.ts), any_value(b.end_ts)) / 86400.0 AS tenure_days,
               count(*) AS n_events,
               count(e.amount) AS n_amounts
        FROM e, b GROUP BY e.user_id ORDER BY e.user_id
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
    ).df()
    texts = con.execute(
        f"SELECT DISTINCT text FROM ({clean}) WHERE text IS NOT NULL ORDER BY text"  # noqa: S608
    ).fetchnumpy()["text"]
    # Codes, not strings, leave DuckDB: a user's code is their row in ``users`` (both sorted by
    # user_id), a text's its index in ``texts``. Sorted by user only (a full sort costs a fifth
    # more at 50 million events); the few places that rank a user's texts do it themselves.
    found = con.execute(
        f"""
        WITH e AS ({clean}),
        g AS (
            SELECT user_id, text, count(*) AS n,
                   sum(greatest(coalesce(amount, 0), 0)) AS spend
            FROM e WHERE text IS NOT NULL GROUP BY user_id, text
        ),
        u AS (
            SELECT user_id, CAST(row_number() OVER (ORDER BY user_id) - 1 AS INTEGER) AS code
            FROM (SELECT DISTINCT user_id FROM e)
        ),
        t AS (
            SELECT text, CAST(row_number() OVER (ORDER BY text) - 1 AS INTEGER) AS code
            FROM (SELECT DISTINCT text FROM g)
        )
        SELECT u.code AS "user", t.code AS text, CAST(g.n AS INTEGER) AS n, g.spend
        FROM g JOIN u USING (user_id) JOIN t USING (text)
        ORDER BY "user"
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
    ).fetchnumpy()
    items = pd.DataFrame({"user": np.asarray(found.pop("user"), dtype=np.int32)})
    for name, dtype in (("text", np.int32), ("n", np.int32), ("spend", np.float64)):
        items[name] = np.asarray(found.pop(name), dtype=dtype)  # one block each: no copies
    if users.empty:
        raise InputError("The events have no rows with both a user and a time: nothing to segment.")
    has_amount = bool(users.pop("n_amounts").sum() > 0)
    users["frequency"] = users["frequency"].astype(np.int64)
    texts = np.asarray(texts, dtype=object)
    return UserData(users=users, items=items, has_amount=has_amount, texts=texts)


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
    return _standardise(B), names


def _standardise(B: np.ndarray) -> np.ndarray:
    B = np.asarray(B, dtype=float)
    sd = B.std(axis=0)
    return np.where(sd > 0, (B - B.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)


def combine(text: np.ndarray | None, behaviour: np.ndarray, text_weight: float) -> np.ndarray:
    """Stack the two blocks, scaled so the text block holds ``text_weight`` of the variance.

    Each block is divided by the square root of its total variance (sum over columns) and
    multiplied by the square root of its weight; a block with weight 0 or no variance is left out.
    """
    scales = (
        _block_scale(_total_variance(text), text_weight),
        _block_scale(_total_variance(behaviour), 1.0 - text_weight),
    )
    blocks = [
        block * scale
        for block, scale in zip((text, behaviour), scales, strict=True)
        if block is not None and scale is not None
    ]
    if not blocks:
        return np.zeros((len(behaviour), 1))
    return np.hstack(blocks)


def _total_variance(block: np.ndarray | None) -> float | None:
    if block is None or block.shape[1] == 0:
        return None
    return float(block.var(axis=0).sum())


def _block_scale(total: float | None, weight: float) -> float | None:
    """A block's factor in :func:`combine`; ``None``: the block is left out (no columns, no
    weight or no variance)."""
    if total is None or weight <= 0 or not total > 0:
        return None
    return np.sqrt(weight / total)


def reduce_dimensions(X: np.ndarray, n_components: int = REDUCED_DIMENSIONS) -> np.ndarray:
    """``X`` in its first ``n_components`` principal components (all of them when it has fewer).

    k-means and the silhouette scan cost grows with the dimension; 384-d text vectors keep
    nearly all of their between-user variance in far fewer directions. The output is centred
    and its first two columns are the PCA map.
    """
    from sklearn.decomposition import PCA

    n_components = min(n_components, X.shape[1], len(X))
    if n_components < 2:
        return X - X.mean(axis=0)
    return PCA(n_components, svd_solver="full").fit_transform(X)


def _filled(U: np.ndarray, has: np.ndarray) -> np.ndarray:
    """float64 text vectors where users without text get the mean vector of the users with text
    (nothing changes when all or none have text)."""
    U = U.astype(np.float64)
    if has.any() and not has.all():
        U[~has] = U[has].mean(axis=0)
    return U


def _scaled_rows(
    U: np.ndarray,
    has: np.ndarray,
    fill: np.ndarray,
    behaviour: np.ndarray,
    scales: tuple[float | None, float | None],
) -> np.ndarray:
    """``[text * scale | behaviour * scale]`` as one float32 array, users without text getting
    ``fill``; a block whose scale is ``None`` is left out."""
    text_scale, behaviour_scale = scales
    d = U.shape[1] if text_scale is not None else 0
    width = d + (behaviour.shape[1] if behaviour_scale is not None else 0)
    if width == 0:
        return np.zeros((len(behaviour), 1), dtype=np.float32)
    out = np.empty((len(behaviour), width), dtype=np.float32)
    if text_scale is not None:
        out[:, :d] = U
        out[~has, :d] = fill
        out[:, :d] *= np.float32(text_scale)
    if behaviour_scale is not None:
        out[:, d:] = behaviour * behaviour_scale
    return out


def reduce_in_chunks(
    text: UserText,
    behaviour: np.ndarray,
    text_weight: float,
    *,
    sample_size: int | None = None,
    chunk_users: int | None = None,
    n_components: int = REDUCED_DIMENSIONS,
    random_state: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`combine` then :func:`reduce_dimensions`, never holding every user's text vector.

    What the reduction learns (the vector users without text get, the two block weights, the
    principal axes) is fitted on a seeded sample of ``sample_size`` users (default
    :data:`REDUCE_SAMPLE`), in float32; then every user's vector is built and projected
    ``chunk_users`` at a time (default :data:`CHUNK_USERS`). Memory: the sample, one chunk and the
    result (float32, one row per user). Returns the result and ``users_with_text``,
    ``pca_fitted_on``.
    """
    from sklearn.decomposition import PCA

    sample_size = REDUCE_SAMPLE if sample_size is None else sample_size
    chunk_users = CHUNK_USERS if chunk_users is None else chunk_users
    n = len(behaviour)
    sample = np.arange(n)
    if n > sample_size:
        rng = np.random.default_rng(random_state)
        sample = np.sort(rng.choice(n, size=sample_size, replace=False))
    U = np.empty((len(sample), text.dim), dtype=np.float32)
    has = np.empty(len(sample), dtype=bool)
    for lo in range(0, len(sample), chunk_users):  # users without text have zero rows
        U[lo : lo + chunk_users], has[lo : lo + chunk_users] = text.rows(
            sample[lo : lo + chunk_users]
        )
    with_text = max(int(has.sum()), 1)
    # Users without text get the sample's mean vector of users with text; the filled block's
    # total variance is then (sum of squared norms - with_text * |fill|^2) / sample size.
    fill = U.sum(axis=0, dtype=np.float64) / with_text
    squares = float(np.einsum("ij,ij->", U, U, dtype=np.float64))
    text_total = max(squares - with_text * float(fill @ fill), 0.0) / len(sample)
    scales = (
        _block_scale(text_total, text_weight),
        _block_scale(_total_variance(behaviour[sample]), 1.0 - text_weight),
    )
    fitted = _scaled_rows(U, has, fill, behaviour[sample], scales)
    del U
    k = min(n_components, fitted.shape[1], len(fitted))
    pca = PCA(k, svd_solver="covariance_eigh").fit(fitted) if k >= 2 else None
    centre = fitted.mean(axis=0, dtype=np.float64)
    del fitted
    out = np.empty((n, k if pca is not None else len(centre)), dtype=np.float32)
    users_with_text = 0
    for lo in range(0, n, chunk_users):
        hi = min(lo + chunk_users, n)
        U, has = text.rows(slice(lo, hi))
        users_with_text += int(has.sum())
        chunk = _scaled_rows(U, has, fill, behaviour[lo:hi], scales)
        out[lo:hi] = pca.transform(chunk) if pca is not None else chunk - centre
        if progress is not None:
            progress(hi / n, f"Projecting users: {hi:,} of {n:,}")
    return out, {"users_with_text": users_with_text, "pca_fitted_on": len(sample)}


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


def _top_items(data: UserData, rows: np.ndarray, n: int = 3) -> list[str]:
    """Per user row in ``rows`` (sorted): their ``n`` most frequent texts, joined by ', '."""
    if data.texts is None or data.items.empty:
        return [""] * len(rows)
    user = data.items["user"].to_numpy()
    picked = ranked_items(data.items, _item_rows(user, rows)[0])
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


def _public_info(text: UserText, users_with_text: int) -> dict[str, Any]:
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
    return _filled(U, has), _public_info(text, int(has.sum()))


# -- labels, map, profile --------------------------------------------------------------------


def _representatives(X: np.ndarray, labels: np.ndarray, user_ids: np.ndarray, n: int = 3) -> dict:
    out = {}
    for s in np.unique(labels):
        members = np.flatnonzero(labels == s)
        centre = X[members].mean(axis=0)
        dist = np.linalg.norm(X[members] - centre, axis=1)
        out[int(s)] = user_ids[members[np.argsort(dist, kind="stable")[:n]]].tolist()
    return out


def _text_keywords(data: UserData, labels: np.ndarray, top_n: int = 10) -> dict[int, list[str]]:
    """c-TF-IDF keywords per segment over its users' documents (each distinct text once per
    user), vectorising each distinct text once: the segment × text counts times the text × term
    counts."""
    segments = sorted(np.unique(labels).tolist())
    if data.items.empty or data.texts is None:
        return {s: [] for s in segments}
    vectorizer = _vectorizer()
    try:
        T = vectorizer.fit_transform(data.texts.tolist())  # texts × terms
    except ValueError:
        return {s: [] for s in segments}
    segment_of_user = np.searchsorted(segments, labels)
    user = data.items["user"].to_numpy()
    text = data.items["text"].to_numpy()
    shape = (len(segments), len(data.texts))
    C = sparse.csr_matrix(shape, dtype=float)
    for lo in range(0, len(user), ITEM_CHUNK):  # bounded memory: a chunk of rows at a time
        hi = min(lo + ITEM_CHUNK, len(user))
        C = C + sparse.csr_matrix(
            (np.ones(hi - lo), (segment_of_user[user[lo:hi]], text[lo:hi])), shape=shape
        )
    ranked = top_terms(C @ T, vectorizer.get_feature_names_out().tolist(), top_n)
    return {s: [t for t, _ in terms] for s, terms in zip(segments, ranked, strict=True)}


def _behaviour_keywords(B: np.ndarray, names: Sequence[str], labels: np.ndarray) -> dict:
    out = {}
    for s in np.unique(labels):
        z = B[labels == s].mean(axis=0)
        order = np.argsort(-np.abs(z), kind="stable")
        words = [
            _BEHAVIOUR_WORDS[names[j]][0 if z[j] > 0 else 1] for j in order if abs(z[j]) >= 0.25
        ]
        out[int(s)] = words
    return out


def _labels_frame(
    labels: np.ndarray,
    keywords: dict[int, list[str]],
    representatives: dict[int, list[str]],
    fallback: dict[int, list[str]] | None = None,
) -> pd.DataFrame:
    rows = []
    seen: dict[str, int] = {}
    for s in sorted(np.unique(labels).tolist()):
        words = keywords.get(s) or (fallback or {}).get(s) or []
        if s == NOISE:
            label = "Unclustered"
        elif words:
            label = ", ".join(words[:3])
        else:
            label = f"Segment {s + 1}"
        if label in seen:  # names must tell segments apart
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        rows.append(
            {
                "segment": int(s),
                "label": label,
                "keywords": ", ".join(words),
                "users": int((labels == s).sum()),
                "representatives": ", ".join(representatives.get(s, [])),
            }
        )
    return pd.DataFrame(rows)


def map_rows(labels: np.ndarray, max_points: int = MAP_SAMPLE, seed: int = 0) -> np.ndarray:
    """The users the map shows: all of them up to ``max_points``, else a seeded sample of at
    most ``max_points`` drawn within each segment in proportion to its size (every segment keeps
    at least one user). Sorted row indices."""
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    segments, counts = np.unique(labels, return_counts=True)
    if len(segments) * 2 > max_points:  # too many segments to keep each: a plain sample
        return np.sort(rng.choice(n, size=max_points, replace=False))
    take = np.maximum(1, counts * (max_points - len(segments)) // n)
    chosen = [
        rng.choice(np.flatnonzero(labels == s), size=int(m), replace=False)
        for s, m in zip(segments, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def map_2d(
    X: np.ndarray,
    method: str = "pca",
    random_state: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates for the map and the row indices they belong to.

    The map shows ``rows`` (default: every user up to :data:`MAP_SAMPLE`, else a seeded sample
    of that many), and PCA or UMAP (``umap-learn``, imported only here) is fitted on them alone.
    """
    _check_choice("map_method", method, MAP_METHODS)
    n = len(X)
    if rows is None:
        rows = np.arange(n)
        if n > MAP_SAMPLE:
            rows = np.sort(np.random.default_rng(random_state).choice(n, MAP_SAMPLE, replace=False))
    shown = X if len(rows) == n else X[rows]  # (rows are sorted and distinct)
    if len(rows) < 3 or X.shape[1] < 2:
        coords = np.zeros((len(rows), 2))
        coords[:, : min(2, X.shape[1])] = shown[:, : min(2, X.shape[1])]
        return coords, rows
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(15, len(rows) - 1), random_state=random_state
        )
        return np.asarray(reducer.fit_transform(shown), dtype=float), rows
    from sklearn.decomposition import PCA

    return PCA(2, random_state=random_state).fit_transform(shown), rows


def retention_by_segment(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    assignments: pd.DataFrame,
    period: str = "auto",
    after: Sequence[int] = RETENTION_AFTER,
) -> tuple[pd.DataFrame, str]:
    """Share of each segment's users active ``k`` periods after their first period, among the
    users observed that long (first period + k <= the data's last period).

    Returns a frame ``segment, retention_<k>...`` and the period used.
    """
    grid = period_grid(con, ref, period)
    index = period_index_sql(grid.period, "CAST(ts AS TIMESTAMP)")
    with (
        _registered(con, assignments[["user_id", "segment"]]) as seg,
        _registered(con, pd.DataFrame({"k": list(after)})) as ks,
    ):
        frame = con.execute(
            f"""
            WITH a AS (
                SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id, {index} AS t
                FROM {ref} WHERE user_id IS NOT NULL AND ts IS NOT NULL
            ),
            f AS (SELECT user_id, min(t) AS first_t FROM a GROUP BY user_id),
            s AS (SELECT f.user_id, f.first_t, g.segment FROM f JOIN {seg} g USING (user_id))
            SELECT s.segment, ks.k, count(*) AS eligible, count(a.user_id) AS retained
            FROM s CROSS JOIN {ks} ks
            LEFT JOIN a ON a.user_id = s.user_id AND a.t = s.first_t + ks.k
            WHERE s.first_t + ks.k <= $last_t
            GROUP BY s.segment, ks.k
            """,  # noqa: S608 -- fixed fragments and quoted identifiers only
            {"origin": grid.origin.to_pydatetime(), "last_t": grid.last_t},
        ).df()
    out = pd.DataFrame({"segment": sorted(assignments["segment"].unique().tolist())})
    for k in after:
        part = frame[frame["k"] == k].set_index("segment")
        share = part["retained"] / part["eligible"]
        out[f"retention_{k}"] = out["segment"].map(share).astype(float)
    return out, grid.period


def _profile(
    users: pd.DataFrame, labels: np.ndarray, has_amount: bool, retention: pd.DataFrame | None
) -> pd.DataFrame:
    frame = users.assign(segment=labels)
    grouped = frame.groupby("segment")
    profile = pd.DataFrame(
        {
            "users": grouped.size(),
            "recency_days": grouped["recency_days"].mean(),
            "frequency": grouped["frequency"].mean(),
            "monetary": grouped["monetary"].mean() if has_amount else np.nan,
            "revenue": grouped["monetary"].sum() if has_amount else np.nan,
        }
    ).reset_index()
    profile.insert(2, "share", profile["users"] / len(users))
    if retention is not None:
        profile = profile.merge(retention, on="segment", how="left")
    return profile


# -- the pipeline ----------------------------------------------------------------------------


def _segment_events(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    settings: SegmentSettings,
    embedder: Embedder | None,
    workspace: Workspace | None,
    progress: Progress | None,
) -> SegmentationResult:
    _Stage(progress, 0, 0.05)(0.0, "Reading events")
    data = aggregate_users(con, ref)
    user_ids = data.users["user_id"].to_numpy(dtype=object)
    B, names = behaviour_matrix(data.users, data.has_amount)
    metrics: dict[str, Any] = {"users": len(user_ids), "behaviour": names}

    use_text = not data.items.empty and settings.text_weight > 0
    text = None
    if use_text:
        inner = embedder or SentenceTransformerEmbedder(settings.model_path)
        text = embed_user_text(
            data,
            CachedEmbedder(inner, workspace),
            user_vector=settings.user_vector,
            weighting=settings.weighting,
            progress=_Stage(progress, 0.05, 0.7),
        )
        if len(user_ids) > REDUCE_SAMPLE:  # never all text vectors at once
            X, reduced = reduce_in_chunks(
                text,
                B,
                settings.text_weight,
                random_state=settings.random_state,
                progress=_Stage(progress, 0.7, 0.75),
            )
            metrics.update(_public_info(text, reduced["users_with_text"]))
            metrics["pca_fitted_on"] = reduced["pca_fitted_on"]
        else:
            U, has = text.rows(slice(0, len(user_ids)))
            T = _filled(U, has)
            del U
            metrics.update(_public_info(text, int(has.sum())))
            X = reduce_dimensions(combine(T, B, settings.text_weight))
            del T
        metrics["embedder"] = describe(inner)
    else:
        X = reduce_dimensions(combine(None, B, 0.0))
    metrics["text_used"] = bool(use_text)
    metrics["text_available"] = not data.items.empty

    _Stage(progress, 0.75 if use_text else 0.7, 0.85)(0.0, "Finding segments")
    segmenter = Segmenter(
        settings.k,
        settings.algorithm,
        min_cluster_size=settings.min_cluster_size,
        random_state=settings.random_state,
    ).fit(X)
    labels = segmenter.labels_
    metrics.update(_cluster_metrics(segmenter))

    _Stage(progress, 0.85, 0.9)(0.0, "Labelling segments")
    keywords = _text_keywords(data, labels) if use_text else {}
    label_frame = _labels_frame(
        labels,
        keywords,
        _representatives(X, labels, user_ids),
        _behaviour_keywords(B, names, labels),
    )

    _Stage(progress, 0.9, 0.97)(0.0, "Drawing the map")
    rows = map_rows(labels, MAP_SAMPLE, settings.random_state)  # at most MAP_SAMPLE users
    if settings.map_method == "pca" and X.shape[1] >= 2:  # X is already in PCA coordinates
        coords = X[rows, :2].astype(np.float64)
    else:
        coords, rows = map_2d(X, settings.map_method, settings.random_state, rows=rows)
    top = _top_items(data, rows)
    names_of = dict(zip(label_frame["segment"], label_frame["label"], strict=True))
    hover = [
        f"{user_ids[i]} · {names_of[int(labels[i])]}" + (f"<br>{items}" if items else "")
        for i, items in zip(rows, top, strict=True)
    ]
    map_frame = pd.DataFrame(
        {
            "user_id": user_ids[rows].astype(str),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "segment": labels[rows],
            "hover": hover,
        }
    )

    _Stage(progress, 0.97, 1.0)(0.0, "Profiling segments")
    users, has_amount = data.users, data.has_amount
    del X, data, text  # the retention query below may want the memory
    assignments = pd.DataFrame({"user_id": user_ids.astype(str), "segment": labels})
    retention, period = retention_by_segment(con, ref, assignments, settings.period)
    metrics["period"] = period
    profile = _profile(users, labels, has_amount, retention)
    profile.insert(1, "label", profile["segment"].map(names_of))
    if progress is not None:
        progress(1.0, f"{segmenter.k_} segments")
    return SegmentationResult(assignments, label_frame, map_frame, profile, metrics)


def _cluster_metrics(segmenter: Segmenter) -> dict[str, Any]:
    return {
        "k": segmenter.k_,
        "algorithm": segmenter.algorithm,
        "k_auto": segmenter.k == "auto" and segmenter.algorithm == "kmeans",
        "silhouette_by_k": {str(k): v for k, v in segmenter.silhouette_.items()},
        "noise_users": int((segmenter.labels_ == NOISE).sum()),
    }


def segment_users(
    events: pd.DataFrame,
    *,
    settings: SegmentSettings | dict[str, Any] | None = None,
    embedder: Embedder | None = None,
    workspace: Workspace | None = None,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment the users of a canonical events frame (``user_id, ts, amount, text``).

    ``embedder`` defaults to the bundled model; with a ``workspace`` its vector cache is used.
    """
    settings = SegmentSettings.coerce(settings)
    con = duckdb.connect()
    try:
        with _registered(con, events) as ref:
            return _segment_events(con, ref, settings, embedder, workspace, progress)
    finally:
        con.close()


def run_settings(
    settings: SegmentSettings | dict[str, Any] | None, embedder: Embedder | None = None
) -> dict[str, Any]:
    """The settings as stored with a run: the dataclass's fields plus the model's id."""
    settings = SegmentSettings.coerce(settings)
    stored = settings.to_dict()
    stored["model"] = (
        embedder.model_id if embedder is not None else model_id_for(settings.model_path)
    )
    return stored


def segment_dataset(
    ws: Workspace,
    dataset_id: str,
    settings: SegmentSettings | dict[str, Any] | None = None,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment a workspace dataset (storing it as a run is :func:`retention.runs.run_segmentation`).

    Event logs go through the whole pipeline (with the workspace's embedding cache); a campaign
    snapshot is clustered on its feature columns (:func:`segment_snapshot`).
    """
    info = ws.dataset(dataset_id)
    parsed = SegmentSettings.coerce(settings)
    if info.shape == "snapshot":
        return segment_snapshot(
            ws.load(dataset_id, "snapshot"),
            k=parsed.k,
            algorithm=parsed.algorithm,
            map_method=parsed.map_method,
            min_cluster_size=parsed.min_cluster_size,
            random_state=parsed.random_state,
            progress=progress,
        )
    # A cursor of its own, so the embedding cache can use the workspace's meanwhile.
    con = ws.cursor().cursor()
    try:
        return _segment_events(con, ws.table(dataset_id, "events"), parsed, embedder, ws, progress)
    finally:
        con.close()


# -- campaign snapshots ----------------------------------------------------------------------


def snapshot_features(
    snapshot: pd.DataFrame, feature_columns: Sequence[str] | None = None, max_categories: int = 50
) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    """The feature matrix of a snapshot: numeric columns standardised (missing → median),
    categorical columns one-hot (missing → its own category).

    Default columns: every column but ``user_id, action, outcome, propensity``, leaving out
    categoricals with more than ``max_categories`` values (ids, free text). Returns the matrix,
    its column names and the frame of the chosen raw columns.
    """
    if feature_columns is None:
        chosen = []
        for col in snapshot.columns:
            if col in SNAPSHOT_RESERVED or snapshot[col].isna().all():
                continue
            numeric = pd.api.types.is_numeric_dtype(snapshot[col]) or pd.api.types.is_bool_dtype(
                snapshot[col]
            )
            if numeric or snapshot[col].nunique() <= max_categories:
                chosen.append(col)
    else:
        chosen = list(feature_columns)
        unknown = [c for c in chosen if c not in snapshot.columns]
        if unknown:
            raise InputError(
                f"The 'feature_columns' parameter names column(s) {', '.join(unknown)} that the "
                f"snapshot lacks. Columns present: {', '.join(map(str, snapshot.columns))}."
            )
    if not chosen:
        raise InputError(
            "The snapshot has no feature columns to segment on (only user_id, action, outcome "
            "and propensity). Add feature columns such as recency or past spend."
        )
    blocks, names = [], []
    for col in chosen:
        series = snapshot[col]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            values = pd.to_numeric(series, errors="coerce").astype(float)
            values = values.fillna(values.median() if values.notna().any() else 0.0)
            blocks.append(_standardise(values.to_numpy()[:, None]))
            names.append(str(col))
        else:
            dummies = pd.get_dummies(series.astype("string").fillna("missing"), dtype=float)
            blocks.append(dummies.to_numpy())
            names.extend(f"{col}={value}" for value in dummies.columns)
    return np.hstack(blocks), names, snapshot[chosen]


def _snapshot_keywords(X: np.ndarray, names: list[str], labels: np.ndarray) -> dict:
    """Per segment, its most distinctive features: a numeric column's mean z-score ("high
    history"), or a category's over-representation ("channel=Web")."""
    is_dummy = np.array(["=" in n for n in names])
    base = X.mean(axis=0)
    out = {}
    for s in np.unique(labels):
        mean = X[labels == s].mean(axis=0)
        strength = np.where(
            is_dummy, np.log(np.maximum(mean, 1e-9) / np.maximum(base, 1e-9)), np.abs(mean)
        )
        strength = np.where(is_dummy & (mean < 0.2), 0.0, strength)
        words = []
        for j in np.argsort(-strength, kind="stable"):
            if strength[j] < 0.25:
                break
            words.append(
                names[j] if is_dummy[j] else f"{'high' if mean[j] > 0 else 'low'} {names[j]}"
            )
        out[int(s)] = words[:8]
    return out


def segment_snapshot(
    snapshot: pd.DataFrame,
    feature_columns: Sequence[str] | None = None,
    *,
    k: int | str = "auto",
    algorithm: str = "kmeans",
    map_method: str = "pca",
    min_cluster_size: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment the users of a campaign snapshot (one row per user) on its feature columns.

    Numeric features are standardised and categoricals one-hot encoded
    (:func:`snapshot_features`); clustering as for event logs. The profile has each segment's
    users, share, mean outcome (when present) and mean numeric features; retention over
    periods does not apply to a snapshot.
    """
    if "user_id" not in snapshot.columns:
        raise InputError("The snapshot lacks the 'user_id' column.")
    _Stage(progress, 0, 0.1)(0.0, "Reading features")
    X, names, raw = snapshot_features(snapshot, feature_columns)
    user_ids = snapshot["user_id"].astype(str).to_numpy(dtype=object)
    _Stage(progress, 0.1, 0.8)(0.0, "Finding segments")
    segmenter = Segmenter(
        k, algorithm, min_cluster_size=min_cluster_size, random_state=random_state
    ).fit(X)
    labels = segmenter.labels_
    label_frame = _labels_frame(
        labels, _snapshot_keywords(X, names, labels), _representatives(X, labels, user_ids)
    )
    names_of = dict(zip(label_frame["segment"], label_frame["label"], strict=True))
    _Stage(progress, 0.8, 0.95)(0.0, "Drawing the map")
    coords, rows = map_2d(
        X, map_method, random_state, rows=map_rows(labels, MAP_SAMPLE, random_state)
    )
    shown = list(raw.columns[:4])
    hover = [
        f"{user_ids[i]} · {names_of[int(labels[i])]}<br>"
        + ", ".join(f"{c}={raw[c].iat[i]}" for c in shown)
        for i in rows
    ]
    map_frame = pd.DataFrame(
        {
            "user_id": user_ids[rows].astype(str),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "segment": labels[rows],
            "hover": hover,
        }
    )
    frame = pd.DataFrame({"segment": labels})
    numeric = [c for c in raw.columns if pd.api.types.is_numeric_dtype(raw[c])]
    for c in numeric:
        frame[c] = pd.to_numeric(raw[c], errors="coerce").to_numpy()
    if "outcome" in snapshot.columns:
        frame["outcome"] = pd.to_numeric(snapshot["outcome"], errors="coerce").to_numpy()
    grouped = frame.groupby("segment")
    profile = grouped.mean().reset_index()
    profile.insert(1, "users", grouped.size().to_numpy())
    profile.insert(1, "share", profile["users"] / len(frame))
    profile.insert(1, "label", profile["segment"].map(names_of))
    profile = profile[["segment", "label", "users", "share", *profile.columns[4:]]]
    metrics = {"users": len(user_ids), "features": names, "text_used": False}
    metrics.update(_cluster_metrics(segmenter))
    assignments = pd.DataFrame({"user_id": user_ids.astype(str), "segment": labels})
    if progress is not None:
        progress(1.0, f"{segmenter.k_} segments")
    return SegmentationResult(assignments, label_frame, map_frame, profile, metrics)

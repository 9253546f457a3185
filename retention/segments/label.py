"""Step 5, label: each segment's behaviour tag, its most distinctive words and a few
representative users.

A segment's name is a short behaviour tag from how its users behave compared with the whole base
(:func:`behaviour_tag`: "loyal, big spenders", "lapsed, one-off buyers") followed by its most
distinctive words: "loyal, big spenders · bag, red, vintage". Words come from class-based TF-IDF
(BERTopic's formula, :func:`ctfidf_scores`) over each segment's users' documents, keeping only
terms a segment uses more than the rest (:func:`top_terms`) and leaving out stop words, sentiment
words and contraction fragments (:func:`label_stop_words`: "doesn", "stars", "great").
Representatives are the users closest to the segment's centre.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from retention.segments.features import UserData
from retention.segments.tokens import words
from retention.words import NOISE_SEGMENT, segment_display_name

ITEM_CHUNK = 4_000_000  # user-text rows per step when counting texts per segment
DENSE_COUNTS = 16_000_000  # segments × texts cells up to which they are counted densely

#: Between the two (segment mean ÷ whole-base mean) a behaviour is "as usual"; beyond, it names
#: the segment ("frequent" at 1.5 × the base's active days or more, "occasional" at ⅔ or less).
HIGH, LOW = 1.5, 2 / 3
#: At most this many active days on average: the segment's users came once ("one-off").
ONE_OFF_DAYS = 1.5
#: Separates the behaviour tag from the words in a segment's name.
NAME_SEPARATOR = " · "

#: Words that say how a writer felt, not what they bought or wrote about: on reviews they are
#: distinctive of happy or unhappy customers, not of products ("great, love, stars").
SENTIMENT_WORDS = frozenset(
    [
        "amazing",
        "awesome",
        "awful",
        "bad",
        "beautiful",
        "best",
        "better",
        "brilliant",
        "cheap",
        "decent",
        "disappointed",
        "disappointing",
        "excellent",
        "fab",
        "fabulous",
        "fantastic",
        "favorite",
        "favourite",
        "fine",
        "glad",
        "good",
        "gorgeous",
        "great",
        "happy",
        "hate",
        "hated",
        "highly",
        "honestly",
        "horrible",
        "ideal",
        "impressed",
        "like",
        "liked",
        "lovely",
        "love",
        "loved",
        "loves",
        "meh",
        "nice",
        "ok",
        "okay",
        "perfect",
        "perfectly",
        "pleased",
        "pleasantly",
        "poor",
        "poorly",
        "pretty",
        "recommend",
        "recommended",
        "sadly",
        "satisfied",
        "super",
        "superb",
        "surprised",
        "terrible",
        "unhappy",
        "useless",
        "wonderful",
        "worse",
        "worst",
        "worth",
        "wow",
    ]
)
#: Pieces of contractions the tokenizer leaves ("doesn't" → "doesn") and review boilerplate
#: (ratings, "bought", "product") that every segment's reviews share.
FRAGMENTS = frozenset(
    [
        "aren",
        "couldn",
        "didn",
        "doesn",
        "don",
        "hadn",
        "hasn",
        "haven",
        "im",
        "isn",
        "ive",
        "ll",
        "mustn",
        "shan",
        "shouldn",
        "ve",
        "wasn",
        "weren",
        "won",
        "wouldn",
        "ain",
        "ya",
        "star",
        "stars",
        "rating",
        "rated",
        "review",
        "reviews",
        "product",
        "products",
        "item",
        "items",
        "bought",
        "buy",
        "buying",
        "purchase",
        "purchased",
        "ordered",
        "got",
        "use",
        "used",
        "using",
        "just",
        "really",
        "thing",
        "things",
        "lot",
        "bit",
        "thanks",
        "thank",
    ]
)


@functools.cache
def label_stop_words() -> frozenset[str]:
    """Words never used in a label: scikit-learn's English stop words (a kept list), sentiment
    words and contraction fragments."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | SENTIMENT_WORDS | FRAGMENTS


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

    return CountVectorizer(  # words(): Chinese and Japanese cut into words (segments/tokens.py)
        stop_words=sorted(label_stop_words()),
        tokenizer=words,
        token_pattern=None,
        ngram_range=ngram_range,
    )


def ctfidf(
    documents: Sequence[str], classes: Sequence[int], top_n: int = 10
) -> dict[int, list[tuple[str, float]]]:
    """Top c-TF-IDF terms of each class, where a class's text is all its documents together.

    Stop words, sentiment words, fragments (:func:`label_stop_words`) and numbers are ignored; so are terms a class does not use more than the
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


def representatives(
    X: np.ndarray, labels: np.ndarray, user_ids: np.ndarray, n: int = 3
) -> dict[int, list[str]]:
    """Per segment, the ids of its ``n`` users closest to the segment's centre in ``X``."""
    out = {}
    for s in np.unique(labels):
        members = np.flatnonzero(labels == s)
        centre = X[members].mean(axis=0)
        dist = np.linalg.norm(X[members] - centre, axis=1)
        out[int(s)] = user_ids[members[np.argsort(dist, kind="stable")[:n]]].tolist()
    return out


def text_terms(data: UserData) -> tuple[sparse.csr_matrix, list[str]] | None:
    """The distinct texts' term counts (texts × terms) and the terms, as :func:`text_keywords`
    counts them (they do not depend on the segments: a caller that keeps the users' data keeps
    them too); None when there is no text or no term."""
    if data.items.empty or data.texts is None:
        return None
    vectorizer = _vectorizer()
    try:
        T = vectorizer.fit_transform(data.texts.tolist())  # texts × terms
    except ValueError:
        return None
    return T, vectorizer.get_feature_names_out().tolist()


def segment_text_counts(
    segment_of_user: np.ndarray, user: np.ndarray, text: np.ndarray, shape: tuple[int, int]
) -> sparse.csr_matrix:
    """How many user-text rows (``user``, ``text``) each (segment, text) pair has, as a float
    CSR matrix of ``shape``, a chunk of :data:`ITEM_CHUNK` rows at a time (bounded memory).

    Issue 19 (50M events: 31 million user-text rows): counted with ``np.bincount`` of the
    pair's flat index when the dense table is at most :data:`DENSE_COUNTS` cells (segments ×
    distinct texts: 0.2 s at 50M), else summed as sparse matrices (1.4 s at 50M). Both give the
    same matrix: the same non-zero cells holding the same whole numbers."""
    cells = shape[0] * shape[1]
    dense = np.zeros(cells, dtype=np.int64) if cells <= DENSE_COUNTS else None
    C = sparse.csr_matrix(shape, dtype=float)
    for lo in range(0, len(user), ITEM_CHUNK):
        hi = min(lo + ITEM_CHUNK, len(user))
        segment = segment_of_user[user[lo:hi]]
        if dense is not None:
            dense += np.bincount(segment * shape[1] + text[lo:hi], minlength=cells)
        else:
            C = C + sparse.csr_matrix((np.ones(hi - lo), (segment, text[lo:hi])), shape=shape)
    return sparse.csr_matrix(dense.reshape(shape).astype(float)) if dense is not None else C


def text_keywords(
    data: UserData,
    labels: np.ndarray,
    top_n: int = 10,
    terms: tuple[sparse.csr_matrix, list[str]] | None = None,
) -> dict[int, list[str]]:
    """c-TF-IDF keywords per segment over its users' documents (each distinct text once per
    user), vectorising each distinct text once: the segment × text counts times the text × term
    counts (``terms``: :func:`text_terms` of ``data`` when the caller kept it)."""
    segments = sorted(np.unique(labels).tolist())
    found = text_terms(data) if terms is None else terms
    if found is None:
        return {s: [] for s in segments}
    T, names = found
    segment_of_user = np.searchsorted(segments, labels)
    user = data.items["user"].to_numpy()
    text = data.items["text"].to_numpy()
    counts = segment_text_counts(segment_of_user, user, text, (len(segments), len(data.texts)))
    ranked = top_terms(counts @ T, names, top_n)
    return {s: [t for t, _ in terms] for s, terms in zip(segments, ranked, strict=True)}


def behaviour_tag(
    segment: Mapping[str, float], base: Mapping[str, float], has_amount: bool = True
) -> str:
    """A short phrase for how a segment behaves compared with the whole base ("loyal, big
    spenders", "lapsed, one-off buyers", "frequent, low spend"); "typical buyers" when nothing
    stands out.

    ``segment`` and ``base`` hold mean ``frequency`` (active days), ``recency_days`` (days since
    last active), ``monetary`` (spend, used when ``has_amount``) and ``tenure_days`` (days since
    first active) of the segment's users and of all users. Each is compared as a ratio of the
    segment's mean to the base's: ≥ :data:`HIGH` or ≤ :data:`LOW` counts. At most two parts, the
    strongest first chosen, then shown in a fixed order (when, how often, how much):

    * how often: "one-off" (at most :data:`ONE_OFF_DAYS` active days on average), "loyal"
      (frequent and recent), "frequent", "occasional";
    * when (unless loyal): "lapsed" (long since last active), "recent" (for one-off buyers who
      came recently, "new"), else "new" (short tenure, for segments that came back);
    * how much: "big spenders", "low spend".
    """
    noun = "buyers" if has_amount else "users"

    def ratio(key: str) -> float | None:
        mine, everyone = segment.get(key), base.get(key)
        if mine is None or everyone is None or not everyone > 0 or mine != mine:
            return None
        return float(mine) / float(everyone)

    def strength(r: float | None) -> float:
        return 0.0 if r is None or r <= 0 else abs(float(np.log(r)))

    freq, rec = ratio("frequency"), ratio("recency_days")
    spend = ratio("monetary") if has_amount else None
    tenure = ratio("tenure_days")
    one_off = segment.get("frequency") is not None and segment["frequency"] <= ONE_OFF_DAYS
    recent = rec is not None and rec <= LOW
    parts: dict[str, tuple[float, str]] = {}  # position → (strength, words)
    if one_off:
        parts["often"] = (np.inf, f"one-off {noun}")
    elif freq is not None and freq >= HIGH:
        parts["often"] = (strength(freq), "loyal" if recent else "frequent")
    elif freq is not None and freq <= LOW:
        parts["often"] = (strength(freq), "occasional")
    if parts.get("often", (0, ""))[1] != "loyal":
        if rec is not None and rec >= HIGH:
            parts["when"] = (strength(rec), "lapsed")
        elif recent:
            parts["when"] = (strength(rec), "new" if one_off else "recent")
        elif tenure is not None and tenure <= LOW and not one_off:  # a one-off's is its recency
            parts["when"] = (strength(tenure), "new")
    if spend is not None and spend >= HIGH:
        parts["much"] = (strength(spend), "big spenders")
    elif spend is not None and spend <= LOW and not one_off:  # one-off buyers spend little
        parts["much"] = (strength(spend), "low spend")
    kept = sorted(parts, key=lambda p: -parts[p][0])[:2]
    words = [parts[p][1] for p in ("when", "often", "much") if p in kept]
    if not words:
        return f"typical {noun}"
    if words[-1] in ("loyal", "frequent", "occasional", "recent", "lapsed", "new"):
        words[-1] = f"{words[-1]} {noun}"  # "lapsed buyers", "loyal buyers"
    return ", ".join(words)


def behaviour_tags(users: pd.DataFrame, labels: np.ndarray, has_amount: bool) -> dict[int, str]:
    """:func:`behaviour_tag` of each segment (noise included), from the per-user behaviour
    (``recency_days, frequency, monetary, tenure_days``) and the segment labels."""
    columns = ["recency_days", "frequency", "monetary", "tenure_days"]
    frame = users[columns].astype(float)
    base = frame.mean().to_dict()
    means = frame.groupby(np.asarray(labels)).mean()
    return {int(s): behaviour_tag(row.to_dict(), base, has_amount) for s, row in means.iterrows()}


def segment_label(tag: str | None, words: Sequence[str]) -> str:
    """A segment's name from its behaviour tag and its keywords: "loyal, big spenders · bag,
    red, vintage" (the first three words); either part alone when the other is missing."""
    parts = [p for p in (tag, ", ".join(words[:3])) if p]
    return NAME_SEPARATOR.join(parts)


def labels_frame(
    labels: np.ndarray,
    keywords: dict[int, list[str]],
    representatives: dict[int, list[str]],
    tags: dict[int, str] | None = None,
) -> pd.DataFrame:
    """``segment, label, behaviour, keywords, users, representatives``, one row per segment.

    A label is the segment's behaviour tag (``tags``) and its first three keywords
    (:func:`segment_label`), else the segment's display name (always for noise); a repeated
    label gets a number, so names tell segments apart.
    """
    rows = []
    seen: dict[str, int] = {}
    for s in sorted(np.unique(labels).tolist()):
        words = keywords.get(s) or []
        tag = (tags or {}).get(s) or ""
        named = s != NOISE_SEGMENT and (words or tag)
        label = segment_label(tag, words) if named else segment_display_name(s)
        if label in seen:  # names must tell segments apart
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        rows.append(
            {
                "segment": int(s),
                "label": label,
                "behaviour": tag,
                "keywords": ", ".join(words),
                "users": int((labels == s).sum()),
                "representatives": ", ".join(representatives.get(s, [])),
            }
        )
    return pd.DataFrame(rows)

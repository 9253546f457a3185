"""Step 5, label: each segment's most distinctive words and a few representative users.

Class-based TF-IDF (BERTopic's formula, :func:`ctfidf_scores`) over each segment's users'
documents, keeping only terms a segment uses more than the rest (:func:`top_terms`). Without
text, labels describe the behaviour ("recent, high spend"). Representatives are the users
closest to the segment's centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from retention.segments.features import UserData
from retention.segments.tokens import words
from retention.words import NOISE_SEGMENT, segment_display_name

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters; no numbers
ITEM_CHUNK = 4_000_000  # user-text rows per step when counting texts per segment

# Words that describe a segment's behaviour (z-score of the mean above / below the average).
_BEHAVIOUR_WORDS = {
    "recency": ("lapsed", "recent"),
    "frequency": ("frequent", "occasional"),
    "monetary": ("high spend", "low spend"),
    "tenure": ("long-standing", "new"),
}


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
        stop_words="english", tokenizer=words, token_pattern=None, ngram_range=ngram_range
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


def text_keywords(data: UserData, labels: np.ndarray, top_n: int = 10) -> dict[int, list[str]]:
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


def behaviour_keywords(
    B: np.ndarray, names: Sequence[str], labels: np.ndarray
) -> dict[int, list[str]]:
    """Per segment, words for the behaviour columns whose mean z-score is at least 0.25 away
    from the average, strongest first ("frequent", "high spend")."""
    out = {}
    for s in np.unique(labels):
        z = B[labels == s].mean(axis=0)
        order = np.argsort(-np.abs(z), kind="stable")
        words = [
            _BEHAVIOUR_WORDS[names[j]][0 if z[j] > 0 else 1] for j in order if abs(z[j]) >= 0.25
        ]
        out[int(s)] = words
    return out


def labels_frame(
    labels: np.ndarray,
    keywords: dict[int, list[str]],
    representatives: dict[int, list[str]],
    fallback: dict[int, list[str]] | None = None,
) -> pd.DataFrame:
    """``segment, label, keywords, users, representatives``, one row per segment.

    A label is the first three keywords (``fallback`` words when a segment has none), else the
    segment's display name; a repeated label gets a number, so names tell segments apart.
    """
    rows = []
    seen: dict[str, int] = {}
    for s in sorted(np.unique(labels).tolist()):
        words = keywords.get(s) or (fallback or {}).get(s) or []
        named = s != NOISE_SEGMENT and words
        label = ", ".join(words[:3]) if named else segment_display_name(s)
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

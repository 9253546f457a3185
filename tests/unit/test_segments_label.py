"""Segment labels: c-TF-IDF by hand, one class per term, stop words, default names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.segments import ctfidf, ctfidf_scores, label, top_terms
from retention.segments.label import (
    FRAGMENTS,
    SENTIMENT_WORDS,
    behaviour_tag,
    behaviour_tags,
    label_stop_words,
    labels_frame,
)
from retention.segments.tokens import TOKEN_PATTERN
from retention.words import segment_display_name


def test_ctfidf_matches_a_hand_computation():
    # Class 0: "apple apple banana" + "apple cherry"; class 1: "banana date" + "date date".
    docs = ["apple apple banana", "apple cherry", "banana date", "date date"]
    result = ctfidf(docs, [0, 0, 1, 1], top_n=5)
    # counts: class 0 apple 3, banana 1, cherry 1 (5 words); class 1 banana 1, date 3 (4 words)
    # A = 9 / 2 = 4.5; f: apple 3, banana 2, cherry 1, date 3.
    # banana: 1/5 of class 0's words, 1/4 of class 1's, 2/9 overall -> describes class 1 only.
    expected0 = {
        "apple": 3 / 5 * math.log(1 + 4.5 / 3),
        "cherry": 1 / 5 * math.log(1 + 4.5 / 1),
    }
    expected1 = {"date": 3 / 4 * math.log(1 + 4.5 / 3), "banana": 1 / 4 * math.log(1 + 4.5 / 2)}
    assert [t for t, _ in result[0]] == ["apple", "cherry"]
    assert [t for t, _ in result[1]] == ["date", "banana"]
    for term, score in result[0]:
        assert score == pytest.approx(expected0[term])
    for term, score in result[1]:
        assert score == pytest.approx(expected1[term])


def test_a_term_describes_at_most_one_class():
    # "red" is over-represented in classes 0 and 1 (3/4 and 2/4 of their words vs 5/12), most
    # in class 0; "blue" only in class 2.
    counts = np.array([[3, 1, 0], [2, 1, 1], [0, 1, 3]])
    ranked = top_terms(counts, ["red", "mug", "blue"])
    terms = [[t for t, _ in r] for r in ranked]
    assert terms[0] == ["red"]
    assert "red" not in terms[1]
    assert terms[2] == ["blue"]
    flat = [t for r in terms for t in r]
    assert len(flat) == len(set(flat))


def test_ctfidf_ignores_stop_words_and_numbers():
    result = ctfidf(["the 12 red mugs", "of the blue 3 mugs"], [0, 1])
    assert [t for t, _ in result[0]] == ["red"]
    assert [t for t, _ in result[1]] == ["blue"]


def test_ctfidf_scores_formula_on_a_matrix():
    counts = np.array([[2, 0], [1, 1]])
    # A = 4 / 2 = 2; f = [3, 1]; tf rows [1, 0], [0.5, 0.5]
    expected = np.array([[math.log(1 + 2 / 3), 0], [0.5 * math.log(1 + 2 / 3), 0.5 * math.log(3)]])
    np.testing.assert_allclose(ctfidf_scores(counts), expected)
    ranked = top_terms(counts, ["a", "b"])
    # shares: class 0 a 1.0, b 0; class 1 a 0.5, b 0.5; overall a 0.75, b 0.25
    assert [t for t, _ in ranked[0]] == ["a"]
    assert [t for t, _ in ranked[1]] == ["b"]


def test_segments_without_words_get_the_shared_display_name():
    frame = labels_frame(np.array([0, 0, 1, -1]), {0: ["mug", "tea"]}, {}, {1: ""})
    assert frame["label"].tolist() == [
        segment_display_name(-1),
        "mug, tea",
        segment_display_name(1),
    ]
    assert frame["label"].tolist() == ["Unclustered", "mug, tea", "Segment 2"]


# ----------------------------------------------------------------------------- behaviour tags
# Oracle: hand-made profiles against a hand-made base, each ratio worked out in the comment.
BASE = {"frequency": 4.0, "recency_days": 90.0, "monetary": 2000.0, "tenure_days": 250.0}


def test_behaviour_tag_of_hand_made_profiles():
    # Online Retail's two broad groups (issue 18): 7.3 active days (1.8× the base), 37 days
    # since last purchase (0.41×), 4,188 spend (2.1×) -> loyal (frequent and recent), big spenders.
    loyal = {"frequency": 7.3, "recency_days": 37.0, "monetary": 4188.0, "tenure_days": 300.0}
    assert behaviour_tag(loyal, BASE) == "loyal, big spenders"
    # 1.4 active days (one-off), 130 days since (1.44×: not yet "lapsed"), 482 spend.
    once = {"frequency": 1.4, "recency_days": 130.0, "monetary": 482.0, "tenure_days": 140.0}
    assert behaviour_tag(once, BASE) == "one-off buyers"
    # The same, last seen 200 days ago (2.2×): lapsed.
    gone = dict(once, recency_days=200.0)
    assert behaviour_tag(gone, BASE) == "lapsed, one-off buyers"
    # One-off but recent (20 days, 0.22×): new customers.
    assert behaviour_tag(dict(once, recency_days=20.0), BASE) == "new, one-off buyers"
    # 8 active days (2×), 80 days since (0.89×, usual), spend 900 (0.45×): frequent, low spend.
    busy = {"frequency": 8.0, "recency_days": 80.0, "monetary": 900.0, "tenure_days": 250.0}
    assert behaviour_tag(busy, BASE) == "frequent, low spend"
    # Nothing beyond 1.5× or ⅔: typical.
    usual = {"frequency": 4.5, "recency_days": 100.0, "monetary": 2500.0, "tenure_days": 240.0}
    assert behaviour_tag(usual, BASE) == "typical buyers"
    # Frequent only: the noun goes with the last word.
    assert behaviour_tag(dict(usual, frequency=7.0), BASE) == "frequent buyers"
    # Without amounts, spend says nothing and the noun is "users".
    assert behaviour_tag(dict(usual, monetary=99999.0), BASE, has_amount=False) == "typical users"
    # At most two parts, the strongest: occasional (2/4 = 0.5×), lapsed (3×), big spenders (1.6×)
    # -> lapsed (log 3 = 1.10) and occasional (log 2 = 0.69) beat big spenders (log 1.6 = 0.47).
    rare = {"frequency": 2.0, "recency_days": 270.0, "monetary": 3200.0, "tenure_days": 250.0}
    assert behaviour_tag(rare, BASE) == "lapsed, occasional buyers"


def test_behaviour_tags_compare_each_segment_with_the_whole_base():
    users = pd.DataFrame(
        {
            "recency_days": [10.0, 20.0, 300.0, 310.0],
            "frequency": [9, 11, 1, 1],
            "monetary": [900.0, 1100.0, 20.0, 30.0],
            "tenure_days": [330.0, 340.0, 300.0, 310.0],
        }
    )
    # Base means: recency 160, frequency 5.5, spend 512.5. Segment 0: recency 15 (0.09×),
    # frequency 10 (1.8×), spend 1000 (1.95×); segment 1: one-off, recency 305 (1.9×).
    tags = behaviour_tags(users, np.array([0, 0, 1, 1]), has_amount=True)
    assert tags == {0: "loyal, big spenders", 1: "lapsed, one-off buyers"}


def test_a_name_is_the_behaviour_tag_then_the_words():
    frame = labels_frame(
        np.array([0, 0, 1, 2, -1]),
        {0: ["bag", "red", "vintage", "jumbo"], 1: []},
        {},
        {0: "loyal, big spenders", 1: "one-off buyers", 2: "one-off buyers", -1: "lapsed buyers"},
    )
    assert frame["label"].tolist() == [
        "Unclustered",  # noise keeps its display name
        "loyal, big spenders · bag, red, vintage",
        "one-off buyers",
        "one-off buyers (2)",  # names must tell segments apart
    ]
    assert frame["behaviour"].tolist()[1:] == [
        "loyal, big spenders",
        "one-off buyers",
        "one-off buyers",
    ]


# ----------------------------------------------------------------------------- stop words
def test_labels_leave_out_sentiment_words_and_fragments():
    # Class 0's reviews are happy and full of contractions; class 1's are plain. Without the
    # filter "love, great, doesn, stars" would be class 0's most distinctive words.
    happy = [
        "Great kettle, I love it. Doesn't leak. 5 stars",
        "Love this kettle! Don't hesitate, great value. Five stars",
        "Good kettle, really great, wouldn't buy another. I've had it a year",
    ]
    plain = ["Toaster with wide slots", "Toaster, crumb tray", "A toaster for bagels"]
    result = ctfidf(happy + plain, [0, 0, 0, 1, 1, 1])
    words = [t for t, _ in result[0]]
    assert words[0] == "kettle"
    for dropped in ("great", "love", "doesn", "don", "stars", "good", "really", "ve", "wouldn"):
        assert dropped not in words, dropped
    assert {"leak", "hesitate", "value"} <= set(words)
    assert [t for t, _ in result[1]][0] == "toaster"
    assert {"great", "doesn", "stars", "love", "don", "the"} <= label_stop_words()


def test_labels_on_the_bundled_review_sample_are_product_words():
    # sample_data/reviews_sample.csv.gz: four product categories; loyal reviewers write the
    # happy reviews, so sentiment words are distinctive of behaviour there. Segmented by the
    # truth (category × behaviour), no label word may be a sentiment word or a fragment.
    root = Path(__file__).resolve().parents[2] / "sample_data"
    events = pd.read_csv(root / "reviews_sample.csv.gz")
    truth = pd.read_csv(root / "reviews_truth.csv").set_index("user_id")
    group = truth["category"] + "/" + truth["behaviour"]
    codes = {g: i for i, g in enumerate(sorted(group.unique()))}
    result = ctfidf(events["text"].tolist(), events["user_id"].map(group).map(codes).tolist())
    banned = SENTIMENT_WORDS | FRAGMENTS
    for terms in result.values():
        words = [t for t, _ in terms]
        assert words and not banned & set(words), words
    # Without the filter (scikit-learn's English list only) sentiment words would show.
    from sklearn.feature_extraction.text import CountVectorizer

    plain = CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN)
    X = plain.fit_transform(events["text"])
    y = events["user_id"].map(group).map(codes).to_numpy()
    counts = np.vstack([np.asarray(X[y == c].sum(axis=0)) for c in sorted(codes.values())])
    unfiltered = top_terms(counts, plain.get_feature_names_out().tolist(), 3)
    assert banned & {t for terms in unfiltered for t, _ in terms}


@pytest.mark.parametrize("seed", [0, 1])
def test_segment_text_counts_dense_and_sparse_agree(monkeypatch, seed):
    """Issue 19: the (segment, text) counts by ``np.bincount`` equal the chunked sparse sum,
    cell for cell, and both equal a count by hand; chunks smaller than the rows too."""
    rng = np.random.default_rng(seed)
    n_users, n_texts, k = 300, 40, 5
    user = np.sort(rng.integers(0, n_users, 5000)).astype(np.int32)
    text = rng.integers(0, n_texts, len(user)).astype(np.int32)
    segment_of_user = rng.integers(0, k, n_users)
    expected = np.zeros((k, n_texts))
    for u, t in zip(user, text, strict=True):
        expected[segment_of_user[u], t] += 1
    monkeypatch.setattr(label, "ITEM_CHUNK", 777)
    dense = label.segment_text_counts(segment_of_user, user, text, (k, n_texts))
    monkeypatch.setattr(label, "DENSE_COUNTS", 0)
    chunked = label.segment_text_counts(segment_of_user, user, text, (k, n_texts))
    np.testing.assert_array_equal(dense.toarray(), expected)
    np.testing.assert_array_equal(chunked.toarray(), expected)
    assert (dense != chunked).nnz == 0 and dense.has_canonical_format

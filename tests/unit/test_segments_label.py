"""Segment labels: c-TF-IDF by hand, one class per term, stop words, default names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retention.segments import ctfidf, ctfidf_scores, top_terms
from retention.segments.label import labels_frame
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
    frame = labels_frame(np.array([0, 0, 1, -1]), {0: ["mug", "tea"]}, {}, {1: []})
    assert frame["label"].tolist() == [
        segment_display_name(-1),
        "mug, tea",
        segment_display_name(1),
    ]
    assert frame["label"].tolist() == ["Unclustered", "mug, tea", "Segment 2"]

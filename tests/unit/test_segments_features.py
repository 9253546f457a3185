"""Features: per-user aggregation as integer codes, coded string items, combining the blocks."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.segments import UserData, aggregate_users, combine, text_vectors
from tests.fakes import CountingEmbedder


def test_combine_gives_the_text_block_its_share_of_variance():
    rng = np.random.default_rng(0)
    text, behaviour = rng.normal(size=(100, 8)), rng.normal(size=(100, 3)) * 7
    for weight in (0.2, 0.75):
        X = combine(text, behaviour, weight)
        share = X[:, :8].var(axis=0).sum() / X.var(axis=0).sum()
        assert share == pytest.approx(weight)
    assert combine(text, behaviour, 1.0).shape == (100, 8)
    assert combine(None, behaviour, 0.75).shape == (100, 3)


def _shop_events() -> pd.DataFrame:
    """Users b, a and c: a padded duplicate of a text, a refund, an empty text, no text."""
    t = pd.Timestamp("2024-01-01")
    rows = [
        ("b", t, 10.0, "mug"),
        ("b", t + pd.Timedelta(days=1), 5.0, " mug "),
        ("b", t + pd.Timedelta(days=2), 0.0, "red plate"),
        ("a", t, 2.0, "red plate"),
        ("a", t + pd.Timedelta(days=3), -4.0, "blue bowl"),
        ("a", t + pd.Timedelta(days=3), 1.0, ""),
        ("c", t + pd.Timedelta(days=4), 3.0, None),
    ]
    return pd.DataFrame(rows, columns=["user_id", "ts", "amount", "text"])


def _aggregate(events: pd.DataFrame) -> UserData:
    con = duckdb.connect()
    con.register("ev", events)
    return aggregate_users(con, '"ev"')


def test_items_are_integer_codes_into_users_and_texts():
    data = _aggregate(_shop_events())
    assert data.users["user_id"].tolist() == ["a", "b", "c"]
    assert data.texts.tolist() == ["blue bowl", "mug", "red plate"]
    assert data.items["user"].is_monotonic_increasing
    decoded = {
        (data.users["user_id"].iat[u], data.texts[t]): (n, spend)
        for u, t, n, spend in data.items[["user", "text", "n", "spend"]].itertuples(index=False)
    }
    assert decoded == {
        ("a", "red plate"): (1, 2.0),
        ("a", "blue bowl"): (1, 0.0),  # a refund adds no spend
        ("b", "mug"): (2, 15.0),  # " mug " is "mug"
        ("b", "red plate"): (1, 0.0),
    }
    assert data.has_amount


def test_coded_items_give_the_same_user_vectors_as_the_string_path():
    data = _aggregate(_shop_events())
    fake = CountingEmbedder()
    vec = dict(zip(data.texts, fake.embed(data.texts.tolist()), strict=True))

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    # By hand: spend weights (a user who spent nothing would fall back to counts), else counts;
    # c has no text and gets the mean of the others.
    by_hand = {
        "spend": [unit(vec["red plate"]), unit(vec["mug"])],  # a: 2 vs 0; b: 15 vs 0
        "frequency": [
            unit((vec["red plate"] + vec["blue bowl"]) / 2),
            unit((2 * vec["mug"] + vec["red plate"]) / 3),
        ],
    }
    strings = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "text": ["blue bowl", "red plate", "mug", "red plate"],
            "n": [1, 1, 2, 1],
            "spend": [0.0, 2.0, 15.0, 0.0],
        }
    )
    string_data = UserData(users=data.users, items=strings, has_amount=True)
    for weighting, (a, b) in by_hand.items():
        U, info = text_vectors(data, fake, weighting=weighting)
        np.testing.assert_allclose(U, np.vstack([a, b, (a + b) / 2]), atol=1e-6)
        assert info["texts_needed"] == 3 and info["users_with_text"] == 2
        from_strings, _ = text_vectors(string_data, fake, weighting=weighting)
        np.testing.assert_array_equal(from_strings, U)

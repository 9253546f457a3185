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


@pytest.mark.parametrize("shared", [False, True])
def test_items_match_a_pandas_count_per_user_and_text(shared: bool):
    """issue 19: the items coded by joins then grouped by the two codes are pandas' own count
    per (user, trimmed text) and sum of positive spend, users and texts numbered in sorted
    order — whether the users come from the events or from the run's shared per-user pass."""
    from retention import user_pass

    rng = np.random.default_rng(7)
    n = 3_000
    words = np.array(["mug", " mug", "plate ", "bowl", "", "  ", "cup", "vase", None], dtype=object)
    events = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i:03d}" for i in range(150)], size=n),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), "h"),
            "amount": np.round(rng.normal(5, 10, n), 2),
            "text": rng.choice(words, size=n),
        }
    )
    events.loc[rng.choice(n, 40, replace=False), "user_id"] = None  # dropped: no user
    con = duckdb.connect()
    con.register("incoming", events)
    con.execute('CREATE TABLE "ev" AS SELECT * FROM incoming')
    user_pass.share_user_facts(shared)
    try:
        data = aggregate_users(con, '"ev"')
    finally:
        user_pass.share_user_facts(False)

    kept = events.dropna(subset=["user_id"]).assign(text=lambda f: f["text"].str.strip())
    users = np.sort(kept["user_id"].unique())
    texts = np.sort(kept["text"][kept["text"].fillna("") != ""].unique())
    assert data.users["user_id"].tolist() == users.tolist()
    assert data.texts.tolist() == texts.tolist()
    with_text = kept[kept["text"].fillna("") != ""]
    expected = (
        with_text.assign(spend=with_text["amount"].clip(lower=0))
        .groupby(["user_id", "text"])
        .agg(n=("amount", "size"), spend=("spend", "sum"))
        .reset_index()
    )
    expected["user"] = np.searchsorted(users, expected["user_id"])
    expected["text"] = np.searchsorted(texts, expected["text"])
    got = data.items.sort_values(["user", "text"]).reset_index(drop=True)
    assert got["user"].is_monotonic_increasing
    assert data.items["user"].is_monotonic_increasing  # grouped by user, as the callers need
    np.testing.assert_array_equal(got["user"], expected["user"])
    np.testing.assert_array_equal(got["text"], expected["text"])
    np.testing.assert_array_equal(got["n"], expected["n"])
    np.testing.assert_allclose(got["spend"], expected["spend"], rtol=1e-12)

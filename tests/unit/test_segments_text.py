"""User text: documents most frequent first, user vectors independent of the chunk."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from retention.segments import UserData, aggregate_users, embed_user_text, user_documents
from retention.synth import make_planted
from tests.fakes import CountingEmbedder


def _aggregate(events: pd.DataFrame) -> UserData:
    con = duckdb.connect()
    con.register("ev", events)
    return aggregate_users(con, '"ev"')


def test_user_documents_list_distinct_texts_most_frequent_first():
    items = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "text": ["mug", "plate", "kettle"], "n": [5, 2, 1]}
    )
    docs = user_documents(items, ["a", "b", "c"])
    assert docs.tolist() == ["mug; plate", "kettle", ""]


def test_user_vectors_do_not_depend_on_the_chunk():
    planted = make_planted(n_users=120, n_periods=12, seed=5, n_segments=3)
    data = _aggregate(planted.events)
    text = embed_user_text(data, CountingEmbedder())
    n = len(data.users)
    full, has = text.rows(slice(0, n))
    assert has.all() and full.dtype == np.float32
    parts = [text.rows(slice(lo, min(lo + 17, n)))[0] for lo in range(0, n, 17)]
    np.testing.assert_array_equal(np.vstack(parts), full)
    some = np.array([3, 4, 50, n - 1])
    np.testing.assert_array_equal(text.rows(some)[0], full[some])

"""Reduction: the sampled, chunked path keeps the exact path's distances."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist

from retention.segments import (
    UserData,
    aggregate_users,
    behaviour_matrix,
    combine,
    embed_user_text,
    reduce_dimensions,
    reduce_in_chunks,
    text_vectors,
)
from retention.synth import make_planted
from tests.fakes import CountingEmbedder


def _aggregate(events: pd.DataFrame) -> UserData:
    con = duckdb.connect()
    con.register("ev", events)
    return aggregate_users(con, '"ev"')


def test_sampled_reduction_keeps_every_distance_when_the_sample_is_everyone():
    planted = make_planted(n_users=120, n_periods=12, seed=5, n_segments=3)
    data = _aggregate(planted.events)
    fake = CountingEmbedder()  # 32 dimensions + 4 behaviour columns: all components are kept
    B, _ = behaviour_matrix(data.users, data.has_amount)
    exact = reduce_dimensions(combine(text_vectors(data, fake)[0], B, 0.75))
    text = embed_user_text(data, fake)
    chunked, info = reduce_in_chunks(text, B, 0.75, sample_size=1_000, chunk_users=17)
    assert info == {"users_with_text": 120, "pca_fitted_on": 120}
    assert chunked.shape == exact.shape
    # The same points up to a rotation: every pairwise distance is kept.
    np.testing.assert_allclose(pdist(chunked), pdist(exact), rtol=1e-3, atol=1e-4)
    again, _ = reduce_in_chunks(text, B, 0.75, sample_size=1_000, chunk_users=1_000)
    np.testing.assert_allclose(again, chunked, atol=1e-5)


def test_chunks_built_side_by_side_give_the_same_vectors_to_the_bit(monkeypatch):
    """Issue 19: the chunks' text vectors are built in threads (reduce._ahead); the result is
    the one-chunk-after-another computation's, bit for bit (sampled and not)."""
    from retention.segments import reduce

    planted = make_planted(n_users=150, n_periods=12, seed=7, n_segments=3)
    data = _aggregate(planted.events)
    B, _ = behaviour_matrix(data.users, data.has_amount)
    text = embed_user_text(data, CountingEmbedder())
    threaded = [reduce_in_chunks(text, B, 0.6, sample_size=s, chunk_users=9) for s in (40, 1_000)]
    monkeypatch.setattr(reduce, "_ahead", lambda fn, items: map(fn, items))  # one after another
    for got, size in zip(threaded, (40, 1_000), strict=True):
        alone = reduce_in_chunks(text, B, 0.6, sample_size=size, chunk_users=9)
        np.testing.assert_array_equal(got[0], alone[0])
        assert got[1] == alone[1]


def test_ahead_keeps_the_order_and_at_most_two_chunks_waiting():
    import threading

    from retention.segments.reduce import _ahead

    pulled = []
    lock = threading.Lock()

    def items():
        for i in range(25):
            pulled.append(i)
            yield i

    def square(i):
        with lock:
            return i * i

    got = []
    for i, value in enumerate(_ahead(square, items(), workers=2)):
        assert len(pulled) <= i + 3  # the one given now and at most two more
        got.append(value)
    assert got == [i * i for i in range(25)]

    def fails(i):
        if i == 3:
            raise ValueError("chunk 3")
        return i

    with pytest.raises(ValueError, match="chunk 3"):  # a chunk's error reaches the caller
        list(_ahead(fails, range(6)))

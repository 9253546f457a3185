"""Reduction: the sampled, chunked path keeps the exact path's distances."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
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

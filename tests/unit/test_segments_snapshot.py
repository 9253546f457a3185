"""Campaign snapshots: segments follow planted features; named features; automatic k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from retention.errors import InputError
from retention.segments import segment_snapshot


def test_snapshot_segments_follow_planted_features():
    rng = np.random.default_rng(0)
    n = 300
    group = rng.integers(0, 3, size=n)
    snapshot = pd.DataFrame(
        {
            "user_id": [f"S{i}" for i in range(n)],
            "action": rng.choice(["none", "mail"], size=n),
            "outcome": rng.random(n),
            "propensity": 0.5,
            "recency": np.array([2.0, 10.0, 6.0])[group] + rng.normal(0, 0.5, n),
            "history": np.array([500.0, 50.0, 80.0])[group] * rng.lognormal(0, 0.1, n),
            "channel": np.array(["Web", "Phone", "Multichannel"], dtype=object)[group],
        }
    )
    result = segment_snapshot(snapshot, k=3)
    merged = result.assignments.assign(truth=group)
    assert adjusted_rand_score(merged["truth"], merged["segment"]) >= 0.95
    assert "outcome" in result.profile.columns and "history" in result.profile.columns
    web = result.assignments.loc[group == 0, "segment"].iloc[0]
    keywords = result.labels.set_index("segment").loc[web, "keywords"]
    assert "high history" in keywords and "channel=Web" in keywords
    with pytest.raises(InputError, match="'feature_columns'"):
        segment_snapshot(snapshot, ["nope"])
    auto = segment_snapshot(snapshot, ["recency", "history", "channel"], k="auto")
    assert auto.metrics["k"] == 3

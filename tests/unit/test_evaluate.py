"""Off-policy evaluation: hand-computed estimators and interval coverage on simulated logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.evaluate import (
    estimate_propensities,
    fill_propensities,
    off_policy_estimates,
    outcome_model,
    split_users,
)


def test_estimators_by_hand():
    log = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "state": [0, 0, 1, 1],
            "action": [0, 1, 1, 1],
            "reward": [1.0, 0.0, 2.0, 4.0],
            "propensity": [0.5, 0.5, 0.25, 0.5],
        }
    )
    q_hat = np.array([[0.5, 0.1], [1.0, 3.0]])
    pi = np.array([0, 1])  # state 0 -> action 0, state 1 -> action 1
    out = off_policy_estimates(log, {"pi": pi}, q_hat, n_bootstrap=50).set_index("estimator")
    w = np.array([2.0, 0.0, 4.0, 2.0])
    r = log["reward"].to_numpy()
    assert out.loc["ips", "value"] == pytest.approx((w * r).mean())
    assert out.loc["snips", "value"] == pytest.approx((w * r).sum() / w.sum())
    dm = np.array([0.5, 0.5, 3.0, 3.0])
    q_logged = np.array([0.5, 0.1, 3.0, 3.0])
    assert out.loc["dr", "value"] == pytest.approx((dm + w * (r - q_logged)).mean())
    assert (out["n"] == 4).all()


def test_contrasts_are_paired_differences():
    rng = np.random.default_rng(0)
    n = 400
    log = pd.DataFrame(
        {
            "user_id": np.arange(n).astype(str),
            "state": rng.integers(0, 2, n),
            "action": rng.integers(0, 2, n),
            "reward": rng.random(n),
            "propensity": 0.5,
        }
    )
    q_hat = np.zeros((2, 2))
    out = off_policy_estimates(
        log, {"a": np.array([0, 0]), "b": np.array([1, 1])}, q_hat, contrasts=[("a", "b")]
    ).set_index(["policy", "estimator"])
    diff = out.loc[("a − b", "ips")]
    assert diff["value"] == pytest.approx(
        out.loc[("a", "ips"), "value"] - out.loc[("b", "ips"), "value"]
    )
    assert diff["ci_lo"] <= diff["value"] <= diff["ci_hi"]


def test_split_is_by_user_and_seeded():
    ids = np.array(["u1", "u1", "u2", "u3", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"])
    a = split_users(ids, test_size=0.3, seed=1)
    b = split_users(ids, test_size=0.3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a[0] == a[1] and a[3] == a[4]  # a user's rows stay together
    assert len(set(ids[a])) == 3  # 30% of 10 users
    with pytest.raises(InputError, match="test_size"):
        split_users(ids, test_size=1.5)


def test_propensities_and_outcome_model_by_hand():
    s = np.array([0, 0, 0, 1])
    a = np.array([0, 0, 1, 1])
    table = estimate_propensities(s, a, 3, 2)
    np.testing.assert_allclose(table, [[2 / 3, 1 / 3], [0, 1], [0.5, 0.5]])
    filled = fill_propensities(np.array([np.nan, 0.9, np.nan, np.nan]), s, a, table)
    np.testing.assert_allclose(filled, [2 / 3, 0.9, 1 / 3, 1.0])
    r = np.array([1.0, 3.0, 5.0, 7.0])
    q = outcome_model(s, a, r, 3, 2, prior_strength=2.0)
    # Action 0's mean is 2; (s0, a0) = (1 + 3 + 2 * 2) / (2 + 2) = 2.
    assert q[0, 0] == pytest.approx(2.0)
    # Action 1's mean is 6; (s0, a1) = (5 + 2 * 6) / 3.
    assert q[0, 1] == pytest.approx(17 / 3)
    assert q[2, 1] == pytest.approx(6.0)  # never seen: the action's mean


def test_rejects_bad_propensities():
    log = pd.DataFrame(
        {"user_id": ["a"], "state": [0], "action": [0], "reward": [1.0], "propensity": [0.0]}
    )
    with pytest.raises(InputError, match="propensit"):
        off_policy_estimates(log, {"pi": np.array([0])}, np.zeros((1, 1)))


def _simulate_log(rng: np.random.Generator, n_users: int = 300):
    """Three states, three actions, logging policy varies by state, Bernoulli rewards."""
    n_s, n_a = 3, 3
    behaviour = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3]])
    mean = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.4], [0.3, 0.3, 0.8]])
    rows = 2  # two decisions per user, so the bootstrap must resample users
    users = np.repeat(np.arange(n_users), rows)
    s = rng.integers(0, n_s, users.size)
    a = (rng.random(users.size)[:, None] > np.cumsum(behaviour[s], axis=1)).sum(axis=1)
    r = (rng.random(users.size) < mean[s, a]).astype(float)
    log = pd.DataFrame(
        {
            "user_id": users.astype(str),
            "state": s,
            "action": a,
            "reward": r,
            "propensity": behaviour[s, a],
        }
    )
    return log, mean, n_s, n_a


def test_intervals_cover_the_truth():
    pi = np.array([1, 0, 2])
    mean = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.4], [0.3, 0.3, 0.8]])
    truth = mean[np.arange(3), pi].mean()  # states are uniform
    always0 = np.mean([0.2, 0.6, 0.3])
    rng = np.random.default_rng(2024)
    hits: dict[tuple[str, str], int] = {}
    n_sims = 100
    for sim in range(n_sims):
        log, _, n_s, n_a = _simulate_log(rng)
        train = _simulate_log(rng)[0]  # an independent training log for the DR model
        q_hat = outcome_model(
            train["state"].to_numpy(),
            train["action"].to_numpy(),
            train["reward"].to_numpy(),
            n_s,
            n_a,
        )
        out = off_policy_estimates(
            log, {"pi": pi, "always 0": np.zeros(3, int)}, q_hat, n_bootstrap=200, seed=sim
        )
        for row in out.itertuples():
            true = truth if row.policy == "pi" else always0
            key = (row.policy, row.estimator)
            hits[key] = hits.get(key, 0) + int(row.ci_lo <= true <= row.ci_hi)
    coverage = {k: v / n_sims for k, v in hits.items()}
    assert all(c >= 0.9 for c in coverage.values()), coverage

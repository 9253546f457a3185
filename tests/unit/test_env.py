"""The Gymnasium environment over an estimated MDP: passes Gymnasium's checker, follows T."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from retention.env import RetentionEnv
from retention.mdp import estimate_mdp
from tests.unit.test_mdp import ASSIGN, PANEL, A


def test_gymnasium_env_passes_check_env_and_matches_P():
    mdp = estimate_mdp(PANEL, ASSIGN)
    env = RetentionEnv(mdp, horizon=10)
    check_env(env, skip_render_check=True)
    # P[s][a] lists (prob, next, reward, terminated) consistent with T and R.
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            probs = {n: p for p, n, _, _ in mdp.P[s][a]}
            assert sum(probs.values()) == pytest.approx(1.0)
            for p, n, r, term in mdp.P[s][a]:
                assert p == mdp.T[s, a, n] and r == mdp.R[s, a, n] and term is False
    # Seeded: the same seed gives the same trajectory; draws follow T.
    traj = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        path = [obs]
        for _ in range(10):
            obs, *_ = env.step(0)
            path.append(obs)
        traj.append(path)
    assert traj[0] == traj[1]
    env.reset(seed=0)
    counts = np.zeros(4)
    for _ in range(4000):
        env._state, env._steps = A, 0  # put the user back in 'active' and take one step
        counts[env.step(0)[0]] += 1
    np.testing.assert_allclose(counts / 4000, mdp.T[A, 0], atol=0.03)

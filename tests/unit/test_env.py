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


def test_env_returns_agree_with_value_iteration_under_the_churn_rule():
    """Discounted returns of users simulated one at a time by the Gymnasium env, following the
    optimal policy of value iteration, average to its value: the env charges the churn penalty
    and gives it back exactly as the exact solution does."""
    from retention.learn import value_iteration
    from tests.unit.test_mdp import REWARD, _two_stage

    mdp = _two_stage(0.5, REWARD)
    v, _, policy = value_iteration(mdp)
    env = RetentionEnv(mdp, horizon=90)  # 0.9 ** 90 < 1e-4: the tail is negligible
    for start in (0, 1):
        returns = []
        env.reset(seed=start)
        for _ in range(1000):
            env._state, env._steps = start, 0
            state, total, disc, done = start, 0.0, 1.0, False
            while not done:
                state, reward, terminated, truncated, _ = env.step(int(policy[state]))
                total += disc * reward
                disc *= mdp.gamma
                done = terminated or truncated
            returns.append(total)
        se = np.std(returns) / np.sqrt(len(returns))
        # Within 4 standard errors; the old rule (no give-back) is off by more than 10.
        assert abs(np.mean(returns) - v[start]) < 4 * se, (start, np.mean(returns), v[start], se)
        assert se < 0.3

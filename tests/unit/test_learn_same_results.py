"""Issue 19: the Q-learning loop reads its tables through flat indices and takes each step's
two uniform draws in one call. These tests hold it to the loop it replaced, kept here as the
oracle: the same seed gives the same Q-table to the bit, so every policy, curve and
strategies.csv stays what it was."""

from __future__ import annotations

import numpy as np
import pytest

from retention.learn import QLearner, _alias_tables, _batch_update, _cumulative, _gamma
from retention.mdp import tabular_mdp


def _reference_fit(learner: QLearner, mdp) -> tuple[np.ndarray, np.ndarray, int]:
    """The loop as it was before issue 19 (without the learning curve): (q_, counts, steps)."""
    g = _gamma(mdp, learner.gamma)
    rng = np.random.default_rng(learner.seed)
    n_s, n_a, n = mdp.n_states, mdp.n_actions, learner.n_users
    prob, alias = _alias_tables(mdp.T.reshape(n_s * n_a, n_s))
    rewards, terminal = mdp.R.reshape(n_s * n_a, n_s), mdp.terminal
    start = (~terminal).astype(float) if learner.starts == "uniform" else mdp.start.astype(float)
    start_cum = _cumulative(start)
    average_start = int(np.floor(learner._average_from() * learner.episodes))
    rate = (learner.learning_rate, learner._lr_decay(), learner.min_learning_rate)
    q = np.zeros((n_s, n_a))
    q_flat = q.reshape(-1)
    visits = np.zeros(n_s * n_a)
    q_mean, n_mean, steps = np.zeros((n_s, n_a)), 0, 0
    for episode in range(learner.episodes):
        eps = learner.schedule(episode)
        s = np.searchsorted(start_cum, rng.random(n), side="right")
        alive = np.ones(n, bool)
        a = learner._choose(np.argmax(q, axis=1), s, eps, n_a, rng)
        for _ in range(learner.horizon):
            sa = s * n_a + a
            u = rng.random(n) * n_s
            j = np.minimum(u.astype(np.intp), n_s - 1)
            s2 = np.where(u - j < prob[sa, j], j, alias[sa, j])
            r = rewards[sa, s2]
            done = terminal[s2]
            a2 = learner._choose(np.argmax(q, axis=1), s2, eps, n_a, rng)
            boot = q.max(axis=1)[s2] if learner.algorithm == "q" else q[s2, a2]
            target = r + g * np.where(done, 0.0, boot)
            steps += _batch_update(q_flat, visits, sa, target, alive, rate)
            if episode >= average_start:
                n_mean += 1
                q_mean += (q - q_mean) / n_mean
            alive &= ~done
            if not alive.any():
                break
            s, a = s2, a2
    return (q_mean if n_mean else q).copy(), visits.reshape(n_s, n_a), steps


def _random_mdp(seed: int, n_s: int = 6, n_a: int = 3, terminal: bool = True):
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(n_s) * 0.5, size=(n_s, n_a))
    T[:, :, rng.integers(n_s)] = 0.0  # an outcome that never happens (alias tables' zeros)
    T /= T.sum(axis=2, keepdims=True)
    R = rng.normal(size=(n_s, n_a, n_s))
    ends = np.zeros(n_s, bool)
    if terminal:
        ends[-1] = True  # users who reach it churn: the loop's 'alive' bookkeeping is exercised
    return tabular_mdp(T, R, terminal=ends, gamma=0.9, start=rng.dirichlet(np.ones(n_s)))


@pytest.mark.parametrize("algorithm", ["q", "sarsa"])
@pytest.mark.parametrize("starts", ["uniform", "mdp"])
@pytest.mark.parametrize("terminal", [True, False])
def test_the_faster_loop_learns_the_same_q_table_to_the_bit(algorithm, starts, terminal):
    mdp = _random_mdp(3, terminal=terminal)
    learner = QLearner(
        algorithm=algorithm, episodes=12, n_users=500, horizon=9, starts=starts, seed=7
    )
    q, counts, steps = _reference_fit(learner, mdp)
    learner.fit(mdp)
    assert np.array_equal(learner.q_, q)
    assert np.array_equal(learner.counts_, counts)
    assert learner.n_steps_ == steps


def test_one_draw_of_2n_is_two_draws_of_n():
    """What the loop relies on to take a step's two draws in one call."""
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    both = a.random(2 * 1000)
    assert np.array_equal(both, np.concatenate([b.random(1000), b.random(1000)]))
    assert a.random() == b.random()  # and the stream goes on from the same place

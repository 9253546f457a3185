"""The Gymnasium environment over a retention :class:`~retention.mdp.MDP`.

The only module that imports gymnasium: the learners (``retention.learn``) step thousands of
simulated users at once with their own vectorised sampler and need no environment object; this
one serves Gymnasium tooling (``check_env``, third-party agents) and the one-user-at-a-time
baseline of ``bench/bench_learn.py``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from retention.errors import InputError
from retention.mdp import MDP


class RetentionEnv(gym.Env):
    """Gymnasium environment over an :class:`MDP`: one simulated user per episode.

    Discrete observations (state index) and actions; an episode ends at a terminal state
    (``terminated``) or after ``horizon`` steps (``truncated``). All randomness comes from the
    env's seeded ``np_random`` generator.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: MDP, horizon: int = 52) -> None:
        if horizon < 1:
            raise InputError(f"The 'horizon' parameter must be >= 1. Got {horizon}.")
        self.mdp = mdp
        self.horizon = int(horizon)
        self.P = mdp.P
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        # Cumulative tables ending at exactly 1.0, so a draw never picks a zero-probability state.
        cum = np.cumsum(mdp.T, axis=2)
        self._cum = cum / cum[:, :, -1:]
        cum_start = np.cumsum(mdp.start)
        self._cum_start = cum_start / cum_start[-1]
        self._state = 0
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = int(np.searchsorted(self._cum_start, self.np_random.random(), side="right"))
        self._steps = 0
        return self._state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise InputError(f"Action must be in 0..{self.mdp.n_actions - 1}. Got {action!r}.")
        s, a = self._state, int(action)
        nxt = int(np.searchsorted(self._cum[s, a], self.np_random.random(), side="right"))
        reward = float(self.mdp.R[s, a, nxt])
        self._state = nxt
        self._steps += 1
        terminated = bool(self.mdp.terminal[nxt])
        truncated = self._steps >= self.horizon
        return nxt, reward, terminated, truncated, {}

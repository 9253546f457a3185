"""Learning the retention policy: value iteration (the exact reference), vectorised tabular
Q-learning / SARSA on simulated users, batch Q-learning over logged transitions, the exact
projections and stability map of a policy, and :class:`PolicyResult`, what a trained policy is.
:func:`retention.policy.train_policy` chains them into the one call the app and the command line
make.

Why vectorised: the article's loop simulates one user and does one ``argmax`` and one update per
step in Python. :class:`QLearner` steps ``n_users`` simulated users at once: one uniform draw per
user picks the next state from alias tables (O(1) per draw), and the Q-table gets one averaged
update per visited (state, action) per step (``np.bincount``), with a learning rate per (state,
action) that falls with its visits, and Polyak–Ruppert averaging of the Q-table over the second
half of training. Same seed, same Q-table.

Values are discounted sums from the MDP's starting distribution (see ``retention.mdp``). "Reaching
99% of the optimum" means ``1 - (V* - V_pi) / |V*| >= 0.99`` with ``V_pi`` the exact value of the
greedy policy (:func:`policy_value`) — the plain ratio ``V_pi / V*`` when ``V*`` is positive, and
still meaningful when churn penalties make values negative. ``V*`` is one number everywhere
(the learning curve, the metrics, the report): :func:`optimum`, the exact value of value
iteration's policy, computed like ``V_pi`` so that a policy equal to the optimum scores exactly 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammaln

from retention.errors import InputError
from retention.evaluate import LEARNED, ope_summary
from retention.mdp import MDP

Progress = Callable[[float, str], None]
DEFAULT_GAMMAS: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_PENALTIES: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
CURVE_COLUMNS = [
    "episode",
    "steps",
    "seconds",
    "epsilon",
    "learning_rate",
    "mean_return",
    "greedy_value",
    "optimal_value",
    "fraction_of_optimum",
]


# --------------------------------------------------------------------------- exact reference


def greedy(q: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """The greedy policy of a Q-table: argmax per row; near-ties go to the lowest index (the
    do-nothing action comes first, so a tie means "do nothing")."""
    best = q.max(axis=1, keepdims=True)
    return np.argmax(q >= best - atol * (1.0 + np.abs(best)), axis=1)


def _gamma(mdp: MDP, gamma: float | None) -> float:
    g = mdp.gamma if gamma is None else float(gamma)
    if not 0.0 <= g < 1.0:
        raise InputError(f"The 'gamma' parameter must be in [0, 1). Got {g}.")
    return g


def value_iteration(
    mdp: MDP, gamma: float | None = None, tol: float = 1e-10, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact optimum by value iteration: ``(V, Q, policy)``. Terminal states are worth 0 (no
    bootstrapping past them). Stops when the largest change of V is below ``tol``."""
    g = _gamma(mdp, gamma)
    r = mdp.expected_reward
    cont = mdp.T * (~mdp.terminal)[None, None, :]
    v = np.zeros(mdp.n_states)
    for _ in range(max_iter):
        q = r + g * cont @ v
        v_new = q.max(axis=1)
        done = np.max(np.abs(v_new - v)) < tol
        v = v_new
        if done:
            break
    q = r + g * cont @ v
    return v, q, greedy(q)


def policy_value(mdp: MDP, policy: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Exact value per state of a policy: deterministic (``policy[s]`` = action index) or
    stochastic (``policy[s, a]`` = probability). Solves ``(I - gamma P_pi) V = r_pi``."""
    g = _gamma(mdp, gamma)
    pi = _as_stochastic(policy, mdp.n_states, mdp.n_actions)
    cont = mdp.T * (~mdp.terminal)[None, None, :]
    p_pi = np.einsum("sa,sat->st", pi, cont)
    r_pi = np.einsum("sa,sa->s", pi, mdp.expected_reward)
    return np.linalg.solve(np.eye(mdp.n_states) - g * p_pi, r_pi)


def start_value(mdp: MDP, policy: np.ndarray, gamma: float | None = None) -> float:
    """Expected discounted value of a policy from the MDP's starting distribution."""
    return float(mdp.start @ policy_value(mdp, policy, gamma))


@dataclass(frozen=True)
class Optimum:
    """The exact optimum of an MDP: ``q`` (value iteration's Q*), its greedy ``policy`` and
    ``value``, the exact start value of that policy (the one "optimum" every figure uses)."""

    q: np.ndarray
    policy: np.ndarray
    value: float


def optimum(mdp: MDP, gamma: float | None = None) -> Optimum:
    """Value iteration's optimal policy and its exact value from the MDP's start (solved like
    every other policy's value, so the learned policy's share of it is exactly 1 when they
    agree, and the learning curve and the metrics show the same number)."""
    _, q, policy = value_iteration(mdp, gamma)
    return Optimum(q=q, policy=policy, value=start_value(mdp, policy, gamma))


def fraction_of_optimum(value: float, optimal_value: float) -> float:
    """``1 - (V* - V) / |V*|`` (the ratio V / V* when V* > 0)."""
    return 1.0 - (optimal_value - value) / max(abs(optimal_value), 1e-12)


#: The share of the optimum from which a learned policy's disagreements with the exact optimum
#: are near-ties: together they cost at most 1% of the best possible value.
NEAR_TIE_SHARE = 0.99


def near_ties(share: float) -> bool:
    """Whether a learned policy at ``share`` of the optimum (:func:`fraction_of_optimum`) only
    differs from it by near-ties (:data:`NEAR_TIE_SHARE`); False when the share is unknown."""
    return bool(np.isfinite(share)) and share >= NEAR_TIE_SHARE


def _as_stochastic(policy: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    policy = np.asarray(policy)
    if policy.ndim == 2:
        return policy.astype(float)
    out = np.zeros((n_states, n_actions))
    out[np.arange(n_states), policy.astype(int)] = 1.0
    return out


# --------------------------------------------------------------------------- online learner


def _cumulative(p: np.ndarray) -> np.ndarray:
    """Cumulative probabilities along the last axis, ending at exactly 1.0 from the last
    positive entry on, so a uniform draw in [0, 1) never selects a zero-probability outcome."""
    cum = np.cumsum(p, axis=-1)
    return cum / cum[..., -1:]


def _alias_tables(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias tables (Vose's construction) for each row of ``p`` (rows x outcomes).

    Draw: ``u`` uniform in [0, outcomes); ``j = floor(u)``; the outcome is ``j`` when
    ``u - j < prob[row, j]``, else ``alias[row, j]``. Exact, and O(1) per draw whatever the
    number of outcomes; a zero-probability outcome is never drawn."""
    rows, k = p.shape
    prob = np.ones((rows, k))
    alias = np.tile(np.arange(k), (rows, 1))
    for i in range(rows):
        scaled = p[i] / p[i].sum() * k
        small = [j for j in range(k) if scaled[j] < 1.0]
        large = [j for j in range(k) if scaled[j] >= 1.0]
        while small and large:
            lo, hi = small.pop(), large.pop()
            prob[i, lo], alias[i, lo] = scaled[lo], hi
            scaled[hi] -= 1.0 - scaled[lo]
            (small if scaled[hi] < 1.0 else large).append(hi)
        for j in small:  # left over by rounding: keep it at full weight unless it is impossible
            if p[i, j] <= 0.0:
                prob[i, j], alias[i, j] = 0.0, int(np.argmax(p[i]))
    return prob, alias


def _batch_rate(
    n: np.ndarray, k: np.ndarray, learning_rate: float, lr_decay: float, min_learning_rate: float
) -> np.ndarray:
    """The step that ``k`` single updates with rates ``a_i = learning_rate / (1 + lr_decay * i)``
    (``i = n, ..., n + k - 1``: the pair's visits so far) take together toward their mean
    target: ``1 - prod(1 - a_i)``, in closed form with log-gamma. ``min_learning_rate`` floors
    the step as a whole: it is at least that of ``k`` updates at that rate."""
    if lr_decay == 0.0:
        keep = np.full(np.shape(n), np.log1p(-learning_rate) if learning_rate < 1 else -np.inf)
        keep = keep * k
    else:
        # prod_i (i + (1 - lr) / d) / (i + 1 / d) over i = n .. n + k - 1
        a, b = (1.0 - learning_rate) / lr_decay, 1.0 / lr_decay
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = gammaln(n + k + a) - gammaln(n + a) - gammaln(n + k + b) + gammaln(n + b)
        keep = np.where(np.isnan(keep), -np.inf, keep)
    rate = -np.expm1(keep)
    if min_learning_rate > 0.0:
        floor = -np.expm1(k * np.log1p(-min(min_learning_rate, 1.0 - 1e-16)))
        rate = np.maximum(rate, floor)
    return np.clip(rate, 0.0, 1.0)


def _batch_update(
    q_flat: np.ndarray,
    visits: np.ndarray,
    sa: np.ndarray,
    target: np.ndarray,
    alive: np.ndarray,
    rate: tuple[float, float, float],
    everyone: bool | None = None,
) -> int:
    """One step of every simulated user at once: each visited state-action moves toward the mean
    of its users' targets (users who already churned are left out), at the visit-count rate.
    Updates ``q_flat`` and ``visits`` in place; returns how many users stepped. ``everyone``:
    whether every user is still alive, when the caller knows."""
    if everyone is None:
        everyone = bool(alive.all())
    idx = sa if everyone else sa[alive]
    cnt = np.bincount(idx, minlength=q_flat.size)
    tot = np.bincount(idx, weights=target if everyone else target[alive], minlength=q_flat.size)
    seen = np.flatnonzero(cnt)
    k = cnt[seen].astype(float)
    step = _batch_rate(visits[seen], k, *rate)
    q_flat[seen] += step * (tot[seen] / k - q_flat[seen])
    visits[seen] += k
    return len(idx)


class QLearner:
    """Tabular Q-learning (or SARSA) on users simulated from an MDP, vectorised over users.

    Each episode starts ``n_users`` simulated users (``starts="uniform"``: exploring starts over
    the non-terminal states, so rare states get visits; ``"mdp"``: the MDP's starting
    distribution) and runs ``horizon`` steps. Exploration is epsilon-greedy with
    ``epsilon_e = max(min_epsilon, epsilon * epsilon_decay**e)`` at episode ``e``. Each step,
    the targets ``r + gamma * max_a' Q(s', a')`` (SARSA: ``Q(s', a')`` of the next chosen
    action; 0 past a terminal state) are averaged per visited (s, a) and ``Q(s, a)`` moves
    toward that average. Reaching the horizon truncates, it does not terminate: the last step
    still bootstraps.

    Learning rates are per (state, action) and fall with its visits (a generalised
    Robbins–Monro schedule): the ``n``-th visit of a pair (``n = 0, 1, ...``) has rate
    ``max(min_learning_rate, learning_rate / (1 + lr_decay * n))``, and the ``k`` visits of one
    step move ``Q(s, a)`` as far as ``k`` such single updates would. A rarely visited pair keeps
    learning fast while a common one averages over many users; one schedule per episode for
    every pair left rare states and near-ties noisy. ``lr_decay`` of the order of ``1 - gamma``
    forgets the early, badly bootstrapped targets fast enough (``lr_decay = 1`` with
    ``learning_rate = 1`` would be the plain running mean of every target, whose early bias
    fades very slowly).

    Polyak–Ruppert averaging: from episode ``floor(average_from * episodes)`` on, the Q-table
    returned (and its greedy policy) is the mean of the Q-tables after every step, which removes
    most of the noise the last updates leave (``average_from=1``: no averaging).

    Defaults by algorithm (``None``): Q-learning explores with ``min_epsilon=0.5`` (it learns
    the greedy policy's values whatever the exploration), ``lr_decay=0.15`` and
    ``average_from=0.5``. SARSA learns the value of its own exploring policy, which keeps
    changing while epsilon decays, so it needs a short memory: ``min_epsilon=0.05``,
    ``lr_decay=0.02`` and no averaging.

    Learned attributes: ``q_`` (states x actions), ``policy_`` (greedy), ``counts_`` (visits per
    state and action), ``curve_`` (one row per evaluation: episode, steps, seconds, epsilon,
    learning_rate (the mean over pairs of the next visit's rate), mean_return (discounted, per
    simulated user and episode), greedy_value (exact, from the MDP's start), optimal_value,
    fraction_of_optimum), ``value_``, ``optimal_value_``, ``n_steps_`` (user-steps),
    ``fit_seconds_``.
    """

    def __init__(
        self,
        *,
        algorithm: str = "q",
        episodes: int = 200,
        n_users: int = 10_000,
        horizon: int = 20,
        epsilon: float = 1.0,
        epsilon_decay: float = 0.97,
        min_epsilon: float | None = None,
        learning_rate: float = 1.0,
        lr_decay: float | None = None,
        min_learning_rate: float = 0.0,
        average_from: float | None = None,
        gamma: float | None = None,
        starts: str = "uniform",
        eval_every: int | None = None,
        seed: int = 0,
    ) -> None:
        self.algorithm = algorithm
        self.episodes = episodes
        self.n_users = n_users
        self.horizon = horizon
        self.epsilon = epsilon
        self.epsilon_decay = epsilon_decay
        self.min_epsilon = min_epsilon
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.min_learning_rate = min_learning_rate
        self.average_from = average_from
        self.gamma = gamma
        self.starts = starts
        self.eval_every = eval_every
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "algorithm",
                "episodes",
                "n_users",
                "horizon",
                "epsilon",
                "epsilon_decay",
                "min_epsilon",
                "learning_rate",
                "lr_decay",
                "min_learning_rate",
                "average_from",
                "gamma",
                "starts",
                "eval_every",
                "seed",
            )
        }

    def _check(self) -> None:
        if self.algorithm not in ("q", "sarsa"):
            raise InputError(
                f"The 'algorithm' parameter must be 'q' or 'sarsa'. Got {self.algorithm!r}."
            )
        for name in ("episodes", "n_users", "horizon"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"The '{name}' parameter must be an int >= 1. Got {v!r}.")
        for name in (
            "epsilon",
            "min_epsilon",
            "epsilon_decay",
            "min_learning_rate",
            "average_from",
        ):
            v = getattr(self, name)
            if v is None and name in ("min_epsilon", "average_from"):
                continue
            if not 0.0 <= v <= 1.0:
                raise InputError(f"The '{name}' parameter must be in [0, 1]. Got {v!r}.")
        if not 0.0 < self.learning_rate <= 1.0:
            raise InputError(
                f"The 'learning_rate' parameter must be in (0, 1]. Got {self.learning_rate!r}."
            )
        if self.lr_decay is not None and self.lr_decay < 0:
            raise InputError(f"The 'lr_decay' parameter must be >= 0. Got {self.lr_decay!r}.")
        if self.starts not in ("uniform", "mdp"):
            raise InputError(
                f"The 'starts' parameter must be 'uniform' or 'mdp'. Got {self.starts!r}."
            )

    def _min_epsilon(self) -> float:
        if self.min_epsilon is not None:
            return float(self.min_epsilon)
        return 0.5 if self.algorithm == "q" else 0.05

    def _lr_decay(self) -> float:
        if self.lr_decay is not None:
            return float(self.lr_decay)
        return 0.15 if self.algorithm == "q" else 0.02

    def _average_from(self) -> float:
        if self.average_from is not None:
            return float(self.average_from)
        return 0.5 if self.algorithm == "q" else 1.0

    def schedule(self, episode: int) -> float:
        """Epsilon at an episode."""
        return max(self._min_epsilon(), self.epsilon * self.epsilon_decay**episode)

    def resolved_params(self) -> dict[str, Any]:
        """The parameters with the per-algorithm defaults (``None``) filled in: what a fit
        uses, as stored with a policy run."""
        return {
            **self.get_params(),
            "min_epsilon": self._min_epsilon(),
            "lr_decay": self._lr_decay(),
            "average_from": self._average_from(),
        }

    def visit_rate(self, visits: np.ndarray) -> np.ndarray:
        """The learning rate of a (state, action)'s next visit, given its visits so far."""
        rate = self.learning_rate / (1.0 + self._lr_decay() * np.asarray(visits, dtype=float))
        return np.maximum(self.min_learning_rate, rate)

    def fit(
        self,
        mdp: MDP,
        progress: Progress | None = None,
        callback: Callable[[pd.DataFrame], None] | None = None,
    ) -> QLearner:
        """Learn ``q_`` on ``mdp``. ``progress(fraction, message)`` is called as episodes finish;
        ``callback(curve_so_far)`` at each evaluation point (for a live learning curve)."""
        self._check()
        g = _gamma(mdp, self.gamma)
        rng = np.random.default_rng(self.seed)
        n_s, n_a, n = mdp.n_states, mdp.n_actions, self.n_users
        prob, alias = _alias_tables(mdp.T.reshape(n_s * n_a, n_s))
        rewards, terminal = mdp.R.reshape(n_s * n_a, n_s), mdp.terminal
        start = (~terminal).astype(float) if self.starts == "uniform" else mdp.start.astype(float)
        start_cum = _cumulative(start)
        optimal = optimum(mdp, g).value
        every = self.eval_every or max(1, self.episodes // 100)
        average_start = int(np.floor(self._average_from() * self.episodes))
        rate = (self.learning_rate, self._lr_decay(), self.min_learning_rate)

        q = np.zeros((n_s, n_a))
        q_flat = q.reshape(-1)  # a view: updates through it change q
        visits = np.zeros(n_s * n_a)
        q_mean, n_mean = np.zeros((n_s, n_a)), 0
        rows: list[tuple] = []
        steps = 0
        # Issue 19: the same arithmetic in fewer passes over the users. The tables are read
        # through one flat index per step ((s, a) row and drawn column together), and each
        # step's two uniform draws (the transition's and the next action's) come from one call:
        # the generator's stream is sequential, so ``random(2n)`` is ``random(n)`` twice.
        prob_flat, alias_flat, rewards_flat = prob.ravel(), alias.ravel(), rewards.ravel()
        choose = self._choose
        is_q = self.algorithm == "q"
        t0 = time.perf_counter()
        for episode in range(self.episodes):
            eps = self.schedule(episode)
            draws = rng.random(2 * n)
            s = np.searchsorted(start_cum, draws[:n], side="right")
            alive = np.ones(n, bool)
            everyone = True
            ret = np.zeros(n)
            disc = 1.0
            a = choose(np.argmax(q, axis=1), s, eps, n_a, rng, draws[n:])
            for _ in range(self.horizon):
                sa = s * n_a + a
                draws = rng.random(2 * n)
                u = draws[:n] * n_s
                j = np.minimum(u.astype(np.intp), n_s - 1)
                cell = sa * n_s + j
                s2 = np.where(u - j < prob_flat[cell], j, alias_flat[cell])
                r = rewards_flat[sa * n_s + s2]
                done = terminal[s2]
                a2 = choose(np.argmax(q, axis=1), s2, eps, n_a, rng, draws[n:])
                boot = q.max(axis=1)[s2] if is_q else q[s2, a2]
                target = r + g * np.where(done, 0.0, boot)
                steps += _batch_update(q_flat, visits, sa, target, alive, rate, everyone)
                if episode >= average_start:
                    n_mean += 1
                    q_mean += (q - q_mean) / n_mean
                ret += disc * r * alive if not everyone else disc * r
                disc *= g
                if done.any():
                    alive &= ~done
                    everyone = False
                    if not alive.any():
                        break
                s, a = s2, a2
            last = episode == self.episodes - 1
            if episode % every == 0 or last:
                greedy_value = start_value(mdp, greedy(q_mean if n_mean else q), g)
                rows.append(
                    (episode + 1, steps, time.perf_counter() - t0, eps)
                    + (float(self.visit_rate(visits).mean()), float(ret.mean()), greedy_value)
                    + (optimal, fraction_of_optimum(greedy_value, optimal))
                )
                if callback is not None:
                    callback(pd.DataFrame(rows, columns=CURVE_COLUMNS))
            if progress is not None:
                progress((episode + 1) / self.episodes, f"episode {episode + 1}/{self.episodes}")

        self.q_ = (q_mean if n_mean else q).copy()
        self.policy_ = greedy(self.q_)
        self.counts_ = visits.reshape(n_s, n_a)
        self.curve_ = pd.DataFrame(rows, columns=CURVE_COLUMNS)
        self.value_ = start_value(mdp, self.policy_, g)
        self.optimal_value_ = optimal
        self.n_steps_ = steps
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    @staticmethod
    def _choose(
        greedy: np.ndarray,
        s: np.ndarray,
        eps: float,
        n_actions: int,
        rng: np.random.Generator,
        u: np.ndarray | None = None,
    ) -> np.ndarray:
        """Epsilon-greedy from one uniform draw per user: below ``eps`` it also picks the random
        action (``u / eps`` is uniform on [0, 1) then). ``u``: the draws, when the caller took
        them already (else they are drawn from ``rng`` here)."""
        if u is None:
            u = rng.random(len(s))
        explore = u < eps
        random_action = np.minimum(
            (u / max(eps, 1e-300) * n_actions).astype(np.intp), n_actions - 1
        )
        return np.where(explore, random_action, greedy[s])


# --------------------------------------------------------------------------- batch (offline)


@dataclass(frozen=True)
class BatchQResult:
    """Batch Q-learning result: ``q`` (states x actions), greedy ``policy``, ``counts`` of
    logged transitions per (state, action), ``iterations`` run."""

    q: np.ndarray
    policy: np.ndarray
    counts: np.ndarray
    iterations: int


def batch_q_learning(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_states: np.ndarray,
    *,
    n_states: int,
    n_actions: int,
    gamma: float,
    terminal: np.ndarray | None = None,
    prior_strength: float = 1.0,
    tol: float = 1e-8,
    max_iter: int = 10_000,
) -> BatchQResult:
    """Fitted Q iteration over logged ``(s, a, r, s')`` transitions with a tabular model:
    repeat ``Q(s, a) <- mean over the logged (s, a) of r + gamma * max_a' Q(s', a')`` (0 past a
    terminal state) until it stops changing. A (state, action) with few rows is shrunk toward
    the mean over the state's actions with ``prior_strength`` pseudo-rows; one never logged gets
    that state mean."""
    if not 0.0 <= gamma < 1.0:
        raise InputError(f"The 'gamma' parameter must be in [0, 1). Got {gamma}.")
    s, a = np.asarray(states, int), np.asarray(actions, int)
    r, s2 = np.asarray(rewards, float), np.asarray(next_states, int)
    if len(s) == 0:
        raise InputError("Batch Q-learning needs logged transitions; the log has none.")
    term = np.zeros(n_states, bool) if terminal is None else np.asarray(terminal, bool)
    idx = s * n_actions + a
    cnt = np.bincount(idx, minlength=n_states * n_actions).astype(float)
    cnt_s = np.bincount(s, minlength=n_states).astype(float)
    cont = np.where(term[s2], 0.0, gamma)
    q = np.zeros(n_states * n_actions)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 -- reported as iterations
        target = r + cont * q.reshape(n_states, n_actions).max(axis=1)[s2]
        tot = np.bincount(idx, weights=target, minlength=n_states * n_actions)
        state_mean = np.bincount(s, weights=target, minlength=n_states) / np.maximum(cnt_s, 1.0)
        prior = np.repeat(state_mean, n_actions)
        new = (tot + prior_strength * prior) / np.maximum(cnt + prior_strength, 1e-12)
        new = np.where(cnt + prior_strength > 0, new, prior)
        delta = np.max(np.abs(new - q))
        q = new
        if delta < tol:
            break
    qm = q.reshape(n_states, n_actions)
    return BatchQResult(
        q=qm, policy=greedy(qm), counts=cnt.reshape(n_states, n_actions), iterations=it
    )


# --------------------------------------------------------------------------- projections, stability


def project_retention(
    mdp: MDP, policies: Mapping[str, np.ndarray], *, periods: int = 12
) -> pd.DataFrame:
    """Share of a segment's users active at each period under each policy, exactly (by
    propagating the state distribution), for a cohort that is active at period 0.

    ``policies``: name -> deterministic (per-state action) or stochastic (state x action)
    policy. Returns ``segment, policy, period, active_share``.
    """
    if not mdp.segments:
        raise InputError("Projected retention needs an MDP estimated from data (estimate_mdp).")
    n_stage = len(mdp.stages)
    active_cols = mdp.stage_of == mdp.stages.index("active")
    frames = []
    for name, policy in policies.items():
        pi = _as_stochastic(policy, mdp.n_states, mdp.n_actions)
        p_pi = np.einsum("sa,sat->st", pi, mdp.T)
        d = np.zeros((len(mdp.segments), mdp.n_states))
        d[np.arange(len(mdp.segments)), np.arange(len(mdp.segments)) * n_stage] = 1.0
        shares = [d[:, active_cols].sum(axis=1)]
        for _ in range(periods):
            d = d @ p_pi
            shares.append(d[:, active_cols].sum(axis=1))
        arr = np.array(shares)  # periods+1 x segments
        frames.append(
            pd.DataFrame(
                {
                    "segment": np.tile(np.asarray(mdp.segments, dtype=int), periods + 1),
                    "policy": name,
                    "period": np.repeat(np.arange(periods + 1), len(mdp.segments)),
                    "active_share": arr.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def stability_map(
    mdp: MDP,
    *,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    penalties: Sequence[float] = DEFAULT_PENALTIES,
) -> pd.DataFrame:
    """The optimal action (value iteration) of every state over a gamma x churn-penalty grid,
    other reward settings as in ``mdp.reward``. Returns ``segment, stage, gamma,
    churn_penalty, action``."""
    if mdp.reward is None:
        raise InputError("The stability map needs an MDP estimated from data (estimate_mdp).")
    states = mdp.states_frame()
    frames = []
    for g in gammas:
        for pen in penalties:
            settings = replace(mdp.reward, gamma=float(g), churn_penalty=float(pen))
            _, _, pol = value_iteration(mdp.with_reward(settings), float(g), tol=1e-8)
            frames.append(
                pd.DataFrame(
                    {
                        "segment": states["segment"],
                        "stage": states["stage"],
                        "gamma": float(g),
                        "churn_penalty": float(pen),
                        "action": np.asarray(mdp.actions, dtype=object)[pol],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class PolicyResult:
    """Everything the policy page, the report and ``summary.json`` show about one trained policy.

    ``q``: (states x actions) learned values; ``states``: ``state, segment, stage``;
    ``recommendations``: ``segment, stage, action, q_<action>..., n, optimal_action``;
    ``disagreements``: the states where the learned action is not the optimum, with
    ``value_loss`` = Q*(s, optimal) - Q*(s, learned); ``curve``: the learning curve;
    ``ope``: ``policy, estimator, value, ci_lo, ci_hi, n`` (None without logged actions);
    ``projections``: ``segment, policy, period, active_share``; ``stability``: ``segment, stage,
    gamma, churn_penalty, action``. With a campaign log: ``ope_segments`` (``ope`` per segment's
    held-out users, with a ``segment`` column), ``evidence`` (``retention.campaigns``' table per
    segment × stage × action) and ``campaign`` (the log's checks,
    ``retention.campaigns.CampaignChecks.to_dict``). ``mdp`` is kept in memory only (not stored
    with a run).
    """

    kind: str
    algorithm: str
    gamma: float | None
    actions: tuple[str, ...]
    stages: tuple[str, ...]
    segments: tuple[int, ...]
    settings: dict[str, Any]
    q: np.ndarray
    states: pd.DataFrame
    recommendations: pd.DataFrame
    disagreements: pd.DataFrame
    curve: pd.DataFrame
    value: float
    optimal_value: float
    ope: pd.DataFrame | None = None
    projections: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None
    assumptions: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    mdp: MDP | None = None
    ope_segments: pd.DataFrame | None = None
    evidence: pd.DataFrame | None = None
    campaign: dict[str, Any] | None = None

    @property
    def fraction_of_optimum(self) -> float:
        return fraction_of_optimum(self.value, self.optimal_value)

    def summary(self) -> dict[str, Any]:
        """The ``policy`` and ``ope`` blocks of summary.json (SPEC §8)."""
        recs = [
            {
                "segment": int(row["segment"]),
                "stage": str(row["stage"]),
                "action": str(row["action"]),
                "q": {a: float(row[f"q_{a}"]) for a in self.actions},
            }
            for _, row in self.recommendations.iterrows()
        ]
        policy = {
            "algorithm": self.algorithm,
            "gamma": self.gamma,
            "actions": list(self.actions),
            "stages": list(self.stages),
            "value": float(self.value),
            "optimal_value": float(self.optimal_value),
            "recommendations": recs,
        }
        ope = None
        if self.ope is not None and not self.ope.empty:
            ope = ope_summary(self.ope, self.actions, LEARNED)
            if self.ope_segments is not None and not self.ope_segments.empty:
                ope["segments"] = {
                    str(int(g)): ope_summary(part, self.actions, LEARNED)
                    for g, part in self.ope_segments.groupby("segment", sort=True)
                }
        out: dict[str, Any] = {"policy": policy, "ope": ope}
        if self.campaign is not None:
            evidence = self.evidence if self.evidence is not None else pd.DataFrame()
            out["campaign"] = {
                **self.campaign,
                "evidence": [
                    {**row, "ci": [row.pop("ci_lo"), row.pop("ci_hi")]}
                    for row in evidence.to_dict("records")
                ],
            }
        return out


def recommendations_table(
    q: np.ndarray,
    states: pd.DataFrame,
    actions: Sequence[str],
    support: np.ndarray,
    optimal_policy: np.ndarray | None,
) -> pd.DataFrame:
    """Per state: ``segment, stage``, the greedy ``action``, ``q_<action>`` per action, the data
    ``n`` behind it, and (when given) the exact ``optimal_action``."""
    policy = greedy(q)
    rec = states[["segment", "stage"]].copy().reset_index(drop=True)
    rec["action"] = np.asarray(actions, dtype=object)[policy]
    for j, act in enumerate(actions):
        rec[f"q_{act}"] = q[:, j]
    rec["n"] = support.astype(int)
    if optimal_policy is not None:
        rec["optimal_action"] = np.asarray(actions, dtype=object)[optimal_policy]
    return rec

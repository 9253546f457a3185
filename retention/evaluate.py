"""Off-policy evaluation on logged data: IPS, SNIPS and doubly robust, with bootstrap intervals.

The log is one row per logged decision: ``user_id, state, action, reward, propensity``.

* Campaign snapshot (one row per user): the estimate is the mean outcome − cost a user would
  have if the target policy had chosen their treatment.
* Event log with a campaign log: one row per logged transition (t-1 -> t); ``reward`` is the
  transition's reward r(s, a, s'). The estimate is the **one-step** value: the mean reward of one
  period if the target policy chose the action in every logged state (the states as they were
  logged), not the discounted long-run value (that one needs the MDP; see ``learn``).

Target policies are deterministic: an array ``policy[state] -> action index``. With
``w = 1[a = pi(s)] / propensity``:

* IPS = mean(w * r)
* SNIPS = sum(w * r) / sum(w)
* DR = mean(q(s, pi(s)) + w * (r - q(s, a))), with ``q`` an outcome model fit on the training split.

Intervals are percentile bootstrap intervals that resample users (a user's rows stay together),
computed for every policy and estimator at once from per-user sums (vectorised, chunked).
Propensities come from the log; missing ones (e.g. the ``none`` rows of a campaign log) are the
empirical action frequencies per state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention.errors import InputError

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")
LOG_COLUMNS = ("user_id", "state", "action", "reward", "propensity")
#: The name of the learned policy in the estimates.
LEARNED = "learned policy"
#: What the difference of two policies' estimates says, by where its interval lies.
BETTER = "a real improvement"
WORSE = "worse than doing nothing"
UNCLEAR = "not clearly different from doing nothing"


def split_users(
    user_ids: Sequence[str] | np.ndarray, *, test_size: float = 0.3, seed: int = 0
) -> np.ndarray:
    """Boolean mask (per row) of the held-out users: a seeded split *by user*, so all rows of a
    user fall on the same side. The same ids and seed give the same split."""
    if not 0.0 < test_size < 1.0:
        raise InputError(f"The 'test_size' parameter must be in (0, 1). Got {test_size}.")
    ids = np.asarray(user_ids).astype(str)
    uniq = np.unique(ids)
    if len(uniq) < 2:
        raise InputError(f"A train/test split needs at least 2 users. Got {len(uniq)}.")
    n_test = min(len(uniq) - 1, max(1, round(test_size * len(uniq))))
    test = np.random.default_rng(seed).permutation(uniq)[:n_test]
    return np.isin(ids, test)


def estimate_propensities(
    states: np.ndarray, actions: np.ndarray, n_states: int, n_actions: int
) -> np.ndarray:
    """Empirical P(action | state) from the log, ``(n_states, n_actions)``; rows of states never
    seen are uniform."""
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (states, actions), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), 1.0 / n_actions)


def outcome_model(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    n_states: int,
    n_actions: int,
    *,
    prior_strength: float = 10.0,
) -> np.ndarray:
    """Per state-action mean reward, shrunk toward the action's overall mean with
    ``prior_strength`` pseudo-observations (the action's mean falls back to the global mean)."""
    n = np.zeros((n_states, n_actions))
    total = np.zeros((n_states, n_actions))
    np.add.at(n, (states, actions), 1.0)
    np.add.at(total, (states, actions), rewards)
    global_mean = float(np.mean(rewards)) if len(rewards) else 0.0
    n_a, tot_a = n.sum(axis=0), total.sum(axis=0)
    action_mean = np.where(n_a > 0, tot_a / np.maximum(n_a, 1.0), global_mean)
    k = prior_strength
    denom = n + k
    return np.where(
        denom > 0, (total + k * action_mean[None, :]) / np.maximum(denom, 1e-12), action_mean
    )


def off_policy_estimates(
    log: pd.DataFrame,
    policies: Mapping[str, np.ndarray],
    q_hat: np.ndarray,
    *,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    contrasts: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """IPS, SNIPS and DR of each deterministic policy on the log, with bootstrap intervals.

    ``log``: ``user_id, state, action, reward, propensity`` (state/action as integer indices,
    propensity in (0, 1]). ``policies``: name -> action index per state. ``q_hat``: outcome model
    ``(n_states, n_actions)``. Returns ``policy, estimator, value, ci_lo, ci_hi, n`` (n = rows).
    ``contrasts``: pairs ``(a, b)`` of policy names; each adds rows ``policy = "a − b"`` with the
    difference of the estimates and its paired bootstrap interval (same resampled users).
    """
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if missing:
        raise InputError(
            f"The evaluation log needs columns {list(LOG_COLUMNS)}; missing {missing}."
        )
    if log.empty:
        raise InputError("The evaluation log is empty: there is nothing to evaluate on.")
    if n_bootstrap < 10:
        raise InputError(f"The 'n_bootstrap' parameter must be >= 10. Got {n_bootstrap}.")
    if not 0.5 <= level < 1.0:
        raise InputError(f"The 'level' parameter must be in [0.5, 1). Got {level}.")
    s = log["state"].to_numpy(dtype=int)
    a = log["action"].to_numpy(dtype=int)
    r = log["reward"].to_numpy(dtype=float)
    p = log["propensity"].to_numpy(dtype=float)
    if not np.all((p > 0) & (p <= 1)):
        bad = p[~((p > 0) & (p <= 1))][:3]
        raise InputError(
            f"Propensities must be in (0, 1]; the log has {bad.tolist()}. Fix the 'propensity' "
            "column or leave it empty to estimate propensities from the log."
        )
    users, user_code = np.unique(log["user_id"].astype(str).to_numpy(), return_inverse=True)
    n_users, names = len(users), list(policies)

    # Per-row contributions, one column block per policy: w*r, w, dr term; plus a row count.
    cols = []
    for name in names:
        pi = np.asarray(policies[name], dtype=int)
        w = (a == pi[s]) / p
        dr = q_hat[s, pi[s]] + w * (r - q_hat[s, a])
        cols += [w * r, w, dr]
    cols.append(np.ones_like(r))
    per_row = np.column_stack(cols)
    per_user = np.zeros((n_users, per_row.shape[1]))
    np.add.at(per_user, user_code, per_row)

    point = _estimates(per_user.sum(axis=0, keepdims=True), len(names))[0]
    rng = np.random.default_rng(seed)
    boot = []
    chunk = max(1, min(n_bootstrap, 2_000_000 // max(n_users, 1)))
    done = 0
    while done < n_bootstrap:
        m = min(chunk, n_bootstrap - done)
        weights = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=m)
        boot.append(_estimates(weights @ per_user, len(names)))
        done += m
    reps = np.vstack(boot)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [alpha, 1.0 - alpha], axis=0)

    rows = []
    for i, name in enumerate(names):
        for j, est in enumerate(ESTIMATORS):
            c = 3 * i + j
            rows.append((name, est, point[c], lo[c], hi[c], len(log)))
    for first, second in contrasts:
        i, k = names.index(first), names.index(second)
        for j, est in enumerate(ESTIMATORS):
            diff = reps[:, 3 * i + j] - reps[:, 3 * k + j]
            d_lo, d_hi = np.nanquantile(diff, [alpha, 1.0 - alpha])
            value = point[3 * i + j] - point[3 * k + j]
            rows.append((f"{first} − {second}", est, value, d_lo, d_hi, len(log)))
    return pd.DataFrame(rows, columns=["policy", "estimator", "value", "ci_lo", "ci_hi", "n"])


def _estimates(sums: np.ndarray, n_policies: int) -> np.ndarray:
    """From summed contributions (rows = replicates) to [ips, snips, dr] per policy."""
    count = sums[:, -1:]
    out = np.empty((sums.shape[0], 3 * n_policies))
    for i in range(n_policies):
        wr, w, dr = sums[:, 3 * i], sums[:, 3 * i + 1], sums[:, 3 * i + 2]
        out[:, 3 * i] = wr / count[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, 3 * i + 1] = np.where(w > 0, wr / np.where(w > 0, w, 1.0), np.nan)
        out[:, 3 * i + 2] = dr / count[:, 0]
    return out


def fill_propensities(
    propensity: np.ndarray, states: np.ndarray, actions: np.ndarray, table: np.ndarray
) -> np.ndarray:
    """Logged propensities where present, else ``table[state, action]``."""
    p = np.asarray(propensity, dtype=float)
    return np.where(np.isnan(p), table[states, actions], p)


def ope_summary(ope: pd.DataFrame, actions: Sequence[str], policy_name: str) -> dict:
    """The ``ope`` block of summary.json: ``{policy: {ips, snips, dr: {value, ci}}, actions: {..}}``."""

    def block(name: str) -> dict:
        part = ope[ope["policy"] == name].set_index("estimator")
        return {
            est: {
                "value": _num(part.loc[est, "value"]),
                "ci": [_num(part.loc[est, "ci_lo"]), _num(part.loc[est, "ci_hi"])],
            }
            for est in ESTIMATORS
            if est in part.index
        }

    return {
        "policy": block(policy_name),
        "actions": {
            act: block(f"always {act}")
            for act in actions
            if (ope["policy"] == f"always {act}").any()
        },
    }


def _num(x: float) -> float | None:
    return None if pd.isna(x) else float(x)


@dataclass(frozen=True)
class OpeVerdict:
    """The learned policy against doing nothing, by the doubly robust estimate:
    ``learned`` and ``nothing`` are ``(value, ci_lo, ci_hi)``; ``difference`` the same for
    their paired difference (None when not estimated); ``verdict`` :data:`BETTER`,
    :data:`WORSE` or :data:`UNCLEAR` (None without a difference)."""

    learned: tuple[float, float, float]
    nothing: tuple[float, float, float]
    difference: tuple[float, float, float] | None = None
    verdict: str | None = None


def ope_verdict(
    ope: pd.DataFrame, *, nothing: str = "always none", learned: str = LEARNED
) -> OpeVerdict | None:
    """:class:`OpeVerdict` of ``learned`` against the ``nothing`` policy in a table of
    :func:`off_policy_estimates` (doubly robust rows); None when either is missing. The verdict
    is "better" only when the whole 95% interval of the difference is above 0."""
    dr = ope[ope["estimator"] == "dr"].set_index("policy")
    if learned not in dr.index or nothing not in dr.index:
        return None

    def triple(name: str) -> tuple[float, float, float]:
        row = dr.loc[name]
        return float(row["value"]), float(row["ci_lo"]), float(row["ci_hi"])

    diff_name = f"{learned} − {nothing}"
    if diff_name not in dr.index:
        return OpeVerdict(triple(learned), triple(nothing))
    diff = triple(diff_name)
    verdict = BETTER if diff[1] > 0 else WORSE if diff[2] < 0 else UNCLEAR
    return OpeVerdict(triple(learned), triple(nothing), diff, verdict)

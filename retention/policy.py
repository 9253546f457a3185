"""The retention policy of a dataset: the one call the app and the command line make.

:func:`train_policy` (an event log) is a short chain of named steps, each a function a reader or
a test can call on its own:

1. :func:`estimate` — split the users (with a campaign log), read the logged transitions once,
   estimate the MDP (``retention.mdp``);
   with a campaign log, :func:`check` what the log says (when sends fall, whether it is
   randomised, the effects under each timing rule, the evidence per segment × stage × action;
   ``retention.campaigns``);
2. :func:`fit` — learn the Q-table: online Q-learning/SARSA on simulated users, or batch
   Q-learning over the logged transitions (``retention.learn``);
3. :func:`diagnose` — compare with the exact optimum, project retention, map the stability over
   the discount and the churn penalty;
4. :func:`evaluate` — off-policy estimates on the held-out users (``retention.evaluate``),
   overall and per segment (:func:`evaluate_segments`).

:func:`train_snapshot_policy` is the one-step policy of a campaign snapshot. Nothing here reads
or writes the workspace: a dataset's stored policy runs (what the front doors share) are
``retention.policy_runs``.

**Unclustered users.** HDBSCAN leaves some users in no segment (segment
:data:`~retention.words.NOISE_SEGMENT`). They share no behaviour, so they get no states of their
own: the MDP, the learner and the off-policy evaluation use clustered users only
(:func:`clustered`), and the strategies give unclustered users the do-nothing action, saying so
(``retention.strategies``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from retention.campaigns import CampaignChecks, check_campaigns, evidence_table, with_timing
from retention.errors import InputError
from retention.evaluate import (
    estimate_propensities,
    fill_propensities,
    off_policy_estimates,
    outcome_model,
    split_users,
)
from retention.learn import (
    CURVE_COLUMNS,
    DEFAULT_GAMMAS,
    DEFAULT_PENALTIES,
    LEARNED,
    MDP,
    PolicyResult,
    QLearner,
    batch_q_learning,
    fraction_of_optimum,
    greedy,
    optimum,
    project_retention,
    recommendations_table,
    stability_map,
    start_value,
)
from retention.mdp import (
    STAGES,
    PanelSummary,
    RewardSettings,
    estimate_mdp,
    ids_as_text,
    logged_transitions,
    resolve_actions,
    resolve_lift,
    summarize_panel,
)
from retention.periods import check_timing
from retention.strategies import baseline_action
from retention.words import NOISE_SEGMENT, scaled

Progress = Callable[[float, str], None]
Callback = Callable[[pd.DataFrame], None]
ALGORITHMS: tuple[str, ...] = ("q", "sarsa", "batch")
#: The stage of a snapshot user whose recency is missing (see :func:`snapshot_stage`).
UNKNOWN_STAGE = "unknown"
SNAPSHOT_STAGES: tuple[str, ...] = (*STAGES, UNKNOWN_STAGE)
DISAGREEMENT_COLUMNS = ["segment", "stage", "action", "optimal_action", "value_loss"]


def clustered(assignments: pd.DataFrame) -> pd.DataFrame:
    """The assignments of users in a segment: HDBSCAN's unclustered users (segment
    :data:`~retention.words.NOISE_SEGMENT`) are left out of the policy (module docstring)."""
    keep = pd.to_numeric(assignments["segment"], errors="coerce") != NOISE_SEGMENT
    if not keep.any():
        raise InputError(
            "Every user is unclustered (segment -1): there is no segment to learn a policy for. "
            "Segment again with another method or setting."
        )
    return assignments if keep.all() else assignments[keep]


# --------------------------------------------------------------------------- 1. estimate


@dataclass(frozen=True, eq=False)
class Estimate:
    """The MDP and, with a campaign log, the logged transitions behind it: ``train_log`` (the
    training users', encoded by :func:`encoded_log`) and ``test_transitions`` (the held-out
    users', raw), with ``test_users`` the number of held-out users."""

    mdp: MDP
    train_log: pd.DataFrame | None = None
    test_transitions: pd.DataFrame | None = None
    test_users: int = 0

    @property
    def has_log(self) -> bool:
        return self.train_log is not None


def estimate(
    panel: pd.DataFrame | PanelSummary,
    assignments: pd.DataFrame | None,
    *,
    campaigns: pd.DataFrame | None = None,
    actions: Sequence[str] | None = None,
    lift: Mapping[str, float] | pd.DataFrame | None = None,
    reward: RewardSettings,
    prior_strength: float = 20.0,
    test_size: float = 0.3,
    seed: int = 0,
) -> Estimate:
    """Estimate the MDP. With a campaign log, ``test_size`` of the users (seeded split) are held
    out: the MDP uses the others, and the logged transitions are read once for both sides.

    The actions are ``actions``, or ``none`` + every action logged for any user (training or
    held out): an action only held-out users got is still an action of the MDP (with no
    training data it behaves like doing nothing), never mistaken for another one."""
    if not (campaigns is not None and len(campaigns) > 0):
        return Estimate(
            mdp=estimate_mdp(
                panel,
                assignments,
                actions=actions,
                lift=lift,
                prior_strength=prior_strength,
                reward=reward,
            )  # fmt: skip
        )
    assert isinstance(panel, pd.DataFrame) and assignments is not None
    user = ids_as_text(panel["user_id"])
    users = user.unique()
    test_users = set(users[split_users(users, test_size=test_size, seed=seed)])
    in_test = user.isin(test_users).to_numpy()
    transitions = logged_transitions(panel, assignments, campaigns)
    tr_test = transitions["user_id"].isin(test_users).to_numpy()
    train_tr = transitions[~tr_test]
    source = summarize_panel(panel[~in_test], assignments, campaigns, transitions=train_tr)
    mdp = estimate_mdp(
        source,
        actions=resolve_actions(actions, transitions["action"]),
        lift=lift,
        prior_strength=prior_strength,
        reward=reward,
    )
    return Estimate(
        mdp=mdp,
        train_log=encoded_log(mdp, train_tr),
        test_transitions=transitions[tr_test],
        test_users=len(test_users),
    )


def encoded_log(mdp: MDP, transitions: pd.DataFrame) -> pd.DataFrame:
    """Logged transitions as state/action/next-state indices with the MDP's reward:
    ``user_id, state, action, next_state, reward, propensity``. Rows of segments the MDP does not
    have are dropped; an action the MDP does not have is an error (never another action)."""
    tr = transitions[transitions["segment"].isin(mdp.segments)]
    unknown = sorted(set(tr["action"].astype(str).unique()) - set(mdp.actions))
    if unknown:
        raise InputError(
            f"The log has actions {unknown} that are not among the policy's actions "
            f"{list(mdp.actions)}. Add them to the actions or leave the actions unset."
        )
    seg_pos = np.searchsorted(np.asarray(mdp.segments), tr["segment"].to_numpy())
    n_stage = len(mdp.stages)
    s = seg_pos * n_stage + pd.Categorical(tr["stage"], categories=mdp.stages).codes
    s2 = seg_pos * n_stage + pd.Categorical(tr["next_stage"], categories=mdp.stages).codes
    a = pd.Categorical(tr["action"], categories=mdp.actions).codes
    return pd.DataFrame(
        {
            "user_id": tr["user_id"].to_numpy(),
            "state": s.astype(int),
            "action": a.astype(int),
            "next_state": s2.astype(int),
            "reward": mdp.R[s, a, s2],
            "propensity": tr["propensity"].to_numpy(dtype=float),
        }
    )


def check(
    panel: pd.DataFrame,
    assignments: pd.DataFrame,
    campaigns: pd.DataFrame,
    *,
    timing: str,
    period: str,
) -> tuple[CampaignChecks, pd.DataFrame]:
    """What the campaign log says (all users, the rule in use): its checks and the evidence
    table per segment × stage × action (``retention.campaigns``). ``campaigns`` is placed by
    :func:`~retention.policy_runs.campaigns_by_period` (it has ``t_in`` and ``phase``)."""
    checks = check_campaigns(panel, assignments, campaigns, timing=timing, period=period)
    transitions = logged_transitions(panel, assignments, with_timing(campaigns, timing))
    return checks, evidence_table(transitions)


# --------------------------------------------------------------------------- 2. fit


@dataclass(frozen=True, eq=False)
class Fit:
    """A learned Q-table (states x actions), its learning curve and the learner's metrics."""

    q: np.ndarray
    curve: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def fit(
    est: Estimate,
    algorithm: str,
    learner: QLearner,
    *,
    progress: Progress | None = None,
    callback: Callback | None = None,
) -> Fit:
    """Learn the Q-table. ``batch``: batch Q-learning over the training users' logged
    transitions; ``q``/``sarsa``: ``learner`` on users simulated from the MDP. With a campaign
    log, batch Q-learning also runs beside an online learner, as a check
    (``batch_agreement_with_optimum``)."""
    mdp, metrics = est.mdp, {}
    batch = None
    if est.train_log is not None:
        log = est.train_log
        batch = batch_q_learning(
            log["state"].to_numpy(),
            log["action"].to_numpy(),
            log["reward"].to_numpy(),
            log["next_state"].to_numpy(),
            n_states=mdp.n_states,
            n_actions=mdp.n_actions,
            gamma=mdp.gamma,
        )
        best = optimum(mdp, mdp.gamma).policy
        metrics["batch_agreement_with_optimum"] = float(np.mean(batch.policy == best))
    if algorithm == "batch":
        assert batch is not None
        metrics["batch_iterations"] = batch.iterations
        return Fit(q=batch.q, curve=pd.DataFrame(columns=CURVE_COLUMNS), metrics=metrics)
    learner.fit(mdp, progress=progress, callback=callback)
    metrics.update(
        n_steps=int(learner.n_steps_),
        fit_seconds=float(learner.fit_seconds_),
        steps_per_second=float(learner.n_steps_ / max(learner.fit_seconds_, 1e-9)),
    )
    return Fit(q=learner.q_, curve=learner.curve_, metrics=metrics)


# --------------------------------------------------------------------------- 3. diagnose


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """The learned policy against the exact optimum, and what it does to retention.

    ``policies``: the learned policy, every single-action policy and the random one (by name);
    ``value`` / ``optimal_value``: exact start values (:func:`retention.learn.optimum`)."""

    policies: dict[str, np.ndarray]
    value: float
    optimal_value: float
    states: pd.DataFrame
    recommendations: pd.DataFrame
    disagreements: pd.DataFrame
    projections: pd.DataFrame
    stability: pd.DataFrame


def diagnose(
    mdp: MDP,
    q: np.ndarray,
    *,
    projection_periods: int = 12,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    progress: Progress | None = None,
) -> Diagnosis:
    """Where the greedy policy of ``q`` differs from the optimum (and what that costs), the
    retention it projects beside every single-action policy, and its stability map (the grid
    always holds the settings in use)."""
    g = mdp.gamma
    best = optimum(mdp, g)
    policy = greedy(q)
    states = mdp.states_frame()
    names = np.asarray(mdp.actions, dtype=object)
    wrong = np.flatnonzero(policy != best.policy)
    disagreements = pd.DataFrame(
        {
            "segment": states["segment"].to_numpy()[wrong],
            "stage": states["stage"].to_numpy()[wrong],
            "action": names[policy[wrong]],
            "optimal_action": names[best.policy[wrong]],
            "value_loss": best.q[wrong, best.policy[wrong]] - best.q[wrong, policy[wrong]],
        }
    )
    _step(progress, 0.0, "Projecting retention")
    policies: dict[str, np.ndarray] = {LEARNED: policy}
    for j, act in enumerate(mdp.actions):
        policies[f"always {act}"] = np.full(mdp.n_states, j)
    policies["random"] = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    projections = project_retention(mdp, policies, periods=projection_periods)
    _step(progress, 0.5, "Mapping stability over gamma and churn penalty")
    assert mdp.reward is not None
    stability = stability_map(
        mdp,
        gammas=sorted({*map(float, gammas), float(g)}),
        penalties=sorted({*map(float, penalties), float(mdp.reward.churn_penalty)}),
    )
    return Diagnosis(
        policies=policies,
        value=start_value(mdp, policy, g),
        optimal_value=best.value,
        states=states,
        recommendations=recommendations_table(
            q, states, mdp.actions, mdp.support.sum(axis=1), best.policy
        ),
        disagreements=disagreements,
        projections=projections,
        stability=stability,
    )


# --------------------------------------------------------------------------- 4. evaluate


def evaluate(
    est: Estimate,
    policies: Mapping[str, np.ndarray],
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Off-policy estimates (IPS, SNIPS, DR with bootstrap intervals) of the learned policy and
    of every single-action policy on the held-out users, with the learned policy's contrast to
    each. Missing propensities are the logged action frequencies per state (all users)."""
    assert est.train_log is not None and est.test_transitions is not None
    mdp = est.mdp
    test_log = encoded_log(mdp, est.test_transitions)
    all_log = pd.concat([est.train_log, test_log])
    table = estimate_propensities(
        all_log["state"].to_numpy(), all_log["action"].to_numpy(), mdp.n_states, mdp.n_actions
    )
    test_log["propensity"] = fill_propensities(
        test_log["propensity"].to_numpy(),
        test_log["state"].to_numpy(),
        test_log["action"].to_numpy(),
        table,
    )
    target = {k: v for k, v in policies.items() if k != "random"}
    return off_policy_estimates(
        test_log,
        target,
        mdp.expected_reward,
        n_bootstrap=n_bootstrap,
        seed=seed,
        contrasts=[(LEARNED, name) for name in target if name != LEARNED],
    )


def evaluate_segments(
    est: Estimate, policies: Mapping[str, np.ndarray], *, n_bootstrap: int = 200, seed: int = 0
) -> pd.DataFrame:
    """:func:`evaluate` on each segment's held-out users alone, with a ``segment`` column: the
    overall estimate can hide a segment the policy serves badly."""
    assert est.test_transitions is not None
    parts = []
    for g in est.mdp.segments:
        part = est.test_transitions[est.test_transitions["segment"] == g]
        if part.empty:
            continue
        one = replace(est, test_transitions=part)
        parts.append(evaluate(one, policies, n_bootstrap=n_bootstrap, seed=seed).assign(segment=g))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# --------------------------------------------------------------------------- the chain


def train_policy(
    panel: pd.DataFrame | PanelSummary,
    assignments: pd.DataFrame | None,
    *,
    campaigns: pd.DataFrame | None = None,
    actions: Sequence[str] | None = None,
    lift: Mapping[str, float] | pd.DataFrame | None = None,
    reward: RewardSettings | None = None,
    algorithm: str = "q",
    learner: QLearner | None = None,
    prior_strength: float = 20.0,
    test_size: float = 0.3,
    n_bootstrap: int = 200,
    projection_periods: int = 12,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    seed: int = 0,
    campaign_timing: str | None = None,
    period: str = "period",
    progress: Progress | None = None,
    callback: Callback | None = None,
) -> PolicyResult:
    """Estimate the MDP from an event-log panel, learn the policy, diagnose it against the exact
    optimum, and (with a campaign log) check the log and evaluate the policy off-policy on
    held-out users, overall and per segment.

    ``panel``: the periods panel, or without a campaign log its
    :class:`~retention.mdp.PanelSummary` (e.g. :func:`~retention.mdp.summarize_events`, which
    scales to logs whose panel does not fit in memory; the result is the same);
    ``assignments``: ``user_id, segment`` (unused with a summary; unclustered users are left
    out); ``campaigns``: ``user_id, t, action[, propensity]``. ``algorithm``: ``q`` or ``sarsa``
    (online, on users simulated from the MDP; settings from ``learner``, whose seed is replaced
    by ``seed``) or ``batch`` (batch Q-learning over the logged transitions; needs a log).
    ``campaign_timing``: the rule ``campaigns`` was credited by; with a log placed by
    :func:`~retention.policy_runs.campaigns_by_period` (columns ``t_in``, ``phase``) the log is checked under every
    rule (:func:`check`); ``period`` names the period in its sentences.
    """
    reward = reward or RewardSettings()
    has_log = campaigns is not None and len(campaigns) > 0
    _check_request(panel, assignments, algorithm, has_log)
    learner = QLearner(
        **{**(learner or QLearner()).get_params(), "seed": seed,
           "algorithm": algorithm if algorithm != "batch" else "q"}
    )  # fmt: skip
    _step(progress, 0.0, "Estimating transitions")
    t0 = time.perf_counter()
    est = estimate(
        panel, None if assignments is None else clustered(assignments), campaigns=campaigns,
        actions=actions, lift=lift, reward=reward, prior_strength=prior_strength,
        test_size=test_size, seed=seed,
    )  # fmt: skip
    checks, evidence = None, None
    if est.has_log and campaign_timing is not None and "phase" in campaigns:
        _step(progress, 0.03, "Checking the campaign log")
        assert isinstance(panel, pd.DataFrame) and assignments is not None
        checks, evidence = check(
            panel, clustered(assignments), campaigns, timing=check_timing(campaign_timing),
            period=period,
        )  # fmt: skip
    fitted = fit(est, algorithm, learner, progress=scaled(progress, 0.05, 0.8), callback=callback)
    diag = diagnose(
        est.mdp, fitted.q, projection_periods=projection_periods, gammas=gammas,
        penalties=penalties, progress=scaled(progress, 0.82, 0.94),
    )  # fmt: skip
    metrics = dict(fitted.metrics)
    ope = ope_segments = None
    if est.has_log:
        _step(progress, 0.94, "Evaluating on held-out users")
        ope = evaluate(est, diag.policies, n_bootstrap=n_bootstrap, seed=seed)
        ope_segments = evaluate_segments(est, diag.policies, n_bootstrap=n_bootstrap, seed=seed)
        metrics["test_users"] = est.test_users
        metrics["test_transitions"] = int(ope["n"].iloc[0])
    metrics.update(
        value=diag.value,
        optimal_value=diag.optimal_value,
        fraction_of_optimum=fraction_of_optimum(diag.value, diag.optimal_value),
        disagreements=len(diag.disagreements),
        seconds=time.perf_counter() - t0,
    )
    mdp = est.mdp
    settings = {
        "shape": "events",
        "algorithm": algorithm,
        **reward.as_dict(),
        "actions": list(mdp.actions),
        "lift": None if has_log else resolve_lift(lift, mdp.actions),
        "prior_strength": prior_strength,
        "test_size": test_size if has_log else None,
        "n_bootstrap": n_bootstrap,
        "learner": learner.resolved_params(),
        "seed": seed,
        "campaign_log": has_log,
        **({"campaign_timing": campaign_timing} if has_log and campaign_timing else {}),
    }
    _step(progress, 1.0, "Done")
    return PolicyResult(
        kind="events", algorithm=algorithm, gamma=mdp.gamma, actions=mdp.actions,
        stages=mdp.stages, segments=mdp.segments, settings=settings, q=fitted.q,
        states=diag.states, recommendations=diag.recommendations,
        disagreements=diag.disagreements, curve=fitted.curve, value=diag.value,
        optimal_value=diag.optimal_value, ope=ope, projections=diag.projections,
        stability=diag.stability, assumptions=mdp.assumptions, metrics=metrics, mdp=mdp,
        ope_segments=ope_segments, evidence=evidence,
        campaign=None if checks is None else checks.to_dict(),
    )  # fmt: skip


def _check_request(
    panel: pd.DataFrame | PanelSummary, assignments: pd.DataFrame | None, algorithm: str,
    has_log: bool,
) -> None:  # fmt: skip
    """The input errors of :func:`train_policy`, before any work."""
    if algorithm not in ALGORITHMS:
        raise InputError(
            f"The 'algorithm' parameter must be one of {list(ALGORITHMS)}. Got {algorithm!r}."
        )
    if not isinstance(panel, PanelSummary) and assignments is None:
        raise InputError("train_policy needs the segment assignments (user_id, segment).")
    if isinstance(panel, PanelSummary) and (has_log or panel.campaign_log):
        raise InputError(
            "With a campaign log the policy needs the panel itself, not its summary: users are "
            "split into training and held-out users for the off-policy evaluation."
        )
    if algorithm == "batch" and not has_log:
        raise InputError(
            "The 'batch' algorithm learns from logged actions and needs a campaign log; "
            "choose 'q' or 'sarsa', or add a campaign log."
        )


def _step(progress: Progress | None, frac: float, msg: str) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, frac)), msg)


# --------------------------------------------------------------------------- campaign snapshot


def snapshot_stage(recency: pd.Series, churn_after: int = 4) -> pd.Series:
    """Stage of a snapshot's ``recency`` (periods since the last activity), by SPEC §3:
    0 active, 1 lapsing, 2..W-1 at_risk, >= W churned.

    A missing (or non-numeric) recency is :data:`UNKNOWN_STAGE`, not churned: nothing says
    the user left. Those users form a stage of their own, so the policy learns from their
    outcomes what to do with users whose engagement is unknown, without mixing them with
    the churned."""
    r = pd.to_numeric(recency, errors="coerce")
    stage = np.select(
        [r.isna(), r <= 0, r == 1, r < churn_after],
        [UNKNOWN_STAGE, "active", "lapsing", "at_risk"],
        default="churned",
    )
    return pd.Series(stage, index=recency.index)


def snapshot_actions(found: Sequence[str]) -> tuple[str, ...]:
    """A snapshot's actions, the do-nothing action (the data's control arm: ``none``, ``No
    E-Mail``, ``control``, ...) first so that a tie means "do nothing", the others sorted."""
    found = sorted({str(a) for a in found})
    nothing = baseline_action(found)
    return tuple([nothing] if nothing is not None else []) + tuple(a for a in found if a != nothing)


@dataclass(frozen=True, eq=False)
class SnapshotLog:
    """A snapshot as one logged decision per user (``user_id, state, action, reward,
    propensity``), with the names of its states and actions."""

    log: pd.DataFrame
    states: pd.DataFrame
    segments: tuple[int, ...]
    stages: tuple[str, ...]
    actions: tuple[str, ...]
    has_recency: bool


def snapshot_log(
    snapshot: pd.DataFrame,
    assignments: pd.DataFrame | None,
    reward: RewardSettings,
    churn_after: int = 4,
) -> SnapshotLog:
    """State = segment (one for everyone without ``assignments``; unclustered users left out) x
    recency stage (or ``all``); reward = ``outcome - cost(action)``; missing propensities are
    the logged action frequencies per state."""
    missing = [c for c in ("user_id", "action", "outcome") if c not in snapshot.columns]
    if missing:
        raise InputError(
            f"The campaign snapshot needs columns user_id, action, outcome; missing {missing}."
        )
    snap = snapshot.copy()
    snap["user_id"] = snap["user_id"].astype(str)
    snap["outcome"] = pd.to_numeric(snap["outcome"], errors="coerce")
    if snap["outcome"].isna().all():
        raise InputError("The snapshot's 'outcome' column has no numeric values.")
    snap = snap[snap["outcome"].notna() & snap["action"].notna()]
    snap["action"] = snap["action"].astype(str)
    if assignments is None:
        snap["segment"] = 0
    else:
        seg = clustered(assignments)[["user_id", "segment"]].reset_index(drop=True)
        seg = seg.assign(user_id=seg["user_id"].astype(str)).drop_duplicates("user_id")
        snap = snap.reset_index(drop=True).merge(seg, on="user_id")
        if snap.empty:
            raise InputError("No user of the snapshot has a segment; run the segmentation first.")
    has_recency = "recency" in snap.columns and snap["recency"].notna().any()
    snap["stage"] = snapshot_stage(snap["recency"], churn_after) if has_recency else "all"
    stages = (
        tuple(st for st in SNAPSHOT_STAGES if (snap["stage"] == st).any())
        if has_recency
        else ("all",)
    )
    actions = snapshot_actions(snap["action"].unique())
    if len(actions) < 2:
        raise InputError(
            f"The snapshot needs at least two actions to compare. Got {list(actions)}."
        )
    segments = tuple(sorted(int(g) for g in snap["segment"].unique()))
    n_stage, n_a = len(stages), len(actions)
    n_s = len(segments) * n_stage
    s = (
        np.searchsorted(segments, snap["segment"].to_numpy()) * n_stage
        + pd.Categorical(snap["stage"], categories=stages).codes
    )
    a = pd.Categorical(snap["action"], categories=actions).codes.astype(int)
    costs = np.array([reward.cost(act) for act in actions])
    r = snap["outcome"].to_numpy(dtype=float) - costs[a]
    if "propensity" in snap.columns:
        prop = pd.to_numeric(snap["propensity"], errors="coerce").to_numpy(dtype=float)
    else:
        prop = np.full(len(snap), np.nan)
    log = pd.DataFrame(
        {"user_id": snap["user_id"].to_numpy(), "state": s, "action": a, "reward": r}
    )
    log["propensity"] = fill_propensities(prop, s, a, estimate_propensities(s, a, n_s, n_a))
    states = pd.DataFrame(
        {
            "state": np.arange(n_s),
            "name": [f"{g}/{st}" for g in segments for st in stages],
            "segment": np.repeat(np.asarray(segments, dtype=int), n_stage),
            "stage": list(stages) * len(segments),
        }
    )
    return SnapshotLog(log, states, segments, stages, actions, has_recency)


def train_snapshot_policy(
    snapshot: pd.DataFrame,
    assignments: pd.DataFrame | None = None,
    *,
    reward: RewardSettings | None = None,
    churn_after: int = 4,
    prior_strength: float = 20.0,
    test_size: float = 0.3,
    n_bootstrap: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
) -> PolicyResult:
    """The one-step policy of a campaign snapshot (Hillstrom shape; gamma plays no role).

    States and rewards as :func:`snapshot_log` makes them (costs from ``reward.action_costs``;
    other reward settings do not apply). The policy takes, per state, the action with the
    highest mean reward on the training users, each state-action mean shrunk toward the
    action's overall mean with ``prior_strength`` pseudo-users; ties go to the data's control
    arm. Held-out users (``test_size``, seeded split) give the off-policy estimates of the
    policy and of every single-action policy.
    """
    reward = reward or RewardSettings()
    _step(progress, 0.0, "Preparing the snapshot")
    t0 = time.perf_counter()
    data = snapshot_log(snapshot, assignments, reward, churn_after)
    log, actions, n_s = data.log, data.actions, len(data.states)
    test = split_users(log["user_id"].to_numpy(), test_size=test_size, seed=seed)
    train = log[~test]
    _step(progress, 0.3, "Estimating the outcome of each action per state")
    s_train = train["state"].to_numpy()
    model = outcome_model(
        s_train, train["action"].to_numpy(), train["reward"].to_numpy(), n_s, len(actions),
        prior_strength=prior_strength,
    )  # fmt: skip
    policy = greedy(model)
    support = np.bincount(s_train, minlength=n_s)
    value = float(support / len(train) @ model[np.arange(n_s), policy])
    recommendations = recommendations_table(model, data.states, actions, support, None)
    _step(progress, 0.6, "Evaluating on held-out users")
    policies: dict[str, np.ndarray] = {LEARNED: policy}
    for j, act in enumerate(actions):
        policies[f"always {act}"] = np.full(n_s, j)
    ope = off_policy_estimates(
        log[test], policies, model, n_bootstrap=n_bootstrap, seed=seed,
        contrasts=[(LEARNED, name) for name in policies if name != LEARNED],
    )  # fmt: skip
    metrics = {
        "value": value,
        "optimal_value": value,
        "fraction_of_optimum": 1.0,
        "disagreements": 0,
        "train_users": int((~test).sum()),
        "test_users": int(test.sum()),
        "seconds": time.perf_counter() - t0,
    }
    settings = {
        "shape": "snapshot",
        "algorithm": "one-step",
        **reward.as_dict(),
        "actions": list(actions),
        "churn_after": churn_after,
        "prior_strength": prior_strength,
        "test_size": test_size,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
    }
    _step(progress, 1.0, "Done")
    return PolicyResult(
        kind="snapshot", algorithm="one-step", gamma=None, actions=actions,
        stages=data.stages, segments=data.segments, settings=settings, q=model,
        states=data.states, recommendations=recommendations,
        disagreements=pd.DataFrame(columns=DISAGREEMENT_COLUMNS),
        curve=pd.DataFrame(columns=CURVE_COLUMNS), value=value, optimal_value=value, ope=ope,
        assumptions=_snapshot_assumptions(data, churn_after), metrics=metrics,
    )  # fmt: skip


def _snapshot_assumptions(data: SnapshotLog, churn_after: int) -> tuple[str, ...]:
    notes = [
        "One-step decision: the policy picks the action with the best mean outcome − cost per "
        "state on the training users; the discount γ plays no role.",
    ]
    if data.has_recency:
        notes.append(
            f"Stage from recency: 0 active, 1 lapsing, 2–{churn_after - 1} at_risk, "
            f"≥ {churn_after} churned."
        )
    if UNKNOWN_STAGE in data.stages:
        notes.append(
            "Users without a recency are in a stage of their own ('unknown'), not counted as "
            "churned."
        )
    return tuple(notes)

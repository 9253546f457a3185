"""A test from a workspace dataset and back: the one path the command line and the Test page
share (:mod:`retention.experiment` holds the statistics).

* :func:`plan_for_dataset` — a stored event log and segmentation → an :class:`ExperimentPlan`.
* :func:`read_results_files` — the test's campaign log and events since, from files or uploads,
  with their columns recognised as on the Data page.
* :func:`analyse` — the plan, the results and the dataset's no-action MDP → SRM check, measured
  lifts, the policy retrained on them, the off-policy check on held-out test users and the next
  wave's Thompson shares (:class:`ExperimentResult`).

Honest split: the test's users are split by user (:func:`retention.evaluate.split_users`); the
lifts and the policy come from one part and the off-policy check runs on the other, so the
check never grades a policy on the users it was learned from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.errors import InputError
from retention.evaluate import (
    LEARNED,
    off_policy_estimates,
    ope_summary,
    outcome_model,
    split_users,
)
from retention.experiment import (
    ExperimentData,
    ExperimentPlan,
    PlanSettings,
    Srm,
    cell_counts,
    lift_sources,
    lifts_summary,
    measure_effects,
    measured_mdp,
    next_wave,
    plan_inputs,
    plan_test,
    planned_effects,
    read_results,
    srm_check,
    thompson_allocation,
)
from retention.learn import PolicyResult, optimum
from retention.mdp import (
    MDP,
    NONE,
    STAGES,
    RewardSettings,
    mdp_from_summary,
    resolve_lift,
    summarize_events,
)
from retention.runs import load_segmentation
from retention.workspace import Workspace

#: The algorithm name of a policy solved exactly on a test's measured effects.
EXACT = "exact"
#: ``progress(fraction, message)``: how far a long step is (the page's bar, the CLI's stderr).
Progress = Callable[[float, str], None]


def _say(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _events_ref(ws: Workspace, dataset_id: str) -> str:
    if ws.dataset(dataset_id).shape != "events":
        raise InputError(
            "A test is planned on an event log (who was active when); this dataset is a campaign "
            "snapshot. Choose an event log."
        )
    return ws.table(dataset_id, "events")


def plan_for_dataset(
    ws: Workspace,
    dataset_id: str,
    segmentation_run: str,
    *,
    period: str,
    churn_after: int,
    settings: PlanSettings,
    names: dict[int, str] | None = None,
    progress: Progress | None = None,
) -> ExperimentPlan:
    """Plan a test on the users of a stored event log, by the segments of a stored run."""
    _say(progress, 0.05, "Reading the segments")
    seg = load_segmentation(ws, segmentation_run)
    _say(progress, 0.15, "Finding where each user is now and the chance of staying active")
    inputs = plan_inputs(ws.cursor(), _events_ref(ws, dataset_id), seg.assignments,
                         period=period, churn_after=churn_after)  # fmt: skip
    _say(progress, 0.7, "Sizing the test and assigning users to groups")
    plan = plan_test(
        inputs.users,
        inputs.baseline,
        settings,
        names=names,
        period=period,
        start=str(inputs.start),
        churn_after=churn_after,
    )
    source = {"dataset": dataset_id, "segmentation_run": segmentation_run}
    _say(progress, 1.0, f"Planned test {plan.plan_id}: {len(plan.assignment):,} users")
    return replace(plan, source=source)


def base_mdp(
    ws: Workspace,
    dataset_id: str,
    segmentation_run: str,
    *,
    period: str,
    churn_after: int,
    actions: tuple[str, ...],
    reward: RewardSettings | None = None,
    lift: Mapping[str, float] | None = None,
) -> MDP:
    """The dataset's MDP with the assumed lift table (``lift``, default the standard one): the
    base the measured lifts replace, cell by cell; the cells a test does not measure keep it."""
    seg = load_segmentation(ws, segmentation_run)
    summary = summarize_events(ws.cursor(), _events_ref(ws, dataset_id), seg.assignments,
                               period=period, churn_after=churn_after)  # fmt: skip
    return mdp_from_summary(summary, actions=actions, lift=resolve_lift(lift, actions),
                            reward=reward)  # fmt: skip


def _read(source: str | Path | bytes, name: str) -> pd.DataFrame:
    from retention.ingest import read_table

    if isinstance(source, bytes):
        return read_table(source, filename=name)
    return read_table(source)


def read_results_files(
    log: str | Path | bytes,
    events: str | Path | bytes,
    *,
    log_name: str = "campaign log",
    events_name: str = "events",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test's campaign log (``user_id, ts, action, propensity``) and events (``user_id,
    ts``) from files or uploaded bytes, their columns recognised by name and content."""
    from retention.ingest import detect_campaign_roles, detect_roles

    log_frame = _read(log, log_name)
    roles = detect_campaign_roles(log_frame)
    missing = [r for r in ("user", "time", "action", "propensity") if r not in roles]
    if missing:
        raise InputError(
            f"The campaign log '{log_name}' needs a user, time, action and propensity column; "
            f"none was found for {missing}. Columns: {list(log_frame.columns)}. Export the test's "
            "log with those columns (the holdout as explicit 'none' rows)."
        )
    campaigns = pd.DataFrame(
        {
            "user_id": log_frame[roles["user"]].astype(str),
            "ts": log_frame[roles["time"]],
            "action": log_frame[roles["action"]].astype(str),
            "propensity": log_frame[roles["propensity"]],
        }
    )
    ev_frame = _read(events, events_name)
    ev_roles = detect_roles(ev_frame, shape="events").roles
    if not ev_roles.get("user") or not ev_roles.get("time"):
        raise InputError(
            f"The events '{events_name}' need a user and a time column; columns: "
            f"{list(ev_frame.columns)}. Export the events since the test started."
        )
    ts = pd.to_datetime(ev_frame[ev_roles["time"]], errors="coerce", format="mixed")
    ev = pd.DataFrame({"user_id": ev_frame[ev_roles["user"]].astype(str), "ts": ts})
    return campaigns, ev[ev["ts"].notna()].reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class ExperimentResult:
    """What a test measured and what follows from it: ``next_shares`` (Thompson shares per
    segment × stage × arm) and ``next_assignment`` (the next wave, the same users, those shares as
    propensities; plan id ``<plan_id>-2``)."""

    plan_id: str
    srm: Srm
    effects: pd.DataFrame
    mdp: MDP
    recommendations: pd.DataFrame
    ope: pd.DataFrame
    next_shares: pd.DataFrame
    next_assignment: pd.DataFrame
    data: ExperimentData
    held_out_users: int

    def summary(self) -> dict[str, Any]:
        """``summary.json`` → ``experiment``."""
        return {
            "plan_id": self.plan_id,
            "srm": self.srm.to_dict(),
            "lifts": lifts_summary(self.effects),
            "ope": ope_summary(self.ope, self.mdp.actions, LEARNED),
            "held_out_users": self.held_out_users,
            "recommendations": self.recommendations.to_dict("records"),
            "assumptions": list(self.mdp.assumptions),
        }


def analyse(
    plan: ExperimentPlan,
    campaigns: pd.DataFrame,
    events: pd.DataFrame,
    base: MDP,
    *,
    test_size: float = 0.3,
    seed: int = 0,
    n_bootstrap: int = 200,
    source: str = "the results",
    progress: Progress | None = None,
) -> ExperimentResult:
    """Check the results against the plan, measure, retrain and check off-policy."""
    _say(progress, 0.05, "Checking the results against the plan")
    data = read_results(plan, campaigns, events, source=source)
    _say(progress, 0.25, "Checking the users per group (sample-ratio mismatch)")
    srm = srm_check(data.users)
    tr = data.transitions[data.transitions["segment"].isin(base.segments)]
    if tr.empty:
        raise InputError(
            f"None of the test's segments is in this dataset's segmentation. Analyse plan "
            f"{plan.plan_id} with the dataset and segment settings it was planned with."
        )
    held = split_users(tr["user_id"].to_numpy(), test_size=test_size, seed=seed)
    train, test = tr[~held], tr[held]
    _say(progress, 0.3, "Measuring each strategy's effect per segment and stage")
    effects = planned_effects(measure_effects(cell_counts(train)), plan)
    _say(progress, 0.4, "Retraining the policy on the measured effects")
    mdp = measured_mdp(base, effects, plan.plan_id)
    policy = optimum(mdp).policy
    _say(progress, 0.5, "Checking the retrained policy on held-out test users")
    ope = _off_policy(mdp, policy, train, test, n_bootstrap=n_bootstrap, seed=seed)
    states = mdp.states_frame()
    recs = pd.DataFrame(
        {"segment": states["segment"], "stage": states["stage"],
         "action": [mdp.actions[a] for a in policy]}
    )  # fmt: skip
    _say(progress, 0.85, "Planning the next wave (Thompson sampling, 10,000 draws per group)")
    shares = thompson_allocation(cell_counts(tr), plan.settings.arms,
                                 holdout=plan.settings.holdout, seed=seed)  # fmt: skip
    _say(progress, 1.0, "Measured")
    return ExperimentResult(
        plan_id=plan.plan_id,
        srm=srm,
        effects=effects,
        mdp=mdp,
        recommendations=recs[recs["stage"] != "churned"].reset_index(drop=True),
        ope=ope,
        next_shares=shares,
        next_assignment=next_wave(
            plan.assignment[["user_id", "segment", "stage", "recency"]],
            shares,
            f"{plan.plan_id}-2",
            dict(zip(plan.cells["segment"], plan.cells["segment_name"], strict=True)),
        ),
        data=data,
        held_out_users=int(test["user_id"].nunique()),
    )


def _encode(mdp: MDP, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.searchsorted(mdp.segments, rows["segment"].to_numpy())
    s = pos * len(STAGES) + pd.Categorical(rows["stage"], categories=STAGES).codes
    s2 = pos * len(STAGES) + pd.Categorical(rows["next_stage"], categories=STAGES).codes
    a = pd.Categorical(rows["action"], categories=mdp.actions).codes
    return s, a, s2


def _off_policy(
    mdp: MDP, policy: np.ndarray, train: pd.DataFrame, test: pd.DataFrame, *, n_bootstrap: int,
    seed: int,
) -> pd.DataFrame:  # fmt: skip
    """IPS / SNIPS / DR of the policy and of each single action on the held-out users' moves,
    with the propensities the test logged."""
    s, a, s2 = _encode(mdp, train)
    q_hat = outcome_model(s, a, mdp.R[s, a, s2], mdp.n_states, mdp.n_actions)
    s, a, s2 = _encode(mdp, test)
    log = pd.DataFrame({"user_id": test["user_id"].to_numpy(), "state": s, "action": a,
                        "reward": mdp.R[s, a, s2], "propensity": test["propensity"].to_numpy()})  # fmt: skip
    policies = {LEARNED: policy}
    policies.update(
        {f"always {act}": np.full(mdp.n_states, k) for k, act in enumerate(mdp.actions)}
    )
    return off_policy_estimates(log, policies, q_hat, n_bootstrap=n_bootstrap, seed=seed,
                                contrasts=[(LEARNED, f"always {NONE}")])  # fmt: skip


# --- the retrained policy as a workspace policy run ------------------------------------------


def measured_policy(
    result: ExperimentResult,
    *,
    segmentation_run: str,
    period: str,
    churn_after: int,
    assumed_lift: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> PolicyResult:
    """The policy retrained on a test's measured effects as a :class:`PolicyResult` the Policy
    and Strategies pages and the report show like any other run: solved exactly (value
    iteration) on the measured MDP, its off-policy check the test's held-out users', and its
    settings tagged with the test (``settings["experiment"]``: the plan id and every cell's
    effect, "measured in test X" with its 95% interval or "assumed")."""
    from retention.learn import CURVE_COLUMNS, fraction_of_optimum
    from retention.policy import diagnose

    mdp = result.mdp
    assert mdp.reward is not None
    best = optimum(mdp)
    diag = diagnose(mdp, best.q, progress=progress)
    lift = resolve_lift(assumed_lift, mdp.actions)
    lifts = lift_sources(result.effects, result.plan_id, segments=mdp.segments,
                         stages=[s for s in mdp.stages], actions=mdp.actions,
                         assumed=lift)  # fmt: skip
    settings = {
        "shape": "events",
        "algorithm": EXACT,
        **mdp.reward.as_dict(),
        "actions": list(mdp.actions),
        "lift": lift,
        "seed": 0,
        "campaign_log": False,
        "segmentation_run": segmentation_run,
        "period": period,
        "churn_after": churn_after,
        "experiment": {
            "plan_id": result.plan_id,
            "held_out_users": result.held_out_users,
            "srm": result.srm.to_dict(),
            "lifts": lifts,
        },
    }
    metrics = {
        "value": diag.value,
        "optimal_value": diag.optimal_value,
        "fraction_of_optimum": fraction_of_optimum(diag.value, diag.optimal_value),
        "disagreements": len(diag.disagreements),
        "test_users": result.held_out_users,
        "test_transitions": int(result.ope["n"].iloc[0]) if len(result.ope) else 0,
    }
    return PolicyResult(
        kind="events", algorithm=EXACT, gamma=mdp.gamma, actions=mdp.actions,
        stages=mdp.stages, segments=mdp.segments, settings=settings, q=best.q,
        states=diag.states, recommendations=diag.recommendations,
        disagreements=diag.disagreements, curve=pd.DataFrame(columns=CURVE_COLUMNS),
        value=diag.value, optimal_value=diag.optimal_value, ope=result.ope,
        projections=diag.projections, stability=diag.stability, assumptions=mdp.assumptions,
        metrics=metrics, mdp=mdp,
    )  # fmt: skip


def store_measured_policy(
    ws: Workspace,
    dataset_id: str,
    result: ExperimentResult,
    *,
    segmentation_run: str,
    period: str,
    churn_after: int,
    assumed_lift: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> str:
    """Store :func:`measured_policy` as a finished policy run of the dataset (the newest, so
    the Policy and Strategies pages and the report show it by default); its run id."""
    from retention.runs import save_policy

    _say(progress, 0.0, f"Storing the policy retrained on test {result.plan_id}")
    policy = measured_policy(result, segmentation_run=segmentation_run, period=period,
                             churn_after=churn_after, assumed_lift=assumed_lift,
                             progress=progress)  # fmt: skip
    run_id = save_policy(ws, dataset_id, policy)
    _say(progress, 1.0, f"Stored as policy run {run_id}")
    return run_id

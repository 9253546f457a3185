"""A dataset's stored policy runs: what the app's Policy page and the command line share.

``retention.policy`` trains (it never touches the workspace); this module reads what training
needs from the workspace and stores the result as a run (``retention.runs``):

* :class:`PolicyRequest` is what one run is trained from, whichever front door asks:
  :meth:`PolicyRequest.from_config` (the command line), :meth:`PolicyForm.request` (the Policy
  page's form). :func:`train_or_reuse_policy` is the one function that trains (or reuses) a run
  from it, so the two cannot pass ``actions``, the learner or the campaign timing differently.
* :func:`campaigns_by_period` places the campaign log on the events' grid under the dataset's
  timing rule; :func:`policy_input` is what the learner reads from the events.
* :func:`policy_choices` is what the Policy page offers; :func:`run_label` and
  :func:`settings_diff` name and compare stored runs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retention.campaigns import with_timing
from retention.errors import InputError
from retention.learn import (
    PolicyResult,
    QLearner,
    optimum,
    project_retention,
    recommendations_table,
    start_value,
)
from retention.mdp import (
    DEFAULT_ACTIONS,
    DEFAULT_COSTS,
    DEFAULT_LIFT,
    MDP,
    PanelSummary,
    RewardSettings,
    resolve_actions,
    summarize_events,
)
from retention.periods import build_panel, check_timing, period_grid, period_of, resolve_period
from retention.policy import (
    ALGORITHMS,
    Callback,
    Progress,
    clustered,
    estimate,
    snapshot_actions,
    train_policy,
    train_snapshot_policy,
)
from retention.runs import train_policy_run
from retention.words import period_word, period_word_singular

if TYPE_CHECKING:
    from retention.config import PipelineConfig
    from retention.workspace import Workspace


#: How each algorithm is named on screen.
ALGORITHM_NAMES: dict[str, str] = {
    "q": "Q-learning",
    "sarsa": "SARSA",
    "batch": "batch Q-learning",
    "one-step": "one-step (snapshot)",
    "exact": "exact, on effects measured in a test",  # issue 13: retention.experiment_runs
}
#: How each stored setting is named on screen (others: the key with spaces).
SETTING_NAMES: dict[str, str] = {
    "gamma": "future weight γ (discount)",
    "retain_reward": "retain reward",
    "churn_penalty": "churn penalty",
    "revenue_weight": "revenue weight",
    "action_costs": "action costs",
    "actions": "actions",
    "lift": "assumed lift",
    "algorithm": "algorithm",
    "seed": "seed",
    "episodes": "episodes",
    "min_epsilon": "exploration ε",
    "learning_rate": "learning rate",
    "prior_strength": "prior strength (campaign log)",
    "test_size": "held-out share",
    "period": "period",
    "churn_after": "churned after (periods)",
    "segmentation_run": "segmentation run",
    "campaign_timing": "campaign timing",
}


#: The rule of a dataset stored before timing rules existed (how its runs were made).
LEGACY_TIMING = "start"


def campaign_timing(ws: Workspace, dataset_id: str) -> str | None:
    """The dataset's campaign timing rule (stored with its mapping); None without a log."""
    info = ws.dataset(dataset_id)
    if "campaigns" not in info.kinds:
        return None
    return check_timing(str(info.mapping.get("campaign.timing", LEGACY_TIMING)))


def campaigns_by_period(
    ws: Workspace, dataset_id: str, period: str, timing: str | None = None
) -> pd.DataFrame | None:
    """The campaign log on the events' grid: ``user_id, t, action, propensity, t_in, phase``,
    ``t`` the transition each row is credited to under ``timing`` (default: the dataset's
    rule), ``t_in`` the period containing it and ``phase`` how far into it (the one place a
    campaign row meets the timing rule, so the MDP, the evaluation and the checks agree)."""
    stored = campaign_timing(ws, dataset_id)
    if stored is None:
        return None
    con = ws.cursor()
    grid = period_grid(con, ws.table(dataset_id, "events"), period)
    placed = period_of(con, ws.table(dataset_id, "campaigns"), grid)
    placed = placed.dropna(subset=["t"]).rename(columns={"t": "t_in"})
    placed["t_in"] = placed["t_in"].astype(int)
    placed = placed[["user_id", "t_in", "phase", "action", "propensity"]]
    out = with_timing(placed, timing or stored)
    return out[["user_id", "t", "action", "propensity", "t_in", "phase"]]


def policy_input(
    ws: Workspace,
    dataset_id: str,
    assignments: pd.DataFrame,
    period: str,
    churn_after: int,
    campaigns: pd.DataFrame | None,
) -> pd.DataFrame | PanelSummary:
    """What the learner reads from an event log (the app's Policy page and the command line).

    Without a campaign log the MDP needs only sums, which DuckDB computes from the events (the
    users x periods panel never reaches pandas: it would not fit at 1M users); with a log the
    learner needs every logged transition, so the panel is built.
    """
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    if campaigns is None:
        return summarize_events(
            con, events, clustered(assignments), period=period, churn_after=churn_after
        )
    return build_panel(con, events, period=period, churn_after=churn_after)


# --------------------------------------------------------------------------- one request


@dataclass(frozen=True, eq=False)
class PolicyRequest:
    """What one policy run is trained from (both front doors build one).

    ``episodes``, ``min_epsilon``, ``learning_rate``: the learner's settings (None: its
    default); ``actions``: the actions to consider (None: the log's, else the defaults);
    ``lift``: the assumed effect of each action (event logs without a campaign log only).
    The campaign log and its timing rule are the dataset's own, read when training.
    """

    segmentation_run: str
    period: str
    churn_after: int = 4
    reward: RewardSettings = field(default_factory=RewardSettings)
    algorithm: str = "q"
    seed: int = 0
    episodes: int | None = None
    min_epsilon: float | None = None
    learning_rate: float | None = None
    actions: tuple[str, ...] | None = None
    lift: Mapping[str, float] | None = None
    #: Pseudo-users of "no action" each action's estimate starts from (campaign log; None:
    #: the library's default).
    prior_strength: float | None = None

    @classmethod
    def from_config(
        cls, config: PipelineConfig, segmentation_run: str, period: str
    ) -> PolicyRequest:
        """The command line's request: every setting of the Policy page (and the prior
        strength) as configured; a lift table names the actions considered."""
        lift = dict(config.lift) if config.lift else None
        return cls(
            segmentation_run=segmentation_run,
            period=period,
            churn_after=config.churn_after,
            reward=config.reward(),
            algorithm=config.algorithm,
            seed=config.seed,
            episodes=config.episodes,
            min_epsilon=config.exploration,
            learning_rate=config.learning_rate,
            actions=None if lift is None else tuple(dict.fromkeys(["none", *lift])),
            lift=lift,
            prior_strength=config.prior_strength,
        )

    def as_dict(self) -> dict[str, Any]:
        """The request as stored with its run (and found again by, when reused); the optional
        settings only when given, so a command-line request reads as it always has."""
        out: dict[str, Any] = {
            "segmentation_run": self.segmentation_run,
            "period": self.period,
            "churn_after": self.churn_after,
            "reward": self.reward.as_dict(),
            "episodes": self.episodes,
            "seed": self.seed,
            "algorithm": self.algorithm,
        }
        extra = {
            "min_epsilon": self.min_epsilon,
            "learning_rate": self.learning_rate,
            "actions": None if self.actions is None else list(self.actions),
            "lift": None if self.lift is None else dict(self.lift),
            "prior_strength": self.prior_strength,
        }
        return out | {key: value for key, value in extra.items() if value is not None}

    def learner(self) -> QLearner | None:
        """The learner's settings asked for (None: all defaults)."""
        params: dict[str, Any] = {
            "episodes": self.episodes or None,
            "min_epsilon": self.min_epsilon,
            "learning_rate": self.learning_rate,
        }
        given = {key: value for key, value in params.items() if value is not None}
        return QLearner(**given) if given else None


def train_or_reuse_policy(
    ws: Workspace,
    dataset_id: str,
    assignments: pd.DataFrame,
    request: PolicyRequest,
    *,
    reuse: bool = True,
    progress: Progress | None = None,
    callback: Callback | None = None,
) -> tuple[str, PolicyResult]:
    """A stored policy run made for the same request (``reuse``), or a newly trained and stored
    one: the run id and the result. The one way either front door trains.

    The request is stored under ``settings["request"]`` beside the full settings the learner
    reports. Training reads what it needs from the workspace (:func:`policy_input`, the
    dataset's campaign log and timing rule); a reused run reads nothing.
    """
    return train_policy_run(
        ws,
        dataset_id,
        request.as_dict(),
        lambda: train_request(ws, dataset_id, assignments, request, progress, callback),
        reuse=reuse,
        progress=progress,
    )


def train_request(
    ws: Workspace,
    dataset_id: str,
    assignments: pd.DataFrame,
    request: PolicyRequest,
    progress: Progress | None = None,
    callback: Callback | None = None,
) -> PolicyResult:
    """Train (without storing) the policy ``request`` asks for on a stored dataset (snapshot or
    event log)."""
    if ws.dataset(dataset_id).shape == "snapshot":
        return train_snapshot_policy(
            ws.load(dataset_id, "snapshot"),
            assignments,
            reward=request.reward,
            churn_after=request.churn_after,
            seed=request.seed,
            progress=progress,
        )
    period = request.period
    campaigns = campaigns_by_period(ws, dataset_id, period)
    source = policy_input(ws, dataset_id, assignments, period, request.churn_after, campaigns)
    return train_policy(
        source,
        assignments,
        campaigns=campaigns,
        actions=None if request.actions is None else list(request.actions),
        lift=request.lift,
        reward=request.reward,
        algorithm=request.algorithm,
        learner=request.learner(),
        seed=request.seed,
        campaign_timing=campaign_timing(ws, dataset_id),
        period=period,
        progress=progress,
        callback=callback,
        **({} if request.prior_strength is None else {"prior_strength": request.prior_strength}),
    )


# --------------------------------------------------------------------------- the Policy page


@dataclass(frozen=True, eq=False)
class PolicyChoices:
    """What the Policy page offers for a dataset: its ``shape``, the ``period`` in use (resolved;
    ``"period"`` for a snapshot), the ``campaigns`` placed in periods (None without a log), the
    ``actions`` (the log's or the snapshot's, else the default strategies) and the
    ``algorithms``."""

    shape: str
    period: str
    campaigns: pd.DataFrame | None
    actions: tuple[str, ...]
    algorithms: tuple[str, ...]
    timing: str | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.shape == "snapshot"

    @property
    def assumed_lift(self) -> bool:
        """Whether the effect of each action is an assumption (an event log without a log)."""
        return self.campaigns is None and not self.is_snapshot

    def action_table(self) -> pd.DataFrame:
        """The editable ``action, cost[, lift]`` table, with the default costs and lifts."""
        costs = [0.0 if self.is_snapshot else DEFAULT_COSTS.get(a, 0.0) for a in self.actions]
        table = pd.DataFrame({"action": list(self.actions), "cost": costs})
        if self.assumed_lift:
            table["lift"] = [DEFAULT_LIFT.get(a, 1.0) for a in self.actions]
        return table


def policy_choices(ws: Workspace, dataset_id: str, period: str) -> PolicyChoices:
    """The Policy page's choices for a dataset (see :class:`PolicyChoices`)."""
    if ws.dataset(dataset_id).shape == "snapshot":
        snapshot = ws.load(dataset_id, "snapshot")
        actions = snapshot_actions(snapshot["action"].dropna().astype(str).unique())
        return PolicyChoices("snapshot", "period", None, actions, ())
    used = resolve_period(ws.cursor(), ws.table(dataset_id, "events"), period)
    campaigns = campaigns_by_period(ws, dataset_id, used)
    if campaigns is None:
        return PolicyChoices("events", used, None, DEFAULT_ACTIONS, ("q", "sarsa"))
    logged = tuple(resolve_actions(None, campaigns["action"].astype(str)))
    timing = campaign_timing(ws, dataset_id)
    return PolicyChoices("events", used, campaigns, logged, ALGORITHMS, timing)


@dataclass(frozen=True, eq=False)
class PolicyForm:
    """What the Policy page's form asks: the reward, the learner and the ``actions`` table
    (``action, cost[, lift]``, as edited)."""

    actions: pd.DataFrame
    gamma: float = 0.9
    retain_reward: float = 1.0
    churn_penalty: float = 5.0
    revenue_weight: float = 0.0
    algorithm: str = "q"
    episodes: int = 200
    epsilon: float = 0.5
    learning_rate: float = 1.0
    seed: int = 0

    def request(
        self, choices: PolicyChoices, segmentation_run: str, churn_after: int = 4
    ) -> PolicyRequest:
        """The :class:`PolicyRequest` this form asks for (a snapshot's reward is its costs)."""
        table = self.actions.dropna(subset=["action"])
        names = table["action"].astype(str).str.strip()
        costs = dict(zip(names, table["cost"].fillna(0.0).astype(float), strict=True))
        lift = None
        if choices.assumed_lift:
            lift = dict(zip(names, table["lift"].fillna(1.0).astype(float), strict=True))
        if choices.is_snapshot:
            reward = RewardSettings(action_costs=costs)
        else:
            reward = RewardSettings(
                retain_reward=self.retain_reward, churn_penalty=self.churn_penalty,
                revenue_weight=self.revenue_weight, action_costs=costs, gamma=self.gamma,
            )  # fmt: skip
        return PolicyRequest(
            segmentation_run=segmentation_run, period=choices.period, churn_after=churn_after,
            reward=reward, algorithm=self.algorithm, seed=int(self.seed),
            episodes=int(self.episodes), min_epsilon=self.epsilon,
            learning_rate=self.learning_rate, actions=tuple(names), lift=lift,
        )  # fmt: skip


def train_from_form(
    ws: Workspace,
    dataset_id: str,
    segmentation_run: str,
    assignments: pd.DataFrame,
    choices: PolicyChoices,
    form: PolicyForm,
    *,
    churn_after: int = 4,
    progress: Progress | None = None,
    callback: Callback | None = None,
) -> str:
    """Train (always anew) and store the policy the Policy page's form asks for; the run id."""
    request = form.request(choices, segmentation_run, churn_after)
    run_id, _ = train_or_reuse_policy(
        ws, dataset_id, assignments, request, reuse=False, progress=progress, callback=callback
    )
    return run_id


def number_text(value: Any, spec: str = ".3f") -> str:
    """A stored number for display; a dash when it is missing or not a number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return format(v, spec) if math.isfinite(v) else "—"


def run_label(row: Mapping[str, Any]) -> str:
    """One line naming a stored policy run (a row of ``Workspace.runs``): when, algorithm,
    future weight and churn penalty (event logs), seed and worth in points per user."""
    s = row["settings"] if isinstance(row["settings"], dict) else {}
    m = row["metrics"] if isinstance(row["metrics"], dict) else {}
    parts = [f"{row['created']:%Y-%m-%d %H:%M:%S}"]
    if s.get("algorithm"):
        parts.append(ALGORITHM_NAMES.get(s["algorithm"], str(s["algorithm"])))
    if isinstance(s.get("experiment"), dict):  # issue 13: retrained on a test's effects
        parts.append(f"test {s['experiment'].get('plan_id')}")
    if s.get("shape") != "snapshot":
        if s.get("gamma") is not None:
            parts.append(f"future weight {number_text(s['gamma'], 'g')}")
        if s.get("churn_penalty") is not None:
            parts.append(f"churn penalty {number_text(s['churn_penalty'], 'g')}")
    if s.get("seed") is not None:
        parts.append(f"seed {s['seed']}")
    worth = number_text(m.get("value"), ".2f")
    parts.append(f"worth {worth} points per user" if worth != "—" else "worth —")
    return " · ".join(parts)


def flat_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings one level flat (the learner's own settings beside the rest), as text, without
    the stored command-line request (it repeats the settings)."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        if key == "request":
            continue
        if key == "learner" and isinstance(value, dict):
            for k, v in value.items():  # the learner's gamma and seed are the run's own
                if v is not None and k not in settings:
                    out[k] = str(v)
        elif value is None:
            out[key] = "—"
        elif isinstance(value, bool):
            out[key] = "yes" if value else "no"
        elif isinstance(value, dict):
            out[key] = ", ".join(
                f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()
            )
        else:
            out[key] = str(value)
    return out


def settings_diff(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> pd.DataFrame:
    """The settings two runs differ in: ``setting, this run, other run`` (named for people)."""
    a, b = flat_settings(mine), flat_settings(theirs)
    return pd.DataFrame(
        [
            (SETTING_NAMES.get(k, k.replace("_", " ")), a.get(k, "—"), b.get(k, "—"))
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ],
        columns=["setting", "this run", "other run"],
    )


# --------------------------------------------------------------------------- words for people


def _num(value: Any) -> str:
    return number_text(value, "g")


def _costs_text(costs: Mapping[str, Any] | None) -> str:
    costs = {a: c for a, c in (costs or {}).items() if a != "none"}
    return ", ".join(f"{a} {_num(c)}" for a, c in costs.items()) or "none"


def trained_with(settings: Mapping[str, Any], period: str | None = None) -> str:
    """One line of the settings a stored run was trained with, in the words of the form
    ("discount 0.9 · retain reward 1 per active month · churn penalty 5 · …")."""
    s = dict(settings or {})
    learner = s.get("learner") if isinstance(s.get("learner"), dict) else {}
    unit = period_word_singular(s.get("period") or period)
    parts: list[str] = []
    if s.get("shape") == "snapshot":
        parts.append(f"action costs: {_costs_text(s.get('action_costs'))}")
    else:
        if s.get("gamma") is not None:
            parts.append(f"future counts × {_num(s['gamma'])} per {unit}")
        if s.get("retain_reward") is not None:
            parts.append(f"reward {_num(s['retain_reward'])} per active {unit}")
        if s.get("churn_penalty") is not None:
            parts.append(f"churn penalty {_num(s['churn_penalty'])}")
        if s.get("revenue_weight") is not None:
            parts.append(f"revenue weight {_num(s['revenue_weight'])}")
        if s.get("action_costs") is not None:
            parts.append(f"action costs {_costs_text(s.get('action_costs'))}")
    if s.get("algorithm"):
        parts.append(ALGORITHM_NAMES.get(s["algorithm"], str(s["algorithm"])))
    episodes = learner.get("episodes", s.get("episodes"))
    if episodes is not None and s.get("algorithm") in (None, "q", "sarsa"):
        parts.append(f"{episodes} training rounds")
        if learner.get("min_epsilon") is not None:
            parts.append(f"random tries {_num(learner['min_epsilon'])}")
        if learner.get("learning_rate") is not None:
            parts.append(f"learning rate {_num(learner['learning_rate'])}")
    if s.get("seed") is not None:
        parts.append(f"seed {s['seed']}")
    if s.get("churn_after") is not None and s.get("shape") != "snapshot":
        parts.append(f"churned after {s['churn_after']} {period_word(s.get('period') or period)}")
    return " · ".join(parts)


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return a == b


def form_differences(request: PolicyRequest, settings: Mapping[str, Any]) -> list[str]:
    """What the form asks that the stored run (its ``settings``) was not trained with, one
    phrase each ("churn penalty 10 (this run: 5)"); empty when training would repeat it."""
    s = dict(settings or {})
    learner = s.get("learner") if isinstance(s.get("learner"), dict) else {}
    reward = request.reward
    out: list[str] = []

    def differ(label: str, mine: Any, theirs: Any, show=_num) -> None:
        if theirs is None or mine is None:
            return
        if not _same(mine, theirs):
            out.append(f"{label} {show(mine)} (this run: {show(theirs)})")

    snapshot = s.get("shape") == "snapshot"
    if not snapshot:
        differ("future weight", reward.gamma, s.get("gamma"))
        differ("retain reward", reward.retain_reward, s.get("retain_reward"))
        differ("churn penalty", reward.churn_penalty, s.get("churn_penalty"))
        differ("revenue weight", reward.revenue_weight, s.get("revenue_weight"))
    theirs_costs = s.get("action_costs")
    if isinstance(theirs_costs, dict):
        mine_costs = {a: float(c) for a, c in reward.action_costs.items()}
        keys = set(mine_costs) | set(theirs_costs)
        if any(not _same(mine_costs.get(k, 0.0), theirs_costs.get(k, 0.0)) for k in keys):
            out.append(
                f"action costs {_costs_text(mine_costs)} (this run: {_costs_text(theirs_costs)})"
            )
    lift = s.get("lift") if isinstance(s.get("lift"), dict) else None
    if (
        request.lift is not None
        and lift is not None
        and any(not _same(v, lift.get(a, 1.0)) for a, v in request.lift.items())
    ):
        out.append("assumed lift of the actions")
    if (
        request.actions is not None
        and s.get("actions")
        and list(request.actions) != list(s["actions"])
    ):
        out.append(f"actions {', '.join(request.actions)} (this run: {', '.join(s['actions'])})")
    if not snapshot:
        algo = s.get("algorithm")
        if s.get("experiment"):  # issue 13: solved exactly on a test's effects, not learned
            out.append("the assumed lift table (this run: effects measured in a test)")
        elif algo is not None and request.algorithm != algo:
            out.append(
                f"{ALGORITHM_NAMES.get(request.algorithm, request.algorithm)} "
                f"(this run: {ALGORITHM_NAMES.get(algo, algo)})"
            )
        elif algo in ("q", "sarsa"):
            differ("training rounds", request.episodes, learner.get("episodes"), str)
            differ("random tries", request.min_epsilon, learner.get("min_epsilon"))
            differ("learning rate", request.learning_rate, learner.get("learning_rate"))
    differ("seed", request.seed, s.get("seed"), str)
    if s.get("period") not in (None, request.period):
        out.append(f"period {request.period} (this run: {s['period']})")
    differ("churned after", request.churn_after, s.get("churn_after"), str)
    return out


def reward_differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """The reward settings two runs differ in (their values are then in different units)."""
    keys = ("gamma", "retain_reward", "churn_penalty", "revenue_weight", "action_costs", "period")
    return [
        SETTING_NAMES.get(k, k)
        for k in keys
        if flat_settings({k: mine.get(k)}) != flat_settings({k: theirs.get(k)})
    ]


# --------------------------------------------------------------------------- instant preview


def request_of(settings: Mapping[str, Any]) -> PolicyRequest | None:
    """The request that re-estimates a stored event-log run's model (its segmentation, period,
    stage rule, reward, actions, lift and seed), or None when the run did not record them."""
    s = dict(settings or {})
    needed = ("segmentation_run", "period", "gamma", "retain_reward", "churn_penalty", "actions")
    if s.get("shape") == "snapshot" or any(s.get(k) is None for k in needed):
        return None
    if s.get("experiment"):  # issue 13: its model is the test's measured effects, not the data's
        return None
    try:
        reward = RewardSettings(
            retain_reward=float(s["retain_reward"]), churn_penalty=float(s["churn_penalty"]),
            revenue_weight=float(s.get("revenue_weight") or 0.0),
            action_costs=dict(s.get("action_costs") or {}), gamma=float(s["gamma"]),
        )  # fmt: skip
    except (InputError, TypeError, ValueError):
        return None
    lift = s.get("lift") if isinstance(s.get("lift"), dict) else None
    prior = s.get("prior_strength")  # the default's as None: the same model as the form's
    default_prior = inspect.signature(estimate).parameters["prior_strength"].default
    return PolicyRequest(
        prior_strength=float(prior) if isinstance(prior, int | float) and prior != default_prior
        else None,
        segmentation_run=str(s["segmentation_run"]), period=str(s["period"]),
        churn_after=int(s.get("churn_after") or 4), reward=reward,
        algorithm=str(s.get("algorithm") or "q"), seed=int(s.get("seed") or 0),
        actions=tuple(str(a) for a in s["actions"]), lift=lift,
    )  # fmt: skip


def estimated_mdp(
    ws: Workspace, dataset_id: str, assignments: pd.DataFrame, request: PolicyRequest
) -> MDP:
    """The MDP training ``request`` would estimate (same data, period, actions, lift and, with a
    campaign log, the same seeded split of training users). Its dynamics do not depend on the
    reward, so a page can keep it and re-solve it for any reward (:func:`exact_preview`)."""
    if ws.dataset(dataset_id).shape == "snapshot":
        raise InputError("A campaign snapshot is a single decision: there is no MDP to preview.")
    period = request.period
    campaigns = campaigns_by_period(ws, dataset_id, period)
    source = policy_input(ws, dataset_id, assignments, period, request.churn_after, campaigns)
    return estimate(
        source, clustered(assignments), campaigns=campaigns,
        actions=None if request.actions is None else list(request.actions), lift=request.lift,
        reward=request.reward, seed=request.seed,
        **({} if request.prior_strength is None else {"prior_strength": request.prior_strength}),
    ).mdp  # fmt: skip


@dataclass(frozen=True)
class ValueParts:
    """What a policy's value is made of, per user from where users are now, each period ahead
    counting ``gamma`` times the one before: ``active_periods`` (expected active periods),
    ``revenue`` (expected revenue, in the data's currency), ``churns`` (expected net losses:
    moves into churned less moves back out, as the churn penalty counts them), ``cost`` (expected action costs) and ``total`` = retain reward × active periods +
    revenue weight × revenue − churn penalty × churns − cost (the value itself)."""

    active_periods: float
    revenue: float
    churns: float
    cost: float
    total: float
    gamma: float


def value_parts(mdp: MDP, policy: np.ndarray, reward: RewardSettings) -> ValueParts:
    """The parts of ``policy``'s exact value on ``mdp`` under ``reward`` (:class:`ValueParts`)."""
    assert mdp.stage_of is not None and mdp.revenue is not None
    g = reward.gamma

    def part(**kw: Any) -> float:
        settings = RewardSettings(
            **{"retain_reward": 0.0, "churn_penalty": 0.0, "revenue_weight": 0.0,
               "action_costs": {}, "gamma": g, **kw}
        )  # fmt: skip
        return start_value(mdp.with_reward(settings), policy, g)

    return ValueParts(
        active_periods=part(retain_reward=1.0),
        revenue=part(revenue_weight=1.0),
        churns=-part(churn_penalty=1.0),
        cost=-part(action_costs=dict(reward.action_costs)),
        total=start_value(mdp.with_reward(reward), policy, g),
        gamma=g,
    )


def policy_of(mdp: MDP, recommendations: pd.DataFrame) -> np.ndarray | None:
    """A stored run's recommended actions as a policy of ``mdp`` (one action per state), or
    None when the run's segments, stages or actions are not the MDP's."""
    pos = {a: j for j, a in enumerate(mdp.actions)}
    chosen = {
        (int(g), str(s)): a
        for g, s, a in zip(
            recommendations["segment"], recommendations["stage"], recommendations["action"],
            strict=True,
        )
    }  # fmt: skip
    states = mdp.states_frame()
    out = []
    for g, s in zip(states["segment"], states["stage"], strict=True):
        action = chosen.get((int(g), str(s)))
        if action not in pos:
            return None
        out.append(pos[action])
    return np.asarray(out, dtype=int)


@dataclass(frozen=True, eq=False)
class Preview:
    """The exact best policy for a reward, solved by value iteration on an estimated MDP: its
    ``recommendations`` (as a run's, ``action`` = ``optimal_action``), the ``parts`` of its
    value and, on demand, what it projects for retention (:meth:`projections`)."""

    reward: RewardSettings
    actions: tuple[str, ...]
    recommendations: pd.DataFrame
    parts: ValueParts
    mdp: MDP
    policy: np.ndarray

    def projections(self, periods: int = 12) -> pd.DataFrame:
        """The best policy's projected retention beside every single-action policy (only when
        asked: a preview that shows the map alone does not pay for it)."""
        policies: dict[str, np.ndarray] = {BEST_POLICY: self.policy}
        for j, act in enumerate(self.mdp.actions):
            policies[f"always {act}"] = np.full(self.mdp.n_states, j)
        return project_retention(self.mdp, policies, periods=periods)


#: The name of the exact best policy in a preview's projections.
BEST_POLICY = "best policy (exact)"


def exact_preview(mdp: MDP, reward: RewardSettings) -> Preview:
    """The exact best policy of ``mdp`` under ``reward`` (value iteration: milliseconds) and
    what its value is made of."""
    solved = mdp.with_reward(reward)
    best = optimum(solved, reward.gamma)
    rec = recommendations_table(
        best.q, solved.states_frame(), solved.actions, solved.support.sum(axis=1), best.policy
    )
    return Preview(
        reward=reward,
        actions=solved.actions,
        recommendations=rec,
        parts=value_parts(mdp, best.policy, reward),
        mdp=solved,
        policy=best.policy,
    )

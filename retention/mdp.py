"""The retention MDP, estimated from the panel (and the campaign log when there is one).

State = (segment, stage) with the four stages of SPEC §3; actions = ``none`` plus the retention
strategies. Transitions P(s' | s, a) come from stage-to-stage counts per segment:

* with a campaign log, per action, each row of counts shrunk toward the no-action estimate by a
  Dirichlet prior: ``P_a(.|s) = (n_a(s, .) + k * P_none(.|s)) / (n_a(s) + k)`` (``k`` =
  ``prior_strength``), so an action seen rarely behaves like doing nothing until the data say
  otherwise;
* without one, an assumed lift table (action -> multiplicative effect on P(active next)) is
  applied to the no-action estimate and the other next stages are renormalised. The MDP records
  this in ``assumptions`` so every screen that uses it can say so.

Markov approximation: ``at_risk`` spans recency 2..W-1, so the stage process is not exactly
Markov (a user at recency 3 churns sooner than one at recency 2). We estimate the maximum
likelihood Markov chain on the four stages, pooling every at_risk recency; value iteration and the
learners all use this same MDP, so learned and optimal values are comparable.

Reward (SPEC §6): ``r(s, a, s') = retain_reward*[s' active] + revenue_weight*rev(seg)*[s' active]
- churn_penalty*[s' churned and s not churned] + churn_penalty*[s churned and s' not churned]
- cost(a)``, where ``rev(seg)`` is the segment's mean revenue of an active period.

The churn rule (:data:`CHURN_RULE`): the penalty is charged when a user churns and given back
when a churned user comes back, so each loss is charged once. Without the give-back, a user won
back and lost again was charged twice for one loss, and every win-back action read as worse than
doing nothing (issue 17). The rule stays Markov (the reward depends on ``s`` and ``s'`` only) and
is defensible: ``-P*[s' churned] + P*[s churned]`` is ``gamma*Phi(s') - Phi(s)`` with
``Phi = -P*[churned]`` plus ``-(1 - gamma)*P`` per period spent churned, so by potential-based
shaping (Ng, Harada & Russell 1999) it ranks policies exactly as "a churned user costs
``(1 - gamma)*P`` every period they stay away" does: a user lost for good costs the whole ``P``
(in today's terms), one who comes back costs only the periods they were gone. (Values of
churned states carry the pending give-back: ``V(churned)`` is ``P`` above that per-period
reading, the same for every action, so comparisons of actions in a state do not change.)

Inputs: everything the estimate needs from the panel is a few counts (:class:`PanelSummary`):
transitions per (segment, stage, next stage, action), mean revenue of an active period, users per
stage in the last period and per segment. :func:`summarize_panel` reads them off a pandas panel
(needed with a campaign log, whose learner and off-policy evaluation use every logged
transition); :func:`summarize_events` computes them in DuckDB from the events without building
the panel (1M users × 78 weeks would be 78M rows in pandas). Both go through
:func:`mdp_from_summary`, so both give the same MDP.

Starting-state distribution: by default where the users are *now* (their (segment, stage) in the
panel's last period), so a policy's value answers "what is it worth to apply this policy to the
users we have today"; ``start="first"`` uses where users are when first seen (active).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from retention import user_pass
from retention.errors import InputError
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    EventsSource,
    check_churn_after,
    clean_events_sql,
    events_source,
    period_grid,
    resolve_period,
    spans_sql,
    stage_sql,
)
from retention.sql import quote_ident

STAGES: tuple[str, ...] = ("active", "lapsing", "at_risk", "churned")
NONE = "none"
DEFAULT_ACTIONS: tuple[str, ...] = ("none", "recommendation", "engagement", "discount")
# Cost of one action for one user and period, in units of "one retained user-period" (the
# default retain reward is 1): a recommendation is nearly free, a discount gives away margin.
DEFAULT_COSTS: dict[str, float] = {
    "none": 0.0,
    "recommendation": 0.02,
    "engagement": 0.05,
    "discount": 0.2,
}
# Assumed multiplicative effect of each action on P(active next period), used only when no
# campaign log says otherwise. Modest, plausible effects; the UI shows them as an assumption.
DEFAULT_LIFT: dict[str, float] = {
    "none": 1.0,
    "recommendation": 1.05,
    "engagement": 1.08,
    "discount": 1.15,
}
PANEL_COLUMNS = ("user_id", "t", "stage", "active", "revenue")
#: The churn-penalty rule in one sentence, as the Strategies page, the report and the README
#: state it (the reward itself: :func:`reward_tensor`).
CHURN_RULE = (
    "The churn penalty is charged when a user churns and given back if they come back, so each "
    "loss is charged once: a user won back and lost again costs the penalty once, not twice, "
    "and a user lost for good costs it in full."
)


@dataclass(frozen=True)
class RewardSettings:
    """What the product manager values: see the module docstring for the formula.

    ``action_costs`` maps action name -> cost per user and period (actions missing from the map
    cost 0); ``gamma`` is the discount of the next period relative to this one.
    """

    retain_reward: float = 1.0
    churn_penalty: float = 5.0
    revenue_weight: float = 0.0
    action_costs: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_COSTS))
    gamma: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma < 1.0:
            raise InputError(f"The 'gamma' parameter must be in [0, 1). Got {self.gamma}.")
        for name in ("retain_reward", "churn_penalty", "revenue_weight"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise InputError(f"The '{name}' parameter must be a finite number. Got {value}.")
        for action, cost in self.action_costs.items():
            if not np.isfinite(cost):
                raise InputError(
                    f"The cost of action '{action}' must be a finite number. Got {cost}."
                )

    def cost(self, action: str) -> float:
        return float(self.action_costs.get(action, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "retain_reward": self.retain_reward,
            "churn_penalty": self.churn_penalty,
            "revenue_weight": self.revenue_weight,
            "action_costs": dict(self.action_costs),
            "gamma": self.gamma,
        }


@dataclass(frozen=True, eq=False)
class MDP:
    """A finite MDP as arrays, plus what it was estimated from.

    ``T[s, a, s']`` transition probabilities, ``R[s, a, s']`` rewards, ``terminal[s]`` (no
    bootstrapping past a terminal state), ``start[s]`` starting distribution, ``counts[s, a, s']``
    the observed transitions behind each row (0 where a row is assumed, e.g. from the lift table).
    For MDPs estimated from data, ``segments``/``stages`` name the states (state index =
    ``segment_pos * len(stages) + stage_pos``) and ``stage_of``/``revenue`` let the reward be
    recomputed for other settings (:meth:`with_reward`).
    """

    T: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    start: np.ndarray
    counts: np.ndarray
    actions: tuple[str, ...]
    state_names: tuple[str, ...]
    gamma: float = 0.9
    segments: tuple[int, ...] = ()
    stages: tuple[str, ...] = ()
    stage_of: np.ndarray | None = None
    revenue: np.ndarray | None = None
    reward: RewardSettings | None = None
    assumptions: tuple[str, ...] = ()

    @property
    def n_states(self) -> int:
        return int(self.T.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.T.shape[1])

    @cached_property
    def P(self) -> list[list[list[tuple[float, int, float, bool]]]]:
        """Gymnasium's tabular layout: ``P[s][a] = [(prob, next_state, reward, terminated)]``."""
        return [
            [
                [
                    (float(self.T[s, a, n]), int(n), float(self.R[s, a, n]), bool(self.terminal[n]))
                    for n in np.flatnonzero(self.T[s, a] > 0)
                ]
                for a in range(self.n_actions)
            ]
            for s in range(self.n_states)
        ]

    @property
    def support(self) -> np.ndarray:
        """Observed transitions per (state, action): how much data backs each row of ``T``."""
        return self.counts.sum(axis=2)

    @cached_property
    def expected_reward(self) -> np.ndarray:
        """``r(s, a) = sum_s' T[s, a, s'] R[s, a, s']``."""
        return np.einsum("ijk,ijk->ij", self.T, self.R)

    def state_index(self, segment: int, stage: str) -> int:
        return self.segments.index(segment) * len(self.stages) + self.stages.index(stage)

    def states_frame(self) -> pd.DataFrame:
        """One row per state: ``state, name`` (+ ``segment, stage`` for data MDPs)."""
        frame = pd.DataFrame({"state": np.arange(self.n_states), "name": list(self.state_names)})
        if self.segments:
            frame["segment"] = np.repeat(np.asarray(self.segments, dtype=int), len(self.stages))
            frame["stage"] = list(self.stages) * len(self.segments)
        return frame

    def with_reward(self, reward: RewardSettings) -> MDP:
        """The same dynamics under other reward settings (cheap; used by the stability map)."""
        if self.stage_of is None or self.revenue is None:
            raise InputError("with_reward needs an MDP estimated from data (estimate_mdp).")
        R = reward_tensor(self.stage_of, self.revenue, self.actions, reward, self.stages)
        return replace(self, R=R, reward=reward, gamma=reward.gamma)

    def with_gamma(self, gamma: float) -> MDP:
        return replace(self, gamma=gamma)


def tabular_mdp(
    T: np.ndarray,
    R: np.ndarray,
    *,
    terminal: Sequence[bool] | np.ndarray | None = None,
    start: Sequence[float] | np.ndarray | None = None,
    gamma: float = 0.9,
    actions: Sequence[str] | None = None,
    state_names: Sequence[str] | None = None,
) -> MDP:
    """An MDP from explicit arrays (tests, toy problems). ``R`` may be (S, A) or (S, A, S)."""
    T = np.asarray(T, dtype=float)
    if T.ndim != 3 or T.shape[0] != T.shape[2]:
        raise InputError(f"T must have shape (S, A, S). Got {T.shape}.")
    if not np.allclose(T.sum(axis=2), 1.0):
        raise InputError("Each row T[s, a, :] must sum to 1.")
    R = np.asarray(R, dtype=float)
    if R.shape == T.shape[:2]:
        R = np.repeat(R[:, :, None], T.shape[2], axis=2)
    if R.shape != T.shape:
        raise InputError(f"R must have shape (S, A) or (S, A, S) = {T.shape}. Got {R.shape}.")
    n_states, n_actions = T.shape[:2]
    term = np.zeros(n_states, bool) if terminal is None else np.asarray(terminal, dtype=bool)
    start_arr = (~term).astype(float) if start is None else np.asarray(start, dtype=float)
    start_arr = start_arr / start_arr.sum()
    return MDP(
        T=T,
        R=R,
        terminal=term,
        start=start_arr,
        counts=np.zeros_like(T),
        actions=tuple(actions) if actions else tuple(f"a{i}" for i in range(n_actions)),
        state_names=tuple(state_names) if state_names else tuple(f"s{i}" for i in range(n_states)),
        gamma=gamma,
    )


def reward_tensor(
    stage_of: np.ndarray,
    revenue: np.ndarray,
    actions: Sequence[str],
    reward: RewardSettings,
    stages: Sequence[str] = STAGES,
) -> np.ndarray:
    """``R[s, a, s']`` by the SPEC §6 formula and the churn rule (:data:`CHURN_RULE`: the
    penalty is charged on churning and given back on coming back); ``stage_of[s]`` indexes
    ``stages``. Every reward of the library (value iteration, the Gymnasium environment, the
    simulated and the batch learners, off-policy evaluation) is read from this tensor."""
    active = (np.asarray(stage_of) == stages.index("active")).astype(float)
    churned = (np.asarray(stage_of) == stages.index("churned")).astype(float)
    gain = (reward.retain_reward + reward.revenue_weight * np.asarray(revenue, float)) * active
    # [s, s']: charged on the way into churned, given back on the way out of it.
    loss = reward.churn_penalty * (
        churned[None, :] * (1.0 - churned[:, None]) - churned[:, None] * (1.0 - churned[None, :])
    )
    cost = np.array([reward.cost(a) for a in actions])
    return gain[None, None, :] - loss[:, None, :] - cost[None, :, None]


NO_SEGMENT_MESSAGE = (
    "No user of the {what} has a segment: the segment assignments and the events do not share "
    "user ids. Run the segmentation on this dataset first."
)


def ids_as_text(values: pd.Series) -> pd.Series:
    """``values`` as text; the same Series, not a copy, when it already holds only strings (a
    panel's user ids), since a copy of a panel's id column costs as much as the ids."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values
    return values.astype(str)


def _segment_table(assignments: pd.DataFrame) -> pd.DataFrame:
    """``user_id`` (text), ``segment``: one row per user, the last one when a user repeats."""
    _require(assignments, ("user_id", "segment"), "segment assignments")
    seg = pd.DataFrame(
        {
            "user_id": ids_as_text(assignments["user_id"]).to_numpy(),
            "segment": assignments["segment"].to_numpy(),
        }
    )
    return seg.drop_duplicates("user_id", keep="last")


def logged_transitions(
    panel: pd.DataFrame,
    assignments: pd.DataFrame,
    campaigns: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per observed transition (user, t-1 -> t) with the action logged in period t.

    Columns: ``user_id, t, segment, stage, next_stage, action, propensity, next_revenue``;
    ``action`` is ``none`` (propensity NaN) where the log has no row. Several rows in one
    user-period: the last one counts. Campaign rows in a user's first period (no earlier state)
    and for users without a segment are ignored.
    """
    _require(panel, PANEL_COLUMNS, "panel")
    seg = _segment_table(assignments)
    p = panel[list(PANEL_COLUMNS)].reset_index(drop=True)
    p["user_id"] = ids_as_text(p["user_id"])
    bad = set(p["stage"].unique()) - set(STAGES)
    if bad:
        raise InputError(f"The panel's 'stage' column has {sorted(bad)}; allowed: {list(STAGES)}.")
    p = p.merge(seg, on="user_id", how="inner")
    if p.empty:
        raise InputError(NO_SEGMENT_MESSAGE.format(what="panel"))
    p = p.sort_values(["user_id", "t"], kind="stable").reset_index(drop=True)
    user = p["user_id"].to_numpy()
    t = p["t"].to_numpy()
    follows = (user[1:] == user[:-1]) & (t[1:] == t[:-1] + 1)
    prev, nxt = np.flatnonzero(follows), np.flatnonzero(follows) + 1
    out = pd.DataFrame(
        {
            "user_id": user[nxt],
            "t": t[nxt].astype(int),
            "segment": p["segment"].to_numpy()[nxt].astype(int),
            "stage": p["stage"].to_numpy()[prev],
            "next_stage": p["stage"].to_numpy()[nxt],
            "next_revenue": p["revenue"].to_numpy(dtype=float)[nxt],
        }
    )
    out["action"] = NONE
    out["propensity"] = np.nan
    if campaigns is not None and len(campaigns):
        _require(campaigns, ("user_id", "t", "action"), "campaign log")
        c = campaigns.copy()
        c["user_id"] = c["user_id"].astype(str)
        c["t"] = c["t"].astype(int)
        if "propensity" not in c:
            c["propensity"] = np.nan
        c = c.drop_duplicates(["user_id", "t"], keep="last")[
            ["user_id", "t", "action", "propensity"]
        ]
        out = out.drop(columns=["action", "propensity"]).merge(c, on=["user_id", "t"], how="left")
        out["action"] = out["action"].fillna(NONE).astype(str)
        out["propensity"] = pd.to_numeric(out["propensity"], errors="coerce")
    return out


@dataclass(frozen=True, eq=False)
class PanelSummary:
    """Everything :func:`estimate_mdp` reads from a panel, in a few small tables.

    Built from a pandas panel (:func:`summarize_panel`) or straight from the events in DuckDB
    (:func:`summarize_events`, which never builds the users × periods panel); both give the same
    numbers, so the MDP does not depend on which one made it. Only users with a segment count,
    and only ``segments`` (the segments with at least one transition):

    * ``transitions``: ``segment, stage, next_stage, action, n``, the transitions ``t - 1 -> t``
      of one user, counted (``action`` is ``none`` without a campaign log);
    * ``revenue[i]``: mean revenue of an active period of segment ``segments[i]``;
    * ``current[i, j]``: users of segment ``segments[i]`` in stage ``STAGES[j]`` in the last
      period (the ``start="current"`` distribution);
    * ``sizes[i]``: users of segment ``segments[i]`` (the ``start="first"`` distribution);
    * ``campaign_log``: whether ``action`` comes from a campaign log.
    """

    segments: tuple[int, ...]
    transitions: pd.DataFrame
    revenue: np.ndarray
    current: np.ndarray
    sizes: np.ndarray
    campaign_log: bool = False


def _tidy_transitions(frame: pd.DataFrame) -> pd.DataFrame:
    """Transition counts in one canonical form: typed columns, sorted by segment, stage (in
    :data:`STAGES` order), next stage and action, no empty rows."""
    frame = frame[frame["n"] > 0]
    out = pd.DataFrame(
        {
            "segment": frame["segment"].to_numpy().astype("int64"),
            "stage": frame["stage"].astype(str).to_numpy(),
            "next_stage": frame["next_stage"].astype(str).to_numpy(),
            "action": frame["action"].astype(str).to_numpy(),
            "n": frame["n"].to_numpy().astype("int64"),
        }
    )
    order = {st: i for i, st in enumerate(STAGES)}
    return out.sort_values(
        ["segment", "stage", "next_stage", "action"],
        key=lambda c: c.map(order) if c.name in ("stage", "next_stage") else c,
        kind="stable",
    ).reset_index(drop=True)


def summarize_panel(
    panel: pd.DataFrame,
    assignments: pd.DataFrame,
    campaigns: pd.DataFrame | None = None,
    *,
    transitions: pd.DataFrame | None = None,
) -> PanelSummary:
    """The :class:`PanelSummary` of a pandas panel (and campaign log, if any).

    ``transitions``: :func:`logged_transitions` of the same panel, assignments and campaign log
    when the caller already has them (they are not computed again).
    """
    has_log = campaigns is not None and len(campaigns) > 0
    tr = transitions
    if tr is None:
        tr = logged_transitions(panel, assignments, campaigns if has_log else None)
    segments = tuple(sorted(int(s) for s in tr["segment"].unique()))
    counts = tr.groupby(["segment", "stage", "next_stage", "action"]).size()
    counts = _tidy_transitions(counts.rename("n").reset_index())

    n_seg, n_stage = len(segments), len(STAGES)
    revenue, current, sizes = np.zeros(n_seg), np.zeros((n_seg, n_stage)), np.zeros(n_seg)
    if segments:
        seg = _segment_table(assignments)
        of = pd.Series(seg["segment"].to_numpy(), index=seg["user_id"].to_numpy())
        segment = ids_as_text(panel["user_id"]).map(of)
        keep = segment.isin(segments).to_numpy()
        seg_of = segment.to_numpy()[keep].astype(int)
        pos = np.searchsorted(segments, seg_of)

        active = panel["active"].to_numpy()[keep].astype(bool)
        rev = panel["revenue"].to_numpy()[keep][active]
        act_rev = pd.Series(rev).groupby(seg_of[active]).mean()
        revenue = np.array([float(act_rev.get(g, 0.0)) for g in segments])

        t = panel["t"].to_numpy()[keep]
        last = t == t.max()
        stage = pd.Categorical(panel["stage"].to_numpy()[keep][last], categories=STAGES).codes
        np.add.at(current, (pos[last], stage), 1.0)

        firsts = ~pd.Series(panel["user_id"].to_numpy()[keep]).duplicated().to_numpy()
        sizes = np.bincount(pos[firsts], minlength=n_seg).astype(float)
    return PanelSummary(
        segments=segments,
        transitions=counts,
        revenue=revenue,
        current=current,
        sizes=sizes,
        campaign_log=has_log,
    )


def summarize_events(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    assignments: pd.DataFrame,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
) -> PanelSummary:
    """The :class:`PanelSummary` of the panel :func:`retention.periods.build_panel` would build
    from ``events`` (no campaign log), computed in DuckDB without building the panel.

    A user's panel is a chain of runs, one per active period ``t``: recency 0, 1, ... up to the
    next active period ``next_t`` (or the last period). The transitions inside a run depend
    only on its length ``next_t - t`` and the one into it only on the gap since the previous
    active period, so the events are reduced to counts per (segment, length, gap) and only those
    few rows are expanded into stage-to-stage pairs (by :func:`retention.periods.stage_sql`,
    the same stage rule as the panel). Memory stays at the size of the aggregation over active
    user-periods, whatever the number of periods.
    """
    check_churn_after(churn_after)
    period = resolve_period(con, events, period)
    seg = _segment_table(assignments)
    seg = pd.DataFrame(
        {"user_id": seg["user_id"].to_numpy(), "segment": seg["segment"].to_numpy(dtype="int64")}
    )
    name = f"_segments_{uuid.uuid4().hex}"
    spans_view = f"_spans_{uuid.uuid4().hex}"
    facts = user_pass.kept(con, events)  # the run's shared per-(user, period) pass, if any
    shared = None
    if facts is not None:
        shared = user_pass.kept_periods(con, events, period_grid(con, events, period))
    if facts is not None and shared is not None:  # the runs, from the per-period facts
        con.register(spans_view, user_pass.runs_table(facts, shared, seg))
        runs = f"""
            runs AS (
                SELECT segment, len, NULLIF(gap, -1) AS gap, is_last, revenue
                FROM {quote_ident(spans_view)}
            )
        """  # noqa: S608 -- fixed fragments and a quoted identifier only
    con.register(name, seg)
    try:
        with events_source(con, events) as ref:
            if shared is None:
                runs = f"""
                    {spans_sql(clean_events_sql(con, ref), period)},
                    runs AS (
                        SELECT g.segment, s.next_t - s.t AS len, s.t - s.prev_t AS gap,
                               s.next_t = l.last_t + 1 AS is_last, s.revenue
                        FROM spans AS s JOIN {quote_ident(name)} AS g ON s.user_id = g.user_id,
                             last AS l
                    )
                """  # noqa: S608 -- fixed fragments and quoted identifiers only
            sql = f"""
                WITH {runs},
                g AS MATERIALIZED (
                    SELECT segment, len, gap, is_last,
                           grouping(len, gap, is_last) > 0 AS whole, count(*) AS n,
                           fsum(revenue) AS revenue
                    FROM runs
                    GROUP BY GROUPING SETS ((segment, len, gap, is_last), (segment))
                ),
                pairs AS (
                    SELECT segment, r - 1 AS prev_r, r, n
                    FROM (SELECT segment, n, unnest(range(1, len)) AS r FROM g WHERE NOT whole)
                    UNION ALL
                    SELECT segment, gap - 1, 0, n FROM g WHERE NOT whole AND gap IS NOT NULL
                )
                SELECT 'transition' AS kind, segment,
                       CAST({stage_sql("prev_r")} AS VARCHAR) AS stage,
                       CAST({stage_sql("r")} AS VARCHAR) AS next_stage,
                       sum(n) AS n, NULL AS revenue
                FROM pairs GROUP BY ALL
                UNION ALL
                SELECT 'current', segment, CAST({stage_sql("len - 1")} AS VARCHAR), NULL,
                       sum(n), NULL
                FROM g WHERE NOT whole AND is_last GROUP BY ALL
                UNION ALL
                SELECT 'users', segment, NULL, NULL, sum(n), NULL
                FROM g WHERE NOT whole AND gap IS NULL GROUP BY ALL
                UNION ALL
                SELECT 'revenue', segment, NULL, NULL, n, revenue / n FROM g WHERE whole
            """  # noqa: S608 -- fixed fragments and quoted identifiers only
            rows = con.execute(sql, {"churn_after": churn_after}).df()
    finally:
        con.unregister(name)
        if shared is not None:
            con.unregister(spans_view)
    if not (rows["kind"] == "users").any():
        raise InputError(NO_SEGMENT_MESSAGE.format(what="events"))
    tr = rows[rows["kind"] == "transition"].assign(action=NONE)
    counts = _tidy_transitions(tr)
    segments = tuple(sorted(int(s) for s in counts["segment"].unique()))
    n_seg = len(segments)

    def per_segment(kind: str) -> pd.DataFrame:
        part = rows[(rows["kind"] == kind) & rows["segment"].isin(segments)]
        return part.assign(pos=np.searchsorted(segments, part["segment"].to_numpy()))

    revenue = np.zeros(n_seg)
    rev = per_segment("revenue")
    revenue[rev["pos"].to_numpy()] = rev["revenue"].to_numpy(dtype=float)
    current = np.zeros((n_seg, len(STAGES)))
    cur = per_segment("current")
    stage = pd.Categorical(cur["stage"], categories=STAGES).codes
    np.add.at(current, (cur["pos"].to_numpy(), stage), cur["n"].to_numpy(dtype=float))
    sizes = np.zeros(n_seg)
    users = per_segment("users")
    sizes[users["pos"].to_numpy()] = users["n"].to_numpy(dtype=float)
    return PanelSummary(
        segments=segments, transitions=counts, revenue=revenue, current=current, sizes=sizes
    )


def estimate_mdp(
    panel: pd.DataFrame | PanelSummary,
    assignments: pd.DataFrame | None = None,
    *,
    campaigns: pd.DataFrame | None = None,
    actions: Sequence[str] | None = None,
    lift: Mapping[str, float] | pd.DataFrame | None = None,
    prior_strength: float = 20.0,
    reward: RewardSettings | None = None,
    start: str = "current",
) -> MDP:
    """Estimate the retention MDP from the panel, segment assignments and optional campaign log.

    ``panel`` is the pandas panel, or its :class:`PanelSummary` (then ``assignments`` and
    ``campaigns`` are not needed: the summary was made with them). ``campaigns`` has ``user_id,
    t, action[, propensity]`` (``t`` = the panel's period index; see
    :func:`retention.periods.period_of`). ``actions`` defaults to ``none`` + the log's actions, or
    :data:`DEFAULT_ACTIONS` without a log. ``lift`` (action -> multiplier of P(active next), or a
    DataFrame ``action, lift``) is used only without a campaign log; default :data:`DEFAULT_LIFT`.
    ``start``: ``"current"`` (users' states in the panel's last period) or ``"first"`` (active,
    in proportion to segment sizes).
    """
    reward = reward or RewardSettings()
    if prior_strength < 0 or not np.isfinite(prior_strength):
        raise InputError(f"The 'prior_strength' parameter must be >= 0. Got {prior_strength}.")
    if start not in ("current", "first"):
        raise InputError(f"The 'start' parameter must be 'current' or 'first'. Got {start!r}.")
    if isinstance(panel, PanelSummary):
        if campaigns is not None and len(campaigns) > 0:
            raise InputError(
                "A panel summary already holds its transitions: pass the campaign log to "
                "summarize_panel, not to estimate_mdp."
            )
        summary = panel
    else:
        if assignments is None:
            raise InputError("estimate_mdp needs the segment assignments with a panel.")
        summary = summarize_panel(panel, assignments, campaigns)
    return mdp_from_summary(
        summary, actions=actions, lift=lift, prior_strength=prior_strength, reward=reward,
        start=start,
    )  # fmt: skip


def mdp_from_summary(
    summary: PanelSummary,
    *,
    actions: Sequence[str] | None = None,
    lift: Mapping[str, float] | pd.DataFrame | None = None,
    prior_strength: float = 20.0,
    reward: RewardSettings | None = None,
    start: str = "current",
) -> MDP:
    """The MDP of a :class:`PanelSummary` (see :func:`estimate_mdp` for the arguments)."""
    reward = reward or RewardSettings()
    has_log = summary.campaign_log
    tr = summary.transitions
    actions = resolve_actions(actions, tr["action"] if has_log else None)
    if tr.empty:
        raise InputError(
            "The panel has no consecutive periods for any user with a segment, so no transition "
            "can be counted. Use a shorter period or more data."
        )
    segments = summary.segments
    n_seg, n_stage, n_act = len(segments), len(STAGES), len(actions)
    n_states = n_seg * n_stage

    seg_pos = np.searchsorted(segments, tr["segment"].to_numpy())
    s = seg_pos * n_stage + pd.Categorical(tr["stage"], categories=STAGES).codes
    s2 = seg_pos * n_stage + pd.Categorical(tr["next_stage"], categories=STAGES).codes
    a = pd.Categorical(tr["action"], categories=actions).codes
    counts = np.zeros((n_states, n_act, n_states))
    np.add.at(counts, (s, a, s2), tr["n"].to_numpy(dtype=float))

    stage_of = np.tile(np.arange(n_stage), n_seg)
    base = _no_action_estimate(counts, n_seg, n_stage, actions)
    assumptions: list[str] = [
        "Users inactive for 2 periods or more, short of churned, share one 'at risk' stage, as "
        "if they all behaved alike (a simplification of the model)."
    ]
    if has_log:
        k = prior_strength
        n_sa = counts.sum(axis=2, keepdims=True)
        T = (counts + k * base[:, None, :]) / np.maximum(n_sa + k, 1e-12)
        T = np.where(n_sa + k > 0, T, base[:, None, :])
        T[:, actions.index(NONE)] = base
        if k > 0:
            assumptions.append(
                f"An action seen on few users is taken to work like doing nothing until the "
                f"campaign log shows otherwise (a Dirichlet prior worth {k:g} transitions)."
            )
    else:
        lift_map = resolve_lift(lift, actions)
        counts[:, 1:] = 0.0  # only "none" is observed; every other row is assumed
        T = np.stack([_apply_lift(base, stage_of, lift_map[act]) for act in actions], axis=1)
        shown = ", ".join(f"{act} ×{lift_map[act]:g}" for act in actions if act != NONE)
        assumptions.append(
            f"No campaign log: the effect of each action is an assumed lift table, which "
            f"multiplies the chance a user is active next period ({shown})."
        )

    revenue = np.repeat(np.asarray(summary.revenue, dtype=float), n_stage)
    if start == "current":
        start_dist = np.asarray(summary.current, dtype=float).reshape(n_states).copy()
    else:
        start_dist = np.zeros(n_states)
        start_dist[::n_stage] = summary.sizes
    start_dist = start_dist / start_dist.sum()

    names = tuple(f"{g}/{stage}" for g in segments for stage in STAGES)
    return MDP(
        T=T,
        R=reward_tensor(stage_of, revenue, actions, reward),
        terminal=np.zeros(n_states, bool),
        start=start_dist,
        counts=counts,
        actions=actions,
        state_names=names,
        gamma=reward.gamma,
        segments=segments,
        stages=STAGES,
        stage_of=stage_of,
        revenue=revenue,
        reward=reward,
        assumptions=tuple(assumptions),
    )


def resolve_actions(actions: Sequence[str] | None, logged: pd.Series | None) -> tuple[str, ...]:
    logged_set = set() if logged is None else set(logged.unique()) - {NONE}
    # Known strategies keep their usual order; any others follow alphabetically.
    seen = [a for a in DEFAULT_ACTIONS if a in logged_set] + sorted(
        logged_set - set(DEFAULT_ACTIONS)
    )
    if actions is None:
        return (NONE, *seen) if logged is not None else DEFAULT_ACTIONS
    acts = tuple(dict.fromkeys(str(a) for a in actions))
    if not acts or NONE not in acts:
        raise InputError(f"The 'actions' parameter must include '{NONE}'. Got {list(acts)}.")
    acts = (NONE, *[a for a in acts if a != NONE])
    unknown = sorted(set(seen) - set(acts))
    if unknown:
        raise InputError(
            f"The campaign log has actions {unknown} that are not in 'actions' {list(acts)}. "
            "Add them to the actions or leave 'actions' unset to take them from the log."
        )
    return acts


def resolve_lift(
    lift: Mapping[str, float] | pd.DataFrame | None, actions: Sequence[str]
) -> dict[str, float]:
    """The lift table for ``actions``: given values, else :data:`DEFAULT_LIFT`, else 1."""
    if lift is None:
        given: dict[str, float] = {}
    elif isinstance(lift, pd.DataFrame):
        _require(lift, ("action", "lift"), "lift table")
        given = dict(zip(lift["action"].astype(str), lift["lift"].astype(float), strict=True))
    else:
        given = {str(k): float(v) for k, v in lift.items()}
    out = {a: float(given.get(a, DEFAULT_LIFT.get(a, 1.0))) for a in actions}
    out[NONE] = 1.0
    for a, v in out.items():
        if not np.isfinite(v) or v < 0:
            raise InputError(f"The lift of action '{a}' must be a number >= 0. Got {v}.")
    return out


def _no_action_estimate(
    counts: np.ndarray, n_seg: int, n_stage: int, actions: Sequence[str]
) -> np.ndarray:
    """P_none(s' | s): the no-action counts; where a state has none, fall back to all actions in
    that state, then to the same stage pooled over segments, then to staying put."""
    none = counts[:, actions.index(NONE)]
    pooled_actions = counts.sum(axis=1)
    # Same stage, all segments: move every segment's block onto a common (stage, stage') table.
    by_stage = np.zeros((n_stage, n_stage))
    for g in range(n_seg):
        blk = slice(g * n_stage, (g + 1) * n_stage)
        by_stage += pooled_actions[blk, blk]
    base = np.zeros_like(none)
    for g in range(n_seg):
        for st in range(n_stage):
            s = g * n_stage + st
            blk = slice(g * n_stage, (g + 1) * n_stage)
            for row in (none[s, blk], pooled_actions[s, blk], by_stage[st]):
                if row.sum() > 0:
                    base[s, blk] = row / row.sum()
                    break
            else:
                base[s, s] = 1.0
    return base


def _apply_lift(base: np.ndarray, stage_of: np.ndarray, lift: float) -> np.ndarray:
    """Multiply P(active next) by ``lift`` (capped at 1) and rescale the other next states."""
    active_next = stage_of == 0
    p_act = base[:, active_next].sum(axis=1)
    new_act = np.minimum(1.0, p_act * lift)
    rest = 1.0 - p_act
    scale_rest = np.divide(1.0 - new_act, rest, out=np.zeros_like(rest), where=rest > 0)
    scale_act = np.divide(new_act, p_act, out=np.zeros_like(p_act), where=p_act > 0)
    out = np.where(active_next[None, :], base * scale_act[:, None], base * scale_rest[:, None])
    return out / out.sum(axis=1, keepdims=True)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"The {what} needs columns {list(columns)}; missing {missing} "
            f"(has {list(frame.columns)})."
        )

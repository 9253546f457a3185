"""Randomised tests: plan one, export the assignment, read its results, plan the next wave.

Most users have an event log and no campaign log, so the policy's action effects are an assumed
lift table. This module turns that into a loop:

1. :func:`plan_test` — per segment × stage, the users available now, the baseline P(active next
   period) from the data, the users needed per arm to detect the smallest effect worth finding
   (:data:`POWER_FORMULA`) and the periods the test must run; and an assignment, one arm per
   user for the whole test, by a salted hash of the user id, stratified by segment × stage, each
   arm's share exact to the rounding (:func:`assign`).
2. :func:`read_results` — the test's campaign log (``user_id, ts, action, propensity``, explicit
   ``none`` rows for the holdout) and the events since, checked row by row against the plan,
   become one row per user-period of the test (:class:`ExperimentData`).
3. :func:`srm_check` (sample-ratio mismatch), :func:`measure_effects` (lift per segment × stage ×
   action with 95% intervals, shrunk across segments by empirical Bayes) and
   :func:`measured_mdp` (the measured lifts in place of the assumed table).
4. :func:`thompson_allocation` — the next wave's arm shares from the measured posteriors, with a
   floor per arm and the holdout kept; propensities by Monte Carlo.

:class:`World` is the planted generator's truth as a simulator ("apply an assignment, generate
the following periods"), so the whole loop can be tested end to end.

Power: ``statsmodels`` is not among the project's dependencies, and the two-proportion sample
size is one closed formula on normal quantiles (``scipy.stats.norm``), so it is written out here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from retention.errors import InputError
from retention.mdp import MDP, NONE, STAGES
from retention.words import segment_display_name

#: The strategies a test compares by default (``none`` is the holdout).
DEFAULT_TEST_ACTIONS: tuple[str, ...] = ("recommendation", "engagement", "discount")
#: Stages planned by default: everyone not churned.
TEST_STAGES: tuple[str, ...] = ("active", "lapsing", "at_risk")
#: A sample-ratio mismatch is flagged below this p-value.
SRM_P = 0.001
#: The least share of a stratum any arm gets in an adaptive wave.
ARM_FLOOR = 0.05
#: Monte Carlo draws per stratum for Thompson-sampling propensities.
THOMPSON_DRAWS = 10_000
POWER_FORMULA = (
    "Users needed per arm: two-sided two-proportion z-test, n = (z(1-α/2)·√(2·p̄·(1-p̄)) + "
    "z(power)·√(p0·(1-p0) + p1·(1-p1)))² / (p1 - p0)², with p0 the baseline, p1 = p0·(1 + MDE) "
    "and p̄ their mean. Periods needed: n divided by the users the smallest arm gets each "
    "period (each user-period counted as one observation)."
)
ASSIGNMENT_COLUMNS = [
    "user_id",
    "segment",
    "segment_name",
    "stage",
    "action",
    "propensity",
    "plan_id",
    "recency",
]
CELL_COLUMNS = [
    "segment",
    "segment_name",
    "stage",
    "users",
    "baseline",
    "n_per_arm",
    "periods_needed",
    "reachable",
]
#: One row per user-period of a test: the move ``t - 1 -> t`` under the user's arm.
TRANSITION_COLUMNS = [
    "user_id",
    "t",
    "segment",
    "stage",
    "action",
    "propensity",
    "active_next",
    "next_stage",
]
EFFECT_COLUMNS = [
    "segment",
    "stage",
    "action",
    "n",
    "active",
    "rate",
    "n_none",
    "rate_none",
    "raw_lift",
    "lift",
    "ci_lo",
    "ci_hi",
    "shrinkage",
]


@dataclass(frozen=True)
class PlanSettings:
    """What a test is for. ``mde`` is the smallest relative change of P(active next period)
    worth detecting (0.1 = +10%); ``max_periods`` is the longest the test may run."""

    actions: tuple[str, ...] = DEFAULT_TEST_ACTIONS
    holdout: float = 0.1
    mde: float = 0.1
    power: float = 0.8
    alpha: float = 0.05
    seed: int = 0
    max_periods: int = 12
    stages: tuple[str, ...] = TEST_STAGES
    #: The segments in the test (empty: every segment).
    segments: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        acts = tuple(dict.fromkeys(str(a).strip() for a in self.actions if str(a).strip()))
        if not acts or NONE in acts:
            raise InputError(
                f"The 'actions' parameter must name at least one strategy other than '{NONE}' "
                f"(the holdout is '{NONE}'). Got {list(self.actions)}."
            )
        object.__setattr__(self, "actions", acts)
        if not 0.0 < self.holdout < 1.0:
            raise InputError(f"The 'holdout' parameter must be in (0, 1). Got {self.holdout}.")
        if not 0.0 < self.mde <= 10.0:
            raise InputError(f"The 'mde' parameter must be in (0, 10]. Got {self.mde}.")
        if not 0.5 <= self.power < 1.0:
            raise InputError(f"The 'power' parameter must be in [0.5, 1). Got {self.power}.")
        if not 0.0 < self.alpha < 0.5:
            raise InputError(f"The 'alpha' parameter must be in (0, 0.5). Got {self.alpha}.")
        if self.max_periods < 1:
            raise InputError(f"The 'max_periods' parameter must be >= 1. Got {self.max_periods}.")
        stages = tuple(dict.fromkeys(str(x).strip() for x in self.stages if str(x).strip()))
        bad = sorted(set(stages) - set(STAGES))
        if bad or not stages:
            raise InputError(
                f"The 'stages' parameter must name stages among {list(STAGES)}. Got "
                f"{bad or list(self.stages)}."
            )
        object.__setattr__(self, "stages", tuple(x for x in STAGES if x in stages))
        object.__setattr__(self, "segments", tuple(sorted({int(g) for g in self.segments})))

    @property
    def arms(self) -> tuple[str, ...]:
        return (NONE, *self.actions)

    def shares(self) -> dict[str, float]:
        """The uniform design: the holdout to ``none``, the rest split evenly."""
        rest = (1.0 - self.holdout) / len(self.actions)
        return {NONE: self.holdout, **{a: rest for a in self.actions}}


def users_needed(baseline: np.ndarray, mde: float, power: float, alpha: float) -> np.ndarray:
    """Users per arm to detect ``p0 -> p0 (1 + mde)`` (:data:`POWER_FORMULA`); ``inf`` where
    the changed rate would reach 1 or the baseline is 0 or 1 (no such effect can be seen)."""
    p0 = np.asarray(baseline, dtype=float)
    p1 = p0 * (1.0 + mde)
    za, zb = stats.norm.ppf(1.0 - alpha / 2.0), stats.norm.ppf(power)
    pbar = (p0 + p1) / 2.0
    ok = (p0 > 0) & (p0 < 1) & (p1 < 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
        n = np.ceil(top**2 / (p1 - p0) ** 2)
    return np.where(ok, n, np.inf)


def hash_uniform(user_ids: Sequence[str] | np.ndarray, salt: str) -> np.ndarray:
    """A number in [0, 1) per user id from a salted SHA-256: the same id and salt give the same
    number anywhere (a CRM can recompute it), and a new salt gives a fresh randomisation."""
    out = np.empty(len(user_ids))
    for i, uid in enumerate(np.asarray(user_ids).astype(str)):
        digest = hashlib.sha256(f"{salt}\x1f{uid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def _exact_counts(shares: np.ndarray, n: int) -> np.ndarray:
    """Counts per arm summing to ``n``, each within one of ``share * n`` (largest remainder;
    ties go to the earlier arm)."""
    raw = np.asarray(shares, dtype=float) * n
    counts = np.floor(raw).astype(int)
    left = n - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:left]] += 1
    return counts


def assign(
    users: pd.DataFrame, shares: pd.DataFrame | Mapping[str, float], salt: str
) -> pd.DataFrame:
    """One arm per user, stratified by ``segment, stage``.

    ``users``: ``user_id, segment, stage`` (+ any columns, kept). ``shares``: arm -> share for
    every stratum, or a frame ``segment, stage, action, propensity`` per stratum. Within a
    stratum the users are ordered by :func:`hash_uniform` and cut into consecutive blocks whose
    sizes are the shares times the stratum's size, rounded (largest remainder), so every arm's
    share is exact to the rounding. ``propensity`` is the arm's share: over the salt, each user
    of the stratum lands in each arm with exactly that probability up to the rounding.
    """
    if isinstance(shares, Mapping):
        table = {None: (list(shares), np.array(list(shares.values()), dtype=float))}
    else:
        table = {
            key: (list(g["action"]), g["propensity"].to_numpy(dtype=float))
            for key, g in shares.groupby(["segment", "stage"], sort=False)
        }
    u = users.reset_index(drop=True).copy()
    u["user_id"] = u["user_id"].astype(str)
    u["_h"] = hash_uniform(u["user_id"].to_numpy(), salt)
    u = u.sort_values(["segment", "stage", "_h"], kind="stable").reset_index(drop=True)
    action = np.empty(len(u), dtype=object)
    propensity = np.zeros(len(u))
    for key, idx in u.groupby(["segment", "stage"], sort=False).indices.items():
        arms, p = table.get(None) or table.get(key) or (None, None)
        if arms is None:
            raise InputError(f"No arm shares were given for segment {key[0]}, stage {key[1]}.")
        counts = _exact_counts(p, len(idx))
        action[idx] = np.repeat(np.array(arms, dtype=object), counts)
        propensity[idx] = np.repeat(p, counts)
    u["action"] = action
    u["propensity"] = propensity
    return u.drop(columns="_h").sort_values("user_id", kind="stable", ignore_index=True)


@dataclass(frozen=True, eq=False)
class ExperimentPlan:
    """A planned test: ``cells`` (:data:`CELL_COLUMNS`) and ``assignment``
    (:data:`ASSIGNMENT_COLUMNS`, one row per user in the test). ``start`` is when the test's
    first period begins, ``period`` the period length, ``periods`` how long the test runs."""

    plan_id: str
    settings: PlanSettings
    cells: pd.DataFrame
    assignment: pd.DataFrame
    period: str = "week"
    start: str = ""
    periods: int = 1
    churn_after: int = 4
    formula: str = POWER_FORMULA
    source: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """``plan.json``: SPEC §8's keys, plus the window and the formula used."""
        cells = [
            {
                "segment": int(r.segment),
                "segment_name": str(r.segment_name),
                "stage": str(r.stage),
                "users": int(r.users),
                "baseline": _num(r.baseline),
                "n_per_arm": None if not np.isfinite(r.n_per_arm) else int(r.n_per_arm),
                "periods_needed": None
                if not np.isfinite(r.periods_needed)
                else int(r.periods_needed),
                "reachable": bool(r.reachable),
            }
            for r in self.cells.itertuples(index=False)
        ]
        s = self.settings
        return {
            "plan_id": self.plan_id,
            "actions": list(s.arms),
            "holdout": s.holdout,
            "mde": s.mde,
            "power": s.power,
            "alpha": s.alpha,
            "seed": s.seed,
            "max_periods": s.max_periods,
            "stages": list(s.stages),
            "segments": list(s.segments),
            "period": self.period,
            "start": self.start,
            "periods": self.periods,
            "churn_after": self.churn_after,
            "formula": self.formula,
            "source": dict(self.source),
            "cells": cells,
        }

    @classmethod
    def from_json(cls, data: Mapping, assignment: pd.DataFrame) -> ExperimentPlan:
        """The plan back from ``plan.json`` and ``assignment.csv``."""
        try:
            settings = PlanSettings(
                actions=tuple(a for a in data["actions"] if a != NONE),
                holdout=float(data["holdout"]),
                mde=float(data["mde"]),
                power=float(data["power"]),
                alpha=float(data["alpha"]),
                seed=int(data.get("seed", 0)),
                max_periods=int(data.get("max_periods", 12)),
                stages=tuple(data.get("stages", TEST_STAGES)),
                segments=tuple(int(g) for g in data.get("segments") or ()),
            )
            cells = pd.DataFrame(data["cells"]).reindex(columns=CELL_COLUMNS)
            plan = cls(
                plan_id=str(data["plan_id"]),
                settings=settings,
                cells=cells.fillna({"n_per_arm": np.inf, "periods_needed": np.inf}),
                assignment=_checked_assignment(assignment),
                period=str(data.get("period", "week")),
                start=str(data.get("start", "")),
                periods=int(data.get("periods", 1)),
                churn_after=int(data.get("churn_after", 4)),
                source={str(k): str(v) for k, v in dict(data.get("source") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"plan.json is not a test plan written by Retention Studio ({exc}). Use the "
                "plan.json written with the assignment."
            ) from None
        return plan

    def assignment_csv(self) -> bytes:
        """``assignment.csv``: formula-escaped like the app's other CSV downloads."""
        from retention.strategies import to_csv_bytes

        return to_csv_bytes(self.assignment[ASSIGNMENT_COLUMNS])

    def plan_json(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, allow_nan=False, ensure_ascii=False).encode(
            "utf-8"
        )


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _checked_assignment(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"assignment.csv needs columns {ASSIGNMENT_COLUMNS}; missing {missing}. Use the "
            "assignment.csv written with the plan."
        )
    out = frame[ASSIGNMENT_COLUMNS].copy()
    out["user_id"] = out["user_id"].astype(str)
    out["segment"] = out["segment"].astype(int)
    out["recency"] = out["recency"].astype(int)
    out["propensity"] = out["propensity"].astype(float)
    return out


def baselines(transitions: pd.DataFrame) -> pd.DataFrame:
    """P(active next period) per ``segment, stage`` from transition counts (``segment, stage,
    next_stage, n``, e.g. a :class:`retention.mdp.PanelSummary`'s ``transitions``), over every
    action the data hold (without a campaign log, all of them ``none``)."""
    t = transitions.assign(active=(transitions["next_stage"] == "active") * transitions["n"])
    g = t.groupby(["segment", "stage"], as_index=False)[["active", "n"]].sum()
    g["baseline"] = g["active"] / g["n"].where(g["n"] > 0)
    return g[["segment", "stage", "baseline"]]


def plan_test(
    users: pd.DataFrame,
    baseline: pd.DataFrame,
    settings: PlanSettings | None = None,
    *,
    names: Mapping[int, str] | None = None,
    period: str = "week",
    start: str = "",
    churn_after: int = 4,
    periods: int | None = None,
) -> ExperimentPlan:
    """Plan a test on ``users`` (``user_id, segment, stage, recency``: where each user is now)
    with ``baseline`` (``segment, stage, baseline``, see :func:`baselines`).

    The test runs ``periods`` periods (default: the longest ``periods_needed`` among the cells
    that can reach power, at most ``settings.max_periods``). A cell that would need more than
    ``max_periods`` periods (or whose baseline leaves no room for the effect) is ``reachable =
    False``: its users are still assigned, and its result is reported with a wide interval.
    """
    settings = settings or PlanSettings()
    names = dict(names or {})
    missing = [c for c in ("user_id", "segment", "stage", "recency") if c not in users.columns]
    if missing:
        raise InputError(f"The users to plan for need columns {missing}.")
    pool = users[users["stage"].astype(str).isin(settings.stages)].copy()
    if settings.segments:
        known = set(users["segment"].astype(int))
        unknown = [g for g in settings.segments if g not in known]
        if unknown:
            raise InputError(
                f"The segments {unknown} are not in this segmentation (it has "
                f"{sorted(known)}). Choose among those."
            )
        pool = pool[pool["segment"].astype(int).isin(settings.segments)]
    if pool.empty:
        where = "" if not settings.segments else f" of segments {list(settings.segments)}"
        raise InputError(
            f"No user{where} is in the stages {list(settings.stages)} now, so there is nobody "
            "to test on. Include more stages or segments, or use more recent data."
        )
    pool["segment"] = pool["segment"].astype(int)
    pool["stage"] = pool["stage"].astype(str)
    cells = (
        pool.groupby(["segment", "stage"], as_index=False).size().rename(columns={"size": "users"})
    )
    cells = cells.merge(baseline, on=["segment", "stage"], how="left")
    order = {s: i for i, s in enumerate(STAGES)}
    cells = cells.sort_values(
        ["segment", "stage"], key=lambda c: c.map(order) if c.name == "stage" else c
    ).reset_index(drop=True)
    cells["segment_name"] = [
        names.get(int(g), segment_display_name(int(g))) for g in cells["segment"]
    ]
    n = users_needed(cells["baseline"].fillna(0.0).to_numpy(), settings.mde, settings.power,
                     settings.alpha)  # fmt: skip
    smallest = min(settings.shares().values())
    per_period = cells["users"].to_numpy(dtype=float) * smallest
    cells["n_per_arm"] = n
    cells["periods_needed"] = np.ceil(n / np.maximum(per_period, 1e-12))
    cells["reachable"] = cells["periods_needed"] <= settings.max_periods
    cells = cells[CELL_COLUMNS]
    if periods is None:
        reach = cells.loc[cells["reachable"], "periods_needed"]
        periods = int(reach.max()) if len(reach) else settings.max_periods
    plan_id = _plan_id(pool["user_id"].astype(str), settings)
    pool["segment_name"] = pool["segment"].map(
        lambda g: names.get(int(g), segment_display_name(int(g)))
    )
    assignment = assign(pool, settings.shares(), salt=plan_id)
    assignment["plan_id"] = plan_id
    assignment["recency"] = assignment["recency"].astype(int)
    return ExperimentPlan(
        plan_id=plan_id,
        settings=settings,
        cells=cells,
        assignment=assignment[ASSIGNMENT_COLUMNS],
        period=period,
        start=start,
        periods=int(max(1, periods)),
        churn_after=churn_after,
    )


def _plan_id(user_ids: pd.Series, settings: PlanSettings) -> str:
    """Same users and settings, same id (and so the same assignment)."""
    h = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    for uid in sorted(user_ids):
        h.update(uid.encode() + b"\x1f")
    return "T" + h.hexdigest()[:10]


def stage_of_recency(recency: np.ndarray, churn_after: int) -> np.ndarray:
    """Stage index (into :data:`STAGES`) of each recency (SPEC §3)."""
    r = np.asarray(recency)
    return np.select([r == 0, r == 1, r >= churn_after], [0, 1, 3], default=2)


# --- the world: the planted generator's truth as a simulator ---------------------------------


@dataclass(frozen=True)
class World:
    """The planted truth: ``p_active[segment, stage]`` under ``none`` and ``lift[segment,
    action]`` (multiplicative, capped at ``cap``), as in :mod:`retention.synth`."""

    p_active: np.ndarray
    lift: np.ndarray
    actions: tuple[str, ...]
    churn_after: int = 4
    cap: float = 0.97

    @classmethod
    def planted(cls, n_segments: int = 4, churn_after: int = 4) -> World:
        from retention.synth import ACTIONS, planted_specs

        specs = planted_specs(n_segments)
        return cls(
            p_active=np.array([[s.p_active[st] for st in STAGES] for s in specs]),
            lift=np.array([[s.lift[a] for a in ACTIONS] for s in specs]),
            actions=ACTIONS,
            churn_after=churn_after,
        )

    def p(self, segment: np.ndarray, stage: np.ndarray, action: np.ndarray) -> np.ndarray:
        """P(active next period) of users in ``segment``/``stage`` (indices) under ``action``."""
        return np.minimum(self.cap, self.p_active[segment, stage] * self.lift[segment, action])

    def true_lifts(self) -> pd.DataFrame:
        """``segment, stage, action, lift``: the planted effect as measured (the cap applied)."""
        rows = []
        for g in range(self.p_active.shape[0]):
            for j, st in enumerate(STAGES):
                p0 = min(self.cap, self.p_active[g, j])
                for k, a in enumerate(self.actions):
                    rows.append(
                        (g, st, a, min(self.cap, self.p_active[g, j] * self.lift[g, k]) / p0)
                    )
        return pd.DataFrame(rows, columns=["segment", "stage", "action", "lift"])

    def simulate(self, assignment: pd.DataFrame, periods: int, seed: int = 0) -> pd.DataFrame:
        """Apply ``assignment`` (``user_id, segment, action, propensity, recency``) for
        ``periods`` periods: one row per user-period (:data:`TRANSITION_COLUMNS`)."""
        rng = np.random.default_rng(seed)
        seg = assignment["segment"].to_numpy(dtype=int)
        act_names = assignment["action"].astype(str).to_numpy()
        act = np.array([self.actions.index(a) for a in act_names])
        rec = assignment["recency"].to_numpy(dtype=int).copy()
        frames = []
        for t in range(periods):
            stage = stage_of_recency(rec, self.churn_after)
            active = rng.random(len(rec)) < self.p(seg, stage, act)
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": assignment["user_id"].to_numpy(),
                        "t": t,
                        "segment": seg,
                        "stage": np.asarray(STAGES, dtype=object)[stage],
                        "action": act_names,
                        "propensity": assignment["propensity"].to_numpy(dtype=float),
                        "active_next": active,
                    }
                )
            )
            rec = np.where(active, 0, rec + 1)
            frames[-1]["next_stage"] = np.asarray(STAGES, dtype=object)[
                stage_of_recency(rec, self.churn_after)
            ]
        return pd.concat(frames, ignore_index=True)[TRANSITION_COLUMNS]

    def simulate_logs(
        self, plan: ExperimentPlan, seed: int = 0, *, step: pd.Timedelta | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """What a CRM and a shop would hand back after the test: the campaign log (one row per
        user and period, explicit ``none`` rows for the holdout) and the events (one purchase
        per active user-period), both timed inside the plan's window (its periods: days, weeks
        or calendar months; ``step`` overrides the period length)."""
        start = pd.Timestamp(plan.start)
        tr = self.simulate(plan.assignment, plan.periods, seed)
        if step is None and plan.period == "month":
            begins = {t: start + pd.DateOffset(months=int(t)) for t in range(plan.periods + 1)}
            at = tr["t"].map(begins)
            send, bought_at = at + pd.Timedelta(hours=1), at + pd.Timedelta(days=14)
        else:
            step = step or (pd.Timedelta(days=1) if plan.period == "day" else pd.Timedelta(weeks=1))
            send = start + step * tr["t"] + pd.Timedelta(hours=1)
            bought_at = start + step * tr["t"] + step / 2
        campaigns = pd.DataFrame(
            {"user_id": tr["user_id"], "ts": send, "action": tr["action"],
             "propensity": tr["propensity"]}
        )  # fmt: skip
        active = tr["active_next"].to_numpy()
        events = pd.DataFrame({"user_id": tr["user_id"][active], "ts": bought_at[active]})
        return campaigns, events.reset_index(drop=True)


def simulate_test(
    plan: ExperimentPlan, truth: pd.DataFrame | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A demo's results: ``plan`` run in the planted world (:meth:`World.simulate_logs`). Each
    user behaves like their planted segment in ``truth`` (``user_id, segment``, e.g. the
    planted demo's ``planted_truth.csv``); without it (or for a user it lacks), like planted
    segment ``segment mod 4`` of the plan."""
    world = World.planted(churn_after=plan.churn_after)
    n = world.p_active.shape[0]
    seg = plan.assignment["segment"].astype(int) % n
    if truth is not None:
        known = truth.assign(user_id=truth["user_id"].astype(str)).set_index("user_id")["segment"]
        mapped = plan.assignment["user_id"].map(known)
        seg = mapped.fillna(seg).astype(int) % n
    return world.simulate_logs(replace(plan, assignment=plan.assignment.assign(segment=seg)), seed)


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExperimentData:
    """A test's results: one row per user-period (:data:`TRANSITION_COLUMNS`) and the users
    logged per ``segment, stage, action`` with their logged ``propensity``."""

    transitions: pd.DataFrame
    users: pd.DataFrame


def _rows(index: pd.Index, limit: int = 5) -> str:
    shown = ", ".join(str(int(i) + 2) for i in index[:limit])  # file rows: header is row 1
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return f"row{'s' if len(index) > 1 else ''} {shown}{more}"


def _period_index(ts: pd.Series, start: pd.Timestamp, period: str) -> np.ndarray:
    if period == "month":
        return ((ts.dt.year - start.year) * 12 + (ts.dt.month - start.month)).to_numpy()
    step = pd.Timedelta(weeks=1) if period == "week" else pd.Timedelta(days=1)
    return np.floor((ts - start) / step).to_numpy().astype(int)


def read_results(
    plan: ExperimentPlan,
    campaigns: pd.DataFrame,
    events: pd.DataFrame,
    *,
    source: str = "the results",
) -> ExperimentData:
    """Check the test's campaign log against the plan and turn it and the events into one row
    per user-period of the test.

    ``campaigns``: ``user_id, ts, action, propensity`` (one or more rows per user, all with the
    user's one arm); ``events``: ``user_id, ts`` (anything else is ignored; events of users not
    in the test and outside the window are ignored). Refused, naming the rows: users not in the
    plan, arms not in the plan, a user logged with two arms, propensities that do not sum to 1
    over a stratum's arms, times outside the test window. Nothing is stored or changed.
    """
    need = [c for c in ("user_id", "ts", "action", "propensity") if c not in campaigns.columns]
    if need:
        raise InputError(
            f"The campaign log of {source} needs columns user_id, ts, action, propensity; "
            f"missing {need}."
        )
    log = campaigns.reset_index(drop=True).copy()
    log["user_id"] = log["user_id"].astype(str)
    log["action"] = log["action"].astype(str)
    log["ts"] = pd.to_datetime(log["ts"], errors="coerce")
    log["propensity"] = pd.to_numeric(log["propensity"], errors="coerce")
    where = f"in the campaign log of {source}"
    a = plan.assignment.set_index("user_id")
    unknown = log.index[~log["user_id"].isin(a.index)]
    if len(unknown):
        raise InputError(
            f"{len(unknown)} row(s) {where} are for users not in plan {plan.plan_id} "
            f"({_rows(unknown)}, e.g. user {log.at[unknown[0], 'user_id']!r}). Upload the log "
            "of this test only, or the plan it belongs to."
        )
    arms = plan.settings.arms
    bad_arm = log.index[~log["action"].isin(arms)]
    if len(bad_arm):
        raise InputError(
            f"{len(bad_arm)} row(s) {where} have arms not in plan {plan.plan_id} "
            f"({_rows(bad_arm)}, e.g. {log.at[bad_arm[0], 'action']!r}); its arms are "
            f"{list(arms)}."
        )
    bad_p = log.index[~((log["propensity"] > 0) & (log["propensity"] <= 1))]
    if len(bad_p):
        raise InputError(
            f"{len(bad_p)} row(s) {where} have no propensity in (0, 1] ({_rows(bad_p)}). "
            "Log the share of the user's stratum that the arm was given (assignment.csv)."
        )
    start = pd.Timestamp(plan.start)
    t = _period_index(log["ts"], start, plan.period) if len(log) else np.array([], int)
    outside = log.index[log["ts"].isna().to_numpy() | (t < 0) | (t >= plan.periods)]
    if len(outside):
        raise InputError(
            f"{len(outside)} row(s) {where} are outside the test window "
            f"({start} to {plan.periods} {plan.period}(s) later; {_rows(outside)}). Upload only "
            "what was sent during this test."
        )
    per_user = log.groupby("user_id")["action"].nunique()
    twice = log.index[log["user_id"].isin(per_user.index[per_user > 1])]
    if len(twice):
        raise InputError(
            f"{len(twice)} row(s) {where} give a user more than one arm ({_rows(twice)}); a "
            "test keeps each user in one arm for the whole test."
        )
    log["segment"] = a.loc[log["user_id"], "segment"].to_numpy()
    log["stage"] = a.loc[log["user_id"], "stage"].to_numpy()
    _check_propensities(log, plan, where)

    users = log.drop_duplicates("user_id", keep="last")
    shown = a.loc[users["user_id"]]
    tr = _user_periods(users, shown, events, plan)
    counts = users.groupby(["segment", "stage", "action"], as_index=False).agg(
        users=("user_id", "size"), propensity=("propensity", "first")
    )
    return ExperimentData(transitions=tr, users=counts)


def _check_propensities(log: pd.DataFrame, plan: ExperimentPlan, where: str) -> None:
    """Per stratum: one propensity per arm, and the arms' propensities (the plan's where an arm
    was not logged) sum to 1."""
    design = plan.assignment.groupby(["segment", "stage", "action"])["propensity"].first()
    logged = log.groupby(["segment", "stage", "action"])["propensity"].agg(["min", "max"])
    for (g, st), grp in logged.groupby(level=[0, 1]):
        total = 0.0
        for arm in plan.settings.arms:
            if (g, st, arm) in grp.index:
                lo, hi = grp.loc[(g, st, arm)]
                total += lo
                if hi - lo > 1e-6:
                    rows = log.index[(log["segment"] == g) & (log["stage"] == st)
                                     & (log["action"] == arm)]  # fmt: skip
                    raise InputError(
                        f"The propensity of arm {arm!r} in segment {g}, stage {st} differs "
                        f"between rows {where} ({_rows(rows)}); it must be one value per arm "
                        "and stratum."
                    )
            else:
                total += float(design.get((g, st, arm), 0.0))
        if abs(total - 1.0) > 1e-3:
            rows = log.index[(log["segment"] == g) & (log["stage"] == st)]
            raise InputError(
                f"The propensities {where} for segment {g}, stage {st} sum to {total:.4g}, not "
                f"1, over the arms {list(plan.settings.arms)} ({_rows(rows)}). Log each arm's "
                "share of the stratum as in assignment.csv."
            )


def _user_periods(
    users: pd.DataFrame, planned: pd.DataFrame, events: pd.DataFrame, plan: ExperimentPlan
) -> pd.DataFrame:
    """Each logged user's moves through the test's periods, from their recency at the start and
    whether they had an event in each period."""
    n, periods = len(users), plan.periods
    code = pd.Index(users["user_id"])
    active = np.zeros((n, periods), dtype=bool)
    if len(events):
        ev = events[["user_id", "ts"]].copy()
        ev["user_id"] = ev["user_id"].astype(str)
        ev["ts"] = pd.to_datetime(ev["ts"], errors="coerce")
        ev = ev[ev["user_id"].isin(code) & ev["ts"].notna()]
        t = _period_index(ev["ts"], pd.Timestamp(plan.start), plan.period)
        keep = (t >= 0) & (t < periods)
        active[code.get_indexer(ev["user_id"].to_numpy()[keep]), t[keep]] = True
    rec = planned["recency"].to_numpy(dtype=int).copy()
    frames = []
    for t in range(periods):
        stage = stage_of_recency(rec, plan.churn_after)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": users["user_id"].to_numpy(),
                    "t": t,
                    "segment": users["segment"].to_numpy(dtype=int),
                    "stage": np.asarray(STAGES, dtype=object)[stage],
                    "action": users["action"].to_numpy(),
                    "propensity": users["propensity"].to_numpy(dtype=float),
                    "active_next": active[:, t],
                }
            )
        )
        rec = np.where(active[:, t], 0, rec + 1)
        frames[-1]["next_stage"] = np.asarray(STAGES, dtype=object)[
            stage_of_recency(rec, plan.churn_after)
        ]
    return pd.concat(frames, ignore_index=True)[TRANSITION_COLUMNS]


# --- checks and effects ----------------------------------------------------------------------


@dataclass(frozen=True)
class Srm:
    """Sample-ratio mismatch: chi-square of users per arm against the logged propensities."""

    chi2: float
    p: float
    flagged: bool
    observed: dict[str, int] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"chi2": round(self.chi2, 6), "p": self.p, "flagged": self.flagged}

    def sentence(self) -> str:
        if not self.flagged:
            return "The users per arm match the planned shares (no sample-ratio mismatch)."
        worst = max(self.observed, key=lambda a: abs(self.observed[a] - self.expected[a]))
        return (
            f"Warning: the users per arm do not match the planned shares (p = {self.p:.2g}); "
            f"'{worst}' has {self.observed[worst]:,} users where {self.expected[worst]:,.0f} "
            "were expected. Some users were probably dropped or moved between arms: check how "
            "the test was sent before trusting its results."
        )


def srm_check(users: pd.DataFrame, threshold: float = SRM_P) -> Srm:
    """Users per arm (``segment, stage, action, users, propensity``, one row per stratum and arm
    logged) against the counts the propensities predict for the users of each stratum, pooled
    over strata (``scipy.stats.chisquare``, df = arms - 1). Arms a stratum was meant to get but
    never logged count with their share of the rest (1 minus the logged ones)."""
    arms = sorted(users["action"].unique())
    observed = users.groupby("action")["users"].sum().reindex(arms, fill_value=0)
    expected = pd.Series(0.0, index=arms)
    for _, g in users.groupby(["segment", "stage"]):
        n = g["users"].sum()
        for r in g.itertuples(index=False):
            expected[r.action] += n * r.propensity
    # Pooled strata: rescale so both sum to the users seen (probabilities of arms not logged in
    # a stratum are left out of that stratum).
    expected = expected * observed.sum() / expected.sum()
    if len(arms) < 2:
        return Srm(0.0, 1.0, False, observed.to_dict(), expected.to_dict())
    chi2, p = stats.chisquare(observed.to_numpy(float), expected.to_numpy(float))
    return Srm(
        float(chi2),
        float(p),
        bool(p < threshold),
        {k: int(v) for k, v in observed.items()},
        {k: float(v) for k, v in expected.items()},
    )


def cell_counts(transitions: pd.DataFrame) -> pd.DataFrame:
    """``segment, stage, action, n, active``: user-periods and how many were active next."""
    g = transitions.groupby(["segment", "stage", "action"], as_index=False)["active_next"]
    out = g.agg(n="size", active="sum")
    out["active"] = out["active"].astype(int)
    return out


def measure_effects(counts: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Lift of each action over ``none`` per ``segment, stage`` (:data:`EFFECT_COLUMNS`).

    ``counts``: ``segment, stage, action, n, active`` (:func:`cell_counts`). Per cell, the log
    of the ratio of the two rates (each with half a success and half a failure added, so empty
    or all-active cells stay finite) with its delta-method variance. For each action, these are
    shrunk across segments toward the stage's common value by a normal–normal empirical Bayes
    model (:func:`_eb`: the spread between segments by the method of moments over all stages;
    the posterior variance includes the uncertainty of the common value), so a thin cell
    borrows from the other segments and a well-measured one keeps its own estimate;
    ``shrinkage`` says how far (0 = its own, 1 = the common value).
    """
    z = stats.norm.ppf(0.5 + level / 2.0)
    c = counts.copy()
    c["rate"] = (c["active"] + 0.5) / (c["n"] + 1.0)
    c["var"] = (1.0 - c["rate"]) / ((c["n"] + 1.0) * c["rate"])
    none = c[c["action"] == NONE][["segment", "stage", "n", "rate", "var"]]
    none = none.rename(columns={"n": "n_none", "rate": "rate_none", "var": "var_none"})
    e = c[c["action"] != NONE].merge(none, on=["segment", "stage"], how="inner")
    e["theta"] = np.log(e["rate"] / e["rate_none"])
    e["v"] = e["var"] + e["var_none"]
    post_m = np.empty(len(e))
    post_v = np.empty(len(e))
    shrink = np.empty(len(e))
    for _, idx in e.groupby("action").indices.items():
        stage = e["stage"].to_numpy()[idx]
        m, v, b = _eb(e["theta"].to_numpy()[idx], e["v"].to_numpy()[idx], stage)
        post_m[idx], post_v[idx], shrink[idx] = m, v, b
    e["raw_lift"] = np.exp(e["theta"])
    e["lift"] = np.exp(post_m)
    e["ci_lo"] = np.exp(post_m - z * np.sqrt(post_v))
    e["ci_hi"] = np.exp(post_m + z * np.sqrt(post_v))
    e["shrinkage"] = shrink
    order = {s: i for i, s in enumerate(STAGES)}
    e = e.sort_values(
        ["segment", "stage", "action"], key=lambda s: s.map(order) if s.name == "stage" else s
    )
    return e[EFFECT_COLUMNS].reset_index(drop=True)


def _eb(
    theta: np.ndarray, v: np.ndarray, strata: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal–normal empirical Bayes over segments: posterior means, variances, shrinkage.

    ``theta_i ~ N(mu_stratum, tau2 + v_i)``: each stratum (stage) has its own common mean, and
    one between-segment variance ``tau2`` is estimated over all strata together (the
    method-of-moments estimator of a meta-regression with the stratum as a factor). With only a
    handful of segments per stage, a per-stage ``tau2`` is often estimated at 0 and would pool
    thin cells completely; the well-measured stages show how far segments really differ."""
    w = 1.0 / v
    q, df, c = 0.0, 0, 0.0
    groups = [np.flatnonzero(strata == k) for k in pd.unique(strata)]
    for idx in groups:
        wi = w[idx]
        mu = np.sum(wi * theta[idx]) / wi.sum()
        q += float(np.sum(wi * (theta[idx] - mu) ** 2))
        df += len(idx) - 1
        c += float(wi.sum() - np.sum(wi**2) / wi.sum())
    if df < 2 or c <= 0:  # too few segments to estimate their spread: each keeps its own
        return theta, v, np.zeros_like(theta)
    tau2 = max(0.0, (q - df) / c)
    mean, var, b = theta.copy(), v.copy(), np.zeros_like(theta)
    for idx in groups:
        if len(idx) < 2:
            continue
        ws = 1.0 / (v[idx] + tau2)
        mu = np.sum(ws * theta[idx]) / ws.sum()
        var_mu = 1.0 / ws.sum()
        b[idx] = v[idx] / (v[idx] + tau2)
        mean[idx] = theta[idx] - b[idx] * (theta[idx] - mu)
        var[idx] = v[idx] * (1.0 - b[idx]) + b[idx] ** 2 * var_mu
    return mean, var, b


def lifts_summary(effects: pd.DataFrame) -> list[dict]:
    """``summary.json`` → ``experiment.lifts``."""
    return [
        {
            "segment": int(r.segment),
            "stage": str(r.stage),
            "action": str(r.action),
            "lift": round(float(r.lift), 6),
            "ci": [round(float(r.ci_lo), 6), round(float(r.ci_hi), 6)],
            "n": int(r.n),
        }
        for r in effects.itertuples(index=False)
    ]


def planned_effects(effects: pd.DataFrame, plan: ExperimentPlan) -> pd.DataFrame:
    """The effects of the cells the plan sized (its segments × stages). Users who drift into
    another stage during the test (e.g. at risk -> churned) leave a few, unplanned observations
    there: those cells keep the assumed lift table rather than a thin, noisy estimate."""
    cells = plan.cells[["segment", "stage"]].astype({"segment": int, "stage": str})
    return effects.merge(cells, on=["segment", "stage"], how="inner")[EFFECT_COLUMNS]


def measured_in(plan_id: str) -> str:
    """The words every measured effect carries: "measured in test T1a2b3c4d5"."""
    return f"measured in test {plan_id}"


def lift_sources(
    effects: pd.DataFrame,
    plan_id: str,
    *,
    segments: Sequence[int],
    stages: Sequence[str],
    actions: Sequence[str],
    assumed: Mapping[str, float],
) -> list[dict]:
    """Every segment × stage × action's effect behind a policy retrained on a test: the
    measured lift with its 95% interval ("measured in test X") where the test measured it, the
    assumed lift table's value ("assumed", no interval) where it did not. Stored with the
    policy run (``settings["experiment"]["lifts"]``) and written to ``summary.json``."""
    got = {
        (int(r.segment), str(r.stage), str(r.action)): r for r in effects.itertuples(index=False)
    }
    out = []
    for g in segments:
        for st in stages:
            for a in actions:
                if a == NONE:
                    continue
                r = got.get((int(g), str(st), str(a)))
                if r is not None:
                    out.append({"segment": int(g), "stage": str(st), "action": str(a),
                                "lift": round(float(r.lift), 6),
                                "ci": [round(float(r.ci_lo), 6), round(float(r.ci_hi), 6)],
                                "n": int(r.n), "source": measured_in(plan_id)})  # fmt: skip
                else:
                    out.append({"segment": int(g), "stage": str(st), "action": str(a),
                                "lift": round(float(assumed.get(a, 1.0)), 6), "ci": None,
                                "n": 0, "source": "assumed"})  # fmt: skip
    return out


def best_actions(effects: pd.DataFrame) -> pd.DataFrame:
    """The action with the highest measured lift per ``segment, stage`` (``none`` when every
    action's lift is below 1): ``segment, stage, action``."""
    rows = []
    for (g, st), grp in effects.groupby(["segment", "stage"], sort=False):
        top = grp.loc[grp["lift"].idxmax()]
        rows.append((g, st, top["action"] if top["lift"] > 1.0 else NONE))
    return pd.DataFrame(rows, columns=["segment", "stage", "action"])


def measured_mdp(base: MDP, effects: pd.DataFrame, plan_id: str) -> MDP:
    """``base`` (an MDP from the data with the assumed lift table) with each measured action's
    P(active next period) set to the no-action rate times its measured lift for that segment
    and stage, the other next states rescaled — the measured effects in place of the assumed
    lift table. Cells the test did not measure (a stage or segment it did not plan, churned
    users) keep ``base``'s rows: the assumed lift table."""
    T, counts = base.T.copy(), base.counts.astype(float).copy()
    none = base.T[:, base.actions.index(NONE)]
    measured = 0
    for r in effects.itertuples(index=False):
        if r.action in base.actions and r.segment in base.segments and r.stage in base.stages:
            s = base.state_index(int(r.segment), str(r.stage))
            k = base.actions.index(r.action)
            T[s, k] = _lifted(none[s : s + 1], base.stage_of, np.array([float(r.lift)]))[0]
            counts[s, k] = T[s, k] * float(r.n)  # the test's user-periods behind the row
            measured += 1
    kept = tuple(a for a in base.assumptions if "assumed lift table" not in a)
    note = f"The effect of each action is measured in test {plan_id}, per segment and stage" + (
        "; the segments and stages the test did not measure keep the assumed lift table."
        if measured < len(base.segments) * len(base.stages) * (base.n_actions - 1)
        else "."
    )
    return replace(base, T=T, counts=counts, assumptions=(*kept, note))


def _lifted(base: np.ndarray, stage_of: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """Rows of ``base`` with P(active next) times ``lift[s]`` (capped at 1), the rest rescaled."""
    active = stage_of == 0
    p = base[:, active].sum(axis=1)
    new = np.minimum(1.0, p * lift)
    rest = np.divide(1.0 - new, 1.0 - p, out=np.zeros_like(p), where=p < 1)
    scale = np.divide(new, p, out=np.zeros_like(p), where=p > 0)
    out = np.where(active[None, :], base * scale[:, None], base * rest[:, None])
    return out / out.sum(axis=1, keepdims=True)


def world_mdp(base: MDP, world: World) -> MDP:
    """The oracle: ``base``'s dynamics with the world's true P(active next) for every state and
    action (the planted segments must be ``base``'s segments)."""
    T = np.empty_like(base.T)
    none = base.T[:, base.actions.index(NONE)]
    for k, a in enumerate(base.actions):
        target = np.array(
            [
                world.p(
                    np.array([g]), np.array([STAGES.index(st)]), np.array([world.actions.index(a)])
                )[0]  # fmt: skip
                for g in base.segments
                for st in base.stages
            ]
        )
        p = none[:, base.stage_of == 0].sum(axis=1)
        T[:, k] = _lifted(none, base.stage_of, np.divide(target, p, out=np.ones_like(p),
                                                         where=p > 0))  # fmt: skip
    return replace(base, T=T, counts=np.zeros_like(T))


# --- the next wave ---------------------------------------------------------------------------


def shrunk_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Empirical-Bayes beta-binomial posteriors of P(active next) per ``segment, stage,
    action`` (``counts``: :func:`cell_counts`), pooled across segments per stage × action.

    For each stage × action, a Beta(m·M, (1-m)·M) prior is fitted to the segments' counts by
    the method of moments: ``m`` the pooled rate, ``M`` from how much more the segments' rates
    spread than binomial noise alone would make them (no excess spread: ``M`` = the pool's
    user-periods, i.e. close to full pooling; one segment: a flat Beta(1, 1)). Each cell's
    posterior is Beta(m·M + active, (1-m)·M + n - active): a thin cell is pulled toward the
    pooled rate, a well-measured one keeps its own. Columns ``segment, stage, action, n, active,
    a, b, rate`` (``rate`` the posterior mean)."""
    out = counts.copy()
    out["n"] = out["n"].astype(float)
    out["active"] = out["active"].astype(float)
    a = np.ones(len(out))
    b = np.ones(len(out))
    for _, idx in out.groupby(["stage", "action"]).indices.items():
        n = out["n"].to_numpy()[idx]
        k = out["active"].to_numpy()[idx]
        keep = n > 0
        if keep.sum() < 2:
            continue
        m = float(k[keep].sum() / n[keep].sum())
        if not 0.0 < m < 1.0:
            continue
        p = k[keep] / n[keep]
        w = n[keep] / n[keep].sum()
        spread = float(np.sum(w * (p - m) ** 2))
        noise = float(m * (1.0 - m) * np.sum(w / n[keep]))
        between = spread - noise
        total = float(n[keep].sum())
        strength = total if between <= 0 else min(total, max(2.0, m * (1 - m) / between - 1.0))
        a[idx], b[idx] = m * strength + 1e-9, (1.0 - m) * strength + 1e-9
    out["a"] = a + out["active"].to_numpy()
    out["b"] = b + out["n"].to_numpy() - out["active"].to_numpy()
    out["rate"] = out["a"] / (out["a"] + out["b"])
    return out


def thompson_allocation(
    counts: pd.DataFrame,
    arms: Sequence[str],
    *,
    holdout: float = 0.1,
    floor: float = ARM_FLOOR,
    draws: int = THOMPSON_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Arm shares per ``segment, stage`` for the next wave (``segment, stage, action,
    propensity``).

    Each arm's P(active next) has the shrunk posterior of :func:`shrunk_rates` (empirical-Bayes
    beta-binomial, pooled across segments per stage × arm: a thin segment's draws lean on the
    others); ``draws`` joint draws per stratum give each arm's probability of being best (Monte
    Carlo). ``holdout`` of the stratum stays with ``none`` (a control for the off-policy check);
    the rest goes by probability of being best, with every arm given at least ``floor`` of the
    stratum. The propensities are these shares (:func:`assign` gives each arm exactly its
    share), so the off-policy estimates on the wave stay unbiased.
    """
    arms = [NONE, *[a for a in arms if a != NONE]]
    if draws < 10_000:
        raise InputError(f"The 'draws' parameter must be >= 10000. Got {draws}.")
    if not 0 <= floor * len(arms) + holdout < 1:
        raise InputError(
            f"A floor of {floor} per arm for {len(arms)} arms and a holdout of {holdout} leave "
            "nothing to allocate. Lower the floor or the holdout."
        )
    rng = np.random.default_rng(seed)
    post = shrunk_rates(counts[counts["action"].isin(arms)])
    rows = []
    for (g, st), grp in post.groupby(["segment", "stage"], sort=True):
        c = grp.set_index("action").reindex(arms)
        a = c["a"].fillna(1.0).to_numpy(float)
        b = c["b"].fillna(1.0).to_numpy(float)
        sample = rng.beta(a, b, size=(draws, len(arms)))
        best = np.bincount(sample.argmax(axis=1), minlength=len(arms)) / draws
        share = (1.0 - holdout) * best
        share[0] += holdout
        share = _with_floor(share, floor, fixed=holdout)
        rows += [(g, st, arm, float(q)) for arm, q in zip(arms, share, strict=True)]
    return pd.DataFrame(rows, columns=["segment", "stage", "action", "propensity"])


def _with_floor(share: np.ndarray, floor: float, fixed: float) -> np.ndarray:
    """Raise arms below ``floor`` to it, taking the difference from the others in proportion to
    what they have above the floor (the first arm's ``fixed`` holdout is not taken)."""
    out = share.copy()
    low = out < floor
    need = float(np.sum(floor - out[low]))
    out[low] = floor
    spare = out - floor
    spare[0] = max(0.0, out[0] - max(floor, fixed))
    spare[low] = 0.0
    if need > 0 and spare.sum() > 0:
        out -= spare / spare.sum() * need
    return out / out.sum()


def next_wave(
    users: pd.DataFrame, shares: pd.DataFrame, plan_id: str, names: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """The next wave's assignment (:data:`ASSIGNMENT_COLUMNS`) with the Thompson shares as
    propensities; strata without measured shares get the arms equally."""
    names = dict(names or {})
    arms = list(dict.fromkeys(shares["action"]))
    u = users.copy()
    u["segment"] = u["segment"].astype(int)
    known = shares.groupby(["segment", "stage"]).size().index
    missing = [k for k in u.groupby(["segment", "stage"]).size().index if k not in known]
    extra = [(g, st, a, 1.0 / len(arms)) for g, st in missing for a in arms]
    table = shares
    if extra:
        table = pd.concat(
            [shares, pd.DataFrame(extra, columns=["segment", "stage", "action", "propensity"])],
            ignore_index=True,
        )
    out = assign(u, table, salt=plan_id)
    out["plan_id"] = plan_id
    out["segment_name"] = out["segment"].map(
        lambda g: names.get(int(g), segment_display_name(int(g)))
    )
    return out[ASSIGNMENT_COLUMNS]


def ips_value(
    rewards: np.ndarray, target: np.ndarray, propensity: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """IPS value of a stochastic target policy on a one-step log: ``mean(pi(a|s) / p * r)``
    with a normal interval (one row per user, so the terms are independent).
    :func:`retention.evaluate.off_policy_estimates` takes deterministic policies only."""
    term = np.asarray(target, float) / np.asarray(propensity, float) * np.asarray(rewards, float)
    mean = float(term.mean())
    half = float(stats.norm.ppf(0.5 + level / 2.0) * term.std(ddof=1) / math.sqrt(len(term)))
    return mean, mean - half, mean + half


# --- from a dataset to what a plan needs -----------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlanInputs:
    """What :func:`plan_test` needs from a dataset: ``users`` (``user_id, segment, stage,
    recency`` in the data's last period), ``baseline`` (see :func:`baselines`) and ``start``
    (when the period after the data's last one begins: the test's first period)."""

    users: pd.DataFrame
    baseline: pd.DataFrame
    start: pd.Timestamp
    period: str


def plan_inputs(
    con: object,
    events: pd.DataFrame | str,
    assignments: pd.DataFrame,
    *,
    period: str,
    churn_after: int = 4,
) -> PlanInputs:
    """Each user's recency and stage now, the baseline per segment × stage and the test's start,
    from an event log (a DataFrame or a workspace table) and segment assignments."""
    from retention.mdp import summarize_events
    from retention.periods import build_panel

    def fresh() -> object:  # one cursor per query: a result left open must not block the next
        return con.cursor() if hasattr(con, "cursor") else con

    panel = build_panel(fresh(), events, period=period, churn_after=churn_after)  # type: ignore[arg-type]
    last_t = int(panel["t"].max())
    last_active = panel[panel["active"]].groupby("user_id")["t"].max()
    now = panel[panel["t"] == last_t][["user_id", "stage"]].copy()
    now["user_id"] = now["user_id"].astype(str)
    now["stage"] = now["stage"].astype(str)
    last_active.index = last_active.index.astype(str)
    now["recency"] = (last_t - now["user_id"].map(last_active)).astype(int)
    seg = assignments[["user_id", "segment"]].copy()
    seg["user_id"] = seg["user_id"].astype(str)
    users = now.merge(seg.drop_duplicates("user_id", keep="last"), on="user_id", how="inner")
    summary = summarize_events(fresh(), events, assignments, period=period, churn_after=churn_after)  # type: ignore[arg-type]
    ts = (
        fresh().execute(f"SELECT min(ts) FROM {events}").fetchone()[0]  # type: ignore[attr-defined]  # noqa: S608
        if isinstance(events, str)
        else pd.to_datetime(events["ts"]).min()
    )
    start = _period_start(pd.Timestamp(ts), period)
    start = _advance(start, period, last_t + 1)
    return PlanInputs(users=users, baseline=baselines(summary.transitions), start=start,
                      period=period)  # fmt: skip


def _period_start(ts: pd.Timestamp, period: str) -> pd.Timestamp:
    day = ts.normalize()
    if period == "week":
        return day - pd.Timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def _advance(start: pd.Timestamp, period: str, n: int) -> pd.Timestamp:
    if period == "month":
        return start + pd.DateOffset(months=n)
    return start + (pd.Timedelta(weeks=1) if period == "week" else pd.Timedelta(days=1)) * n


# --- plain-language tables for the page and the report ---------------------------------------

#: What each jargon word means, for hover help on the page.
JARGON = {
    "mde": "The smallest change worth finding (minimum detectable effect): 0.10 means the test "
    "is sized to notice a strategy that raises the chance of being active next period by 10% "
    "of what it is now (e.g. from 40% to 44%).",
    "power": "How sure the test is to notice a change of that size if it is there (statistical "
    "power): 0.8 means 8 times out of 10.",
    "alpha": "How often the test may cry wolf — call a change real when there is none "
    "(significance level α): 0.05 means 1 time in 20.",
    "holdout": "The share of each group that gets nothing ('none'), so there is something to "
    "compare with.",
}


def plan_view(cells: pd.DataFrame, periods: str = "periods", one: str = "period") -> pd.DataFrame:
    """The plan's cells in words a marketer reads: one row per segment × stage (``periods`` /
    ``one``: the data's period, "weeks" / "week")."""
    from retention.strategies import stage_words

    def verdict(r: pd.Series) -> str:
        if pd.isna(r["baseline"]):
            return "no: the data show no moves from this stage to size the test on"
        if not np.isfinite(r["n_per_arm"]):
            return "no: the change is too large for this baseline to show"
        if r["reachable"]:
            return f"yes, in {int(r['periods_needed'])} {periods}"
        return f"no: cannot reach power (would take {int(r['periods_needed']):,} {periods})"

    return pd.DataFrame(
        {
            "Segment": cells["segment_name"],
            "Stage": [stage_words(str(x), one) for x in cells["stage"]],
            "Users now": cells["users"].astype(int),
            f"Chance active the next {one} now (%)": (100 * cells["baseline"]).round(1),
            "Users needed per strategy": cells["n_per_arm"].map(
                lambda n: f"{int(n):,}" if np.isfinite(n) else "—"
            ),
            f"{periods.capitalize()} needed": cells["periods_needed"].map(
                lambda n: f"{int(n):,}" if np.isfinite(n) else "—"
            ),
            "Can the test tell?": cells.apply(verdict, axis=1),
        }
    )


def effect_verdict(lo: float, hi: float) -> str:
    """What a lift's 95% interval says."""
    if lo > 1.0:
        return "helps"
    if hi < 1.0:
        return "hurts"
    return "not clear yet"


def effects_view(
    effects: pd.DataFrame, names: Mapping[int, str] | None = None, one: str = "period"
) -> pd.DataFrame:
    """Measured effects in words: change of the chance of being active the next period,
    interval, how many user-periods back it, and the verdict (``one``: "week")."""
    from retention.strategies import stage_words

    names = dict(names or {})
    many = "periods" if one == "period" else f"{one}s"
    return pd.DataFrame(
        {
            "Segment": [
                names.get(int(g), segment_display_name(int(g))) for g in effects["segment"]
            ],
            "Stage": [stage_words(str(x), one) for x in effects["stage"]],
            "Strategy": effects["action"],
            f"Change in chance active the next {one} (%)": (100 * (effects["lift"] - 1)).round(1),
            "95% interval (%)": [
                f"{100 * (lo - 1):+.0f} to {100 * (hi - 1):+.0f}"
                for lo, hi in zip(effects["ci_lo"], effects["ci_hi"], strict=True)
            ],
            f"User-{many} behind it": effects["n"].astype(int),
            "Verdict": [
                effect_verdict(lo, hi)
                for lo, hi in zip(effects["ci_lo"], effects["ci_hi"], strict=True)
            ],
        }
    )


# --- `run` with a campaign log: the experiment block of summary.json -------------------------


def srm_from_log(per_action: pd.DataFrame, threshold: float = SRM_P) -> Srm | None:
    """SRM of a campaign log that is not a planned test: ``per_action`` holds ``action, rows,
    propensity`` (the log's rows per action and their mean logged propensity). Each action's
    expected share of the rows is its propensity over the sum of the logged actions'
    propensities — right for logs whose propensities are the same for every user (uniform
    randomisation, as the planted demo's); None when a propensity is missing or fewer than two
    actions were logged."""
    p = per_action.dropna(subset=["propensity"])
    if len(p) < 2 or len(p) < len(per_action):
        return None
    table = p.assign(segment=0, stage="all", users=p["rows"].astype(int))
    table = table.assign(propensity=table["propensity"] / table["propensity"].sum())
    return srm_check(table[["segment", "stage", "action", "users", "propensity"]], threshold)


def evidence_counts(evidence: pd.DataFrame) -> pd.DataFrame:
    """:func:`cell_counts`' table back from :func:`retention.campaigns.evidence_table` (which
    holds each action's and ``none``'s decisions and share active next period)."""
    acts = evidence.assign(active=(evidence["p_active"] * evidence["n"]).round().astype(int))
    none = evidence.drop_duplicates(["segment", "stage"]).assign(action=NONE)
    none = none.assign(n=none["n_none"], active=(none["p_none"] * none["n_none"]).round())
    cols = ["segment", "stage", "action", "n", "active"]
    out = pd.concat([acts[cols], none[cols]], ignore_index=True)
    return out.astype({"n": int, "active": int})


def log_experiment(srm: Srm | None, evidence: pd.DataFrame | None) -> dict | None:
    """``summary.json`` → ``experiment`` for ``run`` with a campaign log: the SRM check and the
    lifts per segment × stage × action measured in the log (shrunk as in
    :func:`measure_effects`)."""
    if evidence is None or evidence.empty:
        return None if srm is None else {"srm": srm.to_dict(), "lifts": []}
    lifts = lifts_summary(measure_effects(evidence_counts(evidence)))
    return {"srm": None if srm is None else srm.to_dict(), "lifts": lifts}

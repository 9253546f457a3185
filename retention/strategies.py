"""Strategies: what to do with each segment at each engagement stage, in a marketer's terms.

Built from a segmentation and a trained policy (both as stored in the workspace, so the
Strategies page, the report and the command line show the same table). Exports escape
spreadsheet formulas: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading apostrophe, so a spreadsheet shows it as text instead of running it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retention.evaluate import OpeVerdict, ope_verdict
from retention.words import (
    NOISE_SEGMENT,
    money,
    period_word,
    period_word_singular,
    segment_name,
    stage_rank,
)

STAGE_WORDS = {
    "active": "active",
    "lapsing": "lapsing (1 quiet period)",
    "at_risk": "at risk",
    "churned": "churned",
    "unknown": "recency unknown",
    "all": "everyone",
}
#: The verdict of a segment × stage: act, or leave the users alone (and why).
VERDICT_ACT = "act"
VERDICT_HURTS = "leave alone: every action hurts"
VERDICT_NOT_WORTH = "leave alone: not worth the cost"
VERDICTS = (VERDICT_ACT, VERDICT_HURTS, VERDICT_NOT_WORTH)
#: What a verdict adds to a stage of a plan, in words (acting needs no explanation).
VERDICT_NOTES = {
    VERDICT_ACT: "",
    VERDICT_NOT_WORTH: "actions help a little but not enough to pay for themselves",
    VERDICT_HURTS: "every action is estimated to do worse than nothing",
}
#: How the default actions read in a plan (other actions: their name).
ACTION_WORDS = {
    "none": "leave them alone",
    "recommendation": "send personalised recommendations",
    "engagement": "engage them (content, community, reminders)",
    "discount": "offer a discount",
}
#: What a support level adds to a stage of a plan.
SUPPORT_NOTES = {"thin": " ⚠️ little data", "moderate": "", "solid": ""}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# How much logged data backs a state's estimate: below THIN it is a guess, above SOLID it is firm.
THIN, SOLID = 30, 300
LIFT_PERIOD = 4
#: Columns of :attr:`Strategies.segments`: the share still active after ``LIFT_PERIOD`` periods
#: under the learned plan and under doing nothing.
ACTIVE_LEARNED = f"active_after_{LIFT_PERIOD}_learned"
ACTIVE_NOTHING = f"active_after_{LIFT_PERIOD}_none"


@dataclass(frozen=True)
class Strategies:
    """``table``: one row per segment × stage; ``segments``: one row per segment;
    ``unclustered``: users HDBSCAN left in no segment (they have no strategy of their own and
    are left alone: ``nothing``, the data's do-nothing action)."""

    table: pd.DataFrame
    segments: pd.DataFrame
    unclustered: int = 0
    nothing: str | None = None


def support_level(n: int) -> str:
    """How much data supports an estimate, in words."""
    if n < THIN:
        return "thin"
    if n < SOLID:
        return "moderate"
    return "solid"


def stage_words(stage: str, period: str | None = None) -> str:
    """A stage as a user reads it: "active", "lapsing (1 quiet month)", "at risk", ..."""
    if stage == "lapsing":
        return f"lapsing (1 quiet {period_word_singular(period)})"
    return STAGE_WORDS.get(stage, stage)


def action_words(action: str, stage: str | None = None) -> str:
    """An action as a plan says it; acting on churned users is a win-back."""
    words = ACTION_WORDS.get(action, action)
    if stage == "churned" and action != "none" and action in ACTION_WORDS:
        return f"win them back: {words}"
    return words


def plan_sentence(
    stage: str, users: int, action: str, verdict: str, support: str, period: str | None = None
) -> str:
    """One stage of a segment's plan in words (Markdown), e.g. "**Loyal** (1,200 users now):
    offer a discount ⚠️ little data"; a leave-alone verdict says why."""
    note = VERDICT_NOTES.get(verdict, "")
    return (
        f"**{stage_words(stage, period).capitalize()}** ({users:,} users now): "
        f"{action_words(action, stage)}{f' — {note}' if note else ''}"
        f"{SUPPORT_NOTES.get(support, '')}"
    )


def in_period_words(text: str, period: str | None) -> str:
    """A library sentence written for any period ("2 periods", "next period") in the data's
    period ("2 months", "next month")."""
    text = text.replace("at_risk", "at risk")
    if period_word(period) == "periods":
        return text
    return text.replace("periods", period_word(period)).replace(
        "period", period_word_singular(period)
    )


def lift_is_assumed(settings: Mapping[str, object]) -> bool:
    """Whether a policy's effects rest on the assumed lift table (an event log without a
    campaign log, and no test behind it) rather than on measured outcomes (a campaign log, a
    campaign snapshot, or a test: ``settings["experiment"]``)."""
    if settings.get("experiment"):
        return False
    return settings.get("shape", "events") == "events" and not settings.get("campaign_log")


# --- effects measured in a test (issue 13) ---------------------------------------------------


def _experiment(settings: Mapping[str, object]) -> Mapping[str, Any] | None:
    exp = settings.get("experiment")
    return exp if isinstance(exp, Mapping) and exp.get("plan_id") else None


def effect_source(settings: Mapping[str, object]) -> str:
    """What a policy's expected effects rest on, in the words put on every number:
    "assumed", "measured", or "measured in test X" (a policy retrained on a test; "…, partly
    assumed" when the test left some segment × stage × action cells to the assumed table)."""
    exp = _experiment(settings)
    if exp is None:
        return effect_label(lift_is_assumed(settings))
    label = f"measured in test {exp['plan_id']}"
    lifts = exp.get("lifts") or []
    if any(item.get("source") == "assumed" for item in lifts):
        label += ", partly assumed"
    return label


def effect_label(assumed: bool, source: str | None = None) -> str:
    """The word every expected effect carries on the number itself (``source`` when given:
    :func:`effect_source`)."""
    if source:
        return source
    return "assumed" if assumed else "measured"


def effects_behind(
    settings: Mapping[str, object],
    names: Mapping[int, str] | None = None,
    period: str | None = None,
) -> pd.DataFrame | None:
    """The effect of every strategy per segment and stage behind a policy retrained on a test:
    the change of the chance of being active next period, its 95% interval where the test
    measured it, and where the number comes from ("measured in test X" / "assumed"). None for
    a policy without a test (page, report)."""
    exp = _experiment(settings)
    if exp is None:
        return None
    lifts = pd.DataFrame(list(exp.get("lifts") or []))
    if lifts.empty:
        return None
    one = period_word_singular(period)

    def interval(ci: object) -> str:
        if not isinstance(ci, list | tuple) or len(ci) != 2:
            return "—"
        return f"{100 * (float(ci[0]) - 1):+.0f} to {100 * (float(ci[1]) - 1):+.0f}"

    return pd.DataFrame(
        {
            "segment": [segment_name(dict(names or {}), int(g)) for g in lifts["segment"]],
            "stage": [stage_words(str(x), period) for x in lifts["stage"]],
            "strategy": lifts["action"].astype(str),
            "source": lifts["source"].astype(str),
            f"change in chance active next {one} (%)": (100 * (lifts["lift"] - 1)).round(1),
            "95% interval (%)": [interval(ci) for ci in lifts["ci"]],
            f"user-{period_word(period)} in the test": lifts["n"].astype(int),
        }
    )


def with_effect_sources(table: pd.DataFrame, settings: Mapping[str, object]) -> pd.DataFrame:
    """``strategies.csv``'s table with the chosen action's effect per row: ``effect_lift``,
    ``effect_ci_lo``, ``effect_ci_hi`` (empty where assumed or doing nothing) and
    ``effect_source`` ("measured in test X" / "assumed" / "measured" / "none"). The table
    unchanged for a policy without a test."""
    exp = _experiment(settings)
    if exp is None:
        return table
    got = {
        (int(x["segment"]), str(x["stage"]), str(x["action"])): x for x in exp.get("lifts") or []
    }
    rows = []
    for g, st, a in zip(table["segment"], table["stage"], table["action"], strict=True):
        x = got.get((int(g), str(st), str(a)))
        if str(a) == "none" or x is None:
            rows.append((1.0 if str(a) == "none" else np.nan, np.nan, np.nan, "none"
                         if str(a) == "none" else "assumed"))  # fmt: skip
            continue
        ci = x.get("ci") or [np.nan, np.nan]
        rows.append((float(x["lift"]), float(ci[0]), float(ci[1]), str(x["source"])))
    extra = pd.DataFrame(
        rows, columns=["effect_lift", "effect_ci_lo", "effect_ci_hi", "effect_source"],
        index=table.index,
    )  # fmt: skip
    return pd.concat([table, extra], axis=1)


def reward_units_sentence(settings: Mapping[str, object], period: str | None = None) -> str:
    """What one point of the policy's value is made of, in the user's settings."""
    one = period_word_singular(period)
    retain = float(settings.get("retain_reward", 1.0) or 0.0)  # type: ignore[arg-type]
    revenue = float(settings.get("revenue_weight", 0.0) or 0.0)  # type: ignore[arg-type]
    penalty = float(settings.get("churn_penalty", 5.0) or 0.0)  # type: ignore[arg-type]
    earn = f"{retain:g} point{'' if retain == 1 else 's'}"
    if revenue:
        earn += f" plus {revenue:g} × their revenue that {one}"
    return (
        f"Points are your reward settings: a user active in a {one} earns {earn}; a user who "
        f"churns costs {penalty:g} point{'' if penalty == 1 else 's'}, given back if they come "
        "back; each action costs the points set for it per user and "
        f"{one}."
    )


@dataclass(frozen=True)
class PlanLine:
    """One stage of a segment's plan: who, what to do and why."""

    stage: str
    stage_words: str
    users: int
    action: str
    action_words: str
    verdict: str
    why: str
    thin: bool


@dataclass(frozen=True)
class SegmentCard:
    """A segment's plan in plain words, as the Strategies page and the report show it."""

    segment: int
    name: str
    users: int
    share_of_users: float
    stage_mix: str
    lines: tuple[PlanLine, ...]
    every_action_hurts: bool
    effect: str | None
    cost: str
    support: str


def _why(verdict: str, action: str, support: str) -> str:
    if verdict != VERDICT_ACT:
        return VERDICT_NOTES.get(verdict, "")
    if action == "none":
        return "doing nothing is estimated to be best"
    why = "estimated to be worth more than it costs"
    return why + (" (little data behind this estimate)" if support == "thin" else "")


def effect_sentence(
    segment_row: Mapping[str, object], period: str | None, assumed: bool, source: str | None = None
) -> str | None:
    """The expected effect of a segment's plan, with "assumed"/"measured" on the number:
    "About 47% of a newly active group is still active after 4 months with this plan, against
    44% if you do nothing: +2.6 percentage points (assumed)." None without projections."""
    lift = segment_row.get("retention_lift_points")
    if lift is None or not np.isfinite(float(lift)):  # type: ignore[arg-type]
        return None
    learned = float(segment_row[ACTIVE_LEARNED])  # type: ignore[arg-type]
    nothing = float(segment_row[ACTIVE_NOTHING])  # type: ignore[arg-type]
    return (
        f"About {learned:.0%} of a newly active group is still active after {LIFT_PERIOD} "
        f"{period_word(period)} with this plan, against {nothing:.0%} if you do nothing: "
        f"{float(lift):+.1f} percentage points ({effect_label(assumed, source)})."  # type: ignore[arg-type]
    )


def cost_words(points: float, one: str, currency: str | None, revenue_weight: float) -> str:
    """An action's cost as the policy counts it: points per user per period (the unit of the
    rewards), and its worth in money when revenue is weighted (1 point = 1/weight of revenue)."""
    text = f"{points:.3g} points per user per {one}"
    if revenue_weight > 0:
        text += f" (≈ {money(points / revenue_weight, currency)} of revenue)"
    return text


def segment_cards(
    strategies: Strategies,
    *,
    period: str | None = None,
    currency: str | None = None,
    assumed: bool = False,
    revenue_weight: float = 0.0,
    source: str | None = None,
) -> list[SegmentCard]:
    """One :class:`SegmentCard` per segment (the page and the report draw them). Costs are in
    points, like the rewards; with revenue weighted they are also said in ``currency``."""
    table, segs = strategies.table, strategies.segments
    total = int(segs["users"].sum()) if not segs.empty else 0
    one, many = period_word_singular(period), period_word(period)
    cards = []
    for seg in segs.to_dict("records"):
        part = table[table["segment"] == seg["segment"]]
        users = int(seg["users"])
        lines = tuple(
            PlanLine(
                stage=str(r.stage),
                stage_words=stage_words(str(r.stage), period),
                users=int(r.users),
                action=str(r.action),
                action_words=action_words(str(r.action), str(r.stage)),
                verdict=str(r.verdict),
                why=_why(str(r.verdict), str(r.action), str(r.support)),
                thin=r.support == "thin",
            )
            for r in part.itertuples(index=False)
        )
        mix = ", ".join(
            f"{stage_words(str(r.stage), period)} {r.users / users:.0%}"
            for r in part.itertuples(index=False)
            if users and r.users
        )
        cards.append(
            SegmentCard(
                segment=int(seg["segment"]),
                name=str(seg["label"]),
                users=users,
                share_of_users=users / total if total else 0.0,
                stage_mix=mix,
                lines=lines,
                every_action_hurts=bool(seg["every_action_hurts"]),
                effect=effect_sentence(seg, period, assumed, source),
                cost=cost_words(
                    float(seg["expected_cost_per_period"]), one, currency, revenue_weight
                ),
                support=f"{int(seg['data_support']):,} observed user-{many}",
            )
        )
    return cards


def strategy_table_view(table: pd.DataFrame, *, period: str | None = None) -> pd.DataFrame:
    """The per segment × stage table with human column names and units (page and report)."""
    one, many = period_word_singular(period), period_word(period)
    return pd.DataFrame(
        {
            "segment": table["label"].astype(str),
            "stage": [stage_words(s, period) for s in table["stage"].astype(str)],
            "users now": table["users"].astype(int),
            "share of the segment (%)": (100 * table["share_of_segment"]).round(1),
            "what to do": [
                action_words(a, s) for a, s in zip(table["action"], table["stage"], strict=True)
            ],
            "verdict": table["verdict"].astype(str),
            "value over doing nothing (points per user)": table["value_vs_nothing"].round(3),
            f"cost per user per {one} (points)": table["cost_per_period"].round(3),
            f"observed user-{many} behind it": table["data_support"].astype(int),
            "data behind it": table["support"].astype(str),
        }
    )


def segment_table_view(
    segments: pd.DataFrame,
    *,
    period: str | None = None,
    assumed: bool = False,
    source: str | None = None,
) -> pd.DataFrame:
    """The per-segment table with human column names and units (page and report)."""
    one, many = period_word_singular(period), period_word(period)
    out = pd.DataFrame(
        {
            "segment": segments["label"].astype(str),
            "users": segments["users"].astype(int),
            "stage mix": segments["stage_mix"]
            .astype(str)
            .str.replace("(1 quiet period)", f"(1 quiet {one})", regex=False),
            f"expected cost per user per {one} (points)": segments[
                "expected_cost_per_period"
            ].round(3),
            f"observed user-{many}": segments["data_support"].astype(int),
        }
    )
    if ACTIVE_LEARNED in segments:
        after = f"after {LIFT_PERIOD} {many}"
        out[f"active {after} with the plan (%)"] = (100 * segments[ACTIVE_LEARNED]).round(1)
        out[f"active {after} doing nothing (%)"] = (100 * segments[ACTIVE_NOTHING]).round(1)
        out[f"change (percentage points, {effect_label(assumed, source)})"] = segments[
            "retention_lift_points"
        ].round(1)
    return out


def ope_view(ope: pd.DataFrame) -> pd.DataFrame:
    """Off-policy estimates with human column names (page and report)."""
    estimators = {"ips": "IPS", "snips": "SNIPS", "dr": "doubly robust"}
    return pd.DataFrame(
        {
            "plan": ope["policy"].astype(str),
            "estimator": ope["estimator"].map(lambda e: estimators.get(str(e), str(e))),
            "points per decision": ope["value"].round(4),
            "95% interval": [
                f"{lo:.4f} to {hi:.4f}" for lo, hi in zip(ope["ci_lo"], ope["ci_hi"], strict=True)
            ],
            "held-out decisions": ope["n"].astype(int),
        }
    )


def baseline_action(actions: Sequence[str]) -> str | None:
    """The "do nothing" action: ``none``, or a control arm such as ``No E-Mail`` or ``control``."""
    if "none" in actions:
        return "none"
    for action in actions:
        low = str(action).strip().lower()
        if low in ("control", "holdout", "hold-out", "no action", "nothing") or low.startswith(
            ("no ", "no-", "no_")
        ):
            return action
    return None


def build_strategies(
    recommendations: pd.DataFrame,
    *,
    actions: Sequence[str],
    names: Mapping[int, str],
    stage_counts: pd.DataFrame,
    action_costs: Mapping[str, float] | None = None,
    projections: pd.DataFrame | None = None,
) -> Strategies:
    """The strategy tables.

    ``recommendations``: ``segment, stage, action, q_<action>..., n`` (from the policy);
    ``stage_counts``: ``segment, stage, users`` (users in each stage now); ``projections``:
    ``segment, policy, period, active_share`` (projected retention under each policy).

    Per segment × stage: the recommended action, its value over doing nothing now
    (``Q(s, action) − Q(s, none)``), its cost per user and period, how much data supports the
    state, and a verdict: ``act``, ``leave alone: every action hurts`` (each action's value is
    below doing nothing even before its cost) or ``leave alone: not worth the cost``.
    """
    costs = {a: float((action_costs or {}).get(a, 0.0)) for a in actions}
    rec = recommendations[recommendations["segment"].astype(int) != NOISE_SEGMENT].copy()
    rec["segment"] = rec["segment"].astype(int)
    rec["stage"] = rec["stage"].astype(str)
    nothing = baseline_action(actions)
    has_none = nothing is not None
    rows = []
    for row in rec.to_dict("records"):
        q = {a: float(row[f"q_{a}"]) for a in actions}
        best = str(row["action"])
        q_none = q[nothing] if has_none else np.nan
        others = [a for a in actions if a != nothing]
        # Value of each action over doing nothing, with its own immediate cost added back:
        # below zero means the action is estimated to lower the value (retention, revenue and churn
        # penalties as the user weighs them), not only to cost money.
        gross = {a: q[a] + costs[a] - (q_none + costs.get(str(nothing), 0.0)) for a in others}
        if best == nothing and has_none and others:
            verdict = VERDICT_HURTS if all(g < 0 for g in gross.values()) else VERDICT_NOT_WORTH
        else:
            verdict = VERDICT_ACT
        n = int(row.get("n", 0))
        rows.append(
            {
                "segment": int(row["segment"]),
                "label": segment_name(names, int(row["segment"])),
                "stage": row["stage"],
                "action": best,
                "value_vs_nothing": q[best] - q_none if has_none else np.nan,
                "cost_per_period": costs.get(best, 0.0),
                "data_support": n,
                "support": support_level(n),
                "verdict": verdict,
                **{f"q_{a}": q[a] for a in actions},
            }
        )
    table = pd.DataFrame(rows)
    counts = stage_counts.assign(segment=stage_counts["segment"].astype(int))
    unclustered = int(counts.loc[counts["segment"] == NOISE_SEGMENT, "users"].sum())
    table = table.merge(counts, on=["segment", "stage"], how="left")
    table["users"] = table["users"].fillna(0).astype(int)
    totals = table.groupby("segment")["users"].transform("sum")
    table["share_of_segment"] = np.where(totals > 0, table["users"] / totals.replace(0, 1), 0.0)
    table = table.sort_values(
        ["segment", "stage"], key=lambda c: c.map(stage_rank) if c.name == "stage" else c
    ).reset_index(drop=True)
    front = ["segment", "label", "stage", "users", "share_of_segment", "action", "verdict"]
    table = table[front + [c for c in table.columns if c not in front]]
    return Strategies(
        table=table,
        segments=_segment_rows(table, projections),
        unclustered=unclustered,
        nothing=nothing,
    )


def _segment_rows(table: pd.DataFrame, projections: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    for segment, part in table.groupby("segment", sort=True):
        users = int(part["users"].sum())
        mix = {r.stage: r.users for r in part.itertuples(index=False)}
        plan = {r.stage: r.action for r in part.itertuples(index=False)}
        row = {
            "segment": int(segment),
            "label": part["label"].iloc[0],
            "users": users,
            "stage_mix": ", ".join(
                f"{STAGE_WORDS.get(s, s)} {n / users:.0%}" for s, n in mix.items() if users and n
            ),
            "plan": "; ".join(f"{STAGE_WORDS.get(s, s)}: {a}" for s, a in plan.items()),
            "leave_alone_everywhere": bool(
                part["verdict"].isin([VERDICT_HURTS, VERDICT_NOT_WORTH]).all()
            ),
            "every_action_hurts": bool((part["verdict"] == VERDICT_HURTS).all()),
            "expected_cost_per_period": float(
                (part["cost_per_period"] * part["users"]).sum() / users if users else 0.0
            ),
            "data_support": int(part["data_support"].sum()),
        }
        if projections is not None and not projections.empty:
            proj = projections[projections["segment"].astype(int) == int(segment)]
            if proj.empty:
                rows.append(row)
                continue
            at = proj[proj["period"] == min(LIFT_PERIOD, int(proj["period"].max()))]
            share = dict(zip(at["policy"], at["active_share"], strict=False))
            learned = next((k for k in share if "learned" in str(k)), None)
            nothing = next((k for k in share if str(k) in ("none", "always none")), None)
            if learned is not None and nothing is not None:
                row[ACTIVE_LEARNED] = float(share[learned])
                row[ACTIVE_NOTHING] = float(share[nothing])
                row["retention_lift_points"] = 100.0 * (share[learned] - share[nothing])
        rows.append(row)
    return pd.DataFrame(rows)


def current_stages(panel: pd.DataFrame) -> pd.DataFrame:
    """Each user's stage in the data's last period: ``user_id, stage``.

    For events in DuckDB, :func:`retention.periods.user_stages` gives the same without building
    the panel (the pipeline and the Strategies page use it)."""
    last = panel.loc[panel.groupby("user_id", sort=False)["t"].idxmax(), ["user_id", "stage"]]
    return last.assign(stage=last["stage"].astype(str)).reset_index(drop=True)


def stage_counts(user_stages: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """Users per segment and current stage: ``segment, stage, users``."""
    merged = assignments.merge(user_stages, on="user_id", how="inner")
    return (
        merged.groupby(["segment", "stage"], as_index=False)
        .size()
        .rename(columns={"size": "users"})
    )


def user_actions(
    user_stages: pd.DataFrame,
    assignments: pd.DataFrame,
    recommendations: pd.DataFrame,
    names: Mapping[int, str],
    actions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every user's segment, stage and recommended action:
    ``user_id, segment, segment_name, stage, recommended_action``.

    A user the policy has no state for (unclustered, or in a stage it never saw) is left alone:
    their action is the data's do-nothing action (:func:`baseline_action` of ``actions``, by
    default the recommendations' ``q_<action>`` columns; empty when the data have none)."""
    if actions is None:
        actions = [c.removeprefix("q_") for c in recommendations.columns if c.startswith("q_")]
    nothing = baseline_action(actions) if actions else "none"
    rec = recommendations[["segment", "stage", "action"]].astype({"segment": int, "stage": str})
    rec = rec[rec["segment"] != NOISE_SEGMENT]
    users = (
        assignments[["user_id", "segment"]]
        .astype({"segment": int})
        .merge(user_stages, on="user_id", how="left")
    )
    users["stage"] = users["stage"].fillna("all").astype(str)
    out = users.merge(rec, on=["segment", "stage"], how="left")
    # One name per segment, then looked up (not a Python call per user: 1M users at 50M events)
    shown = {s: segment_name(names, int(s)) for s in out["segment"].unique()}
    out["segment_name"] = out["segment"].map(shown)
    out = out.rename(columns={"action": "recommended_action"})
    out["recommended_action"] = out["recommended_action"].fillna(nothing or "")
    out = out.sort_values("user_id", kind="stable").reset_index(drop=True)
    return out[["user_id", "segment", "segment_name", "stage", "recommended_action"]]


def held_out_verdict(ope: pd.DataFrame | None, actions: Sequence[str]) -> OpeVerdict | None:
    """The learned plan against doing nothing (the data's do-nothing action) on held-out users
    (:func:`retention.evaluate.ope_verdict`); None without estimates or a do-nothing action."""
    nothing = baseline_action(actions)
    if ope is None or ope.empty or nothing is None:
        return None
    return ope_verdict(ope, nothing=f"always {nothing}")


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas (leading apostrophe)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = _escaped(out[column])
    out.columns = [
        "'" + c if isinstance(c, str) and c.startswith(_FORMULA_START) else c for c in out.columns
    ]
    return out


def _escaped(column: pd.Series) -> pd.Series:
    """One column of :func:`escape_formulas`. Issue 19: a column of text only (a million users'
    names at 50M events) is checked in one vectorised pass instead of a Python call per cell;
    mixed columns cell by cell as before."""
    if pd.api.types.infer_dtype(column, skipna=True) == "string":
        found = column.str.startswith(_FORMULA_START).to_numpy(dtype=bool, na_value=False)
        out = column.copy()
        if found.any():
            out[found] = "'" + column[found]
        return out
    return column.map(
        lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
    )


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """Formula-escaped CSV (UTF-8), with floats at a fixed precision so reruns are identical:
    10 significant digits keep the cents of any amount under 100 million and drop float noise
    (0.1 + 0.2 is written 0.3)."""
    fast = _arrow_csv_bytes(frame)  # issue 19: the same bytes, built column-wise in Arrow
    if fast is not None:
        return fast
    out = escape_formulas(frame)
    for i, dtype in enumerate(out.dtypes):  # issue 19: float64 columns formatted in one pass
        if dtype == np.float64:
            out.isetitem(i, _float_text(out.iloc[:, i].to_numpy()))
    return out.to_csv(index=False, float_format="%.10g").encode("utf-8")


def _float_text(values: np.ndarray) -> np.ndarray:
    """Floats as ``%.10g`` text (objects), NaN as ``None`` (written as an empty cell)."""
    # issue 19: Python's own % on a list, 2.5x NumPy's np.char.mod (the same text)
    text = np.array(list(map("%.10g".__mod__, values.tolist())), dtype=object)
    text[np.isnan(values)] = None
    return text


def _arrow_csv_bytes(frame: pd.DataFrame) -> bytes | None:
    """:func:`to_csv_bytes`'s bytes built a column at a time with Arrow's string kernels
    (issue 19: a million users' ``user_segments.csv`` took ~20 s through pandas' writer and the
    per-cell escaping), or ``None`` for a frame it does not cover (then pandas writes it).

    Covered: string columns (``None``/NaN as empty cells, formula-escaped), ``datetime.date``,
    integer, bool and float64 columns, string column names, two columns or more, at least one row. The cells are
    written as Python's ``csv`` module writes them for pandas (``QUOTE_MINIMAL``, ``\n`` after
    each row): quoted when they hold a comma, a double quote or ``\n`` (not ``\r``: the
    ``csv`` module quotes the line ending's characters only), inner quotes doubled. ``tests/unit/test_strategies.py`` checks it byte for byte against pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(frame.columns)
    if len(names) < 2 or len(frame) == 0 or not all(isinstance(c, str) for c in names):
        return None
    if os.linesep != "\n":  # pandas ends rows with os.linesep, and quotes cells holding it
        return None
    cells = []
    for i in range(len(names)):
        column = frame.iloc[:, i]
        dtype = column.dtype
        if dtype == np.float64:  # digits, '.', 'e', '-', 'inf': never quoted
            cell = pa.array(_float_text(column.to_numpy()), type=pa.large_string())
        elif dtype == np.bool_:
            cell = pa.array(np.where(column.to_numpy(), "True", "False"), type=pa.large_string())
        elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
            cell = pc.cast(pa.array(column.to_numpy()), pa.large_string())
        elif _text_column(column):
            cell = _text_cells(column)
        elif _date_column(column):  # datetime.date cells (last_seen): str() writes ISO dates
            values = column.to_numpy(dtype=object, na_value=None)
            cell = pc.cast(pa.array(values, type=pa.date32(), from_pandas=True), pa.large_string())
        else:
            return None
        cells.append(pc.fill_null(cell, ""))
    header = ",".join(_csv_field(_escaped_name(c)) for c in names) + "\n"
    # Each row's "\n" goes on its last cell, so the rows are joined in one pass.
    cells[-1] = pc.binary_join_element_wise(cells[-1], _text("\n"), _text(""))
    rows = pc.binary_join_element_wise(*cells, _text(","))
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[
        rows.offset : rows.offset + len(rows) + 1
    ]
    body = memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]  # no copy until the join
    return b"".join((header.encode("utf-8"), body))


def _text_cells(column: pd.Series) -> Any:
    """A text column's cells, formula-escaped and quoted as the ``csv`` module quotes them
    (missing cells null). Issue 19: a column with few distinct values (segment names, stages,
    actions: a million rows at 50M events) is escaped and quoted once per distinct value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if len(uniques) * 4 <= len(column):
        done = _csv_quoted(_formula_escaped(pa.array(np.asarray(uniques, dtype=object),
                                                     type=pa.large_string())))  # fmt: skip
        return pc.take(done, pa.array(codes, mask=codes < 0))
    values = column.to_numpy(dtype=object, na_value=None)
    return _csv_quoted(_formula_escaped(pa.array(values, type=pa.large_string(), from_pandas=True)))


def _text_column(column: pd.Series) -> bool:
    """Text only (missing cells allowed), in an object or pandas string column."""
    plain = pd.api.types.is_object_dtype(column.dtype)
    if not (plain or isinstance(column.dtype, pd.StringDtype)):
        return False
    return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")


def _date_column(column: pd.Series) -> bool:
    """``datetime.date`` cells only (missing cells allowed), in an object column."""
    plain = pd.api.types.is_object_dtype(column.dtype)
    return plain and pd.api.types.infer_dtype(column, skipna=True) == "date"


def _formula_escaped(cells: Any) -> Any:
    """Arrow strings that start like a formula get a leading apostrophe (:func:`_escaped`)."""
    import pyarrow.compute as pc

    found = None
    for start in _FORMULA_START:
        hit = pc.starts_with(cells, pattern=start)
        found = hit if found is None else pc.or_(found, hit)
    found = pc.fill_null(found, False)
    if not pc.any(found).as_py():  # the usual case: nothing to escape, no copy
        return cells
    escaped = pc.binary_join_element_wise(_text("'"), cells, _text(""))
    return pc.if_else(found, escaped, cells)


def _csv_quoted(cells: Any) -> Any:
    """Arrow strings as the ``csv`` module writes them (``QUOTE_MINIMAL``)."""
    import pyarrow.compute as pc

    needs = pc.match_substring_regex(cells, '[,"\n]')
    if not pc.any(needs).as_py():  # the usual case: nothing to quote, no copy
        return cells
    inner = pc.replace_substring(cells, '"', '""')
    quoted = pc.binary_join_element_wise(_text('"'), inner, _text('"'), _text(""))
    return pc.if_else(needs, quoted, cells)


def _text(value: str) -> Any:
    """A large-string Arrow scalar (the kernels want every argument of one string type)."""
    import pyarrow as pa

    return pa.scalar(value, pa.large_string())


def _escaped_name(name: str) -> str:
    return "'" + name if name.startswith(_FORMULA_START) else name


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()

"""What a campaign log says, checked before anyone trusts it (issue 12).

A campaign row is credited to one move between periods by the dataset's timing rule
(:func:`retention.periods.credit_period`, applied in one place: :func:`with_timing`), and every
consumer — the MDP, the off-policy evaluation, the evidence table and these checks — reads the
log through it. This module answers three questions about a log:

* **When do sends fall?** A histogram of where in the period the sends are (:func:`send_times`).
* **Is the log randomised?** A chi-square test of the logged action against the user's stage
  (:func:`randomisation`): when actions depend on the stage (targeting), differences between
  actions compare different users and are not effects.
* **Does the timing rule fit?** The effect of each action on P(active next period) per segment
  under each timing rule, side by side (:func:`effects_by_timing`): under a randomised log a
  mis-credited send has no effect at all, so a rule that shows none while another shows clear
  ones is the wrong rule for this log.

Plus the per segment × stage × action evidence (:func:`evidence_table`): the measured change in
P(active next period) against doing nothing, with a 95% interval and the decisions behind it.

Statistics: scipy.stats (chi-square test, Cramér's V, Wilson intervals, normal quantiles); the
two small formulas scipy lacks — Newcombe's interval for a difference of two proportions from
the two Wilson intervals, and the stratified (Mantel–Haenszel-weighted) pooled difference — are
written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from retention.mdp import NONE, logged_transitions
from retention.periods import TIMING_HELP, TIMINGS, credit_period
from retention.words import segment_name, stage_rank

#: Effects whose two-sided p-value is below this are "clear" (|z| >= 3.29).
CLEAR_P = 0.001
#: Actions depend on the stage when the chi-square p-value is below this and Cramér's V reaches
#: :data:`TARGETED_V` (a tiny dependence in millions of rows is not targeting).
TARGETED_P = 0.001
TARGETED_V = 0.1
#: Sends "cluster at period ends" when more than this share falls in the last seventh of the period.
END_SHARE = 0.5
END_ZONE = 6 / 7
#: Another rule "fits clearly better" when its clear effects carry this many times the evidence
#: (sum of z²) of the rule in use.
BETTER_RATIO = 2.0
Z95 = float(stats.norm.ppf(0.975))

EVIDENCE_COLUMNS = [
    "segment", "stage", "action", "n", "p_active", "n_none", "p_none", "change", "ci_lo", "ci_hi",
]  # fmt: skip
EFFECT_COLUMNS = ["timing", "segment", "action", "change", "ci_lo", "ci_hi", "z", "n", "clear"]


def with_timing(placed: pd.DataFrame, timing: str) -> pd.DataFrame:
    """The placed campaign log (``t_in`` = the period containing the send, ``phase`` in it; see
    :func:`retention.policy_runs.campaigns_by_period`) with ``t`` = the transition each row is
    credited to under ``timing``."""
    out = placed.copy()
    out["t"] = credit_period(out["t_in"].to_numpy(), out["phase"].to_numpy(), timing)
    return out


# --------------------------------------------------------------------------- when sends fall


def _bins(period: str) -> list[str]:
    if period == "week":
        return ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    if period == "day":
        return [f"{h:02d}–{h + 4:02d}h" for h in range(0, 24, 4)]
    return ["1st week", "2nd week", "3rd week", "4th week", "last days"]


def send_times(placed: pd.DataFrame, period: str) -> pd.DataFrame:
    """Where in the period the sends fall: ``bin, label, sends, share`` (weekdays for weeks,
    4-hour blocks for days, weeks of the month for months)."""
    labels = _bins(period)
    phase = placed["phase"].dropna().to_numpy(dtype=float)
    if period == "month":  # quarters of 7 days, then the rest (an approximation by phase)
        pos = np.minimum((phase * 30.4 // 7).astype(int), len(labels) - 1)
    else:
        pos = np.minimum((phase * len(labels)).astype(int), len(labels) - 1)
    sends = np.bincount(pos, minlength=len(labels))
    return pd.DataFrame(
        {
            "bin": np.arange(len(labels)),
            "label": labels,
            "sends": sends,
            "share": sends / max(1, sends.sum()),
        }
    )


# --------------------------------------------------------------------------- randomised?


def randomisation(transitions: pd.DataFrame) -> dict[str, Any]:
    """Chi-square test of the logged action (``none`` included) against the stage of the user
    it was logged for: ``chi2, p, dof, cramer_v, randomised`` (None when untestable)."""
    table = pd.crosstab(transitions["stage"].astype(str), transitions["action"].astype(str))
    table = table.loc[table.sum(axis=1) > 0, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return {"chi2": None, "p": None, "dof": None, "cramer_v": None, "randomised": None}
    res = stats.chi2_contingency(table.to_numpy())
    v = float(stats.contingency.association(table.to_numpy(), method="cramer"))
    targeted = res.pvalue < TARGETED_P and v >= TARGETED_V
    return {
        "chi2": float(res.statistic),
        "p": float(res.pvalue),
        "dof": int(res.dof),
        "cramer_v": v,
        "randomised": not targeted,
    }


# --------------------------------------------------------------------------- effects


def _cells(transitions: pd.DataFrame) -> pd.DataFrame:
    """Decisions and comebacks per ``segment, stage, action``."""
    tr = transitions.assign(back=(transitions["next_stage"].astype(str) == "active").astype(int))
    return (
        tr.groupby(["segment", "stage", "action"], observed=True)["back"]
        .agg(n="size", k="sum")
        .reset_index()
    )


def _against_none(cells: pd.DataFrame) -> pd.DataFrame:
    """Each action's cell beside the same segment × stage's ``none`` cell."""
    base = cells[cells["action"] == NONE].drop(columns="action")
    other = cells[cells["action"] != NONE]
    return other.merge(base, on=["segment", "stage"], suffixes=("", "_none"))


def pooled_effects(transitions: pd.DataFrame) -> pd.DataFrame:
    """Per segment and action: the change in P(active next period) against ``none``, pooled
    over the segment's stages with Mantel–Haenszel weights n·n₀/(n+n₀) (so the stage mix is not
    mistaken for an effect), with a normal-approximation 95% interval and z. Per segment, not
    over all users: an action that helps one segment and hurts another would cancel out."""
    rows = []
    pair = _against_none(_cells(transitions))
    for (segment, action), g in pair.groupby(["segment", "action"], sort=True):
        n, n0 = g["n"].to_numpy(float), g["n_none"].to_numpy(float)
        p, p0 = g["k"].to_numpy() / n, g["k_none"].to_numpy() / n0
        w = n * n0 / (n + n0)
        change = float(np.sum(w * (p - p0)) / w.sum())
        var = np.sum(w**2 * (p * (1 - p) / n + p0 * (1 - p0) / n0)) / w.sum() ** 2
        se = float(np.sqrt(var))
        z = change / se if se > 0 else 0.0
        rows.append(
            (int(segment), action, change, change - Z95 * se, change + Z95 * se, z, int(n.sum()))
        )
    return pd.DataFrame(rows, columns=["segment", "action", "change", "ci_lo", "ci_hi", "z", "n"])


def effects_by_timing(
    panel: pd.DataFrame, assignments: pd.DataFrame, placed: pd.DataFrame
) -> pd.DataFrame:
    """:func:`pooled_effects` under every timing rule: ``timing, segment, action, change,
    ci_lo, ci_hi, z, n, clear`` (clear: two-sided p < :data:`CLEAR_P`)."""
    parts = []
    for timing in TIMINGS:
        tr = logged_transitions(panel, assignments, with_timing(placed, timing))
        part = pooled_effects(tr).assign(timing=timing)
        if not part.empty:
            parts.append(part)
    if not parts:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["clear"] = 2 * stats.norm.sf(out["z"].abs()) < CLEAR_P
    return out[EFFECT_COLUMNS]


def effects_side_by_side(
    effects: pd.DataFrame, period: str = "period", names: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """The effects table as people read it: one row per named segment and action, one column
    per timing rule, each cell the change in P(active next period) in percentage points with its
    95% interval, marked ✓ where it is clear."""

    def cell(r: pd.Series) -> str:
        mark = " ✓" if r["clear"] else ""
        return f"{100 * r['change']:+.1f} pp ({100 * r['ci_lo']:+.1f} to {100 * r['ci_hi']:+.1f}){mark}"  # fmt: skip

    if effects.empty:
        return pd.DataFrame(columns=["segment", "action", *TIMINGS])
    shown = effects.assign(text=effects.apply(cell, axis=1))
    wide = shown.pivot(index=["segment", "action"], columns="timing", values="text")
    wide = wide.reindex(columns=[t for t in TIMINGS if t in wide.columns]).reset_index()
    wide.columns.name = None
    wide["segment"] = [segment_name(names, g) for g in wide["segment"]]
    return wide.rename(columns={t: f"'{t}': change in P(active next {period})" for t in TIMINGS})


# --------------------------------------------------------------------------- evidence


def _wilson(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score intervals of k/n (scipy.stats.binomtest)."""
    ci = [stats.binomtest(int(a), int(b)).proportion_ci(0.95, method="wilson") for a, b in zip(k, n, strict=True)]  # fmt: skip
    return np.array([c.low for c in ci]), np.array([c.high for c in ci])


def evidence_table(transitions: pd.DataFrame) -> pd.DataFrame:
    """Per segment × stage × action (not ``none``): the share active next period after the
    action (``p_active``, ``n`` decisions) and after doing nothing (``p_none``, ``n_none``), the
    ``change`` = p_active − p_none and its 95% Newcombe hybrid-score interval (method 10 of
    Newcombe 1998, built from the two Wilson intervals; good at small n and near 0 or 1, where
    the normal approximation is not)."""
    pair = _against_none(_cells(transitions))
    if pair.empty:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    n, k, n0, k0 = (pair[c].to_numpy() for c in ("n", "k", "n_none", "k_none"))
    p, p0 = k / n, k0 / n0
    lo1, hi1 = _wilson(k, n)
    lo0, hi0 = _wilson(k0, n0)
    change = p - p0
    out = pair[["segment", "stage", "action"]].assign(
        n=n.astype(int),
        p_active=p,
        n_none=n0.astype(int),
        p_none=p0,
        change=change,
        ci_lo=change - np.sqrt((p - lo1) ** 2 + (hi0 - p0) ** 2),
        ci_hi=change + np.sqrt((hi1 - p) ** 2 + (p0 - lo0) ** 2),
    )
    out["segment"] = out["segment"].astype(int)
    out["stage"] = out["stage"].astype(str)
    return out.sort_values(["segment", "stage", "action"], ignore_index=True)[EVIDENCE_COLUMNS]


# --------------------------------------------------------------------------- the checks


@dataclass(frozen=True, eq=False)
class CampaignChecks:
    """The checks of one campaign log under the timing rule in use (see the module docstring).

    ``warnings`` are plain sentences for the Policy page, the report and ``summary.json``."""

    timing: str
    period: str
    send_times: pd.DataFrame
    effects: pd.DataFrame
    randomisation: dict[str, Any]
    warnings: tuple[str, ...]

    @property
    def randomised(self) -> bool | None:
        return self.randomisation.get("randomised")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``summary.json``'s ``campaign`` block, a stored run's metadata)."""
        return {
            "timing": self.timing,
            "period": self.period,
            "send_times": self.send_times.to_dict("records"),
            "effects_by_timing": self.effects.to_dict("records"),
            "randomisation": self.randomisation,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignChecks:
        return cls(
            timing=str(data.get("timing", "")),
            period=str(data.get("period", "")),
            send_times=pd.DataFrame(data.get("send_times") or []),
            effects=pd.DataFrame(data.get("effects_by_timing") or [], columns=EFFECT_COLUMNS),
            randomisation=dict(data.get("randomisation") or {}),
            warnings=tuple(data.get("warnings") or ()),
        )


def randomisation_sentence(checks: CampaignChecks) -> str | None:
    """What the chi-square test of action against stage says, in words (None: not tested)."""
    rand = checks.randomisation
    if rand.get("p") is None:
        return None
    verdict = (
        "no sign that actions were chosen by stage: differences are measured effects"
        if checks.randomised
        else "actions depend on the stage: differences are not measured effects"
    )
    return (
        f"**Randomised?** {verdict} (chi-square test of action against stage: "
        f"p = {rand['p']:.2g}, Cramér's V = {rand['cramer_v']:.2f}; V near 0 = independent)."
    )


def check_campaigns(
    panel: pd.DataFrame,
    assignments: pd.DataFrame,
    placed: pd.DataFrame,
    *,
    timing: str,
    period: str,
) -> CampaignChecks:
    """Every check of a placed campaign log (``user_id, t_in, phase, action, propensity``)."""
    hist = send_times(placed, period)
    effects = effects_by_timing(panel, assignments, placed)
    chosen = logged_transitions(panel, assignments, with_timing(placed, timing))
    rand = randomisation(chosen)
    end_share = float(np.mean(placed["phase"].to_numpy(dtype=float) >= END_ZONE)) if len(placed) else 0.0  # fmt: skip
    return CampaignChecks(
        timing=timing,
        period=period,
        send_times=hist,
        effects=effects,
        randomisation={**rand, "end_share": end_share},
        warnings=tuple(timing_warnings(effects, rand, timing, period, end_share)),
    )


def _listed(actions: Sequence[str]) -> str:
    return ", ".join(f"'{a}'" for a in actions)


def timing_warnings(
    effects: pd.DataFrame, rand: dict[str, Any], timing: str, period: str, end_share: float
) -> list[str]:
    """Plain-words warnings: a targeted log, a timing rule that shows no effect (or clearly
    weaker ones) where another shows clear ones, sends at period ends counted for that period."""
    out: list[str] = []
    if rand.get("randomised") is False:
        out.append(
            f"The actions in this log depend on the users' stage (chi-square p = {rand['p']:.2g}, "
            f"Cramér's V = {rand['cramer_v']:.2f}): it looks targeted, not randomised. The "
            "differences between actions below compare different kinds of users, so they are "
            "not measured effects of the actions, and the policy learned from them may be wrong."
        )
    signal = effects.assign(z2=effects["z"] ** 2).groupby("timing")["z2"].sum()
    clear = effects[effects["clear"]].groupby("timing")["action"].apply(lambda a: sorted(set(a)))
    mine, mine_signal = clear.get(timing, []), float(signal.get(timing, 0.0))
    for other in TIMINGS:
        if other == timing or not clear.get(other):
            continue
        if not mine:
            out.append(
                f"Under the timing rule in use ('{timing}') no action shows a clear effect on "
                f"whether users come back next {period}, but under '{other}' "
                f"{_listed(clear[other])} do. Campaigns may be credited to the wrong {period}: "
                f"try the campaign timing rule '{other}' for this campaign log."
            )
            break
        if float(signal.get(other, 0.0)) > BETTER_RATIO * mine_signal:
            out.append(
                f"The effects of the actions are much clearer under the timing rule '{other}' "
                f"than under the rule in use ('{timing}'): the sends may act on a different "
                f"{period} than the one they are credited to. Compare the rules in the table."
            )
            break
    if end_share > END_SHARE and timing == "start":
        out.append(
            f"{end_share:.0%} of the sends fall in the last seventh of a {period}, and the rule "
            f"'start' counts each for the {period} that is ending, before it could act. If "
            f"these sends are meant for the next {period}, choose 'nearest'."
        )
    return out


# --------------------------------------------------------------------------- for people


def evidence_view(evidence: pd.DataFrame, names: dict[int, str] | None = None) -> pd.DataFrame:
    """The evidence table as the Policy page and the report show it: named segments, shares and
    changes in percentage points, the interval as text, and the decisions behind each; rows by
    segment, then stage in lifecycle order (active, lapsing, at_risk, churned), then action."""
    if evidence is None or evidence.empty:
        return pd.DataFrame()
    names = names or {}
    e = (
        evidence.assign(_rank=evidence["stage"].map(stage_rank))
        .sort_values(["segment", "_rank", "action"], kind="stable")
        .reset_index(drop=True)
    )
    return pd.DataFrame(
        {
            "segment": [segment_name(names, g) for g in e["segment"]],
            "stage": e["stage"].astype(str),
            "action": e["action"].astype(str),
            "active next period after the action (%)": (100 * e["p_active"]).round(1),
            "after doing nothing (%)": (100 * e["p_none"]).round(1),
            "change (percentage points)": (100 * e["change"]).round(1),
            "95% interval (pp)": [
                f"{100 * lo:+.1f} to {100 * hi:+.1f}"
                for lo, hi in zip(e["ci_lo"], e["ci_hi"], strict=True)
            ],
            "decisions with the action": e["n"].astype(int),
            "decisions with nothing": e["n_none"].astype(int),
        }
    )


def timing_sentence(timing: str, period: str) -> str:
    """One sentence naming the timing rule in use and what it means."""
    return (
        f"Campaign timing: '{timing}' — {TIMING_HELP.get(timing, timing)}; it decides which "
        f"move from one {period} to the next each send is credited to."
    )


def segment_ope_view(
    ope_segments: pd.DataFrame | None, names: dict[int, str] | None = None
) -> pd.DataFrame:
    """Per segment, the doubly robust estimates on its held-out users: the learned policy,
    doing nothing, and their difference, each with its 95% bootstrap interval."""
    if ope_segments is None or ope_segments.empty:
        return pd.DataFrame()
    names = names or {}
    dr = ope_segments[ope_segments["estimator"] == "dr"]
    rows = []
    for g, part in dr.groupby("segment", sort=True):
        by = part.set_index("policy")
        row: dict[str, Any] = {"segment": segment_name(names, g)}
        for label, policy in (
            ("learned policy", "learned policy"),
            ("doing nothing", "always none"),
            ("learned − nothing", "learned policy − always none"),
        ):
            if policy in by.index:
                r = by.loc[policy]
                row[f"{label}: value per decision"] = round(float(r["value"]), 4)
                row[f"{label}: 95% interval"] = f"{r['ci_lo']:.4f} to {r['ci_hi']:.4f}"
        row["held-out decisions"] = int(part["n"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)

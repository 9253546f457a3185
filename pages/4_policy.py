"""Policy: learn which retention action to take for each segment and stage, check it against the
exact optimum and against logged outcomes, and see how it moves with the reward settings."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from pages.common import (
    current_segmentation,
    page_link,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from retention.charts.policy import (
    learning_curve,
    ope_forest,
    policy_map,
    q_heatmap,
    retention_projection,
    stability_map,
)
from retention.errors import InputError
from retention.learn import PolicyResult, QLearner, train_policy, train_snapshot_policy
from retention.mdp import (
    DEFAULT_ACTIONS,
    DEFAULT_COSTS,
    DEFAULT_LIFT,
    RewardSettings,
)
from retention.periods import resolve_period
from retention.pipeline import campaigns_by_period, policy_input
from retention.runs import load_policy, train_policy_run

ws = workspace()
st.title("Policy")
st.caption(
    "Which retention action should each segment get at each stage? A policy learned by "
    "Q-learning on users simulated from your data, checked against the exact optimum and "
    "against what really happened to users who got each action."
)
info = require_dataset()
seg_run = current_segmentation(info.id)
if seg_run is None:
    st.info("The policy is learned per segment: run a segmentation of this dataset first.")
    page_link("segments", "Go to the Segments page", ":material/bubble_chart:")
    st.stop()
names = segment_names(seg_run)
assignments = seg_run.artifacts["assignments"][["user_id", "segment"]]
period = st.session_state.get("period", "auto")
churn_after = int(st.session_state.get("churn_after", 4))
is_snapshot = info.shape == "snapshot"


@st.cache_data(max_entries=4, show_spinner="Placing campaigns in periods…")
def event_inputs(folder: str, dataset_id: str, period: str) -> tuple[pd.DataFrame | None, str]:
    """The campaign log placed in periods, and the period used (cached per dataset)."""
    used = resolve_period(workspace().cursor(), workspace().table(dataset_id, "events"), period)
    return campaigns_by_period(workspace(), dataset_id, used), used


try:
    if is_snapshot:
        snapshot = ws.load(info.id, "snapshot")
        campaigns, period_used = None, "period"
        actions = sorted(snapshot["action"].astype(str).unique())
    else:
        campaigns, period_used = event_inputs(str(ws.folder), info.id, period)
        if campaigns is not None:
            logged = set(campaigns["action"].astype(str)) - {"none"}
            actions = ["none", *[a for a in DEFAULT_ACTIONS if a in logged]]
            actions += sorted(logged - set(actions))
        else:
            actions = list(DEFAULT_ACTIONS)
except InputError as exc:
    stop_with_error(exc)

runs = ws.runs(kind="policy", dataset_id=info.id)

# ----------------------------------------------------------------------------- settings
with st.expander("Reward and learning settings", expanded=bool(runs.empty)):
    left, right = st.columns(2)
    with left:
        st.markdown("**What a period is worth**")
        gamma = st.slider(
            "Discount γ (how much next period matters)",
            0.0,
            0.99,
            0.9,
            0.01,
            key="policy.gamma",
            disabled=is_snapshot,
            help="0 = only this period counts; 0.99 = the long run counts almost fully.",
        )
        retain = st.slider(
            "Retain reward (per active period)",
            0.0,
            5.0,
            1.0,
            0.1,
            key="policy.retain",
            disabled=is_snapshot,
        )
        penalty = st.slider(
            "Churn penalty (once, when a user churns)",
            0.0,
            20.0,
            5.0,
            0.5,
            key="policy.penalty",
            disabled=is_snapshot,
        )
        rev_weight = st.slider(
            "Revenue weight (× the segment's mean revenue of an active period)",
            0.0,
            1.0,
            0.0,
            0.01,
            key="policy.revenue",
            disabled=is_snapshot,
        )
    with right:
        st.markdown("**How the policy is learned**")
        algorithm = st.selectbox(
            "Algorithm",
            ["q", "sarsa"] + (["batch"] if campaigns is not None else []),
            format_func={
                "q": "Q-learning",
                "sarsa": "SARSA",
                "batch": "Batch Q-learning on the campaign log",
            }.get,
            key="policy.algorithm",
            disabled=is_snapshot,
        )
        simulated = not is_snapshot and algorithm != "batch"
        episodes = st.slider(
            "Episodes (rounds of simulated users)",
            20,
            1000,
            200,
            10,
            key="policy.episodes",
            disabled=not simulated,
            help=f"Each round simulates {QLearner().n_users:,} users for {QLearner().horizon} "
            "periods. More rounds: a steadier policy, a longer wait.",
        )
        epsilon = st.slider(
            "Exploration ε (share of random actions)",
            0.0,
            1.0,
            0.05 if algorithm == "sarsa" else 0.5,
            0.05,
            key=f"policy.epsilon.{algorithm}",
            disabled=not simulated,
            help="Simulated users first get random actions only; the share falls to this "
            "floor. Q-learning learns the best policy whatever it explores (0.5 tries every "
            "action often); SARSA learns the value of what it does, so keep it low.",
        )
        lr = st.slider(
            "Learning rate (first visit)",
            0.01,
            1.0,
            1.0,
            0.01,
            key="policy.lr",
            disabled=not simulated,
            help="How far one simulated outcome moves an estimate the first time a segment "
            "and stage is tried with an action; it falls as that pair is seen more often.",
        )
        seed = st.number_input("Seed", 0, 10_000, 0, key="policy.seed")

    st.markdown(
        "**Actions: cost per user and period**"
        + ("" if campaigns is not None or is_snapshot else " and assumed lift")
    )
    table = pd.DataFrame(
        {
            "action": actions,
            "cost": [DEFAULT_COSTS.get(a, 0.0) if not is_snapshot else 0.0 for a in actions],
        }
    )
    if campaigns is None and not is_snapshot:
        table["lift"] = [DEFAULT_LIFT.get(a, 1.0) for a in actions]
        st.warning(
            "This dataset has no campaign log, so the effect of each action is an **assumption**: "
            "the lift multiplies the chance a user is active next period. Edit it to match what "
            "you believe (add or rename actions here too).",
            icon=":material/lightbulb:",
        )
    edited = st.data_editor(
        table,
        key="policy.actions",
        hide_index=True,
        num_rows="dynamic" if campaigns is None and not is_snapshot else "fixed",
        disabled=["action"] if campaigns is not None or is_snapshot else [],
        column_config={
            "cost": st.column_config.NumberColumn("cost", min_value=0.0, step=0.01, format="%.3f"),
            "lift": st.column_config.NumberColumn(
                "lift (× P(active next))", min_value=0.0, step=0.01
            ),
        },
    )

edited = edited.dropna(subset=["action"])
edited["action"] = edited["action"].astype(str).str.strip()
costs = dict(zip(edited["action"], edited["cost"].fillna(0.0).astype(float), strict=True))
train = st.button("Train", type="primary", icon=":material/model_training:")

# ----------------------------------------------------------------------------- training
if train:
    bar = st.progress(0.0, "Starting…")
    live = st.empty()

    def on_progress(frac: float, msg: str) -> None:
        bar.progress(frac, msg)

    def on_curve(curve: pd.DataFrame) -> None:
        if len(curve) % 10 == 1:
            live.plotly_chart(
                learning_curve(curve, title="Learning…"), key=f"policy.live.{len(curve)}"
            )

    def train() -> PolicyResult:
        if is_snapshot:
            return train_snapshot_policy(
                snapshot,
                assignments,
                reward=RewardSettings(action_costs=costs),
                churn_after=churn_after,
                seed=int(seed),
                progress=on_progress,
            )
        reward = RewardSettings(
            retain_reward=retain,
            churn_penalty=penalty,
            revenue_weight=rev_weight,
            action_costs=costs,
            gamma=gamma,
        )
        lift = None
        if campaigns is None:
            lift = dict(
                zip(edited["action"], edited["lift"].fillna(1.0).astype(float), strict=True)
            )
        return train_policy(
            policy_input(ws, info.id, assignments, period_used, churn_after, campaigns),
            assignments,
            campaigns=campaigns,
            actions=list(edited["action"]),
            lift=lift,
            reward=reward,
            algorithm=algorithm,
            learner=QLearner(episodes=int(episodes), min_epsilon=epsilon, learning_rate=lr),
            seed=int(seed),
            progress=on_progress,
            callback=on_curve,
        )

    request = {"segmentation_run": seg_run.id, "period": period_used, "churn_after": churn_after}
    try:
        new_run, _ = train_policy_run(ws, info.id, request, train, reuse=False)
    except InputError as exc:
        stop_with_error(exc)
    st.session_state["policy.run"] = st.session_state["policy.show"] = new_run
    bar.empty()
    live.empty()

# ----------------------------------------------------------------------------- show a run
ALGORITHMS = {
    "q": "Q-learning",
    "sarsa": "SARSA",
    "batch": "batch Q-learning",
    "one-step": "one-step (snapshot)",
}
SETTING_NAMES = {
    "gamma": "discount γ",
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
}


def _num(value: Any, spec: str = ".3f") -> str:
    """A stored number for display; a dash when it is missing or not a number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return format(v, spec) if math.isfinite(v) else "—"


def _settings(row: pd.Series) -> dict[str, Any]:
    return row["settings"] if isinstance(row["settings"], dict) else {}


def run_label(run_id: str) -> str:
    row = runs.set_index("id").loc[run_id]
    s = _settings(row)
    m = row["metrics"] if isinstance(row["metrics"], dict) else {}
    parts = [f"{row['created']:%Y-%m-%d %H:%M:%S}"]
    if s.get("algorithm"):
        parts.append(ALGORITHMS.get(s["algorithm"], str(s["algorithm"])))
    if s.get("shape") != "snapshot":
        if s.get("gamma") is not None:
            parts.append(f"discount {_num(s['gamma'], 'g')}")
        if s.get("churn_penalty") is not None:
            parts.append(f"churn penalty {_num(s['churn_penalty'], 'g')}")
    if s.get("seed") is not None:
        parts.append(f"seed {s['seed']}")
    parts.append(f"value {_num(m.get('value'))}")
    return " · ".join(parts)


def _flat(settings: dict[str, Any]) -> dict[str, str]:
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


def show_frame(frame: pd.DataFrame | None, needed: set[str]) -> bool:
    """Whether a stored table has what a chart needs (runs stored by older versions may not)."""
    return frame is not None and not frame.empty and needed <= set(frame.columns)


runs = ws.runs(kind="policy", dataset_id=info.id)
failed = runs[runs["status"] == "failed"]
if not failed.empty:
    last = failed.iloc[0]
    st.caption(
        f"{len(failed)} training run(s) did not finish (latest: "
        f"{pd.Timestamp(last['created']):%Y-%m-%d %H:%M}, {last['error'] or 'no reason recorded'}); "
        "nothing from them is used."
    )
runs = runs[runs["status"] == "done"]
if runs.empty:
    st.info("No policy trained on this dataset yet: set the rewards and press **Train**.")
    st.stop()

ids = list(runs["id"])
chosen = st.session_state.get("policy.run")
st.selectbox(
    "Policy run",
    ids,
    index=ids.index(chosen) if chosen in ids else 0,
    format_func=run_label,
    key="policy.show",
)
try:
    result = load_policy(ws, st.session_state["policy.show"])
except InputError as exc:
    stop_with_error(exc, "Pick another run above, or train again.")
settings = result.settings
words = {"day": "days", "week": "weeks", "month": "months"}.get(settings.get("period"), "periods")

c1, c2, c3 = st.columns(3)
c1.metric(
    "Learned policy's value",
    _num(result.value),
    help="What applying the learned policy is worth per user: the reward you set, added up "
    "over the coming periods (later periods count less, by the discount γ).",
)
c2.metric(
    "Optimum (value iteration)",
    _num(result.optimal_value),
    help="The best any policy can do on the same estimated model, computed exactly.",
)
c3.metric(
    "Share of the optimum",
    _num(result.fraction_of_optimum, ".1%"),
    help="How close the learned policy comes to the best possible; 100% = as good as it gets.",
)
if result.kind == "events":
    st.caption(
        "Values are the expected reward per user, added up over the coming periods, from where "
        "your users are now; computed exactly on the model estimated from your data."
    )
for note in result.assumptions:
    st.caption(f":material/info: {note}")
if result.kind == "events" and math.isnan(result.optimal_value):
    st.caption(
        ":material/history: This run was stored by an older version without the optimum; "
        "train again to see how close the policy comes to it."
    )

dis = result.disagreements
cells = len(result.recommendations)
if result.kind == "events" and show_frame(dis, {"segment", "stage", "action", "optimal_action"}):
    share = result.fraction_of_optimum
    text = (
        f"In {len(dis)} of {cells} segment × stage cells the learned action is not the exact "
        "best one."
    )
    if math.isfinite(share) and share >= 0.99:
        st.info(
            text + f" These are near-ties: together they cost {max(0.0, 1 - share):.2%} of the "
            "best possible value.",
            icon=":material/info:",
        )
    else:
        st.warning(
            text + " Train with more episodes (or another seed) to get closer to the optimum.",
            icon=":material/warning:",
        )
    shown = dis.assign(segment=dis["segment"].map(lambda g: names.get(int(g), f"segment {g}")))
    st.dataframe(
        shown,
        hide_index=True,
        column_config={
            "segment": "Segment",
            "stage": "Stage",
            "action": "Learned action",
            "optimal_action": "Best action",
            "value_loss": st.column_config.NumberColumn(
                "Value lost per user there",
                format="%.4f",
                help="Exact value of the best action minus that of the learned one, for a user "
                "in this segment and stage.",
            ),
        },
    )
elif result.kind == "events" and dis is not None and not math.isnan(result.fraction_of_optimum):
    st.success(
        "The learned policy takes the exact best action in every segment and stage.",
        icon=":material/check_circle:",
    )

tabs = st.tabs(
    [
        "Policy map",
        "Value of each action",
        "Learning curve",
        "Projected retention",
        "Stability",
        "Check on real outcomes",
    ]
)
rec = result.recommendations
with tabs[0]:
    st.caption("The action to take for the users of each segment while they are in each stage.")
    st.plotly_chart(policy_map(rec, result.actions, names), key="policy.map")
with tabs[1]:
    st.caption(
        "For each segment and stage: what each action is worth per user, the immediate "
        "reward plus what follows (the Q-table). ★ marks the action the policy takes."
    )
    st.plotly_chart(q_heatmap(rec, result.actions, names), key="policy.q")
    with st.expander("The numbers"):
        table = rec.assign(segment=rec["segment"].map(lambda g: names.get(int(g), f"segment {g}")))
        config: dict[str, Any] = {
            "segment": "Segment",
            "stage": "Stage",
            "action": "Recommended",
            "optimal_action": "Best (exact)",
            "n": st.column_config.NumberColumn(
                "Observed", help="User-periods of the data in this segment and stage."
            ),
        }
        for act in result.actions:
            config[f"q_{act}"] = st.column_config.NumberColumn(f"value if {act}", format="%.3f")
        st.dataframe(table, hide_index=True, column_config=config)
with tabs[2]:
    st.caption(
        "The learned policy's exact value as training goes, against the best possible (dashed)."
    )
    st.plotly_chart(learning_curve(result.curve), key="policy.curve")
with tabs[3]:
    if result.kind == "snapshot":
        st.info("A campaign snapshot is a single decision: there is no retention to project.")
    elif not show_frame(result.projections, {"segment", "policy", "period", "active_share"}):
        st.info("This run has no projected retention stored; train again to get it.")
    else:
        st.plotly_chart(
            retention_projection(result.projections, names, period_word=words), key="policy.proj"
        )
with tabs[4]:
    gamma_used = settings.get("gamma", result.gamma)
    penalty_used = settings.get("churn_penalty")
    if result.kind == "snapshot":
        st.info("A campaign snapshot is a single decision: γ and the churn penalty play no role.")
    elif not show_frame(result.stability, {"segment", "stage", "gamma", "churn_penalty", "action"}):
        st.info("This run has no stability map stored; train again to get it.")
    else:
        current = None
        if gamma_used is not None and penalty_used is not None:
            current = (float(gamma_used), float(penalty_used))
        st.caption(
            "Does the advice hold if you value the future (γ) or churn (penalty) differently? "
            "Each small map is one segment and stage; × marks the settings of this run."
        )
        st.plotly_chart(
            stability_map(result.stability, result.actions, names, current=current),
            key="policy.stab",
        )
with tabs[5]:
    if result.ope is None or result.ope.empty:
        st.info(
            "No logged actions behind this policy, so it cannot be checked against real "
            "outcomes. Add a campaign log on the Data page to get off-policy estimates."
        )
    else:
        st.caption(
            "Estimated on held-out users the policy never saw, from what really happened to "
            "users who got each action (IPS, SNIPS and doubly robust estimates, 95% intervals). "
            + (
                "Each value is the mean reward of one period had the policy chosen the action."
                if result.kind == "events"
                else "Each value is the mean outcome − cost per user had the policy chosen "
                "the treatment."
            )
        )
        st.plotly_chart(ope_forest(result.ope), key="policy.ope")
        st.dataframe(
            result.ope,
            hide_index=True,
            column_config={
                "policy": "Policy",
                "estimator": "Estimator",
                "value": st.column_config.NumberColumn("Estimate", format="%.4f"),
                "ci_lo": st.column_config.NumberColumn("95% low", format="%.4f"),
                "ci_hi": st.column_config.NumberColumn("95% high", format="%.4f"),
                "n": st.column_config.NumberColumn("Decisions"),
            },
        )

# ----------------------------------------------------------------------------- compare runs
if len(ids) > 1 and st.toggle("Compare two runs side by side", key="policy.compare"):
    other_ids = [i for i in ids if i != st.session_state["policy.show"]]
    st.selectbox("Compare with", other_ids, format_func=run_label, key="policy.other")
    try:
        other = load_policy(ws, st.session_state["policy.other"])
    except InputError as exc:
        stop_with_error(exc, "Pick another run to compare with.")
    mine, theirs = _flat(result.settings), _flat(other.settings)
    diff = pd.DataFrame(
        [
            (SETTING_NAMES.get(k, k.replace("_", " ")), mine.get(k, "—"), theirs.get(k, "—"))
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        ],
        columns=["setting", "this run", "other run"],
    )
    if diff.empty:
        st.caption("The two runs have the same settings.")
    else:
        st.dataframe(diff, hide_index=True)
    left, right = st.columns(2)
    for col, res, key in ((left, result, "a"), (right, other, "b")):
        with col:
            st.metric(
                "Value",
                _num(res.value),
                f"{_num(res.fraction_of_optimum, '.1%')} of the optimum",
                delta_color="off",
                delta_arrow="off",
            )
            st.plotly_chart(
                policy_map(res.recommendations, res.actions, names), key=f"policy.cmp.{key}"
            )

"""Policy: learn which retention action to take for each segment and stage, check it against the
exact optimum and against logged outcomes, and see how it moves with the reward settings."""

from __future__ import annotations

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
from retention.learn import (
    QLearner,
    load_policy_run,
    save_policy_run,
    train_policy,
    train_snapshot_policy,
)
from retention.mdp import DEFAULT_ACTIONS, DEFAULT_COSTS, DEFAULT_LIFT, RewardSettings
from retention.periods import build_panel, period_grid, period_of

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


@st.cache_data(max_entries=4, show_spinner="Building periods and stages…")
def event_inputs(
    folder: str, dataset_id: str, period: str, churn_after: int
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The panel and the campaign log placed in periods (cached per dataset and settings)."""
    con = workspace().cursor()
    events = workspace().table(dataset_id, "events")
    grid = period_grid(con, events, period)
    panel = build_panel(con, events, period=grid.period, churn_after=churn_after)
    campaigns = None
    if "campaigns" in workspace().dataset(dataset_id).kinds:
        camp = period_of(con, workspace().table(dataset_id, "campaigns"), grid)
        camp = camp[camp["t"].notna()]
        campaigns = camp.assign(t=camp["t"].astype(int))[["user_id", "t", "action", "propensity"]]
    return panel, campaigns, grid.period


try:
    if is_snapshot:
        snapshot = ws.load(info.id, "snapshot")
        panel, campaigns, period_used = None, None, "period"
        actions = sorted(snapshot["action"].astype(str).unique())
    else:
        panel, campaigns, period_used = event_inputs(str(ws.folder), info.id, period, churn_after)
        if campaigns is not None:
            logged = set(campaigns["action"].astype(str)) - {"none"}
            actions = ["none", *[a for a in DEFAULT_ACTIONS if a in logged]]
            actions += sorted(logged - set(actions))
        else:
            actions = list(DEFAULT_ACTIONS)
except InputError as exc:
    stop_with_error(exc)

# ----------------------------------------------------------------------------- settings
with st.expander("Reward and learning settings", expanded=True):
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
        episodes = st.slider(
            "Episodes", 20, 1000, 200, 10, key="policy.episodes", disabled=is_snapshot
        )
        epsilon = st.slider(
            "Exploration ε (floor after decay)",
            0.0,
            1.0,
            0.5,
            0.05,
            key="policy.epsilon",
            disabled=is_snapshot,
            help="The share of random actions once exploration has decayed from 1.",
        )
        lr = st.slider(
            "Learning rate (start; decays)",
            0.01,
            1.0,
            0.5,
            0.01,
            key="policy.lr",
            disabled=is_snapshot,
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

    try:
        if is_snapshot:
            reward = RewardSettings(action_costs=costs)
            result = train_snapshot_policy(
                snapshot,
                assignments,
                reward=reward,
                churn_after=churn_after,
                seed=int(seed),
                progress=on_progress,
            )
        else:
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
            result = train_policy(
                panel,
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
        result.settings.update(
            segmentation_run=seg_run.id, period=period_used, churn_after=churn_after
        )
        st.session_state["policy.run"] = save_policy_run(ws, info.id, result)
    except InputError as exc:
        stop_with_error(exc)
    bar.empty()
    live.empty()

# ----------------------------------------------------------------------------- show a run
runs = ws.runs(kind="policy", dataset_id=info.id)
runs = runs[runs["status"] == "done"]
if runs.empty:
    st.info("No policy trained on this dataset yet: set the rewards and press **Train**.")
    st.stop()


def run_label(run_id: str) -> str:
    row = runs.set_index("id").loc[run_id]
    s, m = row["settings"], row["metrics"]
    gamma_txt = (
        ""
        if s.get("shape") == "snapshot"
        else f"γ {s.get('gamma')}, penalty {s.get('churn_penalty')}, "
    )
    return f"{row['created']:%Y-%m-%d %H:%M:%S} · {s.get('algorithm')} · {gamma_txt}seed {s.get('seed')} · value {m.get('value', float('nan')):.3f}"


ids = list(runs["id"])
chosen = st.session_state.get("policy.run")
st.selectbox(
    "Policy run",
    ids,
    index=ids.index(chosen) if chosen in ids else 0,
    format_func=run_label,
    key="policy.show",
)
result = load_policy_run(ws, st.session_state["policy.show"])
words = {"day": "days", "week": "weeks", "month": "months"}.get(
    result.settings.get("period"), "periods"
)

c1, c2, c3 = st.columns(3)
c1.metric("Learned policy's value", f"{result.value:.3f}")
c2.metric("Optimum (value iteration)", f"{result.optimal_value:.3f}")
c3.metric("Share of the optimum", f"{result.fraction_of_optimum:.1%}")
if result.kind == "events":
    st.caption(
        "Values are the expected discounted reward per user, from where your users are now, "
        "computed exactly on the MDP estimated from the data."
    )
for note in result.assumptions:
    st.caption(f":material/info: {note}")
if not result.disagreements.empty:
    st.warning(
        f"The learned policy differs from the optimum in {len(result.disagreements)} state(s):"
    )
    shown = result.disagreements.assign(
        segment=result.disagreements["segment"].map(lambda g: names.get(int(g), g))
    )
    st.dataframe(shown, hide_index=True)
elif result.kind == "events":
    st.success(
        "The learned policy takes the optimal action in every state.",
        icon=":material/check_circle:",
    )

tabs = st.tabs(
    ["Policy map", "Q-table", "Learning curve", "Projected retention", "Stability", "Evaluation"]
)
with tabs[0]:
    st.plotly_chart(policy_map(result.recommendations, result.actions, names), key="policy.map")
    st.dataframe(result.recommendations, hide_index=True)
with tabs[1]:
    st.plotly_chart(q_heatmap(result.recommendations, result.actions, names), key="policy.q")
with tabs[2]:
    st.plotly_chart(learning_curve(result.curve), key="policy.curve")
with tabs[3]:
    if result.projections is None:
        st.info("A campaign snapshot is a single decision: there is no retention to project.")
    else:
        st.plotly_chart(
            retention_projection(result.projections, names, period_word=words), key="policy.proj"
        )
with tabs[4]:
    if result.stability is None:
        st.info("A campaign snapshot is a single decision: γ and the churn penalty play no role.")
    else:
        current = (float(result.settings["gamma"]), float(result.settings["churn_penalty"]))
        st.plotly_chart(
            stability_map(result.stability, result.actions, names, current=current),
            key="policy.stab",
        )
with tabs[5]:
    if result.ope is None:
        st.info(
            "No logged actions in this dataset, so the policy cannot be checked against real "
            "outcomes. Add a campaign log on the Data page to get off-policy estimates."
        )
    else:
        st.caption(
            "Estimated on held-out users the policy never saw. "
            + (
                "Each value is the mean reward of one period (one logged decision) had the policy chosen the action."
                if result.kind == "events"
                else "Each value is the mean outcome − cost per user had the policy chosen the treatment."
            )
        )
        st.plotly_chart(ope_forest(result.ope), key="policy.ope")
        st.dataframe(result.ope, hide_index=True)

# ----------------------------------------------------------------------------- compare runs
if len(ids) > 1 and st.toggle("Compare two runs side by side", key="policy.compare"):
    other_ids = [i for i in ids if i != st.session_state["policy.show"]]
    st.selectbox("Compare with", other_ids, format_func=run_label, key="policy.other")
    other = load_policy_run(ws, st.session_state["policy.other"])
    keys = sorted(set(result.settings) | set(other.settings))
    diff = pd.DataFrame(
        [
            (k, str(result.settings.get(k)), str(other.settings.get(k)))
            for k in keys
            if result.settings.get(k) != other.settings.get(k)
        ],
        columns=["setting", "this run", "other run"],
    )
    st.dataframe(diff, hide_index=True)
    left, right = st.columns(2)
    for col, res, key in ((left, result, "a"), (right, other, "b")):
        with col:
            st.metric(
                "Value",
                f"{res.value:.3f}",
                f"{res.fraction_of_optimum:.1%} of optimum",
                delta_color="off",
            )
            st.plotly_chart(
                policy_map(res.recommendations, res.actions, names), key=f"policy.cmp.{key}"
            )

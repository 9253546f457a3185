"""Strategies: what to do with each segment at each engagement stage — plain words first,
numbers on demand — and the downloads (user list, strategy table, HTML report)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui.common import (
    current_segmentation,
    page_link,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from retention.errors import InputError
from retention.learn import PolicyResult
from retention.policy_runs import run_label
from retention.report import stored_report
from retention.results import StoredStrategies, policy_runs, stored_strategies
from retention.strategies import (
    ACTIVE_LEARNED,
    ACTIVE_NOTHING,
    LIFT_PERIOD,
    held_out_verdict,
    plan_sentence,
    to_csv_bytes,
    to_parquet_bytes,
)
from retention.words import period_word, period_word_singular

ws = workspace()
info = require_dataset()
st.title("Strategies")
st.caption(
    "What to do with each segment, at each engagement stage, according to the policy you "
    "trained — with what it is expected to bring, what it costs and how much data backs it."
)

seg_run = current_segmentation(info.id)
if seg_run is None:
    st.info("Strategies come from segments and a trained policy. Find segments first.")
    page_link("segments", "Go to Segments", ":material/bubble_chart:")
    st.stop()

runs = policy_runs(ws, info.id, seg_run.id)
if runs.empty:
    st.info("No policy has been trained on the current segments yet.")
    page_link("policy", "Go to Policy and train one", ":material/model_training:")
    st.stop()

run_ids = list(runs["id"])
by_id = runs.set_index("id")
chosen = st.session_state.get("policy.run")
policy_id = st.selectbox(
    "Policy",
    run_ids,
    index=run_ids.index(chosen) if chosen in run_ids else 0,
    format_func=lambda run_id: run_label(by_id.loc[run_id]),
    help="The strategies of one trained policy (the latest by default).",
)


@st.cache_data(max_entries=8, show_spinner="Preparing the strategies…")
def _load(dataset_id: str, seg_id: str, policy_id: str, names_key: tuple) -> StoredStrategies:
    return stored_strategies(ws, dataset_id, seg_id, policy_id, dict(names_key))


names = segment_names(seg_run)
try:
    loaded = _load(info.id, seg_run.id, policy_id, tuple(sorted(names.items())))
except InputError as exc:
    stop_with_error(exc)
policy: PolicyResult = loaded.policy
strategies = loaded.strategies
table, segments = strategies.table, strategies.segments
periods = period_word(policy.settings.get("period"))
period = period_word_singular(policy.settings.get("period"))

for assumption in policy.assumptions:
    st.warning(f"Assumption: {assumption}", icon=":material/lightbulb:")

# -- plain words: one card per segment --------------------------------------------------------
for _, seg in segments.iterrows():
    part = table[table["segment"] == seg["segment"]]
    with st.container(border=True):
        head, size = st.columns([3, 1])
        head.subheader(seg["label"])
        size.metric("Users", f"{seg['users']:,}")
        if seg["every_action_hurts"]:
            st.warning(
                "**Leave them alone.** With your reward settings, every strategy is estimated to do "
                "worse than doing nothing for these users, even before its cost.",
                icon=":material/do_not_disturb_on:",
            )
        lines = [
            f"- {plan_sentence(r.stage, r.users, r.action, r.verdict, r.support)}"
            for r in part.itertuples(index=False)
        ]
        st.markdown("\n".join(lines))
        if pd.notna(seg.get("retention_lift_points")):
            st.caption(
                f"Following this plan, about **{seg[ACTIVE_LEARNED]:.0%}** of a newly active "
                f"group stays active after {LIFT_PERIOD} {periods}, vs "
                f"**{seg[ACTIVE_NOTHING]:.0%}** if you do nothing "
                f"({seg['retention_lift_points']:+.1f} points). Expected cost ≈ "
                f"{seg['expected_cost_per_period']:.2f} per user per {period}. "
                f"Based on {seg['data_support']:,} observed user-{periods}."
            )
if strategies.unclustered:
    with st.container(border=True):
        st.subheader("Unclustered users")
        st.markdown(
            f"**{strategies.unclustered:,}** users fit no segment, so the policy has no "
            f"strategy for them: they are left alone (**{strategies.nothing or 'no action'}**) "
            "in the downloads."
        )

# -- honest evaluation ---------------------------------------------------------------------------
if policy.ope is not None and not policy.ope.empty:
    st.subheader("Checked against what really happened")
    check = held_out_verdict(policy.ope, policy.actions)
    if check is not None:
        (lp, lp_lo, lp_hi), (nn, nn_lo, nn_hi) = check.learned, check.nothing
        text = (
            f"On users held out from training, the recommended plan is estimated to earn "
            f"**{lp:.3f}** per decision (95% interval {lp_lo:.3f} to {lp_hi:.3f}), against "
            f"**{nn:.3f}** ({nn_lo:.3f} to {nn_hi:.3f}) for doing nothing (doubly robust "
            "off-policy estimate)."
        )
        if check.difference is not None:
            d, d_lo, d_hi = check.difference
            text += (
                f" The difference is {d:+.3f} (95% interval {d_lo:+.3f} to {d_hi:+.3f}): "
                f"**{check.verdict}**."
            )
        st.markdown(text)
    with st.expander("All off-policy estimates"):
        st.dataframe(policy.ope, hide_index=True, width="stretch")

# -- numbers on demand -------------------------------------------------------------------------
with st.expander("The full strategy table (every segment × stage)"):
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "share_of_segment": st.column_config.NumberColumn(format="percent"),
            "value_vs_nothing": st.column_config.NumberColumn(format="%.3f"),
        },
    )

# -- downloads -------------------------------------------------------------------------------------
st.subheader("Downloads")
per_user = loaded.per_user
c1, c2, c3, c4 = st.columns(4)
c1.download_button(
    "Users → action (CSV)",
    to_csv_bytes(per_user),
    file_name=f"{info.name}-user-actions.csv",
    mime="text/csv",
    icon=":material/download:",
    help="One row per user: segment, current stage, recommended action. Safe to open in a "
    "spreadsheet (formula-like cells are escaped).",
)
c2.download_button(
    "Users → action (Parquet)",
    to_parquet_bytes(per_user),
    file_name=f"{info.name}-user-actions.parquet",
    mime="application/octet-stream",
    icon=":material/download:",
)
c3.download_button(
    "Strategy table (CSV)",
    to_csv_bytes(table),
    file_name=f"{info.name}-strategies.csv",
    mime="text/csv",
    icon=":material/download:",
)


@st.cache_data(max_entries=4, show_spinner="Writing the report…")
def _report(dataset_id: str, seg_id: str, policy_id: str, names_key: tuple) -> bytes:
    stored = _load(dataset_id, seg_id, policy_id, names_key)
    return stored_report(ws, dataset_id, stored, dict(names_key)).encode("utf-8")


c4.download_button(
    "Report (HTML)",
    _report(info.id, seg_run.id, policy_id, tuple(sorted(names.items()))),
    file_name=f"{info.name}-retention-report.html",
    mime="text/html",
    icon=":material/description:",
    help="A self-contained page with the charts and the exact settings, seed and data hash.",
)

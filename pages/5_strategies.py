"""Strategies: what to do with each segment at each engagement stage — plain words first,
numbers on demand — and the downloads (user list, strategy table, HTML report)."""

from __future__ import annotations

import streamlit as st

from pages.ui.common import (
    current_segmentation,
    dataset_currency,
    page_link,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.drill_views import stage_users
from retention.campaigns import evidence_view
from retention.drill import crm_users
from retention.errors import InputError
from retention.learn import PolicyResult
from retention.mdp import CHURN_RULE
from retention.periods import DEFAULT_CHURN_AFTER
from retention.policy_runs import run_label
from retention.report import stored_report
from retention.results import StoredStrategies, policy_runs, stored_strategies
from retention.strategies import (
    effect_source,
    effects_behind,
    held_out_verdict,
    in_period_words,
    lift_is_assumed,
    ope_view,
    reward_units_sentence,
    segment_cards,
    segment_table_view,
    stage_words,
    strategy_table_view,
    to_csv_bytes,
    to_parquet_bytes,
    with_effect_sources,
)
from retention.words import period_word, period_word_singular

ws = workspace()
info = require_dataset(needs_events=True)
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
def _load(
    folder: str, dataset_id: str, seg_id: str, policy_id: str, names_key: tuple
) -> StoredStrategies:  # ``folder``: the cache is per workspace (per person, issue 16)
    return stored_strategies(ws, dataset_id, seg_id, policy_id, dict(names_key))


names = segment_names(seg_run)
try:
    loaded = _load(str(ws.folder), info.id, seg_run.id, policy_id, tuple(sorted(names.items())))
except InputError as exc:
    stop_with_error(exc)
policy: PolicyResult = loaded.policy
strategies = loaded.strategies
table, segments = strategies.table, strategies.segments
period_name = policy.settings.get("period")
periods = period_word(period_name)
period = period_word_singular(period_name)
currency = dataset_currency(info.id)
assumed = lift_is_assumed(policy.settings)
source = effect_source(policy.settings)  # "measured in test X" for a policy retrained on a test
points_help = reward_units_sentence(policy.settings, period_name)

for assumption in policy.assumptions:
    st.warning(
        f"Assumption: {in_period_words(assumption, period_name)}", icon=":material/lightbulb:"
    )

# -- plain words: one card per segment --------------------------------------------------------
weight = float(policy.settings.get("revenue_weight") or 0.0)
cards = segment_cards(
    strategies, period=period_name, currency=currency, assumed=assumed, revenue_weight=weight,
    source=source,
)  # fmt: skip
for card in cards:
    with st.container(border=True):
        head, size = st.columns([3, 1])
        head.subheader(card.name)
        size.metric(
            "Users",
            f"{card.users:,}",
            help=f"{card.share_of_users:.0%} of all users in a segment. Now: {card.stage_mix}.",
        )
        if card.every_action_hurts:
            st.warning(
                "**Leave them alone.** With your reward settings, every strategy is estimated to do "
                "worse than doing nothing for these users, even before its cost.",
                icon=":material/do_not_disturb_on:",
            )
        lines = []
        for line in card.lines:
            why = f" — {line.why}" if line.verdict != "act" else ""
            lines.append(
                f"- **{line.stage_words.capitalize()}** ({line.users:,} users now): "
                f"{line.action_words}{why}{' ⚠️ little data' if line.thin else ''}"
            )
        st.markdown("\n".join(lines))
        facts = []
        if card.effect:
            facts.append(f"**Expected effect:** {card.effect}")
        facts.append(f"**Expected cost:** about {card.cost}.")
        facts.append(f"**Data behind it:** {card.support}.")
        st.caption("  \n".join(facts))
if (table["stage"] == "churned").any():
    st.caption(f"**How churn counts.** {CHURN_RULE}")
if assumed:
    st.caption(
        "**(assumed)**: the effect comes from the assumed lift table (this dataset has no "
        "campaign log), not from measured outcomes. Edit the lift table on the Policy page."
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
            f"**{lp:.3f} points** per user per {period} (95% interval {lp_lo:.3f} to "
            f"{lp_hi:.3f}), against **{nn:.3f} points** ({nn_lo:.3f} to {nn_hi:.3f}) for doing "
            "nothing (doubly robust off-policy estimate: what the plan would have earned, "
            "worked out from the logged campaigns)."
        )
        if check.difference is not None:
            d, d_lo, d_hi = check.difference
            text += (
                f" The difference is {d:+.3f} points (95% interval {d_lo:+.3f} to {d_hi:+.3f}): "
                f"**{check.verdict}**."
            )
        st.markdown(text, help=points_help)
    with st.expander("All off-policy estimates"):
        st.caption(
            "IPS, SNIPS and doubly robust are three ways of estimating, from the logged "
            f"campaigns, what a plan would have earned per logged decision. {points_help}"
        )
        st.dataframe(ope_view(policy.ope), hide_index=True, width="stretch")

behind = effects_behind(policy.settings, dict(names), period_name)
if behind is not None:  # issue 13: a policy retrained on a test's measured effects
    st.subheader(f"What the test measured ({source})")
    st.caption(
        f"Per segment, stage and strategy: the change of the chance of being active the next "
        f"{period} against doing nothing, with its 95% interval where the test measured it. "
        "Cells the test did not cover keep the assumed lift table and say 'assumed'."
    )
    st.dataframe(behind, hide_index=True, width="stretch")

if policy.evidence is not None and not policy.evidence.empty:
    st.subheader("What the campaign log shows")
    st.caption(
        f"Per segment, stage and action: the share of users active the next {period} after the "
        "action and after doing nothing, the change with its 95% interval, and how many logged "
        "decisions are behind each. These are measured, not assumed."
    )
    evidence = evidence_view(policy.evidence, dict(names))
    evidence["stage"] = [stage_words(s, period_name) for s in evidence["stage"]]
    st.dataframe(evidence, hide_index=True, width="stretch")

# -- numbers on demand -------------------------------------------------------------------------
with st.expander("The full strategy tables (every segment, and every segment × stage)"):
    st.caption(points_help)
    st.dataframe(
        segment_table_view(segments, period=period_name, assumed=assumed, source=source),
        hide_index=True,
        width="stretch",
    )
    st.dataframe(
        strategy_table_view(table, period=period_name),
        hide_index=True,
        width="stretch",
    )

stage_users(  # drill-down: click a segment × stage count to list those users
    info, table, seg_run=seg_run, names=names, period=period_name or "auto",
    churn_after=int(policy.settings.get("churn_after", DEFAULT_CHURN_AFTER)),
)  # fmt: skip


# -- downloads -------------------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner="Preparing the downloads…")
def _downloads(
    folder: str, dataset_id: str, seg_id: str, policy_id: str, names_key: tuple, period: str
) -> tuple[bytes, bytes, bytes]:
    """The users → action file (CSV, Parquet: for a CRM, with last seen, active periods and
    spend) and the strategy table, written once per policy, not on every rerun (issue 22)."""
    stored = _load(folder, dataset_id, seg_id, policy_id, names_key)
    per_user = crm_users(ws, dataset_id, stored.per_user, period)
    strategy_table = with_effect_sources(stored.strategies.table, stored.policy.settings)
    return to_csv_bytes(per_user), to_parquet_bytes(per_user), to_csv_bytes(strategy_table)


st.subheader("Downloads")
try:
    users_csv, users_parquet, strategies_csv = _downloads(
        str(ws.folder), info.id, seg_run.id, policy_id, tuple(sorted(names.items())),
        period_name or "auto",
    )  # fmt: skip
except InputError as exc:
    stop_with_error(exc)
c1, c2, c3, c4 = st.columns(4)
c1.download_button(
    "Users → action (CSV)",
    users_csv,
    file_name=f"{info.name}-user-actions.csv",
    mime="text/csv",
    icon=":material/download:",
    help="One row per user: segment, current stage, recommended action, last seen, active "
    f"{periods}, spend. Safe to open in a "
    "spreadsheet (formula-like cells are escaped).",
)
c2.download_button(
    "Users → action (Parquet)",
    users_parquet,
    file_name=f"{info.name}-user-actions.parquet",
    mime="application/octet-stream",
    icon=":material/download:",
)
c3.download_button(
    "Strategy table (CSV)",
    strategies_csv,
    file_name=f"{info.name}-strategies.csv",
    mime="text/csv",
    icon=":material/download:",
)


@st.cache_data(max_entries=4, show_spinner="Writing the report…")
def _report(
    folder: str,
    dataset_id: str,
    seg_id: str,
    policy_id: str,
    names_key: tuple,
    currency: str | None,
) -> bytes:
    stored = _load(folder, dataset_id, seg_id, policy_id, names_key)
    return stored_report(ws, dataset_id, stored, dict(names_key), currency=currency).encode("utf-8")


c4.download_button(
    "Report (HTML)",
    _report(str(ws.folder), info.id, seg_run.id, policy_id, tuple(sorted(names.items())), currency),
    file_name=f"{info.name}-retention-report.html",
    mime="text/html",
    icon=":material/description:",
    help="A self-contained page with the charts and the exact settings, seed and data hash.",
)

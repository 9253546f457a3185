"""The HTML report: self-contained, escaped, deterministic."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pandas as pd
import plotly.graph_objects as go
import pytest

from retention.report import Section, library_versions, render_report


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in ("src", "href") and tag in ("script", "link", "img", "iframe") and value:
                self.external.append(value)


def _report() -> str:
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    sections = [
        Section(
            "Segments <b>bold</b>",
            paragraphs=["<script>alert('x')</script> from user text"],
            tables=[("caption", pd.DataFrame({"label": ["<img src=x onerror=alert(1)>"]}))],
            figures=[fig, fig],
            warnings=["Leave them alone"],
        )
    ]
    return render_report("Report & co", {"seed": 7, "sha256": "abc"}, sections)


def test_report_is_self_contained_and_escapes_user_text():
    page = _report()
    tags = _Tags()
    tags.feed(page)
    assert tags.external == []
    assert "<script>alert('x')</script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "Segments &lt;b&gt;bold&lt;/b&gt;" in page
    # plotly.js is inlined once (a large script), not once per chart
    assert page.count("plotly.js v") <= 2 and len(page) > 1_000_000
    assert page.count('id="chart-0"') == 1 and page.count('id="chart-1"') == 1


def test_report_is_deterministic_and_states_versions():
    assert _report() == _report()
    versions = library_versions()
    assert {"python", "numpy", "pandas", "torch", "sentence-transformers"} <= set(versions)
    assert versions["torch"] in _report()


# -- the retention report reads like the app (issue 17) -------------------------------------------


class _Visible(HTMLParser):
    """The report as a reader sees it: visible text (no scripts), table headers, tags."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.headers: list[str] = []
        self.tags: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._in.append(tag)
        cls = dict(attrs).get("class") or ""
        if tag == "span" and "tag" in cls.split():
            self.tags.append(cls)

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if "script" in self._in or "style" in self._in:
            return
        self.text.append(data)
        if self._in and self._in[-1] == "th":
            self.headers.append(data)


@pytest.fixture(scope="module")
def monthly_report() -> str:
    """The report of a policy trained on planted monthly data without a campaign log (so its
    effects rest on the assumed lift table), money in pounds."""
    import duckdb

    from retention.learn import QLearner
    from retention.periods import build_panel
    from retention.policy import train_policy
    from retention.report import make_report
    from retention.segments import SegmentationResult
    from retention.strategies import build_strategies, current_stages, stage_counts
    from retention.synth import make_planted

    planted = make_planted(n_users=300, n_periods=60, seed=3)  # weekly, read by month
    panel = build_panel(duckdb.connect(), planted.events, period="month", churn_after=4)
    truth = planted.truth[["user_id", "segment"]]
    policy = train_policy(
        panel, truth, period="month", seed=0, n_bootstrap=10,
        learner=QLearner(episodes=20, n_users=300, seed=0), gammas=(0.9,), penalties=(5.0,),
    )  # fmt: skip
    # The run lifecycle stores the period and churn window with the settings (retention.runs).
    policy = replace(policy, settings={**policy.settings, "period": "month", "churn_after": 4})
    sizes = truth.groupby("segment").size()
    labels = pd.DataFrame(
        {
            "segment": sizes.index,
            "label": [f"seg {g}" for g in sizes.index],
            "keywords": "pan, <b>pot</b>",
            "users": sizes.to_numpy(),
            "representatives": "",
        }  # fmt: skip
    )
    profile = labels[["segment", "users"]].assign(share=lambda f: f["users"] / f["users"].sum())
    names = {0: "Kitchen <b>cooks</b>"}
    segmentation = SegmentationResult(
        assignments=truth, labels=labels, map2d=pd.DataFrame(), profile=profile
    )
    strategies = build_strategies(
        policy.recommendations, actions=policy.actions, names=names,
        stage_counts=stage_counts(current_stages(panel), truth),
        action_costs=policy.settings["action_costs"], projections=policy.projections,
    )  # fmt: skip
    return make_report(
        title="Report", facts={"seed": 0, "policy settings": {"action_costs": {"discount": 0.2}}},
        segmentation=segmentation, names=names, survival=None, policy=policy,
        strategies=strategies, currency="GBP",
    )  # fmt: skip


def test_report_reads_like_the_app(monthly_report):
    page = _Visible()
    page.feed(monthly_report)
    text = " ".join(page.text)
    headers = set(page.headers)
    # Human column names with units; no raw column names.
    assert {
        "users now", "share of the segment (%)", "what to do", "cost per user per month (points)",
        "value over doing nothing (points per user)", "observed user-months behind it",
        "expected cost per user per month (points)", "change (percentage points, assumed)",
        "most distinctive words", "share of users (%)",
    } <= headers  # fmt: skip
    assert not any("_" in h for h in headers), sorted(h for h in headers if "_" in h)
    # The period by its name, money in the currency, effects labelled as assumed on the number.
    assert "months" in text and "periods" not in text and "period " not in text
    assert "points per user per month" in text and "(currency of your data)" not in text
    assert re.search(r"percentage points <span class='tag assumed'>assumed</span>", monthly_report)
    assert page.tags and set(page.tags) == {"tag assumed"}
    # One plain-language card per segment, with what to do, the effect, the cost and the data.
    assert monthly_report.count("<div class='card'>") == 4
    for words in ("What to do</b>", "Expected effect:</b>", "Expected cost:</b>"):
        assert monthly_report.count(f"<b>{words}") == 4
    assert "lapsing (1 quiet month)" in text.lower()
    assert "given back if they come back" in text  # the churn rule, said where it applies
    # User text escaped in cards and tables; every table can scroll sideways, never clipped.
    assert "Kitchen &lt;b&gt;cooks&lt;/b&gt;" in monthly_report  # shown as typed
    assert "<b>cooks</b>" not in monthly_report and "<b>pot</b>" not in monthly_report
    assert monthly_report.count("<table>") == monthly_report.count("<div class='scroll'><table>")
    # Settings read as "key: value", nested ones on one line.
    assert "action_costs: discount 0.2" in text
    tags = _Tags()
    tags.feed(monthly_report)
    assert tags.external == []  # still self-contained


def test_segments_section_says_why_this_many_segments_and_which_text_model():
    """The report explains the automatic number of segments and the text model the way the
    Segments page does (the reasons come from the segmentation's stored metrics)."""
    from retention.report import _segmentation_reasons

    metrics = {
        "k": 3, "k_auto": True, "text_used": True,
        "silhouette_by_k": {"2": 0.30, "3": 0.28, "4": 0.20},
        "stability_by_k": {"2": 0.70, "3": 0.95, "4": 0.40},
        "text_model": {"reason": "Chosen automatically: 40% of the texts are not in English."},
    }  # fmt: skip
    why_k, why_model = _segmentation_reasons(metrics)
    assert why_k.startswith("Why 3 segments: of the 2 to 4 tried")
    assert "stability 0.95" in why_k and "With 4, the segments change" in why_k
    assert why_model == "Text model: Chosen automatically: 40% of the texts are not in English."
    # Segments chosen by hand, or without text: nothing to explain.
    assert _segmentation_reasons({**metrics, "k_auto": False, "text_used": False}) == []

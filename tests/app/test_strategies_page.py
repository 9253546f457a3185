"""The Strategies page on a workspace where the pipeline already ran (planted demo data)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.app.conftest import ROOT, make_app


@dataclass(frozen=True)
class PipelineWorkspaces:
    with_log: Path  # planted events + campaign log (measured effects), currency pounds
    without_log: Path  # the same events alone (assumed lift table), no currency set


@pytest.fixture(scope="module")
def pipeline_workspace(tmp_path_factory) -> PipelineWorkspaces:
    """Two workspaces with the planted demo, its segmentation and a trained policy: one with
    its campaign log, one without (a copy of the first, so the embeddings are reused)."""
    from pages.ui.common import _CURRENCY
    from retention.pipeline import PipelineConfig, run_pipeline
    from retention.workspace import Workspace

    folders = tmp_path_factory.mktemp("with_log"), tmp_path_factory.mktemp("ws") / "without_log"
    events = ROOT / "sample_data" / "planted_events.csv.gz"
    campaigns = ROOT / "sample_data" / "planted_campaigns.csv.gz"
    config = PipelineConfig(input=events, campaigns=campaigns, segments=4, workspace=folders[0])
    with_log = run_pipeline(config, tmp_path_factory.mktemp("out"))["workspace"]["dataset"]
    ws = Workspace(folders[0])
    ws.set_meta("samples.loaded", "1")
    ws.set_meta(_CURRENCY + with_log, "GBP")
    ws.close()
    shutil.copytree(folders[0], folders[1])
    config = PipelineConfig(input=events, segments=4, workspace=folders[1])
    run_pipeline(config, tmp_path_factory.mktemp("out"))
    ws = Workspace(folders[1])
    ws.delete_dataset(with_log)
    ws.close()
    return PipelineWorkspaces(*folders)


#: The page's download buttons, in order.
DOWNLOADS = [
    "Users → action (CSV)",
    "Users → action (Parquet)",
    "Strategy table (CSV)",
    "Report (HTML)",
]


def _download_labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def _open(folder: Path, monkeypatch):
    monkeypatch.setenv("RETENTION_WORKSPACE", str(folder))
    at = make_app("pages/5_strategies.py")
    assert not at.exception, at.exception
    return at


def test_strategies_page_shows_plans_warning_and_downloads(pipeline_workspace, monkeypatch):
    at = _open(pipeline_workspace.with_log, monkeypatch)
    assert len(at.subheader) >= 4
    text = " ".join(m.value for m in at.markdown)
    assert "offer a discount" in text and "send personalised recommendations" in text
    assert any("Leave them alone" in w.value for w in at.warning)
    assert any("held out from training" in m.value for m in at.markdown)
    assert _download_labels(at) == DOWNLOADS


def test_cards_state_money_periods_and_measured_effects(pipeline_workspace, monkeypatch):
    from retention.mdp import CHURN_RULE

    at = _open(pipeline_workspace.with_log, monkeypatch)
    captions = " ".join(c.value for c in at.caption)
    text = " ".join(m.value for m in at.markdown)
    # Costs in points (the rewards' unit, as the Policy page sets them), per user per week;
    # effects measured (campaign log).
    assert re.search(r"\*\*Expected cost:\*\* about [0-9.]+ points per user per week", captions)
    assert "(currency of your data)" not in captions
    assert "percentage points (measured)" in captions and "(assumed)" not in captions
    # Period words, win-back wording and the churn rule where it applies.
    assert "**Lapsing (1 quiet week)**" in text and "win them back:" in text
    assert CHURN_RULE in captions
    # The held-out check has a unit.
    assert "points** per user per week" in text
    # The campaign evidence table, with stages in words.
    assert any(h.value == "What the campaign log shows" for h in at.subheader)
    frames = [d.value for d in at.dataframe]
    evidence = next(f for f in frames if "after doing nothing (%)" in f.columns)
    assert "at risk" in set(evidence["stage"]) and "at_risk" not in set(evidence["stage"])
    # The full tables have human column names with units.
    columns = {c for f in frames for c in f.columns}
    assert "cost per user per week (points)" in columns and "value_vs_nothing" not in columns


def test_cards_label_assumed_lift_on_the_number(pipeline_workspace, monkeypatch):
    at = _open(pipeline_workspace.without_log, monkeypatch)
    captions = " ".join(c.value for c in at.caption)
    assert "percentage points (assumed)" in captions and "(measured)" not in captions
    assert "points per user per week" in captions  # costs in the rewards' unit, money or not
    assert not any(h.value == "What the campaign log shows" for h in at.subheader)
    assert any("assumed lift table" in w.value for w in at.warning)


def test_strategies_page_without_a_policy_points_to_the_next_step(app_workspace, planted_dataset):
    at = make_app("pages/5_strategies.py")
    assert not at.exception
    assert any("Find segments first" in i.value for i in at.info)


def test_who_is_where_now_counts_users_per_segment_and_stage(pipeline_workspace, monkeypatch):
    """The drill-down's table (click a number to list those users): users per segment and
    stage, the same numbers as the cards, stages in lifecycle order and in words."""
    at = _open(pipeline_workspace.with_log, monkeypatch)
    assert any(h.value == "Who is where now" for h in at.subheader)
    counts = next(d.value for d in at.dataframe if "Segment" in d.value.columns)
    assert list(counts.columns) == ["Segment", "active", "lapsing", "at risk", "churned"]
    text = " ".join(m.value for m in at.markdown)
    for row in counts.itertuples(index=False):
        assert f"**Active** ({row.active:,} users now)" in text
    users = sum(int(m.value.replace(",", "")) for m in at.metric)
    assert int(counts.iloc[:, 1:].to_numpy().sum()) == users
    assert _download_labels(at)[0] == DOWNLOADS[0]  # no list (and no download) before a click


def test_downloads_are_written_once_per_policy(pipeline_workspace, monkeypatch):
    """Issue 22: the users file for a CRM (CSV and Parquet) and the strategy table are written
    once per policy, not on every rerun of the page; every rerun still offers all four."""
    import streamlit as st

    import retention.drill
    import retention.strategies

    calls = {"crm_users": 0, "to_csv_bytes": 0}

    def counted(module, name):
        real = getattr(module, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    counted(retention.drill, "crm_users")
    counted(retention.strategies, "to_csv_bytes")
    st.cache_data.clear()  # the module's other tests opened the same workspace's page
    at = _open(pipeline_workspace.without_log, monkeypatch)
    assert calls == {"crm_users": 1, "to_csv_bytes": 2}  # users, strategy table
    at.run()
    at.run()
    assert not at.exception
    assert calls == {"crm_users": 1, "to_csv_bytes": 2}
    assert _download_labels(at) == DOWNLOADS

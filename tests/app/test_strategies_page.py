"""The Strategies page on a workspace where the pipeline already ran (planted demo data)."""

from __future__ import annotations

import pytest

from tests.app.conftest import ROOT, make_app


@pytest.fixture(scope="module")
def pipeline_workspace(tmp_path_factory):
    """A workspace with the planted demo, its segmentation and a trained policy."""
    from retention.pipeline import PipelineConfig, run_pipeline
    from retention.workspace import Workspace

    folder = tmp_path_factory.mktemp("strategies_ws")
    config = PipelineConfig(
        input=ROOT / "sample_data" / "planted_events.csv.gz",
        campaigns=ROOT / "sample_data" / "planted_campaigns.csv.gz",
        segments=4,
        workspace=folder,
    )
    run_pipeline(config, tmp_path_factory.mktemp("out"))
    ws = Workspace(folder)
    ws.set_meta("samples.loaded", "1")
    return folder


def test_strategies_page_shows_plans_warning_and_downloads(pipeline_workspace, monkeypatch):
    monkeypatch.setenv("RETENTION_WORKSPACE", str(pipeline_workspace))
    at = make_app("pages/5_strategies.py")
    assert not at.exception, at.exception
    assert len(at.subheader) >= 4
    text = " ".join(m.value for m in at.markdown)
    assert "offer a discount" in text and "send personalised recommendations" in text
    assert any("Leave them alone" in w.value for w in at.warning)
    assert any("held out from training" in m.value for m in at.markdown)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == [
        "Users → action (CSV)",
        "Users → action (Parquet)",
        "Strategy table (CSV)",
        "Report (HTML)",
    ]


def test_strategies_page_without_a_policy_points_to_the_next_step(app_workspace, planted_dataset):
    at = make_app("pages/5_strategies.py")
    assert not at.exception
    assert any("Find segments first" in i.value for i in at.info)

"""Issue 14: "Download these settings" on the Segments and Policy pages writes the command line's
settings file; fed to ``python -m retention run --settings``, it reproduces the page's run. The
pages' widgets and the settings table (retention/settings.py) cannot drift apart."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
import streamlit

from retention.cli import main
from retention.samples import SAMPLE_DIR
from retention.settings import BY_KEY, SETTINGS, load_settings
from tests.app.conftest import finish_jobs, make_app

SEGMENTS, POLICY = "pages/2_segments.py", "pages/4_policy.py"


@pytest.fixture
def downloads(monkeypatch):
    """What each "Download these settings" button would give, by page run (the last wins)."""
    got: dict[str, str] = {}
    real = streamlit.download_button

    def spy(label, data=None, *args, **kwargs):
        if label == "Download these settings":
            got["file"] = data
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", spy)
    return got


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_the_downloaded_settings_reproduce_the_pages_run_on_the_command_line(
    app_workspace, planted_dataset, downloads, tmp_path
):
    ws = app_workspace
    # Segments: settings off their defaults, then Find segments.
    at = make_app(SEGMENTS)
    at.selectbox(key="segments.k").set_value(5)  # not what "auto" finds (4)
    at.slider(key="segments.text_weight").set_value(0.6)
    at.run()
    _button(at, "Find segments").click().run()
    finish_jobs(at)
    assert not at.exception, at.exception
    seg_file = tomllib.loads(downloads["file"])
    assert seg_file["segments"] == 5 and seg_file["text_weight"] == 0.6
    assert seg_file["clustering"] == "kmeans" and "gamma" not in seg_file

    # Policy: rewards and learner off their defaults, then Train.
    at = make_app(POLICY)
    at.slider(key="policy.gamma").set_value(0.8)
    at.slider(key="policy.penalty").set_value(8.0)
    at.slider(key="policy.episodes").set_value(30)
    at.number_input(key="policy.seed").set_value(3)
    at.run()
    _button(at, "Train").click().run()
    finish_jobs(at)
    assert not at.exception, at.exception
    text = downloads["file"]
    assert text.startswith("# Retention Studio settings, downloaded from the Policy page")
    assert "give that file with --campaigns FILE" in text  # the dataset has a campaign log
    settings = tmp_path / "retention-settings.toml"
    settings.write_text(text, encoding="utf-8")
    values = load_settings(settings)  # the file the command line reads, checked
    assert values["gamma"] == 0.8 and values["churn_penalty"] == 8.0
    assert values["episodes"] == 30 and values["seed"] == 3 and values["segments"] == 5
    assert values["segment_seed"] == 0 and values["campaign_timing"] == "nearest"

    page_seg = ws.runs("segmentation", planted_dataset)
    page_pol = ws.runs("policy", planted_dataset)
    assert len(page_seg) == 1 and len(page_pol) == 1
    page_users = ws.load_run(page_seg["id"].iloc[0]).artifacts["assignments"]
    page_policy = ws.load_run(page_pol["id"].iloc[0]).artifacts["recommendations"]

    # The command line, on the same files, in a workspace of its own (nothing reused).
    out = tmp_path / "out"
    argv = ["run", str(SAMPLE_DIR / "planted_events.csv.gz"),
            "--campaigns", str(SAMPLE_DIR / "planted_campaigns.csv.gz"),
            "--settings", str(settings), "--out", str(out),
            "--workspace", str(tmp_path / "cli-ws"), "--quiet"]  # fmt: skip
    assert main(argv) == 0

    cli_users = pd.read_csv(out / "user_segments.csv", dtype={"user_id": str})
    both = page_users.astype({"user_id": str}).merge(cli_users, on="user_id")
    assert len(both) == len(page_users) == len(cli_users)
    assert (both["segment_x"] == both["segment_y"]).all()  # the same segments, user by user

    cli_policy = pd.read_csv(out / "strategies.csv")
    page_plan = {(int(r.segment), r.stage): r.action for r in page_policy.itertuples()}
    cli_plan = {(int(r.segment), r.stage): r.action for r in cli_policy.itertuples()}
    assert cli_plan == page_plan  # the same action for every segment and stage
    q = [c for c in page_policy.columns if c.startswith("q_")]
    paired = page_policy.merge(cli_policy, on=["segment", "stage"], suffixes=("", "_cli"))
    assert len(paired) == len(page_policy) and q
    for column in q:  # the same values (strategies.csv keeps 10 significant digits)
        assert np.allclose(paired[column], paired[f"{column}_cli"], rtol=1e-4, atol=1e-6)


def test_every_page_widget_of_the_settings_table_is_on_its_page(app_workspace, planted_dataset):
    """The table's widget keys, defaults and slider bounds are the pages' (no drift)."""
    ws = app_workspace
    from tests.app.test_policy_settings import _segment

    _segment(ws, planted_dataset, ["home", "kids", "garden", "fashion"])
    seen: dict[str, object] = {}
    for page in (SEGMENTS, POLICY):
        at = make_app(page)
        assert not at.exception, at.exception
        for kind in ("slider", "selectbox", "radio", "number_input", "text_input"):
            for widget in at.get(kind):
                seen[widget.key] = widget
    for setting in SETTINGS:
        if setting.page not in ("Segments", "Policy") or setting.kind == "table":
            continue
        key = setting.widget if setting.key != "exploration" else "policy.epsilon.q"
        assert key in seen, f"{setting.key}: no widget {key} on the {setting.page} page"
        widget = seen[key]
        if setting.slider is not None:
            proto = widget.proto
            assert (proto.min, proto.max) == tuple(setting.slider), setting.key
        if setting.default is not None and setting.key not in ("segments", "text_model"):
            assert widget.value == setting.default, setting.key
    assert BY_KEY["exploration"].default is None  # 0.5 for Q-learning, by the learner

"""AppTest fixtures: a fresh workspace per test, the app run headless in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_workspace(tmp_path, monkeypatch):
    """A fresh workspace the app will use (samples not preloaded, to keep tests fast)."""
    from retention.workspace import Workspace

    folder = tmp_path / "ws"
    monkeypatch.setenv("RETENTION_WORKSPACE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws = Workspace(folder)
    ws.set_meta("samples.loaded", "1")
    yield ws
    ws.close()


@pytest.fixture
def planted_dataset(app_workspace):
    """The planted demo data (events + campaign log) saved in the app's workspace; its id."""
    from retention.samples import SAMPLES, load_sample

    return load_sample(app_workspace, SAMPLES[1])


def make_app(page: str | None = None):
    """An AppTest of the whole app (router + sidebar), optionally switched to a page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at

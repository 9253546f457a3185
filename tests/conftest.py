"""Shared fixtures. No test reaches the network: the model loads from the installed package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same generated examples every run (derandomized); local runs keep exploring.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path):
    """A fresh workspace in a temporary folder."""
    from retention.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def planted():
    """A small planted data set (see retention.synth)."""
    from retention.synth import make_planted

    return make_planted(n_users=600, n_periods=30, seed=7)


@pytest.fixture
def shared_data() -> Path:
    """The real public data sets; tests using them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _spark_only_in_spark_tests(request, monkeypatch):
    """The Spark tests share one session for the whole run (tests/spark/conftest.py); outside
    them the segmentation path must not see it, or it would embed through the Spark path (the
    driver then embeds in ONNX Runtime fp32, not this CPU's default: issue 19, s9) and a test
    comparing a job worker's run with an in-process one would compare two runtimes."""
    if "spark" in Path(str(request.node.fspath)).parts:
        return
    import sys

    embed = sys.modules.get("retention.engine.embed")
    if embed is not None:
        monkeypatch.setattr(embed, "_running_spark", lambda: None)

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
    # issue 19: no embedding ahead of the click unless a test asks (it would change what the
    # tests' jobs embed and see); tests/app/test_segments_ahead.py turns it on
    monkeypatch.setenv("RETENTION_PREFETCH", "0")
    ws = Workspace(folder)
    ws.set_meta("samples.loaded", "1")
    yield ws
    from retention.jobs import close_queues

    close_queues()  # the app's job queue on this workspace and its worker process
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


def finish_jobs(at, timeout: float = 300.0):
    """Wait until the app's background jobs have ended (the browser's page polls; an AppTest
    does not), then run the page again so it shows the result."""
    import os
    import time

    from retention.workspace import ACTIVE_JOB_STATUSES, Workspace

    ws = Workspace(os.environ["RETENTION_WORKSPACE"])
    deadline = time.monotonic() + timeout
    while ws.jobs(statuses=ACTIVE_JOB_STATUSES):
        if time.monotonic() > deadline:
            raise AssertionError("the background jobs did not end")
        time.sleep(0.1)
    return at.run()


def save_planted(ws, planted, *, name: str = "Planted", sha256: str | None = "planted-test") -> str:
    """A :func:`retention.synth.make_planted` world's events saved as a dataset; its id."""
    return ws.save_dataset(
        name=name,
        source_name="planted.csv",
        sha256=sha256,
        shape="events",
        frames={"events": planted.events},
        mapping={"user": "user_id", "time": "ts", "amount": "amount", "text": "text"},
        report={},
    )


def finished_segmentation(ws, dataset_id: str, assignments, names: list[str]) -> str:
    """A finished segmentation run with these ``assignments`` (``user_id, segment``, segments
    0 to len(names) - 1) and segment ``names``, without embedding anything; its id."""
    import pandas as pd

    run_id = ws.start_run("segmentation", dataset_id, {"k": len(names)})
    labels = pd.DataFrame(
        {
            "segment": list(range(len(names))),
            "label": names,
            "keywords": [""] * len(names),
            "users": assignments["segment"].value_counts().sort_index().tolist(),
            "representatives": [""] * len(names),
        }
    )
    ws.finish_run(
        run_id,
        metrics={},
        artifacts={"assignments": assignments[["user_id", "segment"]], "labels": labels},
    )
    return run_id


def truth_segmentation(ws, dataset_id: str) -> str:
    """A finished segmentation run of the planted demo with the planted truth as its
    assignments (no embedding: a page test that needs segments); its id."""
    import pandas as pd

    from retention.samples import SAMPLE_DIR

    truth = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})
    return finished_segmentation(ws, dataset_id, truth, ["home", "kids", "garden", "fashion"])

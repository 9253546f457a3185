"""Issue 19: opening the app on a dataset starts embedding its texts in the background, so the
Segments page's first *Find segments* reads cached vectors (and embeds nothing itself)."""

from __future__ import annotations

import pytest

from retention import jobs
from retention.embeddings import text_hash
from retention.synth import make_planted
from tests.app.conftest import finish_jobs, make_app, save_planted

PAGE = "pages/2_segments.py"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=150, n_periods=12, seed=3, n_segments=3)


def test_opening_the_app_embeds_the_datasets_texts_before_the_click(
    app_workspace, planted, monkeypatch
):
    monkeypatch.setenv(jobs.PREFETCH_ENV, "1")  # the fixture turns it off for other tests
    dataset_id = save_planted(app_workspace, planted, sha256=None)
    at = make_app()  # the Data page: nothing about segments asked yet
    queue = next(q for q in jobs._open_queues if q.ws.folder == app_workspace.folder)
    ahead = queue._prefetched[dataset_id]
    texts = sorted({t.strip() for t in planted.events["text"].dropna() if t.strip()})
    assert ahead.result(timeout=300) == len(texts)
    assert len(app_workspace.cached_vectors(MODEL, [text_hash(t) for t in texts])) == len(texts)

    at.switch_page(PAGE)
    at.run()
    next(b for b in at.button if b.label == "Find segments").click().run()
    at = finish_jobs(at)
    assert not at.exception
    run = app_workspace.runs("segmentation", dataset_id)
    metrics = app_workspace.load_run(run["id"].iloc[-1]).metrics
    assert metrics["texts_embedded"] == 0 and metrics["texts_cached"] == len(texts)
    assert any(m.label == "Segments" for m in at.metric)

"""Issue 19: the server embeds a dataset's texts ahead of the Segments page's click
(:func:`retention.jobs.prefetch_texts`), in its job worker, and gives way to any job.

Real worker processes (spawn) and the bundled English model on a small planted dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention import jobs
from retention.embeddings import SentenceTransformerEmbedder, text_hash
from retention.jobs import (
    JobCancelled,
    JobQueue,
    JobServer,
    prefetch_texts,
    submit_segmentation,
)
from retention.private import make_private_dir
from retention.segments import SegmentSettings, segment_users
from retention.synth import make_planted
from retention.workspace import Workspace
from tests.fakes import save_events

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=150, n_periods=12, seed=3, n_segments=3)


def _texts(events: pd.DataFrame) -> list[str]:
    texts = events["text"].dropna().astype(str).str.strip()
    return sorted(set(texts[texts != ""]))


def test_prefetch_embeds_the_texts_ahead_and_the_job_embeds_nothing(
    workspace, planted, monkeypatch
):
    monkeypatch.delenv(jobs.PREFETCH_ENV, raising=False)
    dataset_id = save_events(workspace, planted.events)
    texts = _texts(planted.events)
    queue = JobQueue(workspace, workers=1)
    try:
        ahead = prefetch_texts(queue, dataset_id)
        assert ahead is not None and ahead.result(timeout=300) == len(texts)
        assert prefetch_texts(queue, dataset_id) is None  # once per dataset and server
        hashes = [text_hash(t) for t in texts]
        cached = workspace.cached_vectors(MODEL, hashes)
        assert set(cached) == set(hashes)
        # The same vectors as embedding them all at once here (another batching: float noise).
        direct = SentenceTransformerEmbedder().embed(texts)
        got = np.stack([cached[h] for h in hashes])
        assert np.min(np.sum(got * direct, axis=1)) > 0.9999

        job = submit_segmentation(queue, dataset_id, SegmentSettings(k=3))
        done = _wait_done(workspace, job.id)
        assert done.status == "done", done.error
        metrics = workspace.load_run(done.run_id).metrics
        assert metrics["texts_embedded"] == 0 and metrics["texts_cached"] == len(texts)
        assert metrics["vectors_reused"] is True  # the user vectors were made ahead too
        # The embedding ahead does not change the segments: the same as from scratch, inline.
        fresh = segment_users(planted.events, settings={"k": 3}).assignments
        shown = workspace.load_run(done.run_id).artifacts["assignments"]
        key = ["user_id"]
        pd.testing.assert_frame_equal(
            shown[["user_id", "segment"]].sort_values(key).reset_index(drop=True),
            fresh[["user_id", "segment"]].sort_values(key).reset_index(drop=True),
        )
    finally:
        queue.close()


def test_prefetch_gives_way_to_a_waiting_job(workspace, planted, monkeypatch):
    dataset_id = save_events(workspace, planted.events)
    queue = JobQueue(workspace, workers=1)
    try:
        monkeypatch.setattr(jobs, "PREFETCH_CHUNK", 1)
        with queue.server._lock:
            queue.server._order[("elsewhere", "a job")] = None  # a job waits for the worker
        assert jobs._prefetch(queue, dataset_id) == 0  # stopped before its first chunk
        assert not workspace.cached_vectors(MODEL, [text_hash(t) for t in _texts(planted.events)])
        assert not queue.server._pools  # no worker was even started for it
    finally:
        queue.server._order.clear()
        queue.close()


def test_a_job_handed_to_the_server_stops_the_work_ahead_at_its_next_step(tmp_path):
    """issue 19 (s8-segk): a user's job does not wait for a chunk of texts embedded ahead to
    end: the worker stops between two embedding batches, and the batches not yet started are
    not run (in-process here: the worker's code, the bundled model)."""
    server = JobServer(workers=1)
    folder = make_private_dir(tmp_path / "warm")
    texts = [f"garden tool number {i}" for i in range(300)]
    # the ONNX path (its batch pool) on any CPU: with native bf16 the default may be torch
    english = SentenceTransformerEmbedder(batch_size=8, precision="fp32", backend="onnx")
    session, tokenizer, length = english.onnx_session()
    runs: list[int] = []

    class Counted:  # the ONNX session, counting the batches it runs
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, *args, **kwargs):
            runs.append(1)
            return session.run(*args, **kwargs)

    english.onnx_session = lambda: (Counted(), tokenizer, length)
    english.embed(texts)
    every = len(runs)  # the batches of the whole chunk
    runs.clear()
    seen: list[str] = []
    reporter = jobs._Reporter(folder)

    def progress(fraction, message):
        seen.append(message)
        if message.startswith("Embedding texts") and not server._order:
            # a user's job arrives while the worker embeds the chunk (its first batch done)
            server.dispatch(("a workspace", "a job"), lambda: None)
        reporter(fraction, message)

    class Choice:  # what _warm_worker is given: the automatic choice, here the English model
        def embedder(self):
            return english

    try:
        with server.ahead_work(folder), pytest.raises(JobCancelled):
            jobs._warm_worker(folder, Choice(), texts, progress=progress)
        assert len([m for m in seen if m.startswith("Embedding texts")]) == 1
        assert every > 10 and len(runs) < every / 2  # the other batches never ran
        assert not server._ahead  # the work ahead is no longer registered
    finally:
        server.shutdown()


def test_a_job_stops_the_user_vectors_made_ahead_and_they_are_made_by_the_job(
    workspace, planted, monkeypatch
):
    """The prefetch's last step (the default settings' user vectors) gives way to a job that
    comes while the worker makes them: nothing half-made is kept, the dataset's kept copy stays
    for the job, and the job's segments are those of a from-scratch run."""
    monkeypatch.delenv(jobs.PREFETCH_ENV, raising=False)
    dataset_id = save_events(workspace, planted.events)
    queue = JobQueue(workspace, workers=1)
    real_submit = queue.server.submit_work

    def submit(fn, folder, args, kwargs=None):
        if fn is jobs._vectors_worker:  # a user's job comes just as this step starts
            queue.server.dispatch(("a workspace", "a job"), lambda: None)
        return real_submit(fn, folder, args, kwargs)

    monkeypatch.setattr(queue.server, "submit_work", submit)
    try:
        assert jobs._prefetch(queue, dataset_id) == len(_texts(planted.events))  # texts: done
        assert not list((workspace.folder / "segment_vectors").glob(f"{dataset_id}.*"))
        [(key, kept)] = queue._inputs.items()
        assert key[0] == dataset_id and (kept / "retention.duckdb").exists()  # copy kept

        monkeypatch.setattr(queue.server, "submit_work", real_submit)
        job = submit_segmentation(queue, dataset_id, SegmentSettings(k=3))
        done = _wait_done(workspace, job.id)
        assert done.status == "done", done.error
        metrics = workspace.load_run(done.run_id).metrics
        assert metrics["texts_embedded"] == 0 and not metrics.get("vectors_reused")
        assert queue._inputs[key] == kept  # the job used the kept copy
        fresh = segment_users(planted.events, settings={"k": 3}).assignments
        shown = workspace.load_run(done.run_id).artifacts["assignments"]
        pd.testing.assert_frame_equal(
            shown[["user_id", "segment"]].sort_values("user_id").reset_index(drop=True),
            fresh[["user_id", "segment"]].sort_values("user_id").reset_index(drop=True),
        )
    finally:
        queue.close()


def test_prefetch_can_be_turned_off(workspace, planted, monkeypatch):
    dataset_id = save_events(workspace, planted.events)
    monkeypatch.setenv(jobs.PREFETCH_ENV, "0")
    queue = JobQueue(workspace, workers=1)
    try:
        assert not jobs.prefetch_enabled()
        assert prefetch_texts(queue, dataset_id) is None
    finally:
        queue.close()
    monkeypatch.delenv(jobs.PREFETCH_ENV)
    inline = JobQueue(workspace, workers=0)  # no worker process to warm
    try:
        assert prefetch_texts(inline, dataset_id) is None
    finally:
        inline.close()


def _wait_done(ws: Workspace, job_id: str, timeout: float = 300.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ws.job(job_id)
        if not job.active:
            return job
        time.sleep(0.05)
    raise AssertionError("the segmentation job did not end")

"""Issue 19 (s7-segk): a re-run with another k copies no events and aggregates none.

The job queue keeps one copy of a dataset for its jobs (:meth:`retention.jobs.JobQueue.
kept_input`) and a worker keeps the dataset's per-user facts, so the Segments page's re-run
with another k only clusters, labels, maps and profiles — and gives what a from-scratch run
with that k gives. Real worker processes (spawn) where it matters; the bundled English model on
a small planted dataset."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from retention import jobs
from retention.jobs import JobQueue, submit_segmentation
from retention.runs import run_segmentation
from retention.segments import SegmentSettings
from retention.segments import features as seg_features
from retention.segments import pipeline as seg_pipeline
from retention.workspace import Workspace
from tests.fakes import save_events

ARTIFACTS = ("assignments", "labels", "map2d", "profile")


@pytest.fixture(scope="module")
def small_planted():
    from retention.synth import make_planted

    return make_planted(n_users=150, n_periods=12, seed=3, n_segments=3)


def _done(ws: Workspace, job_id: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ws.job(job_id)
        if not job.active:
            assert job.status == "done", job.error
            return job
        time.sleep(0.05)
    raise AssertionError("the segmentation job did not end")


@pytest.fixture
def exports(workspace, monkeypatch):
    """How many times the workspace copied a dataset for a job (its events included)."""
    calls: list[str] = []
    original = Workspace.export_job_input

    def counted(self, folder, dataset_id, model_id):
        calls.append(dataset_id)
        return original(self, folder, dataset_id, model_id)

    monkeypatch.setattr(Workspace, "export_job_input", counted)
    return calls


def _from_scratch(tmp_path, events, settings) -> dict[str, pd.DataFrame]:
    """The run's artifacts computed inline in a fresh workspace: nothing kept, nothing cached."""
    fresh = Workspace(tmp_path / "fresh")
    try:
        run_id = run_segmentation(fresh, save_events(fresh, events), settings=settings)
        return fresh.load_run(run_id).artifacts
    finally:
        fresh.close()


def _same(stored: dict, expected: dict) -> None:
    for name in ARTIFACTS:
        pd.testing.assert_frame_equal(stored[name], expected[name], obj=name)


def test_another_k_in_a_worker_copies_no_events_and_gives_the_from_scratch_segments(
    workspace, small_planted, exports, tmp_path, monkeypatch
):
    monkeypatch.setenv(jobs.PREFETCH_ENV, "0")
    imports: list[str] = []
    original = Workspace.import_vectors

    def counted(self, db_path, model_id):
        imports.append(model_id)
        return original(self, db_path, model_id)

    monkeypatch.setattr(Workspace, "import_vectors", counted)
    dataset_id = save_events(workspace, small_planted.events)
    queue = JobQueue(workspace, workers=1)
    try:
        first = _done(workspace, submit_segmentation(queue, dataset_id, SegmentSettings(k=3)).id)
        assert exports == [dataset_id]  # the first job copies the dataset once ...
        assert len(imports) == 1  # (and the vectors it embedded into the cache)
        again = _done(workspace, submit_segmentation(queue, dataset_id, SegmentSettings(k=4)).id)
        assert exports == [dataset_id]  # ... and another k reuses that copy
        assert len(imports) == 1  # it embedded nothing: nothing to copy back
        run = workspace.load_run(again.run_id)
        assert run.metrics["vectors_reused"] is True
        assert run.artifacts["assignments"]["segment"].nunique() == 4
        _same(run.artifacts, _from_scratch(tmp_path, small_planted.events, SegmentSettings(k=4)))
        assert workspace.load_run(first.run_id).artifacts["assignments"]["segment"].nunique() == 3
    finally:
        queue.close()
    assert list(queue.folder.glob(f"{jobs.KEPT_PREFIX}*"))  # kept while the server runs
    JobQueue(workspace, workers=1).close()  # a new queue (a restart) starts without copies
    assert not list(queue.folder.glob(f"{jobs.KEPT_PREFIX}*"))


def test_another_k_aggregates_no_events_and_gives_the_from_scratch_segments(
    workspace, small_planted, exports, tmp_path, monkeypatch
):
    """Inline (0 workers: the job's worker code runs in this process, where it is counted)."""
    expected = {
        k: _from_scratch(tmp_path / str(k), small_planted.events, SegmentSettings(k=k))
        for k in (4, 2)
    }
    calls: list[str] = []
    original = seg_features.aggregate_users

    def counted(con, ref):
        calls.append(ref)
        return original(con, ref)

    monkeypatch.setattr(seg_features, "aggregate_users", counted)
    monkeypatch.setattr(seg_pipeline, "aggregate_users", counted)
    monkeypatch.setattr(jobs, "_user_data", {})
    dataset_id = save_events(workspace, small_planted.events)
    queue = JobQueue(workspace, workers=0)
    try:
        _done(workspace, submit_segmentation(queue, dataset_id, SegmentSettings(k=3)).id)
        assert len(calls) == 1 and exports == [dataset_id]
        for k in (4, 2):
            job = _done(workspace, submit_segmentation(queue, dataset_id, SegmentSettings(k=k)).id)
            assert len(calls) == 1 and exports == [dataset_id]  # no events read again
            _same(workspace.load_run(job.run_id).artifacts, expected[k])
    finally:
        queue.close()


def test_a_kept_copy_is_held_by_one_job_and_dropped_after_an_error(
    workspace, small_planted, exports
):
    first = save_events(workspace, small_planted.events, name="First")
    queue = JobQueue(workspace, workers=0)
    try:
        with queue.kept_input(first, None) as kept:
            assert kept is not None and kept.name.startswith(jobs.KEPT_PREFIX)
            with queue.kept_input(first, None) as busy:
                assert busy is None  # held: a second job at once copies its own
        with queue.kept_input(first, None) as again:
            assert again == kept and exports == [first]  # reused, not copied again
        with pytest.raises(RuntimeError), queue.kept_input(first, None):
            raise RuntimeError("the worker died")
        assert not kept.exists()  # a copy a failed job used is not trusted
        with queue.kept_input(first, None) as remade:
            assert remade is not None and exports == [first, first]
        # Deleting the dataset deletes its copy at once (its events must not outlive it);
        # at most KEPT_INPUTS are kept.
        workspace.delete_dataset(first)
        assert not remade.exists()
        others = [
            save_events(workspace, small_planted.events, name=f"Other {i}")
            for i in range(jobs.KEPT_INPUTS + 1)
        ]
        for other in others:
            with queue.kept_input(other, None):
                pass
        assert not remade.exists()
        assert [key[0] for key in queue._inputs] == others[-jobs.KEPT_INPUTS :]
        assert len(list(queue.folder.glob(f"{jobs.KEPT_PREFIX}*"))) == jobs.KEPT_INPUTS
    finally:
        queue.close()

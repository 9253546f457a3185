"""The job queue: heavy work in worker processes, its state in the workspace.

Real worker processes (spawn) throughout; the ``test.wait`` kind (tests/job_fakes.py) is held
running until the test releases it, so every step is waited on by condition, never by time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from retention import jobs
from retention.errors import InputError
from retention.jobs import JobQueue, submit_segmentation, submit_training
from retention.workspace import Workspace
from tests import job_fakes
from tests.fakes import save_events

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, what: str, timeout: float = 300.0):
    """Poll ``condition`` until it returns something truthy (a generous limit: only a hang
    fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fake_kind(monkeypatch):
    monkeypatch.setitem(jobs.KINDS, "test.wait", job_fakes.run_wait)


@pytest.fixture
def queue(workspace, fake_kind):
    q = JobQueue(workspace, workers=1)
    yield q
    q.close()


def control(tmp_path: Path, name: str, *, release: bool = False, bad: bool = False) -> str:
    folder = tmp_path / name
    folder.mkdir()
    if bad:
        (folder / "bad").touch()
    if release:
        (folder / "release").touch()
    return str(folder)


def status(ws: Workspace, job_id: str, *wanted: str):
    return wait_for(lambda: ws.job(job_id).status in wanted and ws.job(job_id), f"{wanted}")


def test_progress_is_read_from_the_workspace_by_any_reader(queue, workspace, tmp_path):
    where = control(tmp_path, "a")
    job = queue.submit("test.wait", None, {"control": where})
    assert job.status == "queued" and job.owner == "local"
    reader = Workspace(workspace.folder)  # another page, another tab: same rows
    seen = wait_for(
        lambda: (j := reader.job(job.id)).message and j.message.startswith("waiting") and j,
        "progress from the worker",
    )
    assert seen.status == "running" and seen.progress == 0.5
    assert queue.view(job.id).ahead == 0
    Path(where, "release").touch()
    done = status(reader, job.id, "done")
    assert done.progress == 1.0 and done.error is None and done.finished is not None
    assert not (workspace.folder / "jobs" / job.id).exists()  # its private copy is gone


def test_a_page_waiting_on_a_job_learns_its_end_as_it_is_recorded(queue, workspace, tmp_path):
    """Issue 19 (s9-segk): a progress box waits on the server for the job's end (between two
    of the browser's polls) and reads it already recorded: one wait, not a poll after it."""
    import threading

    where = control(tmp_path, "a")
    job = queue.submit("test.wait", None, {"control": where})
    status(workspace, job.id, "running")
    assert queue.wait_ended(job.id, 0.0) is False  # still running: the box draws its progress
    seen: dict = {}
    holding = threading.Event()  # the poll holds the job's end event: released only then

    class Watched(dict):
        def get(self, key, default=None):
            value = super().get(key, default)
            holding.set()
            return value

    queue._ends = Watched(queue._ends)

    def page_poll() -> None:
        seen["ended"] = queue.wait_ended(job.id, 300.0)  # only a hang reaches the limit
        seen["status"] = Workspace(workspace.folder).job(job.id).status  # what the page reads

    poll = threading.Thread(target=page_poll)
    poll.start()
    wait_for(holding.is_set, "the page's poll to wait")
    Path(where, "release").touch()
    poll.join(300.0)
    assert seen == {"ended": True, "status": "done"}
    # an ended job, or one no queue here holds (another process's), is not waited for
    assert queue.wait_ended(job.id, 300.0) is False
    assert queue.wait_ended("not-a-job", 300.0) is False
    # a queued job cancelled before it started ends too (its waiter is let go)
    running = queue.submit("test.wait", None, {"control": control(tmp_path, "b")})
    queued = queue.submit("test.wait", None, {"control": control(tmp_path, "c", release=True)})
    status(workspace, running.id, "running")
    queue.cancel(queued.id)
    assert queue.wait_ended(queued.id, 300.0) is False  # let go already: nothing to wait for
    assert workspace.job(queued.id).status == "cancelled"
    Path(tmp_path, "b", "release").touch()
    status(workspace, running.id, "done")


def test_the_same_request_twice_is_one_job(queue, tmp_path):
    settings = {"control": control(tmp_path, "a", release=True)}
    first = queue.submit("test.wait", None, settings)
    again = queue.submit("test.wait", None, settings)
    assert again.id == first.id


def test_cancel_a_queued_and_a_running_job(queue, workspace, tmp_path):
    running = queue.submit("test.wait", None, {"control": control(tmp_path, "a")})
    status(workspace, running.id, "running")
    queued = queue.submit("test.wait", None, {"control": control(tmp_path, "b", release=True)})
    assert queue.view(queued.id).ahead == 1
    queue.cancel(queued.id)
    assert workspace.job(queued.id).status == "cancelled"  # at once: it never started

    queue.cancel(running.id)
    stopped = status(workspace, running.id, "cancelled", "failed")
    assert stopped.status == "cancelled" and stopped.error == "Cancelled."

    after = queue.submit("test.wait", None, {"control": control(tmp_path, "c", release=True)})
    assert status(workspace, after.id, "done", "failed").status == "done"


def test_a_killed_worker_fails_its_job_and_the_next_job_runs(queue, workspace, tmp_path):
    where = control(tmp_path, "a")
    job = queue.submit("test.wait", None, {"control": where})
    pid = int(
        wait_for(lambda: Path(where, "pid").is_file() and Path(where, "pid").read_text(), "pid")
    )
    os.kill(pid, signal.SIGKILL)
    failed = status(workspace, job.id, "failed", "done")
    assert failed.status == "failed" and failed.error == jobs.WORKER_DIED

    nxt = queue.submit("test.wait", None, {"control": control(tmp_path, "b", release=True)})
    assert status(workspace, nxt.id, "done", "failed").status == "done"


def test_workers_run_below_the_web_servers_cpu_priority(queue, workspace, tmp_path):
    where = control(tmp_path, "a")
    queue.submit("test.wait", None, {"control": where})
    pid = int(
        wait_for(lambda: Path(where, "pid").is_file() and Path(where, "pid").read_text(), "pid")
    )
    server = psutil.Process().nice()
    assert psutil.Process(pid).nice() == min(server + jobs.WORKER_NICE, 19)
    Path(where, "release").touch()


def test_worker_priority_setting_is_checked():
    assert jobs.worker_nice("0") == 0 and jobs.worker_nice(5) == 5
    with pytest.raises(InputError, match="RETENTION_WORKER_NICE must be a whole number"):
        jobs.worker_nice("fast")
    with pytest.raises(InputError, match="from 0 to 19"):
        jobs.worker_nice(25)


def test_bad_input_inside_a_job_fails_it_with_the_message(queue, workspace, tmp_path):
    job = queue.submit(
        "test.wait", None, {"control": control(tmp_path, "a", release=True, bad=True)}
    )
    failed = status(workspace, job.id, "failed", "done")
    assert failed.status == "failed" and failed.error == job_fakes.BAD_INPUT
    nxt = queue.submit("test.wait", None, {"control": control(tmp_path, "b", release=True)})
    assert status(workspace, nxt.id, "done", "failed").status == "done"


def test_one_training_at_a_time_per_signed_in_person(queue, workspace, tmp_path, monkeypatch):
    monkeypatch.setitem(jobs.OWNER_LIMITS, "test.wait", 1)
    first = queue.submit("test.wait", None, {"control": control(tmp_path, "a")}, owner="ann@x.org")
    with pytest.raises(InputError, match="one test.wait at a time per person"):
        queue.submit("test.wait", None, {"control": control(tmp_path, "b")}, owner="ann@x.org")
    other = queue.submit("test.wait", None, {"control": control(tmp_path, "c")}, owner="bo@x.org")
    local = [
        queue.submit("test.wait", None, {"control": control(tmp_path, f"l{i}")}) for i in range(2)
    ]
    assert len({first.id, other.id, *(j.id for j in local)}) == 4  # no sign-in: no limit
    assert jobs.OWNER_LIMITS["policy"] == 1  # the real rule: one training at a time
    for job in (first, other, *local):
        queue.cancel(job.id)
    status(workspace, first.id, "cancelled")
    again = queue.submit("test.wait", None, {"control": control(tmp_path, "d")}, owner="ann@x.org")
    queue.cancel(again.id)


_CRASHING_SERVER = textwrap.dedent(
    """
    import sys, time
    from retention import jobs
    from retention.workspace import Workspace
    from tests import job_fakes

    jobs.KINDS["test.wait"] = job_fakes.run_wait
    ws = Workspace(sys.argv[1])
    queue = jobs.JobQueue(ws, workers=1)
    running = queue.submit("test.wait", None, {"control": sys.argv[2]})
    queued = queue.submit("test.wait", None, {"control": sys.argv[3]})
    while ws.job(running.id).status != "running":
        time.sleep(0.05)
    print(running.id, queued.id, flush=True)
    time.sleep(600)  # killed here
    """
)


def test_a_restart_marks_running_jobs_interrupted_and_runs_queued_ones(tmp_path, fake_kind):
    folder = tmp_path / "ws"
    first, second = control(tmp_path, "a"), control(tmp_path, "b", release=True)
    server = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_SERVER, str(folder), first, second],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        running_id, queued_id = server.stdout.readline().split()
        wait_for(lambda: Path(first, "pid").is_file(), "the worker to start")
    finally:
        server.kill()  # kill -9: no chance to tidy up
        server.wait()
    worker = psutil.Process(int(Path(first, "pid").read_text()))
    wait_for(  # the killed server's worker does not outlive it
        lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE,
        "the orphaned worker to end",
    )

    ws = Workspace(folder)
    try:
        interrupted = ws.job(running_id)
        assert interrupted.status == "interrupted" and "app stopped" in interrupted.error
        assert ws.job(queued_id).status == "queued"
        queue = JobQueue(ws, workers=1)  # the app starting again takes the queued job up
        try:
            assert status(ws, queued_id, "done", "failed").status == "done"
        finally:
            queue.close()
    finally:
        ws.close()


# ----------------------------------------------------------------------------- real work


@pytest.fixture(scope="module")
def small_planted():
    from retention.synth import make_planted

    return make_planted(n_users=150, n_periods=12, seed=3, n_segments=3)


def test_segmentation_and_training_jobs_store_what_inline_runs_store(workspace, small_planted):
    from retention.policy_runs import PolicyChoices, PolicyForm, policy_choices, train_from_form
    from retention.runs import load_policy, run_segmentation
    from retention.segments import SegmentSettings

    dataset_id = save_events(workspace, small_planted.events)
    settings = SegmentSettings(k=3)
    queue = JobQueue(workspace, workers=1)
    try:
        job = submit_segmentation(queue, dataset_id, settings)
        seg = status(workspace, job.id, "done", "failed")
        assert seg.status == "done", seg.error
        model = workspace.runs("segmentation", dataset_id)["settings"].iloc[0]["model"]
        assert workspace._fetchall("SELECT count(*) FROM embeddings WHERE model_id = ?", [model])[
            0
        ][0]  # the worker's vectors are in the workspace's cache
        inline = run_segmentation(workspace, dataset_id, settings=settings, force=True)
        a, b = workspace.load_run(seg.run_id), workspace.load_run(inline)
        assert a.settings == b.settings
        for name in ("assignments", "labels", "map2d", "profile"):
            pd.testing.assert_frame_equal(a.artifacts[name], b.artifacts[name])

        choices: PolicyChoices = policy_choices(workspace, dataset_id, "auto")
        form = PolicyForm(actions=choices.action_table(), episodes=50, seed=1)
        request = form.request(choices, seg.run_id)
        trained = submit_training(queue, dataset_id, request)
        done = status(workspace, trained.id, "done", "failed")
        assert done.status == "done", done.error
        assignments = a.artifacts["assignments"][["user_id", "segment"]]
        here = train_from_form(workspace, dataset_id, seg.run_id, assignments, choices, form)
        p, q = load_policy(workspace, done.run_id), load_policy(workspace, here)
        np.testing.assert_array_equal(p.q, q.q)
        pd.testing.assert_frame_equal(p.recommendations, q.recommendations)
        assert p.settings == q.settings and p.value == q.value
    finally:
        queue.close()


def test_zero_workers_runs_jobs_inside_the_server_process(workspace, fake_kind, tmp_path):
    q = JobQueue(workspace, workers=0)
    try:
        where = control(tmp_path, "a", release=True)
        job = q.submit("test.wait", None, {"control": where})
        assert status(workspace, job.id, "done", "failed").status == "done"
        assert int(Path(where, "pid").read_text()) == os.getpid()
    finally:
        q.close()


# ------------------------------------------------------------------ the server-wide cap


@pytest.fixture
def two_people(tmp_path, fake_kind):
    """Two workspaces (two signed-in people: each has their own folder and queue)."""
    ann, bo = Workspace(tmp_path / "ann"), Workspace(tmp_path / "bo")
    yield ann, bo
    ann.close()
    bo.close()


def test_one_cap_on_running_jobs_for_the_whole_server(two_people, tmp_path):
    ann, bo = two_people
    server = jobs.JobServer(1)
    qa, qb = JobQueue(ann, server=server), JobQueue(bo, server=server)
    try:
        first = control(tmp_path, "a")
        a = qa.submit("test.wait", None, {"control": first}, owner="ann@x.org")
        status(ann, a.id, "running")
        b = qb.submit("test.wait", None, {"control": control(tmp_path, "b", release=True)})
        assert bo.job(b.id).status == "queued"  # another person's job waits for the one worker
        assert qb.view(b.id).ahead == 1  # and says so: one job ahead of it on the server
        assert jobs.job_view(bo, b.id).ahead == 0  # (its own workspace alone has none)
        assert len(server.worker_pids()) == 1
        Path(first, "release").touch()
        assert status(bo, b.id, "done", "failed").status == "done"
        assert status(ann, a.id, "done").status == "done"
        assert len(server.worker_pids()) == 1  # the same worker ran both
    finally:
        qa.close()
        qb.close()
        server.shutdown()


def test_the_apps_queues_share_one_server(two_people, monkeypatch):
    monkeypatch.setenv(jobs.WORKERS_ENV, "1")
    jobs.close_queues()
    try:
        qa, qb = JobQueue(two_people[0]), JobQueue(two_people[1])
        assert qa.server is qb.server is jobs.job_server() and qa.workers == 1
    finally:
        jobs.close_queues()


def test_default_cap_is_the_cores_less_one(monkeypatch):
    monkeypatch.delenv(jobs.WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert jobs.worker_count() == 1  # 2 cores: one for the web server, one for jobs
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    assert jobs.worker_count() == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert jobs.worker_count() == 1
    monkeypatch.setenv(jobs.WORKERS_ENV, "3")
    assert jobs.worker_count() == 3
    monkeypatch.setenv(jobs.WORKERS_ENV, "many")
    with pytest.raises(InputError, match="RETENTION_WORKERS must be a whole number"):
        jobs.worker_count()


def test_a_killed_worker_ends_its_job_while_another_persons_job_carries_on(two_people, tmp_path):
    ann, bo = two_people
    server = jobs.JobServer(2)
    qa, qb = JobQueue(ann, server=server), JobQueue(bo, server=server)
    try:
        wa, wb = control(tmp_path, "a"), control(tmp_path, "b")
        a = qa.submit("test.wait", None, {"control": wa})
        b = qb.submit("test.wait", None, {"control": wb})
        status(ann, a.id, "running")
        status(bo, b.id, "running")
        pid = int(
            wait_for(lambda: Path(wa, "pid").is_file() and Path(wa, "pid").read_text(), "pid")
        )
        os.kill(pid, signal.SIGKILL)
        failed = status(ann, a.id, "failed", "done")
        assert failed.status == "failed" and failed.error == jobs.WORKER_DIED
        assert bo.job(b.id).status == "running"  # the other job did not notice
        Path(wb, "release").touch()
        assert status(bo, b.id, "done", "failed").status == "done"
        again = qa.submit("test.wait", None, {"control": control(tmp_path, "c", release=True)})
        assert status(ann, again.id, "done", "failed").status == "done"  # a new worker
    finally:
        qa.close()
        qb.close()
        server.shutdown()

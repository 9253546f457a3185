"""Background jobs on a page: whoever opens the page sees the job's progress from the
workspace, can cancel it, and the session that followed it switches to its run when it ends."""

from __future__ import annotations

import pytest

from tests.app.conftest import make_app, truth_segmentation

PAGE = "pages/2_segments.py"


def _running_job(ws, dataset_id: str) -> str:
    """A segmentation job that this test drives by hand (as a worker's server thread would)."""
    job_id = ws.add_job("segmentation", dataset_id, {"segmentation": {"k": 3}}, "local")
    assert ws.start_job(job_id)
    ws.job_progress(job_id, 0.4, "Embedding 120 texts")
    return job_id


def test_a_running_job_shows_to_a_new_tab_with_cancel_then_its_run(app_workspace, planted_dataset):
    ws = app_workspace
    job_id = _running_job(ws, planted_dataset)
    at = make_app(PAGE)  # a tab opened after the click (or a refresh)
    assert not at.exception, at.exception
    bars = at.get("progress")
    assert bars and "Embedding 120 texts" in bars[0].proto.text
    assert bars[0].proto.value == 40
    cancel = next(b for b in at.button if b.label == "Cancel")
    cancel.click().run()
    assert ws.job(job_id).cancel_requested
    assert any("Cancelling" in c.value for c in at.caption)

    run_id = ws.start_run("segmentation", planted_dataset, {"k": 3})
    ws.finish_run(run_id, metrics={}, artifacts={})
    ws.end_job(job_id, "done", run_id=run_id)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["segmentation_run"] == run_id
    assert not at.get("progress")


def test_a_failed_job_says_why_once(app_workspace, planted_dataset):
    ws = app_workspace
    job_id = _running_job(ws, planted_dataset)
    at = make_app(PAGE)
    ws.end_job(job_id, "failed", error="The worker process running this job stopped.")
    at.run()
    assert any("worker process running this job stopped" in e.value for e in at.error)
    at.run()
    assert not any("worker process" in e.value for e in at.error)


def test_progress_is_refreshed_every_two_seconds_while_running(
    app_workspace, planted_dataset, monkeypatch
):
    """Issue 22: each refresh reruns the progress box on the server and in the browser (one a
    second cost a browser tab ~10% of a core while a job ran): a running job's box is refreshed
    every 2 s, a queued one's every 5 s (its place changes only when a job ahead ends)."""
    import streamlit as st

    from pages.ui import jobs_view

    asked = []
    real = st.fragment

    def recording(func=None, *, run_every=None):
        asked.append(run_every)
        return real(func, run_every=run_every)

    monkeypatch.setattr(st, "fragment", recording)
    age = {"s": 60.0}  # a job submitted (and started) a minute ago
    monkeypatch.setattr(jobs_view, "_age", lambda job: age["s"])
    monkeypatch.setattr(jobs_view, "_running", lambda job: age["s"])
    _running_job(app_workspace, planted_dataset)
    at = make_app(PAGE)
    assert not at.exception, at.exception
    assert at.get("progress")
    assert asked and set(asked) == {jobs_view.RUNNING_POLL_SECONDS} == {2.0}
    assert jobs_view.poll_seconds("queued", 60.0) == jobs_view.QUEUED_POLL_SECONDS == 5.0
    assert jobs_view.poll_seconds("running", 60.0) == 2.0
    assert jobs_view.poll_seconds("running") == 2.0  # no readable age: the running pace

    # Issue 19: a job's first seconds are followed every half second, so a short job (another
    # number of segments) shows its result at once; past them the page settles to 2 s.
    asked.clear()
    age["s"] = 1.0
    at = make_app(PAGE)
    assert set(asked) == {jobs_view.FIRST_POLL_SECONDS} == {0.5}
    assert jobs_view.poll_seconds("queued", 1.0) == 0.5
    asked.clear()
    age["s"] = jobs_view.FIRST_SECONDS + 0.1
    at.run()
    assert asked and asked[-1] == 2.0


@pytest.mark.parametrize(
    ("status", "age", "progress", "running", "fast", "pace"),
    [
        ("running", 8.2, 0.81, 8.2, False, 0.5),  # 8.2 x 0.19 / 0.81 = 1.92 s left: ending
        ("running", 9.0, 0.81, 9.0, False, 2.0),  # 2.11 s left: the running pace
        ("running", 9.0, 0.81, 9.0, True, 0.5),  # already fast: stays so below 4 s
        ("running", 17.5, 0.81, 17.5, True, 2.0),  # 4.10 s left: back to the running pace
        ("running", 28.0, 0.8, 3.0, False, 0.5),  # 25 s queued, 3 s running: 0.75 s left
        ("running", 28.0, 0.8, 28.0, False, 2.0),  # counted from submission it would be 7 s
        ("running", 25.0, 1.0, 25.0, False, 0.5),  # at 100% and still running (storing)
        ("running", 29.0, 0.99, 29.0, False, 0.5),  # 0.29 s left
        ("running", 31.0, 0.99, 31.0, True, 2.0),  # submitted over 30 s ago: never fast again
        ("running", 20.0, 0.0, 20.0, False, 2.0),  # no progress reported: no estimate
        ("running", None, 0.99, 20.0, False, 2.0),  # no readable age: no estimate
        ("running", 20.0, 0.99, None, False, 2.0),  # no start time: no estimate
        ("queued", 20.0, 0.99, None, True, 5.0),  # waiting for a worker: not about to end
        ("running", 3.0, 0.1, 3.0, False, 0.5),  # its first seconds, whatever its progress
    ],
)
def test_a_job_about_to_end_is_polled_fast_again(status, age, progress, running, fast, pace):
    """Issue 19 (s16): past its first seconds, a job whose progress says it ends within the
    running pace (its seconds since it started x (1 - progress) / progress < 2 s; 4 s when it
    is followed fast already), submitted under 30 s ago, is followed at the half-second pace
    again (hand-computed cases)."""
    from pages.ui import jobs_view

    assert jobs_view.poll_seconds(status, age, progress, running, fast) == pace


def test_a_fresh_jobs_age_is_read_from_its_submission_time(app_workspace, planted_dataset):
    from pages.ui import jobs_view

    job = app_workspace.job(_running_job(app_workspace, planted_dataset))
    assert 0.0 <= jobs_view._age(job) < 60.0
    assert jobs_view._pace(job) == jobs_view.FIRST_POLL_SECONDS


def test_a_poll_waits_for_the_jobs_end_and_shows_its_run_the_page_run_never_waits(
    app_workspace, planted_dataset, monkeypatch
):
    """Issue 19 (s9-segk): in a job's first seconds the progress box's own poll waits on the
    server for the job to end (``JobQueue.wait_ended``) and, when it ends meanwhile, the page
    shows its run in that same poll; the page's own run (the click's) never waits."""
    from pages.ui import jobs_view
    from retention.jobs import JobQueue

    ws = app_workspace
    job_id = _running_job(ws, planted_dataset)  # submitted just now: the half-second pace
    waits: list[tuple[str, float]] = []

    def ends_while_waiting(self, waited_id: str, timeout: float) -> bool:
        waits.append((waited_id, timeout))
        run_id = ws.start_run("segmentation", planted_dataset, {"k": 3})
        ws.finish_run(run_id, metrics={}, artifacts={})
        ws.end_job(waited_id, "done", run_id=run_id)  # as the job's thread records its end
        return True

    monkeypatch.setattr(JobQueue, "wait_ended", ends_while_waiting)
    at = make_app(PAGE)  # the page's run: draws the box at once, no wait
    assert not at.exception, at.exception
    assert waits == [] and at.get("progress")
    assert ws.job(job_id).status == "running"

    monkeypatch.setattr(jobs_view, "_own_poll", lambda: True)  # the box's poll from now on
    at.run()
    assert not at.exception, at.exception
    assert waits == [(job_id, jobs_view.FIRST_WAIT_SECONDS)]  # one wait, then the result
    assert at.session_state["segmentation_run"] == ws.job(job_id).run_id
    assert not at.get("progress")

    # past the first seconds (the 2 s pace) a poll does not wait: a long job's box as before
    waits.clear()
    monkeypatch.setattr(jobs_view, "_age", lambda job: jobs_view.FIRST_SECONDS + 1)
    monkeypatch.setattr(jobs_view, "_running", lambda job: jobs_view.FIRST_SECONDS + 1)
    _running_job(ws, planted_dataset)  # 40% through: 9 x 0.6 / 0.4 = 13.5 s left
    at = make_app(PAGE)
    assert not at.exception, at.exception
    assert waits == [] and at.get("progress")

    # ... unless its progress says it is about to end (s16): 9 s running and 90% through
    # (9 x 0.1 / 0.9 = 1 s left) it is polled fast again, and the poll waits for its end
    ending_id = _running_job(ws, planted_dataset)
    ws.job_progress(ending_id, 0.9, "Checking the segments")
    at = make_app(PAGE)
    assert not at.exception, at.exception
    assert waits == [(ending_id, jobs_view.FIRST_WAIT_SECONDS)]
    assert at.session_state["segmentation_run"] == ws.job(ending_id).run_id


@pytest.mark.parametrize(
    ("page", "kind", "coming", "invitation"),
    [
        (PAGE, "segmentation", "will show here as soon as they are found", "No segmentation yet"),
        ("pages/4_policy.py", "policy", "as soon as its training ends", "No policy trained"),
    ],
)
def test_a_first_run_in_progress_is_not_told_to_press_the_button(
    app_workspace, planted_dataset, page, kind, coming, invitation
):
    """While the dataset's first segmentation (training) runs, the page under its progress box
    says the result is coming, not "nothing yet ... press the button"; once the job has ended
    without a run (cancelled), the invitation to press the button is back."""
    ws = app_workspace
    settings = {}
    if kind == "policy":  # a training of the segmentation on screen
        settings = {"request": {"segmentation_run": truth_segmentation(ws, planted_dataset)}}
    job_id = ws.add_job(kind, planted_dataset, settings, "local")
    assert ws.start_job(job_id)
    at = make_app(page)
    assert not at.exception, at.exception
    assert at.get("progress")
    assert not any(invitation in i.value for i in at.info)
    assert any(coming in c.value for c in at.caption)

    ws.end_job(job_id, "cancelled")
    at.run()
    assert any(invitation in i.value for i in at.info)
    assert not any(coming in c.value for c in at.caption)


def test_a_training_for_another_segmentation_is_not_said_coming(app_workspace, planted_dataset):
    """A training of an earlier segmentation (the user segmented again while it ran) will give
    a policy the page hides: its box shows, but the page does not promise its policy."""
    ws = app_workspace
    truth_segmentation(ws, planted_dataset)
    job_id = ws.add_job(
        "policy", planted_dataset, {"request": {"segmentation_run": "an-earlier-run"}}, "local"
    )
    assert ws.start_job(job_id)
    at = make_app("pages/4_policy.py")
    assert not at.exception, at.exception
    assert at.get("progress")
    assert not any("as soon as its training ends" in c.value for c in at.caption)
    assert any("No policy trained" in i.value for i in at.info)

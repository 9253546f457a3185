"""Background jobs on a page: submit, follow (queue position, progress, Cancel), and the result.

The job lives in the workspace (:mod:`retention.jobs`), not in the session: a refresh, a closed
tab or another tab shows the same job, its progress and its result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.ui.common import workspace
from retention.jobs import LOCAL_OWNER, JobQueue, latest_job
from retention.workspace import Job

#: How often a page asks the workspace how a running job is doing (seconds). Every ask reruns
#: the progress box, on the server and in the browser: one second cost a headless Chromium tab
#: ~10% of a core for as long as a job ran (``bench/browser_cpu.py``, issue 22), and a person's
#: own laptop pays the same; two seconds halve it and still show the progress move.
RUNNING_POLL_SECONDS = 2.0
#: The same for a job waiting for a free worker: its place changes only when a job ahead of it
#: ends, and the page switches to the running pace as soon as it starts.
QUEUED_POLL_SECONDS = 5.0


#: A job's first seconds are followed faster: a short job (another number of segments on kept
#: user vectors, a job waiting for the chunk of texts embedded ahead) shows its result within
#: half a second of ending, not up to 2–5 s later (issue 19); a longer one then settles to the
#: paces above. At most 16 quick refreshes a job in its first seconds (and at most 44 more as it
#: ends: :data:`ENDING_MAX_AGE`).
FIRST_SECONDS = 8.0
FIRST_POLL_SECONDS = 0.5
#: issue 19 (s9-segk): in those first seconds a poll of its own (not the page's run) waits on
#: the server up to this long for the job to end before it draws the box, and shows the result
#: as soon as the job ends: the browser's timer alone left 0–0.5 s, and its first poll comes
#: only 0.5 s after the browser has drawn the click's page run (1–1.7 s on a loaded machine,
#: ``bench/bench_segments_page.py --run-log``). Shorter than the pace, so the browser's next
#: poll does not queue behind it; the wait uses no CPU.
FIRST_WAIT_SECONDS = 0.4
#: issue 19 (s16): a job that runs past its first seconds is followed just as fast (and its
#: polls wait for its end) while its own progress says it is about to end: within the running
#: pace if it goes on as it went since it started (``running x (1 - progress) / progress``;
#: from its start, not its submission, so time in the queue does not count). A first
#: segmentation on a slower CPU (2 Zen 4 cores: 8.5 s, its last step at 81%) showed on screen up
#: to 2 s after it ended, waiting for the running pace's next poll. Once fast, a job stays fast
#: until the estimate passes twice the running pace (each change of pace is a page run, and a
#: job on the boundary would flip between them); the estimate grows while the progress stands
#: still, so a step slower than it says puts the box back on the running pace. Only for a job
#: submitted less than this long ago: at most (30 - 8) / 0.5 = 44 more fast polls for one that
#: says it is about to end and does not (at 100%, still storing its results, say); a longer
#: job's last seconds matter less.
ENDING_MAX_AGE = 30.0


#: issue 22 (s10): the progress box asks the server on a browser timer (its fragment's
#: ``run_every``), and in one run of 20 ten-browser tests that timer was lost: every job had ended,
#: the server was idle, and a page still said "waiting for a free worker" 15 minutes later. So the
#: box also leaves a heartbeat in the browser at each of its runs, and a watchdog outside it
#: reruns the whole page (which shows the result, or sets the timer up again) when no heartbeat
#: came for this long while no run was in progress: three times the slowest pace, so a working
#: timer never trips it.
STALL_SECONDS = 15.0

#: The heartbeat and the watchdog: a component with no look of its own (its empty row is
#: hidden), built with Streamlit's own components API, so nothing is added to the app's
#: dependencies. A heartbeat (``role`` "beat", drawn by each run of the progress box) records
#: when the box last ran; the watchdog (``role`` "watch", drawn by the page's run) checks every
#: second and, past ``stall_ms`` with no heartbeat, no run under way or asked for, a connection
#: and the tab in view, sends a trigger, which reruns the page (and counts it in
#: ``window.__retentionJobStalls``). The beats live in the window, so a watchdog and the
#: heartbeats of its job meet whatever order they were drawn in.
_WATCHDOG_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const host = parentElement.host || parentElement;
  const row = host.closest && host.closest('[data-testid="stElementContainer"]');
  if (row) row.style.display = "none";
  const beats = (window.__retentionJobBeats = window.__retentionJobBeats || new Map());
  beats.set(data.job, Date.now());
  if (data.role !== "watch") return;
  const busy = () => {  // a run under way or asked for, or no connection to ask on
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return true;
    const state = app.getAttribute("data-test-script-state");
    return state === "running" || state === "rerunRequested"
      || app.getAttribute("data-test-connection-state") !== "CONNECTED";
  };
  const onShown = () => { if (!document.hidden) beats.set(data.job, Date.now()); };
  document.addEventListener("visibilitychange", onShown);
  const timer = setInterval(() => {
    const now = Date.now();
    if (document.hidden) return;
    if (busy()) { beats.set(data.job, now); return; }
    if (now - (beats.get(data.job) || 0) < data.stall_ms) return;
    beats.set(data.job, now);
    window.__retentionJobStalls = (window.__retentionJobStalls || 0) + 1;  // for tests
    setTriggerValue("stalled", now);
  }, 1000);
  return () => {
    clearInterval(timer);
    document.removeEventListener("visibilitychange", onShown);
  };
}
"""
_watchdog = st.components.v2.component("retention_job_watchdog", js=_WATCHDOG_JS)


#: issue 19 (s16): the first result a page draws waited, after the job had ended, for the
#: browser to evaluate Streamlit's Plotly module (a 4.7 MB chunk loaded on first use: 0.85 s of
#: the browser's main thread in a trace on 2 Zen 4 cores, before any chart was drawn). While a
#: job runs the browser has nothing to do, so the page's run asks it to import that chunk now,
#: from the same address Streamlit's own lazy import resolves to (beside its ``index`` module),
#: so the module is evaluated once and the result's charts find it ready. Only a chunk found in
#: the installed Streamlit is asked for; with none (another build), nothing happens. (Behind a
#: proxy that redirects the static files, the two addresses could differ and the module would
#: be evaluated twice: slower, never wrong.) On a local install the browser shares the server's
#: cores, and this work then overlaps the job instead of following it (the README's session 16).
_CHART_WARMUP_JS = """
export default function (component) {
  const { data, parentElement } = component;
  const host = parentElement.host || parentElement;
  const row = host.closest && host.closest('[data-testid="stElementContainer"]');
  if (row) row.style.display = "none";
  if (!data || !data.chunk || window.__retentionChartsAsked) return;
  const index = document.querySelector('script[type="module"][src*="/static/js/index."]');
  if (!index) return;
  window.__retentionChartsAsked = true;
  const url = new URL(data.chunk, index.src).href;
  const start = performance.now();
  import(url).then(
    () => { window.__retentionChartsReadyMs = performance.now() - start; },  // for tests
    () => { window.__retentionChartsAsked = false; },
  );
}
"""
_chart_warmup = st.components.v2.component("retention_chart_warmup", js=_CHART_WARMUP_JS)


@functools.cache
def _plotly_chunk() -> str | None:
    """The file name of the installed Streamlit's Plotly chunk (``PlotlyChart.<hash>.js``), or
    None when there is not exactly one."""
    folder = Path(st.__file__).parent / "static" / "static" / "js"
    found = sorted(folder.glob("PlotlyChart.*.js"))
    return found[0].name if len(found) == 1 else None


def _warm_charts() -> None:
    """Have the browser load Streamlit's Plotly module while a job runs (see above)."""
    chunk = _plotly_chunk()
    if chunk is not None:
        _chart_warmup(key="jobs.chart_warmup", data={"chunk": chunk})


def _heartbeat(job_id: str) -> None:
    """Tell the page's watchdog that the progress box of ``job_id`` has just run."""
    _watchdog(key=f"jobs.beat.{job_id}", data={"role": "beat", "job": job_id, "t": time.time()})


def _watch(job_id: str) -> None:
    """Rerun the page when the progress box of ``job_id`` stops running (see STALL_SECONDS)."""
    _watchdog(
        key=f"jobs.watch.{job_id}",
        data={"role": "watch", "job": job_id, "stall_ms": int(STALL_SECONDS * 1000)},
        on_stalled_change=_rerun_page,
    )


def _rerun_page() -> None:
    """The watchdog's trigger: nothing to do, the page's run it causes is the point."""


def poll_seconds(
    status: str,
    age: float | None = None,
    progress: float = 0.0,
    running: float | None = None,
    fast: bool = False,
) -> float:
    """How often the progress box of a job in ``status`` is refreshed: submitted ``age``
    seconds ago, started ``running`` seconds ago, ``progress`` (0–1) through, and followed at
    the fast pace until now (``fast``)."""
    if age is not None and 0.0 <= age < FIRST_SECONDS:
        return FIRST_POLL_SECONDS
    if status == "running" and _about_to_end(age, running, progress, fast):
        return FIRST_POLL_SECONDS
    return QUEUED_POLL_SECONDS if status == "queued" else RUNNING_POLL_SECONDS


def _about_to_end(age: float | None, running: float | None, progress: float, fast: bool) -> bool:
    """Whether a running job ends within the running pace (twice it, when already ``fast``),
    going on as it went since it started (see :data:`ENDING_MAX_AGE`)."""
    if age is None or running is None or not 0.0 <= age < ENDING_MAX_AGE:
        return False
    if not 0.0 < progress <= 1.0 or running < 0.0:
        return False
    left = running * (1.0 - progress) / progress
    return left < RUNNING_POLL_SECONDS * (2.0 if fast else 1.0)


def _since(stamp: object) -> float | None:
    """Seconds since ``stamp`` (None when there is none, or it cannot be read)."""
    if stamp is None:
        return None
    try:
        seconds = (pd.Timestamp.now() - pd.Timestamp(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None
    return None if pd.isna(seconds) else seconds


def _age(job: Job) -> float | None:
    """Seconds since ``job`` was submitted (None when its time cannot be read)."""
    return _since(job.created)


def _running(job: Job) -> float | None:
    """Seconds since ``job`` started (None before it has)."""
    return _since(job.started)


def _pace(job: Job, fast: bool = False) -> float:
    progress = float(job.progress or 0.0)
    return poll_seconds(job.status, _age(job), progress, _running(job), fast)


@st.cache_resource(show_spinner=False)
def _queue(folder: str) -> JobQueue:
    return JobQueue(workspace())


def job_queue() -> JobQueue:
    """The server's job queue on the workspace (one per process, started on first use)."""
    return _queue(str(workspace().folder))


def current_owner() -> str:
    """Who submits: the signed-in user's e-mail, else the shared ``local`` owner."""
    try:
        user = st.user
        if user.is_logged_in and user.get("email"):
            return str(user["email"])
    except (AttributeError, KeyError, RuntimeError):
        pass
    return LOCAL_OWNER


def _key(kind: str, dataset_id: str | None) -> str:
    return f"jobs.{kind}.{dataset_id}"


def start(job: Job) -> None:
    """Follow ``job`` in this session (its result is shown when it ends)."""
    st.session_state[_key(job.kind, job.dataset_id)] = job.id


def _own_poll() -> bool:
    """Whether this run is only a fragment's (a progress box's poll), not the page's run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def _progress(job_id: str, doing: str, pace: float) -> None:
    if pace == FIRST_POLL_SECONDS and _own_poll():  # never in the page's run: it would wait
        job_queue().wait_ended(job_id, FIRST_WAIT_SECONDS)  # a job ending now shows at once
    view = job_queue().view(job_id)  # its place counts every job ahead of it on the server
    job = view.job
    _heartbeat(job_id)
    if not job.active or _pace(job, fast=pace == FIRST_POLL_SECONDS) != pace:
        st.rerun()  # the whole page: it shows the result, or follows the job at its new pace
    if job.status == "queued" and view.ahead:
        n = view.ahead
        ahead = f"{n} job{'s' if n != 1 else ''} ahead of it on this server"
        text = f"{doing}: waiting for a free worker ({ahead})."
    else:  # running, or first in line: nothing runs before it (work done ahead gives way at
        # once, retention.jobs.JobServer.ahead_work), it is being started (issue 19, s8-segk)
        text = f"{doing}: {job.message or 'starting…'}"
    st.progress(min(max(job.progress, 0.0), 1.0), text=text)
    if job.cancel_requested:
        st.caption("Cancelling… (the job stops at its next step)")
    elif st.button("Cancel", key=f"jobs.cancel.{job_id}", icon=":material/cancel:"):
        job_queue().cancel(job_id)
        st.rerun()


def _live(job: Job, doing: str) -> None:
    """The job's progress box, refreshed on its own every :func:`poll_seconds` (a fragment:
    the rest of the page is not run again)."""
    key = f"jobs.pace.{job.id}"  # the pace the box had (a page run keeps a fast one)
    pace = _pace(job, fast=st.session_state.get(key) == FIRST_POLL_SECONDS)
    st.session_state[key] = pace
    st.fragment(_progress, run_every=pace)(job.id, doing, pace)
    _watch(job.id)
    _warm_charts()


def show_result_coming(
    kind: str, dataset_id: str, words: str, *, wanted: Callable[[Job], bool] | None = None
) -> bool:
    """Show ``words`` (the result is coming), for a page with nothing to show yet to say instead
    of "nothing yet, press the button", when the job :func:`follow` showed in this run is queued
    or running (and ``wanted(job)``, e.g. a training for the segmentation on screen); whether it
    did. The job is the one ``follow`` saw, not read again, so the words and the progress box
    never disagree (a job ending or queued between two reads)."""
    job = st.session_state.get(_seen_key(kind, dataset_id))
    if job is None or (wanted is not None and not wanted(job)):
        return False
    st.caption(words)
    return True


def _seen_key(kind: str, dataset_id: str) -> str:
    return f"{_key(kind, dataset_id)}.active"


def follow(kind: str, dataset_id: str, doing: str) -> str | None:
    """Show the latest ``kind`` job on the dataset while it is queued or running (to whoever
    opens the page); once a job this session followed has ended, show how it ended and return
    its run id when it is done (once)."""
    job_queue()  # started with the page, so queued jobs from before a restart are taken up
    job = latest_job(workspace(), kind, dataset_id)
    st.session_state[_seen_key(kind, dataset_id)] = job if job is not None and job.active else None
    if job is None:
        return None
    key = _key(kind, dataset_id)
    if job.active:
        st.session_state[key] = job.id
        _live(job, doing)
        return None
    if st.session_state.get(key) != job.id:
        return None
    st.session_state[key] = None  # shown once
    if job.status == "done":
        return job.run_id
    if job.status == "cancelled":
        st.info(f"{doing} was cancelled.", icon=":material/cancel:")
    else:
        st.error(f"{doing} did not finish: {job.error}", icon=":material/error:")
    return None

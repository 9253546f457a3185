"""Background work: segmentation and training run in worker processes, fed by a job queue.

The app's server answers every page of every session from one interpreter; a training computed
there makes everyone's pages and uploads wait. So the heavy steps run as *jobs*:

* :func:`submit_segmentation` / :func:`submit_training` record a ``queued`` job in the workspace
  (``jobs`` table) and hand it to the :class:`JobQueue` of that workspace. Every queue of the
  server process feeds the one :class:`JobServer`: a
  :class:`concurrent.futures.ThreadPoolExecutor` (first in, first out across all workspaces and
  people; a queued job is cancelled with ``Future.cancel``) whose threads each own one worker
  process (a one-process :class:`~concurrent.futures.ProcessPoolExecutor`, ``spawn`` context),
  so a killed worker breaks only its own job. ``RETENTION_WORKERS`` caps how many jobs run at
  once on the whole server, and so how many worker processes exist (default: the computer's
  cores less one, at least 1; with sign-in every person has a workspace and a queue, but five
  trainings still start no more than that many workers). A queued job's position counts the
  jobs ahead of it on the whole server.
* The workspace is one DuckDB file that only one process may open, and the server holds it. A
  worker therefore never opens it: when a job starts, the server copies the dataset's tables
  (and the vectors cached for its model) into a private workspace in ``jobs/<id>/``; the worker
  runs the very same library function on that copy (:func:`~retention.segments.segment_dataset`,
  :func:`~retention.policy_runs.train_request`) and returns the result; the server stores the
  run through the one run lifecycle (:func:`~retention.runs.run_segmentation`,
  :func:`~retention.runs.train_policy_run`) and adds the newly embedded vectors to the cache.
  Same code, same data, same run settings: a job's result is the one computed inline.
* Progress goes from the worker to the job's folder (``progress.json``, written atomically); the
  server thread that waits for the worker copies it into the job's row, where every tab (and a
  refreshed page) reads it. Cancel writes a ``cancel`` file that the worker's progress callback
  checks. Files, not pipes: a worker killed mid-write cannot corrupt a shared queue.
* A job left ``running`` by a server that stopped is marked ``interrupted`` when the workspace is
  opened again; ``queued`` jobs stay queued and a new :class:`JobQueue` takes them up.
* Per-person limits: a signed-in owner may have one training at a time (:data:`OWNER_LIMITS`);
  the shared ``local`` owner of a server without sign-in is not limited.

The command line runs the same library functions inline, without a queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context, spawn
from pathlib import Path
from typing import Any

import pandas as pd

from retention.errors import InputError
from retention.mdp import RewardSettings
from retention.private import make_private_dir
from retention.workspace import (
    ACTIVE_JOB_STATUSES,
    DB_NAME,
    JOBS_FOLDER,
    KEPT_INPUT_PREFIX,
    Job,
    Workspace,
)

log = logging.getLogger("retention")

WORKERS_ENV = "RETENTION_WORKERS"
NICE_ENV = "RETENTION_WORKER_NICE"
#: How many steps below the web server's CPU priority worker processes run (Unix ``nice``).
WORKER_NICE = 10
LOCAL_OWNER = "local"
#: At most this many unfinished jobs of a kind per signed-in owner ("one training at a time").
OWNER_LIMITS: dict[str, int] = {"policy": 1}
CANCEL_FILE = "cancel"
PROGRESS_FILE = "progress.json"
#: How often the server copies a running job's progress into the workspace (seconds).
POLL_SECONDS = 0.5
#: How often a worker writes its progress at most (seconds).
REPORT_SECONDS = 0.2
#: issue 19 (s7-segk): how many datasets' copies a queue keeps for the next job
#: (:meth:`JobQueue.kept_input`), and the prefix of their folders in ``jobs/``.
KEPT_INPUTS = 2
KEPT_PREFIX = KEPT_INPUT_PREFIX

WORKER_DIED = (
    "The worker process running this job stopped unexpectedly (it was killed, or the computer "
    "ran out of memory). Nothing was stored and other jobs carry on. Start it again; if it "
    "stops again, try fewer users or segments."
)
INTERRUPTED = "interrupted: the app stopped while this job ran. Start it again."


class JobCancelled(Exception):  # noqa: N818 - it is what happened, not an error
    """Raised inside a job (by its progress callback) when someone pressed Cancel."""


class WorkerDied(RuntimeError):
    """The worker process of a job ended without an answer (killed, out of memory)."""


def default_workers() -> int:
    """The server's cap on jobs running at once when nothing is set: the cores this process may
    use less one (kept for the web server, so pages and uploads answer), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def worker_count(value: str | int | None = None) -> int:
    """How many jobs run at once on the server: ``value``, else ``$RETENTION_WORKERS``, else
    :func:`default_workers`. ``0`` runs one job at a time inside the server process (no worker
    process: the way before issue 22, kept for the load benchmark's comparison)."""
    raw = value if value is not None else os.environ.get(WORKERS_ENV) or default_workers()
    try:
        count = int(raw)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise InputError(
            f"{WORKERS_ENV} must be a whole number of worker processes, 0 or more. Got {raw!r}."
        )
    return count


def worker_nice(value: str | int | None = None) -> int:
    """How much lower than the server's the workers' CPU priority is: ``value``, else
    ``$RETENTION_WORKER_NICE``, else 10 (0 keeps the server's priority)."""
    raw = value if value is not None else os.environ.get(NICE_ENV) or WORKER_NICE
    try:
        nice = int(raw)
    except (TypeError, ValueError):
        nice = -1
    if not 0 <= nice <= 19:
        raise InputError(f"{NICE_ENV} must be a whole number from 0 to 19. Got {raw!r}.")
    return nice


# ============================================================================ in the worker


class _Reporter:
    """A worker's progress callback: writes ``progress.json`` (at most every
    :data:`REPORT_SECONDS`) and raises :class:`JobCancelled` once the cancel file exists."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._last = 0.0
        self._parent = os.getppid()

    def __call__(self, fraction: float, message: str) -> None:
        if (self.folder / CANCEL_FILE).exists():
            raise JobCancelled("Cancelled.")
        if os.getppid() != self._parent:  # the server is gone: nobody will read the result
            raise JobCancelled("The app stopped.")
        now = time.monotonic()
        if now - self._last < REPORT_SECONDS and fraction < 1.0:
            return
        self._last = now
        data = {"progress": min(max(float(fraction), 0.0), 1.0), "message": str(message)}
        tmp = self.folder / f"{PROGRESS_FILE}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.folder / PROGRESS_FILE)


def _start_worker(parent: int, nice: int) -> None:
    """Pool initializer. The worker runs at a lower CPU priority than the web server (``nice``
    steps, ``RETENTION_WORKER_NICE``), so pages and uploads stay responsive while it embeds or
    trains; and it ends when the server that started it is gone (a worker keeps its own end of
    the task pipe open, so it would otherwise wait forever)."""
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="retention-parent-watch", daemon=True).start()


def _work(
    fn: Callable[..., Any], folder: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> Any:
    """What a worker process runs: ``fn(folder, *args, progress=..., **kwargs)``."""
    return fn(Path(folder), *args, progress=_Reporter(Path(folder)), **(kwargs or {}))


_embedders: dict[str | None, Any] = {}


def _embedder(settings: Any) -> Any:
    """The worker's embedder for the settings' model (its weights load once per worker
    process), or None when the model is chosen from the texts (the pipeline chooses)."""
    from retention.embeddings import SentenceTransformerEmbedder, requested_model

    choice, folder = requested_model(settings.text_model, settings.model_path)
    if choice not in ("english", "folder"):
        return None
    if folder not in _embedders:
        _embedders[folder] = SentenceTransformerEmbedder(folder)
    return _embedders[folder]


def _segment_worker(
    folder: Path,
    dataset_id: str,
    settings: Any,
    kept_in: str | None = None,
    *,
    progress: Any,
    input_folder: str | None = None,
) -> Any:
    from retention.segments import segment_dataset

    # issue 19 (s7-segk): ``input_folder`` is the dataset's copy kept across jobs (the job's
    # own ``folder`` then holds only its progress and cancel files)
    ws = Workspace(input_folder or folder)
    try:
        embedder = _embedder(settings) if settings.text_weight > 0 else None
        # issue 19 (s4-cmd19): the user vectors are kept in the server's workspace folder
        # (``kept_in``), not in this job's private copy, so another k reuses them.
        return segment_dataset(
            ws,
            dataset_id,
            settings,
            embedder=embedder,
            progress=progress,
            vectors_folder=Path(kept_in) if kept_in else None,
            data=_worker_user_data(ws, dataset_id) if input_folder else None,
        )
    finally:
        ws.close()


#: issue 19 (s7-segk): the per-user facts of the last dataset a worker process segmented on a
#: kept copy (:func:`_worker_user_data`): (the copy's database, dataset id) -> UserData.
_user_data: dict[tuple[str, str], Any] = {}
#: Datasets with more item rows than this are aggregated anew by each job (memory).
KEPT_ITEM_ROWS = 5_000_000


def _worker_user_data(ws: Workspace, dataset_id: str) -> Any:
    """In the worker: the dataset's per-user facts (:func:`~retention.segments.features.
    aggregate_users`) read from a kept copy once per worker process, so a re-run with another k
    does not aggregate the events again (a stored dataset never changes: a new upload gets a new
    id). None for a campaign snapshot. At most one dataset is kept; the pipeline only reads it."""
    from retention.segments.features import aggregate_users

    if ws.dataset(dataset_id).shape != "events":
        return None
    key = (str(ws.db_path), dataset_id)
    data = _user_data.get(key)
    if data is None:
        con = ws.cursor().cursor()
        try:
            data = aggregate_users(con, ws.table(dataset_id, "events"))
        finally:
            con.close()
        _user_data.clear()
        if len(data.items) <= KEPT_ITEM_ROWS:
            _user_data[key] = data
    return data


def _train_worker(
    folder: Path, dataset_id: str, assignments: pd.DataFrame, request: Any, *, progress: Any
) -> Any:
    from retention.policy_runs import train_request

    ws = Workspace(folder)
    try:
        return train_request(ws, dataset_id, assignments, request, progress)
    finally:
        ws.close()


# ============================================================================ in the server

# A spawned process first re-imports the parent's ``__main__`` (multiprocessing's "safe
# importing of the main module"). In the app that is Streamlit's script module (``app.py``),
# whose import would start a second app in the worker and open the workspace. Workers run only
# library functions, so the processes this module starts are told not to import it: the
# preparation data of a process launched from a job thread (flag below) leaves the main
# module out. Other code's processes are untouched.
_launching = threading.local()
_preparation_data = spawn.get_preparation_data


def _worker_preparation_data(name: str) -> dict[str, Any]:
    data = _preparation_data(name)
    if getattr(_launching, "job_worker", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


spawn.get_preparation_data = _worker_preparation_data


def policy_request(stored: dict[str, Any]) -> Any:
    """A :class:`~retention.policy_runs.PolicyRequest` back from its ``as_dict()``."""
    from retention.policy_runs import PolicyRequest

    actions = stored.get("actions")
    return PolicyRequest(
        segmentation_run=stored["segmentation_run"],
        period=stored["period"],
        churn_after=int(stored.get("churn_after", 4)),
        reward=RewardSettings(**stored.get("reward", {})),
        algorithm=stored.get("algorithm", "q"),
        seed=int(stored.get("seed", 0)),
        episodes=stored.get("episodes"),
        min_epsilon=stored.get("min_epsilon"),
        learning_rate=stored.get("learning_rate"),
        actions=None if actions is None else tuple(actions),
        lift=stored.get("lift"),
    )


def _segment_model_id(ws: Workspace, dataset_id: str, settings: Any) -> str | None:
    """The model whose cached vectors a segmentation job needs (chosen from the texts when the
    text model is automatic), or None when it embeds nothing."""
    from retention.segments.pipeline import resolved_model_id

    if settings.text_weight <= 0 or ws.dataset(dataset_id).shape != "events":
        return None
    return resolved_model_id(ws, dataset_id, settings)


def _run_segmentation(queue: JobQueue, job: Job) -> str:
    from retention.runs import run_segmentation
    from retention.segments import SegmentSettings

    settings = SegmentSettings.coerce(job.settings["segmentation"])
    assert job.dataset_id is not None
    model = _segment_model_id(queue.ws, job.dataset_id, settings)
    return run_segmentation(
        queue.ws,
        job.dataset_id,
        settings=settings,
        force=bool(job.settings.get("force")),
        compute=lambda parsed: queue.in_worker(
            job,
            _segment_worker,
            job.dataset_id,
            parsed,
            str(queue.ws.folder),
            model_id=model,
            keep_input=True,
        ),
    )


def _run_policy(queue: JobQueue, job: Job) -> str:
    from retention.runs import train_policy_run

    request = policy_request(job.settings["request"])
    seg_run = queue.ws.load_run(request.segmentation_run)
    assignments = seg_run.artifacts["assignments"][["user_id", "segment"]]
    assert job.dataset_id is not None
    run_id, _ = train_policy_run(
        queue.ws,
        job.dataset_id,
        request.as_dict(),
        lambda: queue.in_worker(job, _train_worker, job.dataset_id, assignments, request),
        reuse=False,
    )
    return run_id


#: What each kind of job does in the server: store (and return) a run, computing in a worker.
KINDS: dict[str, Callable[[JobQueue, Job], str | None]] = {
    "segmentation": _run_segmentation,
    "policy": _run_policy,
}


@dataclass(frozen=True)
class JobView:
    """What a page shows about a job: the job and how many unfinished jobs were submitted
    before it (``ahead``: 0 when it runs or is next)."""

    job: Job
    ahead: int


class JobServer:
    """The server's job threads and worker processes, shared by every :class:`JobQueue` of the
    process: at most ``workers`` jobs run at once, whatever workspace (person) they come from,
    each in the worker process its thread owns; the others wait, first in, first out.

    ``workers`` 0 runs one job at a time inside this process (see :func:`worker_count`)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = worker_count(workers)
        self.inline = self.workers == 0
        self._threads = ThreadPoolExecutor(max(self.workers, 1), thread_name_prefix="retention-job")
        self._local = threading.local()
        self._pools: set[ProcessPoolExecutor] = set()
        self._lock = threading.Lock()
        #: The unfinished jobs handed to this server, in the order they were (queue position).
        self._order: dict[tuple[str, str], None] = {}
        #: issue 19 (s8-segk): the folders of work done ahead (:func:`prefetch_texts`) that a
        #: worker is doing now; a job handed to the server cancels it (:meth:`ahead_work`).
        self._ahead: set[Path] = set()
        self.closed = False

    def dispatch(self, key: tuple[str, str], run: Callable[[], None]) -> Future[None]:
        """Queue ``run`` (the job ``key``: workspace folder, job id) behind the jobs before it;
        work done ahead that a worker is doing now stops at its next progress step, so the job
        does not wait behind it."""
        with self._lock:
            self._order[key] = None
            ahead = list(self._ahead)
        for folder in ahead:
            _cancel(folder)
        try:
            future = self._threads.submit(run)
        except RuntimeError:  # shut down
            self._finished(key)
            raise
        future.add_done_callback(lambda _: self._finished(key))
        return future

    def _finished(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._order.pop(key, None)

    @contextlib.contextmanager
    def ahead_work(self, folder: Path) -> Iterator[None]:
        """issue 19 (s8-segk): the block runs work done ahead of any job in a worker, with
        ``folder`` as its job folder: a job handed to the server meanwhile (or already waiting)
        writes its cancel file, so the worker raises :class:`JobCancelled` at its next progress
        step (an embedding batch, a step of the user vectors) and the job starts then, not when
        the work ahead would have ended."""
        with self._lock:
            self._ahead.add(folder)
            waiting = bool(self._order)
        if waiting:
            _cancel(folder)
        try:
            yield
        finally:
            with self._lock:
                self._ahead.discard(folder)

    def ahead(self, key: tuple[str, str]) -> int | None:
        """How many unfinished jobs were handed to the server before ``key`` (running ones
        included), or None when it is not one of its unfinished jobs."""
        with self._lock:
            keys = list(self._order)
        return keys.index(key) if key in keys else None

    def pool(self) -> ProcessPoolExecutor:
        """This job thread's worker process (started on first use)."""
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = ProcessPoolExecutor(
                1,
                mp_context=get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(), worker_nice()),
            )
            self._local.pool = pool
            self._pools.add(pool)
        return pool

    def replace_pool(self) -> None:
        """Drop this thread's worker process (it died); the next job starts a new one."""
        pool = getattr(self._local, "pool", None)
        self._local.pool = None
        if pool is not None:
            self._pools.discard(pool)
            pool.shutdown(wait=False, cancel_futures=True)

    def submit_work(
        self,
        fn: Callable[..., Any],
        folder: Path,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> Future[Any]:
        _launching.job_worker = True  # a worker process starts inside submit (spawn context)
        try:
            try:
                return self.pool().submit(_work, fn, str(folder), args, kwargs)
            except BrokenProcessPool:  # its worker died while idle: start a new one
                self.replace_pool()
                return self.pool().submit(_work, fn, str(folder), args, kwargs)
        finally:
            _launching.job_worker = False

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for memory reports)."""
        return [pid for pool in list(self._pools) for pid in (pool._processes or {})]

    def shutdown(self, wait: bool = True) -> None:
        self.closed = True
        self._threads.shutdown(wait=wait, cancel_futures=True)
        for pool in list(self._pools):
            pool.shutdown(wait=wait, cancel_futures=True)


_server: JobServer | None = None
_server_lock = threading.Lock()


def job_server() -> JobServer:
    """The process's :class:`JobServer` (sized by :func:`worker_count` when first used)."""
    global _server
    with _server_lock:
        if _server is None or _server.closed:
            _server = JobServer()
        return _server


class JobQueue:
    """The app's job queue on one workspace (see the module docstring). Its jobs run on
    ``server``: by default the process's shared :class:`JobServer` (:func:`job_server`), so the
    cap on jobs running at once holds for the whole server; ``workers`` gives this queue a
    server of its own with that many workers instead (tests, benchmarks). Queued jobs found in
    the workspace (a restart) are taken up at once.
    """

    def __init__(
        self, ws: Workspace, workers: int | None = None, server: JobServer | None = None
    ) -> None:
        self.ws = ws
        self._own_server = server is None and workers is not None
        self.server = server or (JobServer(workers) if workers is not None else job_server())
        self.workers = self.server.workers
        self.inline = self.server.inline
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._closing = False
        #: What :func:`prefetch_texts` was asked to do, by dataset (None: only warm the worker).
        self._prefetched: dict[str | None, Future[int]] = {}
        #: issue 19 (s7-segk): datasets' copies kept across jobs (:meth:`kept_input`), by
        #: (dataset, model), oldest first, and the ones a job or the prefetch holds now.
        self._inputs: dict[tuple[str, str | None], Path] = {}
        self._inputs_busy: set[tuple[str, str | None]] = set()
        #: issue 19 (s9-segk): the jobs this queue took up that have not ended yet, each with
        #: the event set when it has (:meth:`wait_ended`).
        self._ends: dict[str, threading.Event] = {}
        self._ends_lock = threading.Lock()  # not _lock: submit holds that while dispatching
        self.folder = make_private_dir(ws.folder / JOBS_FOLDER)
        active = {job.id for job in ws.jobs(statuses=ACTIVE_JOB_STATUSES)}
        for stale in self.folder.iterdir():
            if stale.name not in active:
                shutil.rmtree(stale, ignore_errors=True)
        for job in ws.jobs(statuses=["queued"]):
            self._dispatch(job.id)
        _register_exit(self)

    # -- the page's side ----------------------------------------------------------------------

    def submit(
        self, kind: str, dataset_id: str | None, settings: dict[str, Any], owner: str = LOCAL_OWNER
    ) -> Job:
        """Queue a job; an unfinished job of the same kind, dataset and settings is returned
        instead of a second one (a double click, a refresh right after the click)."""
        if kind not in KINDS:
            raise ValueError(f"The 'kind' parameter must be one of {sorted(KINDS)}. Got {kind!r}.")
        wanted = json.loads(json.dumps(settings, default=str))
        with self._lock:
            active = self.ws.jobs(kind=kind, statuses=ACTIVE_JOB_STATUSES)
            for job in active:
                if job.dataset_id == dataset_id and job.settings == wanted:
                    return job
            check_owner_limit(active, kind, owner)
            job_id = self.ws.add_job(kind, dataset_id, wanted, owner)
            self._dispatch(job_id)
        return self.ws.job(job_id)

    def cancel(self, job_id: str) -> None:
        """Cancel a job: a queued one never starts, a running one stops at its next progress
        step (its run is recorded as failed, "Cancelled.")."""
        self.ws.request_job_cancel(job_id)
        future = self._futures.get(job_id)
        if future is not None and future.cancel():
            self.ws.end_job(job_id, "cancelled", error="Cancelled before it started.")
            return
        job = self.ws.job(job_id)
        if job.status == "queued" and future is None:  # not ours (no queue took it up)
            self.ws.end_job(job_id, "cancelled", error="Cancelled before it started.")
        folder = self.folder / job_id
        if folder.is_dir():
            (folder / CANCEL_FILE).touch()

    def wait_ended(self, job_id: str, timeout: float) -> bool:
        """Wait until the job ``job_id`` has ended (its end is in the workspace), at most
        ``timeout`` seconds; True when it has (or when this queue let it go, left queued for
        the next server as it closed). False at once for a job this queue is not running or
        keeping queued (another process's, or one that has ended already): the caller reads
        the job's row either way. issue 19 (s9-segk): a page's progress box waits
        here between two of the browser's polls, so it shows a short job's end as it happens,
        not at the next poll."""
        with self._ends_lock:
            ended = self._ends.get(job_id)
        return ended is not None and ended.wait(timeout)

    def view(self, job_id: str) -> JobView:
        """The job and its place in the server's queue (jobs of every workspace count)."""
        found = job_view(self.ws, job_id)
        if found.job.status != "queued":
            return found
        ahead = self.server.ahead(self._key(job_id))
        return found if ahead is None else JobView(found.job, ahead)

    def close(self, wait: bool = True) -> None:
        """Stop: queued jobs stay queued in the workspace (the next queue takes them up),
        running ones stop at their next progress step and are marked interrupted."""
        self._closing = True
        futures = list(self._futures.items())
        for job_id, future in futures:
            if not future.cancel():
                folder = self.folder / job_id
                if folder.is_dir():
                    (folder / CANCEL_FILE).touch()
        if self._own_server:
            self.server.shutdown(wait=wait)
        elif wait:
            futures_wait([future for _, future in futures])

    # -- the server thread's side ---------------------------------------------------------------

    def _key(self, job_id: str) -> tuple[str, str]:
        return (str(self.ws.folder), job_id)

    def _dispatch(self, job_id: str) -> None:
        with self._ends_lock:
            self._ends.setdefault(job_id, threading.Event())
        try:
            future = self.server.dispatch(self._key(job_id), lambda: self._run(job_id))
        except RuntimeError:  # the server is shutting down: the job stays queued
            self._ended(job_id)
            raise
        self._futures[job_id] = future
        future.add_done_callback(lambda _: self._futures.pop(job_id, None))
        # run, cancelled before it started or never started (closing): its end is recorded
        future.add_done_callback(lambda _: self._ended(job_id))

    def _ended(self, job_id: str) -> None:
        with self._ends_lock:
            ended = self._ends.pop(job_id, None)
        if ended is not None:
            ended.set()

    def _run(self, job_id: str) -> None:
        ws = self.ws
        if self._closing or not ws.start_job(job_id):
            return
        job = ws.job(job_id)
        try:
            run_id = KINDS[job.kind](self, job)
        except JobCancelled:
            if self._closing:
                ws.end_job(job_id, "interrupted", error=INTERRUPTED)
            else:
                ws.end_job(job_id, "cancelled", error="Cancelled.")
        except (InputError, WorkerDied) as exc:
            ws.end_job(job_id, "failed", error=str(exc))
        except Exception as exc:
            log.exception("Job %s (%s) failed", job_id, job.kind)
            ws.end_job(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            ws.end_job(job_id, "done", run_id=run_id, message="Done")
        finally:
            shutil.rmtree(self.folder / job_id, ignore_errors=True)

    def in_worker(
        self,
        job: Job,
        fn: Callable[..., Any],
        *args: Any,
        model_id: str | None = None,
        keep_input: bool = False,
    ) -> Any:
        """Run ``fn(folder, *args, progress=...)`` in this thread's worker process on a private
        copy of the job's dataset (and of the vectors cached for ``model_id``); copy its progress
        into the job's row while it runs and its new vectors into the cache when it is done.

        ``keep_input``: the copy is the dataset's kept one (:meth:`kept_input`), given to ``fn``
        as ``input_folder=`` (its ``folder`` then holds only the progress and cancel files), so
        that the next job on the dataset does not copy its events again."""
        folder = make_private_dir(self.folder / job.id)
        if keep_input and job.dataset_id is not None:
            with self.kept_input(job.dataset_id, model_id) as kept:
                if kept is not None:
                    extra = {"input_folder": str(kept)}
                    return self._compute(job, folder, fn, args, kept / DB_NAME, model_id, extra)
        db = None
        if job.dataset_id is not None:
            db = self.ws.export_job_input(folder, job.dataset_id, model_id)
        return self._compute(job, folder, fn, args, db, model_id)

    def _compute(
        self,
        job: Job,
        folder: Path,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        db: Path | None,
        model_id: str | None,
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """:meth:`in_worker` once the input is in place (``db``: its database)."""
        if self.inline:
            result = _work(fn, str(folder), args, kwargs)
            self._sync(job.id, folder, None)
            if db is not None and model_id is not None and _embedded(result):
                self.ws.import_vectors(db, model_id)
            return result
        future = self.server.submit_work(fn, folder, args, kwargs)
        seen: tuple[float, str] | None = None
        while True:
            seen = self._sync(job.id, folder, seen)
            try:
                result = future.result(timeout=POLL_SECONDS)
                break
            except FutureTimeout:
                continue
            except (BrokenProcessPool, CancelledError) as exc:
                self.server.replace_pool()
                raise WorkerDied(WORKER_DIED) from exc
        self._sync(job.id, folder, seen)
        if db is not None and model_id is not None and _embedded(result):
            self.ws.import_vectors(db, model_id)
        return result

    def _sync(
        self, job_id: str, folder: Path, seen: tuple[float, str] | None
    ) -> tuple[float, str] | None:
        """Copy the worker's progress into the job's row (when it changed); pass a cancel
        asked for in the workspace on to the worker."""
        if self.ws.job(job_id).cancel_requested or self._closing:
            (folder / CANCEL_FILE).touch()
        try:
            data = json.loads((folder / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            return seen
        now = (float(data["progress"]), str(data["message"]))
        if now != seen:
            self.ws.job_progress(job_id, *now)
        return now

    @contextlib.contextmanager
    def kept_input(self, dataset_id: str, model_id: str | None) -> Iterator[Path | None]:
        """issue 19 (s7-segk): the dataset's copy kept across jobs — its tables and the vectors
        cached for ``model_id``, as :meth:`Workspace.export_job_input` makes it — held by the
        caller for the block: copied on first use (the prefetch usually makes it ahead), then
        reused by every later job on the dataset, so a re-run with another k copies no events.

        A stored dataset never changes, so the copy stays right; a worker adds the vectors it
        embeds to it (and they are copied into the cache as from any job's copy). Yields None
        when another job holds it (the caller copies its own). An error in the block (a killed
        worker included) throws the copy away. At most :data:`KEPT_INPUTS` copies are kept;
        those of deleted datasets go, and all go when the queue starts."""
        key = (dataset_id, model_id)
        with self._lock:
            busy = key in self._inputs_busy
            self._inputs_busy.add(key)
        if busy:
            yield None
            return
        try:
            folder = self._inputs.get(key)
            if folder is None or not (folder / DB_NAME).exists():
                folder = self._export_input(dataset_id, model_id)
            yield folder
        except BaseException:
            self._drop_input(key)
            raise
        finally:
            with self._lock:
                self._inputs_busy.discard(key)

    def _export_input(self, dataset_id: str, model_id: str | None) -> Path:
        key = (dataset_id, model_id)
        self._drop_input(key)
        alive = set(self.ws.datasets()["id"])
        with self._lock:
            kept = [k for k in self._inputs if k not in self._inputs_busy]
        live = [k for k in kept if k[0] in alive]
        stale = [k for k in kept if k[0] not in alive] + live[: max(0, len(live) - KEPT_INPUTS + 1)]
        for old in stale:
            self._drop_input(old)
        # named by the dataset, so that deleting the dataset deletes its copies at once
        # (Workspace.delete_dataset), whichever queue made them
        digest = hashlib.sha256(repr(model_id).encode()).hexdigest()[:16]
        folder = self.folder / f"{KEPT_PREFIX}{dataset_id}.{digest}"
        shutil.rmtree(folder, ignore_errors=True)
        make_private_dir(folder)
        self.ws.export_job_input(folder, dataset_id, model_id)
        with self._lock:
            self._inputs[key] = folder
        return folder

    def _drop_input(self, key: tuple[str, str | None]) -> None:
        with self._lock:
            folder = self._inputs.pop(key, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids of this queue's server (for memory reports)."""
        return self.server.worker_pids()


def _cancel(folder: Path) -> None:
    """Ask the worker running in ``folder`` to stop at its next progress step."""
    with contextlib.suppress(OSError):  # the folder is gone: that work has ended
        (folder / CANCEL_FILE).touch()


def _embedded(result: Any) -> bool:
    """Whether a job's result may hold newly embedded vectors in its copy (False only when its
    metrics say it embedded none: a re-run on kept user vectors then skips the copy back)."""
    metrics = getattr(result, "metrics", None)
    return not (isinstance(metrics, dict) and metrics.get("texts_embedded") == 0)


def check_owner_limit(active: list[Job], kind: str, owner: str) -> None:
    """Refuse a signed-in ``owner``'s job beyond :data:`OWNER_LIMITS` (``active``: the
    unfinished jobs of ``kind``); the shared ``local`` owner is not limited."""
    limit = OWNER_LIMITS.get(kind)
    if limit is None or owner == LOCAL_OWNER:
        return
    mine = [job for job in active if job.owner == owner]
    if len(mine) >= limit:
        what = "training" if kind == "policy" else kind
        raise InputError(
            f"You already have a {what} in progress (started {mine[0].created:%H:%M:%S}); one "
            f"{what} at a time per person. Wait for it to finish or cancel it, then start again."
        )


def job_view(ws: Workspace, job_id: str) -> JobView:
    """A job and how many unfinished jobs are ahead of it."""
    job = ws.job(job_id)
    ahead = 0
    if job.status == "queued":
        active = [j.id for j in ws.jobs(statuses=ACTIVE_JOB_STATUSES)]
        ahead = active.index(job_id) if job_id in active else 0
    return JobView(job, ahead)


def latest_job(ws: Workspace, kind: str, dataset_id: str) -> Job | None:
    """The newest job of ``kind`` on ``dataset_id`` (any status), or None."""
    jobs = ws.jobs(kind=kind, dataset_id=dataset_id)
    return jobs[-1] if jobs else None


def submit_segmentation(
    queue: JobQueue,
    dataset_id: str,
    settings: Any,
    *,
    owner: str = LOCAL_OWNER,
    force: bool = False,
) -> Job:
    """Queue a segmentation of a stored dataset (a finished run with the same settings is
    reused when the job runs, unless ``force``). A bad model folder is refused here, at once."""
    from retention.segments import SegmentSettings, run_settings

    parsed = SegmentSettings.coerce(settings)
    if parsed.text_weight > 0:
        run_settings(parsed)  # checks the model folder
    body = {"segmentation": parsed.to_dict(), "force": bool(force)}
    return queue.submit("segmentation", dataset_id, body, owner)


def submit_training(
    queue: JobQueue, dataset_id: str, request: Any, *, owner: str = LOCAL_OWNER
) -> Job:
    """Queue the training a :class:`~retention.policy_runs.PolicyRequest` asks for (always
    anew, as the Policy page's Train button does)."""
    return queue.submit("policy", dataset_id, {"request": request.as_dict()}, owner)


def training_segmentation(job: Job) -> str | None:
    """The segmentation run a training job (:func:`submit_training`) learns on, or None."""
    return job.settings.get("request", {}).get("segmentation_run")


_open_queues: list[JobQueue] = []
_exit_registered = False


def _register_exit(queue: JobQueue) -> None:
    """Close the queue before the interpreter joins its threads at exit (so a running job stops
    and is marked interrupted rather than keeping the server from exiting)."""
    global _exit_registered
    _open_queues.append(queue)
    if not _exit_registered:
        _exit_registered = True
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(close_queues, wait=False)


def close_queues(wait: bool = True) -> None:
    """Close every job queue this process opened and the shared :class:`JobServer` (at exit;
    after each app test)."""
    global _server
    while _open_queues:
        queue = _open_queues.pop()
        try:
            queue.close(wait=wait)
        except Exception:  # noqa: BLE001 - closing anyway
            log.debug("Closing a job queue failed", exc_info=True)
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.shutdown(wait=wait)


# ===================================================== issue 19: a warm worker, vectors ahead
#
# The Segments page's first run spent most of its seconds before clustering: starting the
# worker process (imports), loading the text model and embedding every distinct text. None of
# that depends on the page's settings, so the server does it *before* the button is pressed:
# :func:`prefetch_texts` (called when a dataset is saved, when the app or the Segments page
# opens) starts the job thread's worker, imports what a segmentation imports, loads the model
# the automatic choice picks for the dataset, embeds its distinct texts into the workspace's
# vector cache a chunk at a time, then makes the dataset's reduced user vectors for the page's
# default settings (kept as a re-run with another k keeps them, :mod:`retention.segments.vectors`),
# so the click with the default settings only clusters, labels, maps and profiles. It is not a job (no row, no place in the queue):
# it runs only while no job waits, and stops before its next chunk as soon as one does — that
# job then embeds only what is still missing, with its own progress. ``RETENTION_PREFETCH=0``
# turns it off (the benchmark's truly cold run).

PREFETCH_ENV = "RETENTION_PREFETCH"
#: Texts per worker call while prefetching: the longest a job waits for the chunk in hand.
PREFETCH_CHUNK = 256


def prefetch_enabled() -> bool:
    """Whether the server warms its worker and embeds datasets' texts ahead (on unless
    ``RETENTION_PREFETCH=0``)."""
    return os.environ.get(PREFETCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _warm_worker(folder: Path, choice: Any, texts: list[str], *, progress: Any) -> Any:
    """In the worker: import what a segmentation imports, load ``choice``'s model (kept for the
    process) and return the vectors of ``texts`` (None when there are none)."""
    import retention.segments.cluster
    import retention.segments.label
    import retention.segments.layout
    import retention.segments.pipeline  # noqa: F401 - the imports are the point

    if choice is None:
        return None
    embedder = choice.embedder()
    if not texts:
        embedder.embed(["warm up"])  # loads the model now, not inside the first job
        return None
    # the progress callback stops the chunk between two batches when a job comes (s8-segk)
    return embedder.embed(texts, progress=progress)


def _vectors_worker(
    folder: Path, dataset_id: str, kept_in: str, *, progress: Any, input_folder: str
) -> bool:
    """In the worker: the dataset's reduced user vectors for the default settings, kept in the
    server's workspace folder ``kept_in`` (a segmentation with those settings reuses them),
    from the dataset's kept copy ``input_folder`` (whose per-user facts the worker keeps)."""
    from retention.segments.pipeline import prepare_user_vectors

    ws = Workspace(input_folder)
    try:
        data = _worker_user_data(ws, dataset_id)  # kept for the jobs: worth finishing
        return prepare_user_vectors(
            ws, dataset_id, vectors_folder=Path(kept_in), data=data, progress=progress
        )
    finally:
        ws.close()


def _dataset_texts(ws: Workspace, dataset_id: str) -> tuple[Any, list[str]]:
    """The text model the automatic choice picks for a dataset and its distinct texts (the ones
    a segmentation embeds), or ``(None, [])`` when it has none."""
    from retention.segments import SegmentSettings
    from retention.segments.pipeline import dataset_text_model, dataset_texts, resolved_model_id

    if ws.dataset(dataset_id).shape != "events":
        return None, []
    con = ws.cursor().cursor()
    try:  # read once: the choice is made from the very texts embedded
        texts = dataset_texts(con, ws.table(dataset_id, "events"))
        if not texts:
            return None, []
        choice = dataset_text_model(con, "", SegmentSettings(), texts)
    finally:
        con.close()
    resolved_model_id(ws, dataset_id, SegmentSettings(), choice)  # the click's job reads it
    return choice, texts


def _jobs_waiting(queue: JobQueue) -> bool:
    with queue.server._lock:
        return bool(queue.server._order) or queue._closing or queue.server.closed


def _prefetch(queue: JobQueue, dataset_id: str | None) -> int:
    """On a job thread: warm its worker, then embed the dataset's uncached texts a chunk at a
    time, then make its user vectors for the default settings — stopping wherever a job waits,
    and, when a job comes while the worker is at it, at the worker's next progress step
    (:meth:`JobServer.ahead_work`). Returns how many texts it embedded."""
    from retention.embeddings import text_hash

    ws, done = queue.ws, 0
    choice, texts = _dataset_texts(ws, dataset_id) if dataset_id else (None, [])
    missing: list[str] = []
    if choice is not None:
        hashes = [text_hash(t) for t in texts]
        cached = ws.cached_vectors(choice.model_id, hashes)
        missing = [t for t, h in zip(texts, hashes, strict=True) if h not in cached]
    folder = make_private_dir(queue.folder / f"warm-{threading.get_ident()}")
    try:
        with queue.server.ahead_work(folder):
            chunks = [
                missing[i : i + PREFETCH_CHUNK] for i in range(0, len(missing), PREFETCH_CHUNK)
            ]
            for chunk in chunks or [[]]:
                if _jobs_waiting(queue):
                    return done
                work = queue.server.submit_work(_warm_worker, folder, (choice, chunk))
                vectors = _unless_cancelled(work)
                if vectors is _CANCELLED:
                    return done
                if chunk and vectors is not None:
                    ws.cache_vectors(choice.model_id, [text_hash(t) for t in chunk], vectors)
                    done += len(chunk)
            # every text embedded: the default settings' user vectors too (PCA and all)
            if dataset_id and choice is not None and not _jobs_waiting(queue):
                # the copy the jobs on this dataset then use (JobQueue.kept_input)
                with queue.kept_input(dataset_id, choice.model_id) as kept:
                    if kept is not None and not _jobs_waiting(queue):
                        args, extra = (dataset_id, str(ws.folder)), {"input_folder": str(kept)}
                        _unless_cancelled(
                            queue.server.submit_work(_vectors_worker, folder, args, extra)
                        )  # cancelled: the copy stays (kept_input drops it on an error only)
                if dataset_id not in set(ws.datasets()["id"]):  # deleted meanwhile
                    for path in (ws.folder / "segment_vectors").glob(f"{dataset_id}.*.npz"):
                        path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return done


_CANCELLED = object()


def _unless_cancelled(work: Future[Any]) -> Any:
    """The result of work done ahead, or :data:`_CANCELLED` when a job stopped it."""
    try:
        return work.result()
    except JobCancelled:
        return _CANCELLED


def prefetch_texts(queue: JobQueue, dataset_id: str | None) -> Future[int] | None:
    """Warm the server's worker and embed ``dataset_id``'s texts into the workspace's vector
    cache in the background (see above); once per dataset and queue (None when already asked,
    or turned off). ``dataset_id`` None only warms the worker. Never raises: it is only ahead
    of time, and the segmentation does whatever it did not."""
    if not prefetch_enabled() or queue.inline or queue._closing:
        return None
    asked = queue._prefetched
    with queue._lock:
        if dataset_id in asked or (dataset_id is None and asked):
            return None

        def run() -> int:
            try:
                return _prefetch(queue, dataset_id)
            except BrokenProcessPool:
                queue.server.replace_pool()
            except Exception:  # noqa: BLE001 - ahead of time only; the job does it itself
                log.debug("Prefetching %s's text vectors failed", dataset_id, exc_info=True)
            return 0

        try:
            asked[dataset_id] = queue.server._threads.submit(run)
        except RuntimeError:  # the server is shutting down
            return None
        return asked[dataset_id]

"""``streamlit`` as the load bench starts it, with every script run's time on the server logged.

Bench-only: wraps Streamlit's ``ScriptRunner._run_script`` to append one JSON line per call to
``$RETENTION_RUN_LOG``: wall seconds, the script thread's CPU seconds (the rest is waiting: for
a core, for the GIL, for a lock), whether it was a fragment's run (a job's progress poll), the
page it ran, whether a file was uploaded to it, and where its time went: every 20 ms a sampler
notes the script thread's innermost frames of ours (``app.py``, ``pages/``, ``retention/``)
and the run's line lists the most frequent (``where``: [frames, samples]). With
``RETENTION_RUN_LOG_WRITES=1`` it also logs every workspace write that waited for the write lock
or held it 0.1 s or more (``write_wait_s``, ``write_held_s``, ``who``); with
``RETENTION_RUN_LOG_REQUESTS=1`` every rerun request a browser sent (``request``: a fragment's
timed poll included, whether the session still held that fragment). A page's time on the
server, apart from the browser that draws it. Usage: as ``python -m streamlit`` (``python
bench/serve_timed.py run app.py ...``).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path

from streamlit.runtime.scriptrunner import script_runner
from streamlit.web.cli import main

ROOT = str(Path(__file__).resolve().parents[1])
SAMPLE_S = 0.02
_LOG = open(os.environ["RETENTION_RUN_LOG"], "a", buffering=1)  # noqa: SIM115 - process-long
_run = script_runner.ScriptRunner._run_script
_active: dict[int, collections.Counter] = {}
_active_lock = threading.Lock()


def _ours(frame) -> str:
    """The innermost three frames of the app's own code (or the innermost frame at all)."""
    names: list[str] = []
    innermost = None
    while frame is not None and len(names) < 3:
        path = frame.f_code.co_filename
        if innermost is None:
            innermost = f"{Path(path).name}:{frame.f_code.co_name}"
        if path.startswith(ROOT) and "/bench/" not in path and "/.venv/" not in path:
            names.append(f"{Path(path).relative_to(ROOT)}:{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(names) + (f" [{innermost}]" if innermost else "")


def _sampler() -> None:
    while True:
        time.sleep(SAMPLE_S)
        frames = sys._current_frames()
        with _active_lock:
            for ident, counts in _active.items():
                frame = frames.get(ident)
                if frame is not None:
                    counts[_ours(frame)] += 1


threading.Thread(target=_sampler, name="serve-timed-sampler", daemon=True).start()


_files_seen: dict[str, set[str]] = {}


def _new_upload(session: str, rerun_data) -> bool:
    """Whether this run is the first to see a file in one of the session's uploaders (the run
    that reads, detects and validates it)."""
    states = rerun_data.widget_states
    if states is None:
        return False
    files = {
        info.file_id
        for w in states.widgets
        if w.WhichOneof("value") == "file_uploader_state_value"
        for info in w.file_uploader_state_value.uploaded_file_info
    }
    seen = _files_seen.setdefault(session, set())
    new = bool(files - seen)
    seen |= files
    return new


def _timed(self, rerun_data) -> None:
    counts: collections.Counter = collections.Counter()
    ident = threading.get_ident()
    with _active_lock:
        _active[ident] = counts
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        _run(self, rerun_data)
    finally:
        wall, used = time.perf_counter() - start, time.thread_time() - cpu
        with _active_lock:
            _active.pop(ident, None)
        pages = self._pages_manager.get_pages()
        page = pages.get(self._pages_manager.current_page_script_hash, {})
        line = {
            "at": time.time(),
            "wall_s": wall,
            "cpu_s": used,
            "fragment": bool(rerun_data.fragment_id_queue),
            "page": page.get("page_name") or page.get("url_pathname") or "",
            "upload": _new_upload(self._session_id, rerun_data),
            "session": self._session_id[:8],
            "where": counts.most_common(4),
        }
        _LOG.write(json.dumps(line) + "\n")


script_runner.ScriptRunner._run_script = _timed


class _TimedLock:
    """The workspace's write lock, logging every write that waited for it or held it 0.1 s or
    more: how long, in which thread, and who wrote (the innermost frames of ours)."""

    def __init__(self, lock) -> None:
        self.lock = lock
        self.local = threading.local()

    def __enter__(self) -> None:
        depth = getattr(self.local, "depth", 0)
        asked = time.perf_counter()
        self.lock.acquire()
        if depth == 0:
            self.local.asked, self.local.got = asked, time.perf_counter()
        self.local.depth = depth + 1

    def __exit__(self, *exc) -> None:
        self.local.depth -= 1
        self.lock.release()
        if self.local.depth:
            return
        held = time.perf_counter() - self.local.got
        waited = self.local.got - self.local.asked
        if held >= 0.1 or waited >= 0.1:
            line = {
                "at": time.time(),
                "write_wait_s": waited,
                "write_held_s": held,
                "thread": threading.current_thread().name,
                "who": _ours(sys._getframe(1)),
            }
            _LOG.write(json.dumps(line) + "\n")


def _timed_writes() -> None:
    if ROOT not in sys.path:  # streamlit adds the app's folder only when the first page runs
        sys.path.append(ROOT)
    from retention import workspace

    timed: dict[int, _TimedLock] = {}
    init = workspace.Workspace.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        with _active_lock:
            self._write_lock = timed.setdefault(id(self._write_lock), _TimedLock(self._write_lock))

    workspace.Workspace.__init__ = __init__


if os.environ.get("RETENTION_RUN_LOG_WRITES"):
    _timed_writes()


def _logged_requests() -> None:
    """Log every rerun request a browser sends (``request``: when, the session, the fragment it
    asks for, an automatic rerun or not, whether the session still holds that fragment): a
    fragment's ``run_every`` timer runs in the browser, so this shows when its polls arrive."""
    from streamlit.runtime.app_session import AppSession

    request = AppSession.request_rerun

    def request_rerun(self, client_state) -> None:
        fragment = client_state.fragment_id if client_state else ""
        line = {
            "at": time.time(),
            "request": True,
            "session": self.id[:8],
            "fragment": fragment[:8],
            "auto": bool(client_state and client_state.is_auto_rerun),
            "held": bool(fragment) and self.has_fragment(fragment),
        }
        _LOG.write(json.dumps(line) + "\n")
        request(self, client_state)

    AppSession.request_rerun = request_rerun


if os.environ.get("RETENTION_RUN_LOG_REQUESTS"):
    _logged_requests()

if __name__ == "__main__":
    main(prog_name="streamlit")

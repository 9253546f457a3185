"""``streamlit`` as the load bench starts it, with every script run's time on the server logged.

Bench-only: wraps Streamlit's ``ScriptRunner._run_script`` to append one JSON line per call to
``$RETENTION_RUN_LOG``: wall seconds, the script thread's CPU seconds (the rest is waiting: for
a core, for the GIL, for a lock), and whether it was a fragment's run (a job's progress poll).
A page's time on the server, apart from the browser that draws it. Usage: as ``python -m
streamlit`` (``python bench/serve_timed.py run app.py ...``).
"""

from __future__ import annotations

import json
import os
import time

from streamlit.runtime.scriptrunner import script_runner
from streamlit.web.cli import main

_LOG = open(os.environ["RETENTION_RUN_LOG"], "a", buffering=1)  # noqa: SIM115 - process-long
_run = script_runner.ScriptRunner._run_script


def _timed(self, rerun_data) -> None:
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        _run(self, rerun_data)
    finally:
        line = {
            "at": time.time(),
            "wall_s": time.perf_counter() - start,
            "cpu_s": time.thread_time() - cpu,
            "fragment": bool(rerun_data.fragment_id_queue),
        }
        _LOG.write(json.dumps(line) + "\n")


script_runner.ScriptRunner._run_script = _timed

if __name__ == "__main__":
    main(prog_name="streamlit")

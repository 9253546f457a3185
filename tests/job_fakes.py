"""A job kind the job-queue tests control from outside (importable by spawned workers).

The worker writes its process id to ``<control>/pid`` and reports progress until the file
``<control>/release`` exists; with ``<control>/bad`` it then fails as bad input does."""

from __future__ import annotations

import os
import time
from pathlib import Path

from retention.errors import InputError

BAD_INPUT = "The file 'customers.csv' has no user column. Name it with --map user=COLUMN."


def wait_worker(folder: Path, control: str, *, progress) -> str:
    where = Path(control)
    (where / "pid").write_text(str(os.getpid()))
    step = 0
    while not (where / "release").exists():
        progress(0.5, f"waiting {step}")
        step += 1
        time.sleep(0.02)
    if (where / "bad").exists():
        raise InputError(BAD_INPUT)
    progress(1.0, "released")
    return "released"


def run_wait(queue, job) -> None:
    """The server side of the ``test.wait`` kind: no run is stored."""
    queue.in_worker(job, wait_worker, job.settings["control"])

"""Seconds and peak memory of each step of a run, for ``summary.json`` and the benchmarks.

Peak memory is the kernel's peak resident-set mark (``VmHWM``), Linux only: it is reset when a
step starts (``/proc/self/clear_refs``) and read when it ends, so each step gets its own peak.
Elsewhere the memory figures are absent, never guessed.

Before each step the C library is asked to hand back the memory that earlier steps freed
(:func:`release_freed_memory`, glibc's ``malloc_trim``): glibc keeps freed blocks in its arenas
for reuse, so without it a step's peak counts what the steps before it no longer use (issue 19:
at 10M events the retention step started 247 MB lower with it, see the README's 50M section).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


_trim: object = None  # glibc's malloc_trim once looked up; False where there is none


def release_freed_memory() -> bool:
    """Hand the memory that this process has freed back to the system (glibc's
    ``malloc_trim(0)``); returns whether it could be asked. Nothing changes for the objects
    still in use: only free pages leave the resident set. Elsewhere than glibc, a no-op."""
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError, TypeError):
                _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    if not _trim:
        return False
    _trim(0)  # type: ignore[operator]
    return True


def reset_peak_rss() -> None:
    """Reset this process's peak-RSS mark (nothing where the kernel does not offer it)."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB since the last reset; None where unknown."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class StepTimer:
    """Records ``timings`` (seconds) and ``peak_mb`` (MB, where known) of named steps.

    >>> timer = StepTimer()
    >>> with timer.step("ingest"):
    ...     pass
    >>> sorted(timer.timings)
    ['ingest']
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        #: Called before each step, before the C library's trim (the pipeline: its workspace's
        #: :meth:`~retention.workspace.Workspace.release_cached_memory`).
        self.before_step: list[Callable[[], object]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as step ``name`` (recorded even when the block raises); what
        earlier steps freed is handed back first, so that the step's peak is its own."""
        for release in self.before_step:
            release()
        release_freed_memory()
        reset_peak_rss()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            peak = peak_rss_mb()
            if peak is not None:
                self.peak_mb[name] = peak

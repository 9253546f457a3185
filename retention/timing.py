"""Seconds and peak memory of each step of a run, for ``summary.json`` and the benchmarks.

Peak memory is the kernel's peak resident-set mark (``VmHWM``), Linux only: it is reset when a
step starts (``/proc/self/clear_refs``) and read when it ends, so each step gets its own peak.
Elsewhere the memory figures are absent, never guessed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


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

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as step ``name`` (recorded even when the block raises)."""
        reset_peak_rss()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            peak = peak_rss_mb()
            if peak is not None:
                self.peak_mb[name] = peak

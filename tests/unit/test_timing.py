"""The step timer hands freed memory back before each step (issue 19, the 50M peak): on glibc,
memory that Python freed but the C library kept leaves the resident set, measured by the
kernel's own count (``VmRSS``), and the objects still in use are untouched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from retention import timing


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_leaves_the_resident_set():
    if not timing.release_freed_memory():
        pytest.skip("not glibc")
    # 120 MB in 4 KB blocks (below glibc's mmap threshold: they live in the heap), every 16th
    # kept so that the heap cannot simply shrink from its top when the rest are freed.
    blocks = [bytes([i % 251]) * 4096 for i in range(30_000)]
    kept = blocks[::16]
    del blocks
    before = _rss_mb()
    assert timing.release_freed_memory()
    after = _rss_mb()
    assert before - after > 50, (before, after)  # most of the ~112 MB freed
    assert all(b == bytes([(16 * j) % 251]) * 4096 for j, b in enumerate(kept))


def test_each_step_releases_before_it_starts(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(timing, "release_freed_memory", lambda: calls.append("release"))
    monkeypatch.setattr(timing, "reset_peak_rss", lambda: calls.append("reset"))
    timer = timing.StepTimer()
    with timer.step("a"):
        calls.append("a")
    with pytest.raises(ValueError), timer.step("b"):
        raise ValueError
    assert calls == ["release", "reset", "a", "release", "reset"]
    assert set(timer.timings) == {"a", "b"}

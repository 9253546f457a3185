"""Where the whole command's time goes outside its timed steps (issue 19, 50M events).

    python bench/profile_outside.py FILE        # one cold run in this process, a timeline

Runs ``python -m retention run FILE`` in this process on an empty workspace with wrappers
around the parts that ``summary.json``'s ``timings`` do not cover: imports, the command cache's
fingerprint (reuse and keep), workspace opening, the outputs' writing, publishing, and closing.
Prints one line per part: seconds since the start and the part's own seconds.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOG: list[tuple[str, float, float]] = []


def wrap(owner: object, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            end = time.perf_counter()
            LOG.append((label, start - T0, end - start))
            print(f"{end - T0:8.2f} s  {label:<28} {end - start:7.2f} s", flush=True)

    setattr(owner, name, timed)


def _duckdb_memory(rss_mb) -> None:
    """PROFILE_DUCKDB=1: what the workspace's DuckDB holds (``duckdb_memory()``, MB by tag),
    and the RSS after its buffer pool is asked to evict (the memory limit set low, then back)."""
    from retention import workspace

    for con in list(workspace._connections.values()):
        rows = con.execute(
            "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() "
            "WHERE memory_usage_bytes > 0 OR temporary_storage_bytes > 0"
        ).fetchall()
        held = ", ".join(f"{t} {m / 1e6:,.0f} MB" for t, m, _ in rows)
        print(f"    duckdb holds: {held or 'nothing'}", flush=True)
        if os.environ.get("PROFILE_EVICT") == "1":
            start = time.perf_counter()
            limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            con.execute("SET memory_limit = '32MB'")
            con.execute(f"SET memory_limit = '{limit}'")
            print(f"    after eviction ({limit} restored): RSS {rss_mb():,.0f} MB "
                  f"({time.perf_counter() - start:.2f} s)", flush=True)  # fmt: skip


def _peak_sampler(rss_mb) -> None:
    """Unless PROFILE_PEAK=0: every 20 ms, the RSS; at each step's highest, the main thread's
    frames in this package (where the step's peak happens), printed when the step changes."""
    import threading
    import traceback

    from retention import timing

    main_id = threading.main_thread().ident
    state = {"step": None, "peak": 0.0, "where": ""}
    inner = timing.StepTimer.step

    def report() -> None:
        if state["step"] is not None:
            print(f"  peak of {state['step']}: {state['peak']:,.0f} MB at\n{state['where']}",
                  flush=True)  # fmt: skip

    def step(self, name):
        report()
        state.update(step=name, peak=0.0, where="")
        return inner(self, name)

    timing.StepTimer.step = step

    def sample() -> None:
        while True:
            rss = rss_mb()
            if rss > state["peak"]:
                frame = sys._current_frames().get(main_id)
                stack = traceback.extract_stack(frame) if frame is not None else []
                own = [f"    {Path(f.filename).name}:{f.lineno} {f.name}" for f in stack
                       if "/retention/" in f.filename][-6:]  # fmt: skip
                state.update(peak=rss, where="\n".join(own))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    import atexit

    atexit.register(report)


def main() -> int:
    source = Path(sys.argv[1]).resolve()
    from retention import cli, command_cache, pipeline, timing  # noqa: F401 -- imports timed

    print(f"{time.perf_counter() - T0:8.2f} s  imports (cli, pipeline)", flush=True)
    import retention.ingest.sources as sources

    wrap(command_cache, "fingerprint", "fingerprint (cache)")
    wrap(command_cache, "code_digest", "code digest")
    wrap(command_cache, "_workspace_state", "cache: workspace state")
    wrap(command_cache, "reuse", "cache: reuse")
    wrap(command_cache, "keep", "cache: keep")
    wrap(sources, "file_sha256", "ingest: file sha256")
    wrap(pipeline, "_workspace", "open workspace")
    opened = []
    inner_ws = pipeline._workspace

    def keep_ws(*args, **kwargs):
        ws = inner_ws(*args, **kwargs)
        opened.append(ws)
        return ws

    pipeline._workspace = keep_ws
    wrap(pipeline, "_summary", "summary")
    wrap(pipeline, "_write_outputs", "write outputs")
    wrap(pipeline, "run_pipeline", "run_pipeline")
    wrap(cli, "_publish", "publish")
    orig_step = timing.StepTimer.step

    trim = os.environ.get("PROFILE_TRIM") == "1"
    libc = ctypes.CDLL("libc.so.6") if trim else None

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def step(self, name):
        before = rss_mb()
        note = ""
        if libc is not None:
            start = time.perf_counter()
            libc.malloc_trim(0)
            note = f", after malloc_trim {rss_mb():,.0f} MB ({time.perf_counter() - start:.2f} s)"
        print(f"{time.perf_counter() - T0:8.2f} s  step {name}: RSS at start {before:,.0f} MB"
              + note, flush=True)  # fmt: skip
        if os.environ.get("PROFILE_DUCKDB") == "1":
            _duckdb_memory(rss_mb)
        return orig_step(self, name)

    timing.StepTimer.step = step
    if os.environ.get("PROFILE_PEAK", "1") == "1":
        _peak_sampler(rss_mb)

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", str(source), "--out", f"{tmp}/out", "--workspace", f"{tmp}/ws", "--quiet"]
        start = time.perf_counter()
        rc = cli.main(argv)
        print(f"{time.perf_counter() - T0:8.2f} s  cli.main rc={rc} "
              f"({time.perf_counter() - start:.2f} s)", flush=True)  # fmt: skip
        import json

        summary = json.loads(Path(f"{tmp}/out/summary.json").read_text())
        steps = sum(summary["timings"].values())
        print("peaks MB: " + ", ".join(f"{k} {v:,.0f}" for k, v in
              summary.get("peak_memory_mb", {}).items()), flush=True)  # fmt: skip
        print(f"steps {steps:.2f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in
              summary["timings"].items()), flush=True)  # fmt: skip
        import gc

        start = time.perf_counter()
        gc.collect()
        print(f"{time.perf_counter() - T0:8.2f} s  gc.collect {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        for ws in opened:
            ws.close()
        print(f"{time.perf_counter() - T0:8.2f} s  closing the run's workspace "
              f"{time.perf_counter() - start:.2f} s", flush=True)  # fmt: skip
        opened.clear()
        start = time.perf_counter()
    print(f"{time.perf_counter() - T0:8.2f} s  removing the temporary folder "
          f"{time.perf_counter() - start:.2f} s", flush=True)  # fmt: skip
    import atexit

    atexit.register(lambda: print(f"{time.perf_counter() - T0:8.2f} s  atexit (last)", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

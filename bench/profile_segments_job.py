"""Where a Segments-page job's seconds go on the full Online Retail file (issue 19, "another k"):
the same jobs the page submits, through a real :class:`~retention.jobs.JobQueue` and its worker
process, with cProfile inside the worker and in the server's job thread.

Steps: store the file in a fresh workspace (as an upload does), let the server do its work ahead
(:func:`~retention.jobs.prefetch_texts`) and wait for it, then the page's first run (automatic
k) and two re-runs with another k (4, then 5). Prints each job's times (queued → started →
done, from the workspace) and the top of both profiles of every job, and writes the profiles
to ``--out`` (``.prof`` files for ``python -m pstats``).

Usage: ``python bench/profile_segments_job.py [--data PATH] [--out DIR] [--top N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
PROFILE_DIR_ENV = "RETENTION_PROFILE_DIR"


def profiled_segment_worker(folder: Path, *args, **kwargs):
    """In the worker: :func:`retention.jobs._segment_worker` under cProfile (one file a job)."""
    from retention import jobs

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return jobs._segment_worker(folder, *args, **kwargs)
    finally:
        profiler.disable()
        out = Path(os.environ[PROFILE_DIR_ENV]) / f"worker-{folder.name}.prof"
        profiler.dump_stats(out)


def _top(path: Path, n: int) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("cumulative").print_stats(n)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="segk_prof_"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ[PROFILE_DIR_ENV] = str(out)  # the spawned worker inherits it

    import profile_segments_job as me  # importable by the worker (not as __main__)

    from retention import jobs
    from retention.ingest import ingest
    from retention.jobs import JobQueue, prefetch_texts, submit_segmentation
    from retention.runs import store_dataset
    from retention.segments import SegmentSettings
    from retention.workspace import Workspace

    folder = Path(tempfile.mkdtemp(prefix="segk_ws_"))
    ws = Workspace(folder)
    dataset = store_dataset(ws, ingest(args.data), args.data.name)

    original_worker, original_kind = jobs._segment_worker, jobs.KINDS["segmentation"]

    def profiled_kind(queue, job):
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return original_kind(queue, job)
        finally:
            profiler.disable()
            profiler.dump_stats(out / f"server-{job.id}.prof")

    jobs.KINDS["segmentation"] = profiled_kind
    jobs._segment_worker = me.profiled_segment_worker  # _run_segmentation reads the global
    queue = JobQueue(ws, workers=1)
    try:
        start = time.perf_counter()
        prefetch_texts(queue, dataset).result(timeout=900)
        print(f"work ahead: {time.perf_counter() - start:.2f} s")
        for k in ("auto", 4, 5):
            click = time.perf_counter()
            job = submit_segmentation(queue, dataset, SegmentSettings(k=k))
            while ws.job(job.id).active:
                time.sleep(0.02)
            wall = time.perf_counter() - click
            done = ws.job(job.id)
            assert done.status == "done", done.error
            started = (done.started - done.created).total_seconds()
            ran = (done.finished - done.started).total_seconds()
            print(
                f"\n=== k={k}: submit → done seen {wall:.2f} s; queued → started {started:.2f} s;"
                f" started → done {ran:.2f} s"
            )
            for side in ("server", "worker"):
                path = out / f"{side}-{job.id}.prof"
                if path.exists():
                    print(f"--- {side}")
                    print(_top(path, args.top))
    finally:
        queue.close()
        jobs._segment_worker, jobs.KINDS["segmentation"] = original_worker, original_kind
        ws.close()
    print(f"profiles in {out}")


if __name__ == "__main__":
    main()

"""Where the Segments page's rerun that draws a new run spends its time (issue 19: "done → on
screen"), in Streamlit's AppTest on a workspace that already holds runs (e.g. the one
``bench/profile_segments_job.py`` leaves: the full Online Retail file, a run with the automatic
k, one with k = 4 and one with k = 5).

Three reruns are profiled, each the page's rerun when a job it follows has just ended: the
first run drawn (after the page was drawn once and its data caches cleared, so nothing of the
run or of its dataset's activity is cached), then another run (another k)
drawn where the first was, then a rerun with nothing new (any click). Prints each one's wall
time and the top of its cProfile.

Usage: ``python bench/profile_segments_draw.py WORKSPACE [--top N]`` (the workspace is copied
first; it is not changed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE = "pages/2_segments.py"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="segk_draw_")) / "ws"
    shutil.copytree(args.workspace, folder, ignore=shutil.ignore_patterns("jobs"))
    os.environ.update(RETENTION_WORKSPACE=str(folder), RETENTION_PREFETCH="0", HF_HUB_OFFLINE="1")

    from streamlit.testing.v1 import AppTest

    from retention.jobs import close_queues
    from retention.workspace import Workspace

    ws = Workspace(folder)
    runs = ws.runs("segmentation").sort_values("created")
    first, *others = list(runs["id"])
    dataset = str(runs["dataset_id"].iloc[0])
    ws.set_meta("ui.last_dataset", dataset)
    ws.close()

    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

    real_run_script = ScriptRunner._run_script
    profiler: dict[str, cProfile.Profile] = {}

    def profiled_run_script(self, rerun_data):  # the page runs on the script thread
        if "now" not in profiler:
            return real_run_script(self, rerun_data)
        profiler["now"].enable()
        try:
            return real_run_script(self, rerun_data)
        finally:
            profiler["now"].disable()

    ScriptRunner._run_script = profiled_run_script
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE)
    at.run()  # the page drawn once (imports, the newest run), as the click's page was
    import streamlit as st

    st.cache_data.clear()  # a new run: nothing of it or of its dataset's activity read yet
    try:
        for what, run_id in (("first run", first), ("another k", others[0]), ("no change", None)):
            if run_id is not None:
                at.session_state["segmentation_run"] = run_id
            profiler["now"] = cProfile.Profile()
            start = time.perf_counter()
            at.run()
            wall = time.perf_counter() - start
            assert not at.exception, at.exception
            shown = [m.value for m in at.metric if m.label == "Segments"]
            print(f"\n=== {what}: {wall:.3f} s (segments on screen: {shown})")
            buf = io.StringIO()
            pstats.Stats(profiler.pop("now"), stream=buf).sort_stats("cumulative").print_stats(
                args.top
            )
            print(buf.getvalue())
    finally:
        close_queues()
        shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

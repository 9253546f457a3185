"""Where the browser's seconds go between a Segments result's text and its first Plotly chart
(issue 19, session 16: "done → on screen"), in headless Chromium with its timeline traced.

The app is started on a copy of ``WORKSPACE`` (one that holds a segmentation, e.g. the one
``bench/profile_segments_job.py`` leaves), with nothing done ahead; the Segments page is opened
in a fresh browser page twice (the second reopens it in the same browser). For each: seconds
from the page's request until the result's text ("Names and keywords") and until the first
Plotly chart, when Streamlit's Plotly chunk was fetched, and, from Chromium's trace of the
second page, the browser's main-thread tasks of 100 ms or more from the text on (the Plotly
module's evaluation among them).

Usage: ``python bench/trace_first_chart.py WORKSPACE [--port N] [--suffix S]``; writes
``bench/results/first_chart{S}.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
TEXT_JS = "() => document.body.innerText.includes('Names and keywords')"
PLOT_JS = "() => !!document.querySelector('.js-plotly-plot')"
CHUNK_JS = """() => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/PlotlyChart.'))
  .map(e => [Math.round(e.startTime), Math.round(e.responseEnd)])"""
LONG_TASKS = ("RunTask", "v8.evaluateModule", "v8.parseOnBackground", "FunctionCall")


def _open(page, url: str, timeout_s: float = 120) -> dict:
    """Open ``url``; seconds until the result's text and the first chart, the chunk's fetch."""
    start = time.perf_counter()
    page.goto(url)
    text = plot = None
    while time.perf_counter() - start < timeout_s:
        if text is None and page.evaluate(TEXT_JS):
            text = time.perf_counter() - start
        if page.evaluate(PLOT_JS):
            plot = time.perf_counter() - start
            break
        page.wait_for_timeout(50)
    if text is None or plot is None:
        raise SystemExit(f"the result did not show within {timeout_s:.0f} s")
    return {
        "text_s": round(text, 2),
        "chart_s": round(plot, 2),
        "chunk_ms": page.evaluate(CHUNK_JS),
    }


def _long_tasks(trace: Path, since_s: float) -> list[dict]:
    """The trace's main-thread tasks of 100 ms or more starting ``since_s`` s into it, and
    background parses of the Plotly chunk."""
    data = json.loads(trace.read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    timed = [e for e in events if e.get("ph") == "X" and "dur" in e]
    if not timed:
        return []
    t0 = min(e["ts"] for e in timed)
    out = []
    for e in sorted(timed, key=lambda e: e["ts"]):
        at = (e["ts"] - t0) / 1e6
        url = str((e.get("args") or {}).get("data", {}).get("url", ""))
        if e["name"] not in LONG_TASKS or e["dur"] < 100_000 or at < since_s - 0.5:
            continue
        if e["name"] == "v8.parseOnBackground" and "PlotlyChart" not in url:
            continue
        out.append({"at_s": round(at, 2), "ms": round(e["dur"] / 1e3), "what": e["name"],
                    "script": url.rsplit("/", 1)[-1]})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--port", type=int, default=8633)
    parser.add_argument("--suffix", default="")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from retention.workspace import Workspace

    folder = Path(tempfile.mkdtemp(prefix="first_chart_")) / "ws"
    shutil.copytree(args.workspace, folder)
    ws = Workspace(folder)
    dataset = ws.datasets()["id"].iloc[0]
    ws.close()
    env = {**os.environ, "RETENTION_WORKSPACE": str(folder), "HF_HUB_OFFLINE": "1",
           "RETENTION_PREFETCH": "0"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
         str(args.port), "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{args.port}/segments?dataset={dataset}"
    trace = folder.parent / "trace.json"
    try:
        time.sleep(6)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            )
            opened = []
            for i in range(2):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                if i == 1:
                    browser.start_tracing(page=page, path=str(trace),
                                          categories=["devtools.timeline", "v8", "toplevel",
                                                      "disabled-by-default-devtools.timeline"])  # fmt: skip
                opened.append(_open(page, url))
                if i == 1:
                    page.wait_for_timeout(1500)  # the charts' drawing after the first
                    browser.stop_tracing()
                page.close()
            browser.close()
    finally:
        os.killpg(server.pid, 15)
    tasks = _long_tasks(trace, opened[1]["text_s"])
    lines = [
        "# The Segments result's first chart in the browser (issue 19, session 16)",
        "",
        f"`python bench/trace_first_chart.py WORKSPACE{' --suffix ' + args.suffix if args.suffix else ''}`"
        f" on a copy of `{args.workspace.name}`; {os.cpu_count()} CPUs; load average "
        f"{os.getloadavg()[0]:.2f} at the end. Seconds from the page's request.",
        "",
        "| page | result's text | first Plotly chart | chart − text | Plotly chunk fetched (ms) |",
        "|---|---:|---:|---:|---|",
        *[
            f"| {'first' if i == 0 else 'second, traced'} | {o['text_s']:.2f} | {o['chart_s']:.2f}"
            f" | {o['chart_s'] - o['text_s']:.2f} | {o['chunk_ms']} |"
            for i, o in enumerate(opened)
        ],
        "",
        "The second page's main-thread tasks of 100 ms or more from its text on (and the chunk's "
        "background parse), s into the trace:",
        "",
        "| at s | ms | task | script |",
        "|---:|---:|---|---|",
        *[f"| {t['at_s']:.2f} | {t['ms']} | {t['what']} | {t['script']} |" for t in tasks],
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"first_chart{args.suffix}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The Segments page in a real browser on the full Online Retail file: the first segmentation
(embedding every description, choosing k) and a re-run with another k (issue 19).

What is measured: a real Streamlit server (``app.py``) and headless Chromium (Playwright driving
Debian's ``/usr/bin/chromium``), the way ``bench/tuning.py`` does it. The workspace holds only
the Online Retail file, stored with the library exactly as an upload on the Data page stores it
(``ingest`` + ``store_dataset``; the upload itself is measured by ``bench_ingest.py``), and no
embeddings. Two scenarios, each on a fresh workspace and a fresh server:

* **cold** (``RETENTION_PREFETCH=0``): nothing is done ahead; the browser opens ``/segments``
  and presses *Find segments* at once. The job worker process is spawned by this first job,
  loads the text model and embeds the 3,866 distinct descriptions, all inside the clock.
* **ahead** (the app's default): the browser opens the app on the dataset (the Data page, as
  after saving an upload), waits ``--wait`` seconds (default 30) — meanwhile the server warms
  its job worker and embeds the dataset's descriptions into the workspace's vector cache
  (``retention.jobs.prefetch_texts``) — then opens ``/segments`` and presses *Find segments*.

In each: 1. **first run**: the clock starts at the click and stops when the result is on
screen (the "Names and keywords" section and the map, no progress bar). The progress bar's text
is sampled every 100 ms meanwhile: the table lists every distinct message and fraction seen, so a
bar that does not move shows. 2. **another k**: choose 4 segments, press *Find segments*; the
clock stops when the page shows 4 segments (only clustering, labels, map and profile are redone:
the user vectors are kept, :mod:`retention.segments.vectors`).

The server starts before the clock (its own start is not the page's time).

Usage: ``python bench/bench_segments_page.py [--port P] [--data PATH] [--shots DIR]
[--scenarios cold,ahead] [--wait S] [--root CHECKOUT] [--run-log DIR]``; writes
``bench/results/segments_page{suffix}.json`` and ``.md``. ``--root`` serves another checkout's
``app.py`` (the "before" figures: a checkout of main); ``cold`` then means that code as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
RESULTS = ROOT / "bench" / "results"
from load import IDLE_JS  # noqa: E402 -- the benches' one "Streamlit is idle" check

#: The progress bar's text and fraction, or null when there is none.
PROGRESS_JS = """() => {
    const bar = document.querySelector('[data-testid="stProgress"]');
    if (!bar) return null;
    const text = bar.innerText.trim();
    const value = bar.querySelector('[role="progressbar"]');
    return [text, value ? parseFloat(value.getAttribute('aria-valuenow')) : null];
}"""
#: The "Segments" headline number on screen, or null.
SEGMENTS_JS = """() => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
        const label = m.querySelector('[data-testid="stMetricLabel"]');
        if (label && label.innerText.trim() === 'Segments') {
            return m.querySelector('[data-testid="stMetricValue"]').innerText.trim();
        }
    }
    return null;
}"""


def prepare(folder: Path, data: Path) -> tuple[str, int, int]:
    """A workspace holding only ``data``: (dataset id, rows, users)."""
    from retention.ingest import ingest
    from retention.runs import store_dataset
    from retention.workspace import Workspace

    ws = Workspace(folder)
    ws.set_meta("samples.loaded", "1")  # only the benchmark's data
    prepared = ingest(data)
    ds = store_dataset(ws, prepared, data.name)
    ws.set_meta("ui.last_dataset", ds)
    ws.close()
    return ds, prepared.report.rows, prepared.report.users


def wait_idle(page, timeout: int = 300_000) -> None:
    for _ in range(2):
        page.wait_for_function(IDLE_JS, timeout=timeout)
        page.wait_for_timeout(200)
    page.wait_for_function(IDLE_JS, timeout=timeout)


def _until(page, done_js: str, start: float, timeout_s: float = 600) -> tuple[float, list]:
    """Poll every 100 ms until ``done_js`` is true: (seconds since ``start``, the progress
    samples ``[seconds, text, fraction]`` seen, each change once)."""
    seen: list = []
    while time.perf_counter() - start < timeout_s:
        now = page.evaluate(PROGRESS_JS)
        if now is not None and (not seen or seen[-1][1:] != list(now)):
            seen.append([round(time.perf_counter() - start, 2), *now])
        if page.evaluate(done_js):
            return time.perf_counter() - start, seen
        page.wait_for_timeout(100)
    raise SystemExit(f"timed out after {timeout_s:.0f} s; last progress: {seen[-3:]}")


def measure(port: int, dataset: str, k: int, shots: Path | None, wait_s: float) -> dict:
    from playwright.sync_api import sync_playwright

    tag = "_ahead" if wait_s > 0 else "_cold"

    first_done = (
        "() => document.body.innerText.includes('Names and keywords')"
        " && !!document.querySelector('.js-plotly-plot')"
        " && !document.querySelector('[data-testid=\"stProgress\"]')"
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        if wait_s > 0:  # the app opened on the dataset first (as after saving it), then wait
            page.goto(f"http://127.0.0.1:{port}/?dataset={dataset}")
            wait_idle(page)
            page.wait_for_timeout(int(wait_s * 1000))
        page.goto(f"http://127.0.0.1:{port}/segments?dataset={dataset}")
        wait_idle(page)
        page.get_by_role("button", name="Find segments").click()
        start, first_click = time.perf_counter(), time.time()
        first, first_seen = _until(page, first_done, start)
        wait_idle(page)
        found = page.evaluate(SEGMENTS_JS)
        if shots is not None:
            page.screenshot(path=str(shots / f"segments_first_run{tag}.png"), full_page=True)

        page.get_by_role("combobox", name="Number of segments").click()
        page.get_by_role("option", name=str(k), exact=True).click()
        wait_idle(page)
        page.get_by_role("button", name="Find segments").click()
        start, again_click = time.perf_counter(), time.time()
        again, again_seen = _until(page, f"() => ({SEGMENTS_JS})() === '{k}'", start)
        wait_idle(page)
        if shots is not None:
            page.screenshot(path=str(shots / f"segments_k{k}{tag}.png"), full_page=True)
        browser.close()
    return {
        "first_run_s": round(first, 2),
        "first_run_k": found,
        "first_run_progress": first_seen,
        "another_k": k,
        "another_k_s": round(again, 2),
        "another_k_progress": again_seen,
        "clicks": [[first_click, first], [again_click, again]],
    }


def job_steps(folder: Path, clicks: list) -> list[dict]:
    """Where each click's seconds went, from the jobs the workspace recorded (read after the
    server stopped; its clock is this computer's, in UTC): the click until the job was queued
    (the page's run), queued until started (dispatch), started until done (the job: the worker
    and storing the run), done until on screen (the page noticing and drawing)."""
    from retention.workspace import Workspace

    ws = Workspace(folder)
    try:
        found = ws.jobs(kind="segmentation")
    finally:
        ws.close()
    steps = []
    for job, (click, total) in zip(found, clicks, strict=False):
        at = [
            pd.Timestamp(t).tz_localize("UTC").timestamp()
            for t in (job.created, job.started, job.finished)
        ]
        steps.append(
            {
                "click_to_queued_s": round(at[0] - click, 2),
                "queued_to_started_s": round(at[1] - at[0], 2),
                "started_to_done_s": round(at[2] - at[1], 2),
                "done_to_screen_s": round(click + total - at[2], 2),
            }
        )
    return steps


SCENARIOS = {
    "cold": "cold: nothing done ahead (RETENTION_PREFETCH=0), the button pressed as the page opens",
    "ahead": "ahead: the app opened on the dataset {wait:.0f} s before the page (the default app)",
}


def _progress_table(samples: list) -> list[str]:
    lines = ["| s | text | value |", "|---:|---|---:|"]
    for at, text, value in samples:
        lines.append(f"| {at:.1f} | {text} | {value if value is not None else '–'} |")
    return lines


def markdown(result: dict) -> str:
    lines = [
        f"# Segments page in the browser: {result['data']}",
        "",
        f"Code served: {result['root']}. {os.cpu_count()} CPUs. Target (issue 19): first run "
        "≤ 10 s, another k ≤ 2 s. Times from the click on *Find segments* until the result is "
        "on screen.",
        "",
        "| scenario | first run (automatic k) | k found | re-run with k = 4 | load before → after |",
        "|---|---:|---:|---:|---|",
    ]
    for name, one in result["scenarios"].items():
        lines.append(
            f"| {SCENARIOS[name].format(wait=one['wait_s'])} | {one['first_run_s']:.1f} s | "
            f"{one['first_run_k']} | {one['another_k_s']:.1f} s | {one['uptime_before']} → "
            f"{one['uptime_after']} |"
        )
    lines += [
        "",
        "Where the seconds went (the workspace's job times, s): the click until the job is "
        "queued (the page's run), queued until started, started until done (the worker and "
        "storing the run), done until on screen (the page noticing and drawing).",
        "",
        "| scenario | click | queued → started | started → done | done → on screen |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, one in result["scenarios"].items():
        for what, step in zip(("first run", "another k"), one.get("steps", []), strict=False):
            lines.append(
                f"| {name}, {what} | {step['click_to_queued_s']:.2f} | "
                f"{step['queued_to_started_s']:.2f} | {step['started_to_done_s']:.2f} | "
                f"{step['done_to_screen_s']:.2f} |"
            )
    for name, one in result["scenarios"].items():
        lines += ["", f"## {name}: the progress bar during the first run (s after the click)", ""]
        lines += _progress_table(one["first_run_progress"])
        lines += ["", f"## {name}: during the re-run with k = {one['another_k']}", ""]
        lines += _progress_table(one["another_k_progress"])
    return "\n".join(lines) + "\n"


def _uptime() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _stop(server: subprocess.Popen) -> None:
    """Stop the server we started and its job worker (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def scenario(args: argparse.Namespace, name: str) -> dict:
    """One scenario on a fresh workspace and a fresh server."""
    folder = Path(tempfile.mkdtemp(prefix="retention_segpage_"))
    dataset, rows, users = prepare(folder, args.data)
    env = {**os.environ, "RETENTION_WORKSPACE": str(folder), "HF_HUB_OFFLINE": "1"}
    env["RETENTION_PREFETCH"] = "0" if name == "cold" else "1"
    launcher = ["-m", "streamlit"]
    if args.run_log is not None:  # every page run's time on the server (bench/serve_timed.py)
        args.run_log.mkdir(parents=True, exist_ok=True)
        env.update(
            RETENTION_RUN_LOG=str(args.run_log / f"{name}.jsonl"),
            RETENTION_RUN_LOG_WRITES="1",
            RETENTION_RUN_LOG_REQUESTS="1",
        )
        launcher = [str(ROOT / "bench" / "serve_timed.py")]
    server = subprocess.Popen(
        [sys.executable, *launcher, "run", str(args.root / "app.py"), "--server.port",
         str(args.port), "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=args.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    uptime_before = _uptime()
    wait_s = args.wait if name == "ahead" else 0.0
    try:
        time.sleep(5)
        out = measure(args.port, dataset, args.k, args.shots, wait_s)
    finally:
        _stop(server)
    out.update(wait_s=wait_s, uptime_before=uptime_before, uptime_after=_uptime())
    out["steps"] = job_steps(folder, out.pop("clicks"))
    out["data"] = f"{args.data.name}, {rows:,} rows, {users:,} customers"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--k", type=int, default=4, help="the re-run's number of segments")
    parser.add_argument("--shots", type=Path, default=None, help="full-page screenshots here")
    parser.add_argument("--suffix", default="", help="results file suffix (e.g. _before)")
    parser.add_argument("--scenarios", default="cold,ahead", help="cold, ahead or both")
    parser.add_argument("--wait", type=float, default=30.0, help="ahead: seconds before the page")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose app is served")
    parser.add_argument(
        "--run-log",
        type=Path,
        default=None,
        help="serve through bench/serve_timed.py and keep its per-run log here (SCENARIO.jsonl)",
    )
    args = parser.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data} not found: the benchmark needs the Online Retail parquet file.")
    if args.shots is not None:
        args.shots.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        sys.exit(f"Unknown scenarios {unknown}: choose from {sorted(SCENARIOS)}.")
    result: dict = {"root": str(args.root.resolve()), "scenarios": {}}
    for name in names:
        one = scenario(args, name)
        result["data"] = one.pop("data")
        result["scenarios"][name] = one
        RESULTS.mkdir(parents=True, exist_ok=True)  # written after each scenario: kept if cut
        (RESULTS / f"segments_page{args.suffix}.json").write_text(json.dumps(result, indent=2))
        (RESULTS / f"segments_page{args.suffix}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

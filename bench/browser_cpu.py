"""What one browser tab costs in CPU on the app (issue 22): the load bench's browsers took more
of the machine than the server they loaded. Where from?

One app server, one headless Chromium (the load bench's flags), one tab; for each scenario the
CPU seconds (user + system) of Chromium's processes and of Playwright's driver over
``--seconds`` of wall time:

* ``idle`` — the Retention page open, nothing asked of the browser;
* ``wait_raf`` / ``wait_200ms`` — the same page while Playwright waits for a condition that does
  not come (what the load bench's ``idle()`` does while a page is slow), polling on every
  animation frame (Playwright's default) or every 200 ms;
* ``job`` — the Segments page while a job runs (its progress is re-read every second; the job's
  worker is paused with SIGSTOP so the job stays running for the whole measurement);
* ``locator_wait`` / ``job_locator_wait`` — Playwright waiting for a text that does not come
  (``locator.wait_for``, what the bench does while a job runs);
* ``job_wait_raf`` / ``job_wait_200ms`` — the job's page with a waiting Playwright.

``--navigation`` measures instead what drawing a page costs the browser (a marketer's laptop
pays it too): Chromium's CPU seconds for one sidebar click to Retention, to Strategies, and for
a 5 MB upload on the Data page until its validation report is shown (each from the click or
the file choice until the page's run is over and one more second has passed for the charts to
be drawn), ``--reps`` times each, with full-page screenshots of the first into ``--shots``.

Usage: ``python bench/browser_cpu.py [--seconds 30] [--tag NAME]``; writes
``bench/results/browser_cpu{_tag}.json`` and ``.md``. Bench-only; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE_JS,
    main_uploader,
    make_files,
    nav,
    prepare_workspace,
    start_server,
    wait_text,
)

NO_MOTION_CSS = """*, *::before, *::after {
    transition: none !important; animation: none !important; }"""
FULL_HEIGHT_JS = """() => Math.max(...[...document.querySelectorAll(
    '[data-testid="stMain"], [data-testid="stMainBlockContainer"]')].map(e => e.scrollHeight),
    1000)"""
NEVER_JS = "() => !!document.querySelector('[data-testid=\"never-there\"]')"


SCENARIOS_IDLE = [
    ("idle", None),
    ("idle_again", None),
    ("wait_raf", "raf"),
    ("wait_200ms", "200"),
    ("locator_wait", "locator"),
]
SCENARIOS_JOB = [
    ("job", None),
    ("job_again", None),
    ("job_wait_raf", "raf"),
    ("job_wait_200ms", "200"),
    ("job_locator_wait", "locator"),
]


def cpu_of(pids: set[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def browser_pids() -> tuple[set[int], set[int]]:
    """(Chromium's processes, Playwright's driver) among this process's descendants."""
    chrome, driver = set(), set()
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            name = proc.name()
        except psutil.Error:
            continue
        if "chrom" in name:
            chrome.add(proc.pid)
        elif "node" in name or "playwright" in name:
            driver.add(proc.pid)
    return chrome, driver


def add_unsegmented(folder: Path) -> None:
    """A second event log (with text), not segmented yet, made the current dataset: pressing
    Find segments on it starts a real job."""
    from retention.ingest import ingest
    from retention.runs import store_dataset
    from retention.synth import make_planted
    from retention.workspace import Workspace

    events = make_planted(n_users=300, n_periods=12, seed=201).events
    path = folder.parent / "job_demo.csv"
    events.to_csv(path, index=False)
    ws = Workspace(folder)
    try:
        ws.set_meta("ui.last_dataset", store_dataset(ws, ingest(path), "Job demo"))
    finally:
        ws.close()


async def locator_wait(page, seconds: float) -> None:
    with contextlib.suppress(Exception):  # the timeout is the point
        await page.get_by_text("never-there-text").wait_for(timeout=seconds * 1000)


def server_runs(log: Path, since: float) -> tuple[int, int]:
    """(page runs, fragment runs) the server logged since ``since`` (``bench/serve_timed.py``)."""
    if not log.exists():
        return 0, 0
    runs = [json.loads(x) for x in log.read_text().splitlines()]
    runs = [r for r in runs if r["at"] >= since]
    return sum(not r["fragment"] for r in runs), sum(bool(r["fragment"]) for r in runs)


async def measure(page, seconds: float, wait: str | None, log: Path) -> dict:
    since = time.time()
    chrome, driver = browser_pids()
    c0, d0, t0 = cpu_of(chrome), cpu_of(driver), time.perf_counter()
    if wait is None:
        await asyncio.sleep(seconds)
    elif wait == "locator":
        await locator_wait(page, seconds)
    else:
        polling = "raf" if wait == "raf" else int(wait)
        with contextlib.suppress(Exception):  # the timeout is the point
            await page.wait_for_function(NEVER_JS, polling=polling, timeout=seconds * 1000)
    wall = time.perf_counter() - t0
    chrome2, driver2 = browser_pids()
    runs, fragments = server_runs(log, since)
    return {
        "server_page_runs": runs,
        "server_fragment_runs": fragments,
        "wall_s": wall,
        "chromium_cpu_s": cpu_of(chrome | chrome2) - c0,
        "driver_cpu_s": cpu_of(driver | driver2) - d0,
        "load_average": os.getloadavg(),
    }


async def idle(page) -> None:
    for _ in range(2):
        await page.wait_for_function(IDLE_JS, polling=200, timeout=300_000)
        await page.wait_for_timeout(200)
    await page.wait_for_function(IDLE_JS, polling=200, timeout=300_000)


async def scenarios(
    url: str, server_pid: int, seconds: float, args_extra: list[str], log: Path
) -> dict:
    from playwright.async_api import async_playwright

    out: dict[str, dict] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *args_extra]
        )
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        await page.goto(url)
        await idle(page)
        await page.locator("[data-testid='stSidebarNavLink']", has_text="Retention").first.click()
        await page.get_by_role("heading", name="Retention").first.wait_for()
        await idle(page)
        await asyncio.sleep(3)
        for name, wait in SCENARIOS_IDLE:
            out[name] = await measure(page, seconds, wait, log)
            print(name, json.dumps(out[name]), flush=True)
        await page.locator("[data-testid='stSidebarNavLink']", has_text="Segments").first.click()
        await page.get_by_role("heading", name="Segments").first.wait_for()
        await idle(page)
        # a job that stays running: its worker paused as soon as it exists
        stopped: set[int] = set()
        await page.get_by_role("button", name="Find segments").click()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopped:
            for kid in psutil.Process(server_pid).children(recursive=True):
                try:
                    kid.send_signal(signal.SIGSTOP)
                    stopped.add(kid.pid)
                except psutil.Error:
                    pass
            await asyncio.sleep(0.05)
        try:
            await page.get_by_role("button", name="Cancel").wait_for(timeout=60_000)
            await asyncio.sleep(3)
            await page.screenshot(path=str(ROOT / "bench" / "results" / "browser_cpu_job.png"))
            for name, wait in SCENARIOS_JOB:
                out[name] = await measure(page, seconds, wait, log)
                print(name, json.dumps(out[name]), flush=True)
            out["job_last"] = await measure(page, seconds, None, log)
            # the same page without CSS transitions and animations: is it the repainting?
            await page.add_style_tag(content=NO_MOTION_CSS)
            out["job_no_motion"] = await measure(page, seconds, None, log)
            print("job_no_motion", json.dumps(out["job_no_motion"]), flush=True)
        finally:
            for pid in stopped:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
        await browser.close()
    return out


async def navigations(url: str, reps: int, upload: Path, shots: Path | None) -> dict:
    """Chromium's CPU seconds (and wall seconds) per sidebar navigation and per upload."""
    from playwright.async_api import async_playwright

    out: dict[str, list[dict]] = {"Retention": [], "Strategies": [], "Data upload": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(300_000)
        await page.goto(url)
        await idle(page)

        async def step(name: str, action) -> None:
            chrome, _ = browser_pids()
            c0, t0 = cpu_of(chrome), time.perf_counter()
            await action()
            wall = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # plotly draws after the run's last message
            chrome2, _ = browser_pids()
            cpu = cpu_of(chrome | chrome2) - c0
            out[name].append({"chromium_cpu_s": cpu, "wall_s": wall,
                              "load_average": os.getloadavg()[0]})  # fmt: skip
            print(name, f"{cpu:.2f} CPU-s, {wall:.2f} s", flush=True)
            if shots is not None and len(out[name]) == 1:
                shots.mkdir(parents=True, exist_ok=True)
                file = shots / f"{name.lower().replace(' ', '_')}.png"
                height = await page.evaluate(FULL_HEIGHT_JS)
                await page.set_viewport_size({"width": 1400, "height": min(height + 100, 8000)})
                await asyncio.sleep(2.0)
                await page.screenshot(path=str(file), full_page=True)
                await page.set_viewport_size({"width": 1400, "height": 1000})
                await asyncio.sleep(2.0)

        async def choose_file() -> None:
            await main_uploader(page).set_input_files(str(upload))
            await wait_text(page, "Validation report")
            await idle(page)

        for _ in range(reps):
            for title in ("Retention", "Strategies"):
                await step(title, lambda t=title: nav(page, t))
            await nav(page, "Data")
            await asyncio.sleep(1.0)
            await step("Data upload", choose_file)
        await browser.close()
    return out


def _workspace(tmp: Path, prepared: Path | None) -> Path:
    """The demo workspace the tab opens: a copy of ``prepared``, else made here (minutes)."""
    ws = tmp / "ws"
    if prepared:
        shutil.copytree(prepared, ws)
    else:
        ws.mkdir()
        print("preparing the workspace", flush=True)
        prepare_workspace(ws)
    return ws


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def navigation_main(args: argparse.Namespace) -> int:
    import statistics

    with tempfile.TemporaryDirectory(prefix="retention-bnav-") as tmp:
        ws = _workspace(Path(tmp), args.prepared)
        upload = make_files(Path(tmp), 0, 120, 5.0)["upload"]
        url, proc = start_server(ws, 1)
        try:
            out = asyncio.run(navigations(url, args.reps, upload, args.shots))
        finally:
            _stop(proc)
    suffix = f"_{args.tag}" if args.tag else ""
    (ROOT / "bench" / "results" / f"browser_nav{suffix}.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# What drawing a page costs the browser (issue 22, `bench/browser_cpu.py --navigation`)",
        "",
        f"One headless Chromium tab (the load bench's flags, 1,400 px wide) on the planted demo "
        f"(segmented and trained); {args.reps} of each, Chromium's CPU seconds from the click "
        "(or the file choice) until the page's run is over plus 1 s.",
        "",
        "| step | Chromium CPU s, median (min–max) | wall s, median | load avg |",
        "|---|---:|---:|---:|",
    ]
    for name, rows in out.items():
        cpus = [r["chromium_cpu_s"] for r in rows]
        walls = [r["wall_s"] for r in rows]
        lines.append(
            f"| {name} | {statistics.median(cpus):.2f} ({min(cpus):.2f}–{max(cpus):.2f}) "
            f"| {statistics.median(walls):.2f} | {rows[-1]['load_average']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / f"browser_nav{suffix}.md").write_text(text)
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--chromium-arg", action="append", default=[])
    parser.add_argument("--job-only", action="store_true", help="only the job page's scenarios")
    parser.add_argument(
        "--prepared", type=Path, default=None, help="copy this prepared workspace (saves minutes)"
    )
    parser.add_argument("--navigation", action="store_true", help="a page's drawing cost")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shots", type=Path, default=None, help="screenshots (navigation)")
    args = parser.parse_args()
    if args.navigation:
        return navigation_main(args)
    with tempfile.TemporaryDirectory(prefix="retention-bcpu-") as tmp:
        ws = _workspace(Path(tmp), args.prepared)
        add_unsegmented(ws)
        url, proc = start_server(ws, 1)
        try:
            if args.job_only:
                SCENARIOS_IDLE.clear()
                SCENARIOS_JOB[:] = SCENARIOS_JOB[:1]
            out = asyncio.run(
                scenarios(url, proc.pid, args.seconds, args.chromium_arg, ws / "runs.jsonl")
            )
        finally:
            for kid in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    kid.kill()  # the paused job's worker: its job is of no interest
            _stop(proc)
        runs = [json.loads(x) for x in (ws / "runs.jsonl").read_text().splitlines()]
    result = {"scenarios": out, "chromium_args": [*CHROMIUM_ARGS, *args.chromium_arg],
              "server_runs": len(runs)}  # fmt: skip
    suffix = f"_{args.tag}" if args.tag else ""
    (ROOT / "bench" / "results" / f"browser_cpu{suffix}.json").write_text(
        json.dumps(result, indent=2)
    )
    lines = [
        "# One browser tab's CPU (issue 22)",
        "",
        f"Chromium flags: `{' '.join(result['chromium_args'])}`; {args.seconds:g} s per scenario.",
        "",
        "| scenario | Chromium CPU s | share of a core | Playwright driver CPU s "
        "| server page runs | server fragment runs | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in out.items():
        lines.append(
            f"| {name} | {r['chromium_cpu_s']:.2f} | {r['chromium_cpu_s'] / r['wall_s']:.0%} "
            f"| {r['driver_cpu_s']:.2f} | {r['server_page_runs']} | {r['server_fragment_runs']} "
            f"| {r['load_average'][0]:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / f"browser_cpu{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

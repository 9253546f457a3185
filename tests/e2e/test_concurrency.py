"""Ten browser sessions at once against one app server (SPEC §9, issue 8).

Each session uploads its own small event log (different users, different data), saves it,
finds segments (behaviour only: the files have no text, so no model load) and trains a policy,
all at the same time through one server process and its one DuckDB workspace (segmenting and
training are background jobs run by a worker process, issue 22). No session may
see an error or an exception, and none may see another's state: each ends with its own dataset
selected and its own users in its segments. Each session chooses its file once, with no retry
(issue 22): an upload without a validation report within ``UPLOAD_WAIT_MS`` fails the test
with its evidence (a full-page screenshot, what the uploader shows, the server's thread stacks
and how much CPU the server got while the session waited). The lost file choice once seen here
was the campaign-log uploader mounting first; its cause is fixed and covered by
``test_upload_race.py``. Peak server and worker memory (VmHWM) and the median and 95th
percentile of the page times are printed, not asserted (``bench/repeat_concurrency.py`` runs
this test again and again and tabulates them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from retention.synth import make_planted
from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE_JS,
    SCREENSHOTS,
    STEP_TIMEOUT_MS,
    running_app,
)

pytestmark = pytest.mark.e2e

SESSIONS = 10
#: How long one upload may wait for its validation report: one limit, no second wait. The
#: slowest report measured under this test's load (ten sessions at once, ``nice -n 15`` beside
#: other people's work, load average 20-33) came ~103 s after the file was chosen (90 s, then
#: 13 s more; README "Responsive under load"); on a quiet machine an upload step takes seconds.
#: Three times that slowest case is the test's step limit, so only an upload that never gets
#: its report (a lost choice, a stuck run) fails, and a slow one on a loaded machine does not.
UPLOAD_WAIT_MS = STEP_TIMEOUT_MS
#: How long the server may take to stop once asked (SIGTERM) after the sessions: it ends its
#: job queue and worker process first. 30 s was too short for a niced server at load ~20 (this
#: session's repeat 2: every session passed, then the wait ran out); a server that has not
#: stopped in 120 s is stuck, and fails with its thread stacks.
SERVER_STOP_S = 120
#: A segmentation or training is a background job in one queue: the last session's job waits
#: for the nine before it, so its page may take up to ten jobs' time on a loaded machine.
JOB_WAIT_MS = 3 * STEP_TIMEOUT_MS
#: How often a waiting test asks the page whether its run is over. Playwright's default for
#: ``wait_for_function`` is every animation frame (60 a second in every tab), which cost each
#: headless tab ~10% of a core on this machine (bench/results/browser_cpu*.md, issue 22).
POLL_MS = 200


def _prefix(i: int) -> str:
    return f"P{i:02d}-"


def _write_dataset(folder: Path, i: int) -> Path:
    """A small behaviour-only event log whose user ids all start with the session's prefix."""
    planted = make_planted(n_users=60 + 8 * i, n_periods=10, seed=100 + i)
    events = planted.events.drop(columns=["text"])
    events["user_id"] = _prefix(i) + events["user_id"]
    path = folder / f"shop{i:02d}.csv"
    events.to_csv(path, index=False)
    return path


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _rss_peak_kb(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh app server on 127.0.0.1 with an empty workspace; yields (url, process, folder)."""
    workspace = tmp_path_factory.mktemp("concurrency_ws")
    with running_app(workspace) as (url, proc):
        yield url, proc, workspace


try:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - playwright is a dev dependency
    PlaywrightTimeout = TimeoutError  # type: ignore[assignment,misc]


async def _idle(page) -> None:
    """The script run is over (twice in a row, 200 ms apart: a queued rerun is not missed)."""
    for _ in range(2):
        await page.wait_for_function(IDLE_JS, polling=POLL_MS, timeout=STEP_TIMEOUT_MS)
        await page.wait_for_timeout(200)
    await page.wait_for_function(IDLE_JS, polling=POLL_MS, timeout=STEP_TIMEOUT_MS)


async def _no_errors(page, where: str) -> None:
    for selector in ("[data-testid='stException']", "[data-testid='stAlertContentError']"):
        found = page.locator(selector)
        if await found.count():
            text = await found.first.inner_text()
            raise AssertionError(f"{where}: {selector} shown: {text[:500]}")


async def _nav(page, title: str) -> None:
    """Go to another page by the sidebar's link (same browser session, as a user would)."""
    await page.locator("[data-testid='stSidebarNavLink']", has_text=title).first.click()
    await page.wait_for_url(f"**/{title.lower()}*")
    await _idle(page)


class _KeepBrowsersAtOurPriority(threading.Thread):
    """Keeps every thread of this test's browsers at the test's own CPU priority (its nice).

    Chromium, run as root, sets its own priorities as it goes (its main process to -8, each
    renderer back to 0), so under ``nice -n 15`` the ten browsers, which stand for the users'
    own computers, outranked the niced app server they load by a factor of ~28 and starved it
    (issue 22: a first page open over 300 s). Linux's nice is per thread, so every thread is
    set, again at every pass."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.nice = os.nice(0)
        self.stop = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            for proc in me.children(recursive=True):
                try:
                    if "chrom" not in proc.name():
                        continue
                    for tid in os.listdir(f"/proc/{proc.pid}/task"):
                        if os.getpriority(os.PRIO_PROCESS, int(tid)) < self.nice:
                            os.setpriority(os.PRIO_PROCESS, int(tid), self.nice)
                except (OSError, psutil.Error):
                    continue
            self.stop.wait(0.25)


def _server_stacks(pid: int, path: Path) -> str:
    """What every thread of the server and its worker processes is doing now (py-spy, when
    installed: dev only)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        spy = Path(shutil.which("py-spy") or spy)
    if not spy.exists():
        return "no server stacks (py-spy not installed)"
    done = subprocess.run(
        [str(spy), "dump", "--pid", str(pid), "--nonblocking", "--subprocesses"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    path.write_text(done.stdout + done.stderr)
    return str(path)


def _dump_jobs(proc: subprocess.Popen, workspace: Path, path: Path) -> None:
    """Stop the server, then write its workspace's jobs table to ``path`` (evidence of a
    failed run: which jobs were submitted, ran, ended, and how). Never raises."""
    import duckdb

    proc.terminate()
    try:
        proc.wait(timeout=SERVER_STOP_S)
        con = duckdb.connect(str(workspace / "retention.duckdb"), read_only=True)
        try:
            con.execute("SELECT * FROM jobs ORDER BY created").df().to_csv(path, index=False)
        finally:
            con.close()
    except Exception as exc:  # noqa: BLE001 -- evidence only: the test fails anyway
        path.write_text(f"no jobs table: {exc!r}")


async def _session(
    browser, url: str, i: int, data: Path, times: list[tuple[str, float]], server_pid: int
) -> dict:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    name = f"session{i:02d}"

    async def step(label: str, action) -> None:
        start = time.perf_counter()
        await action()
        times.append((label, time.perf_counter() - start))
        await _no_errors(page, f"{name} {label}")

    try:

        async def open_app() -> None:
            await page.goto(url)
            await _idle(page)

        async def upload() -> None:
            # The Data page's main uploader, found by its label ("Your file"), never by its place
            # on the page. The file is chosen once; no retry (issue 22). A report that does not
            # come within UPLOAD_WAIT_MS fails the test with its evidence: a screenshot
            # (<session>_upload_stalled.png), what the uploader shows, the server's thread stacks
            # and the CPU the server got while this session waited.
            box = page.locator("[data-testid='stFileUploader']").filter(
                has=page.get_by_text("Your file", exact=True)
            )
            report = page.get_by_text("Validation report", exact=True)
            server = psutil.Process(server_pid)
            cpu_before, chosen = sum(server.cpu_times()[:2]), time.perf_counter()
            await box.locator("input[type=file]").set_input_files(str(data))
            try:
                await report.wait_for(timeout=UPLOAD_WAIT_MS)
            except PlaywrightTimeout:
                waited = time.perf_counter() - chosen
                cpu = sum(server.cpu_times()[:2]) - cpu_before
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shot = SCREENSHOTS / f"{name}_upload_stalled.png"
                await page.screenshot(path=str(shot), full_page=True)
                state = await box.inner_text() if await box.count() else "no 'Your file' uploader"
                stacks = _server_stacks(server_pid, SCREENSHOTS / f"{name}_server_stacks.txt")
                raise AssertionError(
                    f"{name}: no validation report {waited:.0f} s after the file was chosen "
                    f"(once, no retry); meanwhile the server used {cpu:.1f} CPU s, load "
                    f"{os.getloadavg()[0]:.1f}; the uploader shows {state!r}; see {shot}, "
                    f"{stacks} and concurrency_server.log"
                ) from None
            await _idle(page)

        async def save() -> None:
            box = page.get_by_label("Dataset name")
            await box.fill(name)
            await box.press("Enter")
            await _idle(page)
            await page.get_by_role("button", name="Save to workspace").click()
            await page.get_by_text("and made it the current dataset").wait_for()
            await _idle(page)

        async def job_result(text: str, label: str, exact: bool) -> None:
            # A background job: queued behind the other sessions' jobs, then run by a worker;
            # the page shows the run when the job has ended. One that never shows fails with
            # its evidence (issue 22: once in 20 runs a segmentation never showed, and nothing
            # said whether its job had run): a screenshot, the page's text, the server's stacks;
            # the jobs table is written after the server has stopped (concurrency_jobs.csv).
            try:
                await page.get_by_text(text, exact=exact).wait_for(timeout=JOB_WAIT_MS)
            except PlaywrightTimeout:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shot = SCREENSHOTS / f"{name}_{label}_stalled.png"
                await page.screenshot(path=str(shot), full_page=True)
                main = await page.locator("[data-testid='stMain']").inner_text()
                (SCREENSHOTS / f"{name}_{label}_stalled.txt").write_text(main)
                stacks = _server_stacks(server_pid, SCREENSHOTS / f"{name}_server_stacks.txt")
                raise AssertionError(
                    f"{name}: {label}: {text!r} not shown {JOB_WAIT_MS / 1000:.0f} s after the "
                    f"click (load {os.getloadavg()[0]:.1f}); see {shot} (and .txt), {stacks}, "
                    "concurrency_server.log and concurrency_jobs.csv"
                ) from None
            await _idle(page)

        async def segment() -> None:
            await _nav(page, "Segments")
            await page.get_by_role("button", name="Find segments").click()
            await job_result("Names and keywords", "segments", exact=False)

        async def train() -> None:
            await _nav(page, "Policy")
            await page.get_by_role("button", name="Train", exact=True).click()
            await job_result("Learned policy's worth", "policy", exact=True)

        await step("open", open_app)
        await step("upload", upload)
        await step("save", save)
        await step("segments", segment)
        segments_text = await page.locator("[data-testid='stMain']").inner_text()
        await step("policy", train)
        policy_text = await page.locator("[data-testid='stMain']").inner_text()
        picked = (
            await page.locator("[data-testid='stSidebar']")
            .get_by_role("combobox", name="Dataset")
            .input_value()
        )
        # How often this page's watchdog had to rerun it because a progress box's browser
        # timer stopped asking (pages/ui/jobs_view.py): printed, so lost timers show up.
        stalls = int(await page.evaluate("window.__retentionJobStalls || 0"))
        return {
            "picked": picked,
            "segments": segments_text,
            "policy": policy_text,
            "stalls": stalls,
        }
    finally:
        await context.close()


async def _all_sessions(
    url: str, files: list[Path], times: list[tuple[str, float]], server_pid: int
) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            # One visit first: the server's first page run imports the app's modules, and ten
            # first runs at once race on those imports (see the report of issue 8).
            warm = await browser.new_page()
            await warm.goto(url)
            await _idle(warm)
            await warm.close()
            return await asyncio.gather(
                *(_session(browser, url, i, files[i], times, server_pid) for i in range(SESSIONS))
            )
        finally:
            await browser.close()


def test_ten_sessions_at_once(server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    url, proc, workspace = server
    files = [_write_dataset(tmp_path, i) for i in range(SESSIONS)]
    times: list[tuple[str, float]] = []
    start = time.perf_counter()
    keeper = _KeepBrowsersAtOurPriority()
    keeper.start()
    try:
        results = asyncio.run(_all_sessions(url, files, times, proc.pid))
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the server's side of a failure
        shutil.copy(workspace / "server.log", SCREENSHOTS / "concurrency_server.log")
        _dump_jobs(proc, workspace, SCREENSHOTS / "concurrency_jobs.csv")
        raise
    finally:
        keeper.stop.set()
    wall = time.perf_counter() - start
    peak_mb = _rss_peak_kb(proc.pid) / 1024
    workers_mb = [_rss_peak_kb(child.pid) / 1024 for child in psutil.Process(proc.pid).children()]

    for i, result in enumerate(results):
        assert result["picked"].startswith(f"session{i:02d}"), (i, result["picked"])
        own = _prefix(i)
        others = [_prefix(j) for j in range(SESSIONS) if j != i]
        assert own in result["segments"], f"session {i} does not see its own users"
        leaked = [p for p in others if p in result["segments"] or p in result["policy"]]
        assert not leaked, f"session {i} sees other sessions' users: {leaked}"

    seconds = [t for _, t in times]
    print(
        f"\n{SESSIONS} concurrent sessions: wall {wall:.1f} s, {len(times)} page steps, "
        f"median {statistics.median(seconds):.2f} s, p95 {_p95(seconds):.2f} s, "
        f"max {max(seconds):.2f} s; server peak RSS {peak_mb:.0f} MB, its child processes "
        f"(job workers, resource tracker) {', '.join(f'{mb:.0f}' for mb in workers_mb)} MB"
    )
    for label in dict.fromkeys(label for label, _ in times):
        mine = [t for step, t in times if step == label]
        print(f"  {label:<9} median {statistics.median(mine):6.2f} s   p95 {_p95(mine):6.2f} s")
    stalled = ", ".join(
        f"session{i:02d} {r['stalls']}" for i, r in enumerate(results) if r["stalls"]
    )
    reruns = sum(r["stalls"] for r in results)
    print(f"  watchdog page reruns: {reruns}" + (f" ({stalled})" if stalled else ""))

    # Stop the server, then check the workspace it wrote: every session's work, once, whole.
    proc.terminate()
    try:
        proc.wait(timeout=SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stacks = _server_stacks(proc.pid, SCREENSHOTS / "concurrency_server_stop_stacks.txt")
        shutil.copy(workspace / "server.log", SCREENSHOTS / "concurrency_server.log")
        raise AssertionError(
            f"the server did not stop within {SERVER_STOP_S} s of SIGTERM (load "
            f"{os.getloadavg()[0]:.1f}); see {stacks} and concurrency_server.log"
        ) from None
    log = (workspace / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    from retention.workspace import Workspace

    ws = Workspace(workspace)
    try:
        datasets = ws.datasets()
        mine = datasets[datasets["name"].str.startswith("session")]
        assert sorted(mine["name"]) == [f"session{i:02d}" for i in range(SESSIONS)]
        runs = ws.runs()
        assert set(runs["status"]) == {"done"}, runs[["kind", "status", "error"]]
        jobs = ws.jobs()
        assert {j.status for j in jobs} == {"done"}, [(j.kind, j.status, j.error) for j in jobs]
        for kind in ("segmentation", "policy"):
            assert set(runs.loc[runs["kind"] == kind, "dataset_id"]) >= set(mine["id"])
    finally:
        ws.close()

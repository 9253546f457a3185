"""Responsive under load (issue 22): ten real browser sessions against one app server.

* **trainers** (``--trainers``, default 5): each uploads its own event log (with text, so the
  model loads and embeds), saves it, presses *Find segments*, then *Train*, and waits for each
  run to show (the work is a background job).
* **browsers** (``--browsers``, default 5): while any trainer is still working, each opens the
  Retention and Strategies pages of the planted demo (segmented and trained beforehand) and
  uploads a 5 MB file on the Data page, again and again.

Measured per mode, in the same run: page loads (sidebar click → the page's script run is over,
its heading shown) and uploads (file chosen → the validation report shown) while the trainings
run, p50/p95; each job's wait in the queue and run time (from the workspace's ``jobs`` table);
server and worker peak RSS (VmHWM). Then every job's result is computed again alone, inline,
and compared (segment assignments, labels, profile, map; Q-table and recommendations).

Modes: ``workers`` — jobs in a worker process (``RETENTION_WORKERS=1``, the default); ``inline``
— the same jobs computed inside the server process (``RETENTION_WORKERS=0``, the way before
issue 22). Usage::

    python bench/load.py [--modes workers inline] [--trainers 5] [--browsers 5] [--quick]

writes ``bench/results/load{_quick}.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.browser import CHROMIUM, CHROMIUM_ARGS, IDLE_JS  # noqa: E402, F401 (the benches')

RESULTS = ROOT / "bench" / "results"
STEP_MS = int(os.environ.get("LOAD_STEP_MS", "900000"))
#: How often a waiting session asks its page whether the run is over: Playwright's default for
#: ``wait_for_function`` is every animation frame (60 a second per tab), which cost each headless
#: tab ~10% of a core of its own (``bench/browser_cpu.py``): the bench's waste, not the app's.
POLL_MS = 200
#: A text shown on the page: asked every half second. A locator's ``wait_for`` (``get_by_text``)
#: cost a waiting tab ~7% of a core (a text query over the whole page, charts included), and
#: trainers wait minutes for their jobs.
TEXT_JS = "(text) => !!document.body && document.body.innerText.includes(text)"
TEXT_POLL_MS = 500
SHOTS = RESULTS / "load_failures"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ----------------------------------------------------------------------------- data


def make_files(folder: Path, trainers: int, users: int, upload_mb: float) -> dict[str, object]:
    """One event log (with text) per trainer, and one ~``upload_mb`` MB file for browsers."""
    from retention.synth import make_planted

    files = []
    for i in range(trainers):
        events = make_planted(n_users=users + 20 * i, n_periods=12, seed=200 + i).events
        events["user_id"] = f"T{i}-" + events["user_id"]
        path = folder / f"trainer{i}.csv"
        events.to_csv(path, index=False)
        files.append(path)
    big = make_planted(n_users=2000, n_periods=30, seed=99).events
    rows = max(1, int(len(big) * upload_mb * 2**20 / max(1, len(big.to_csv(index=False)))))
    reps = -(-rows // len(big))
    upload = pd.concat([big] * reps, ignore_index=True).iloc[:rows]
    upload_path = folder / "upload.csv"
    upload.to_csv(upload_path, index=False)
    return {"trainers": files, "upload": upload_path}


def prepare_workspace(folder: Path) -> None:
    """Samples loaded and the planted demo segmented and trained (what the browsers look at)."""
    from retention.policy_runs import PolicyForm, policy_choices, train_from_form
    from retention.runs import run_segmentation
    from retention.samples import ensure_samples
    from retention.segments import SegmentSettings
    from retention.workspace import Workspace

    ws = Workspace(folder)
    try:
        ensure_samples(ws)
        datasets = ws.datasets()
        planted = datasets[datasets["name"].str.contains("Planted")]["id"].iloc[0]
        ws.set_meta("ui.last_dataset", planted)
        seg = run_segmentation(ws, planted, settings=SegmentSettings(k=4))
        choices = policy_choices(ws, planted, "auto")
        assignments = ws.load_run(seg).artifacts["assignments"][["user_id", "segment"]]
        form = PolicyForm(actions=choices.action_table())
        train_from_form(ws, planted, seg, assignments, choices, form)
    finally:
        ws.close()


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workspace: Path, workers: int) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = dict(os.environ, RETENTION_WORKSPACE=str(workspace), HF_HUB_OFFLINE="1",
               RETENTION_WORKERS=str(workers),
               RETENTION_RUN_LOG=str(workspace / "runs.jsonl"),
               RETENTION_RUN_LOG_WRITES="1")  # fmt: skip
    log = (workspace / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "serve_timed.py"), "run", "app.py",
         "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start: " + (workspace / "server.log").read_text()[-2000:])


class MemoryWatch(threading.Thread):
    """Keeps the peak RSS of the server and of each of its child processes (workers)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.server = 0.0
        self.children: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(1.0)

    def sample(self) -> None:
        self.server = max(self.server, peak_mb(self.pid))
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for kid in kids:
            self.children[kid.pid] = max(self.children.get(kid.pid, 0.0), peak_mb(kid.pid))


def renice_threads(pid: int, nice: int) -> None:
    """Every thread of process ``pid`` to at least ``nice``. Linux's nice is per thread, and
    Chromium (run as root here) sets its own threads' and renderers' priorities as it goes
    (renderers back to 0, its main process to -8), so this is repeated at every sample."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            continue


class CpuWatch(threading.Thread):
    """CPU seconds used during the sessions, by who: the app server, its job workers (its child
    processes), the load generator's browsers (Chromium and Playwright's driver: on a real
    server they run on the users' own machines) and everything else on the machine (other
    people's work). With ``browser_nice`` the browsers are reniced as they appear (Chromium
    sets its own priorities, see :func:`renice_threads`)."""

    def __init__(self, server_pid: int, browser_nice: int | None = None) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.browser_nice = server_pid, browser_nice
        self.seen: dict[int, tuple[str, psutil.Process, float]] = {}
        self.stop = threading.Event()
        self.start_machine = psutil.cpu_times()

    def group(self, proc: psutil.Process) -> str:
        if proc.pid == self.server_pid:
            return "server"
        try:
            parents = {p.pid for p in proc.parents()}
        except psutil.Error:
            return "other"
        if self.server_pid in parents:
            return "workers"
        if os.getpid() in parents:
            return "browsers"
        return "other"

    def sample(self) -> None:
        me = psutil.Process(os.getpid())
        try:
            procs = [psutil.Process(self.server_pid), *me.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                used = sum(proc.cpu_times()[:2])  # user + system, not its reaped children
                known = self.seen.get(proc.pid)
                group = known[0] if known else self.group(proc)
                self.seen[proc.pid] = (group, proc, used)
                if group == "browsers" and self.browser_nice is not None:
                    renice_threads(proc.pid, self.browser_nice)
            except psutil.Error:
                continue

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(0.25)

    def totals(self) -> dict[str, float]:
        """CPU seconds per group since the start (a process's last sample: one that ended
        between samples loses at most half a second)."""
        out = {"server": 0.0, "workers": 0.0, "browsers": 0.0}
        for group, _, used in self.seen.values():
            if group in out:
                out[group] += used
        now = psutil.cpu_times()
        busy = sum(now[:3]) - sum(self.start_machine[:3])  # user + nice + system
        if hasattr(now, "irq"):
            busy += now.irq + now.softirq - self.start_machine.irq - self.start_machine.softirq
        out["machine"] = busy
        out["everything_else"] = max(
            0.0, busy - sum(out[g] for g in ("server", "workers", "browsers"))
        )
        return out


# ----------------------------------------------------------------------------- sessions


async def idle(page) -> None:
    for _ in range(2):
        await page.wait_for_function(IDLE_JS, polling=POLL_MS, timeout=STEP_MS)
        await page.wait_for_timeout(200)
    await page.wait_for_function(IDLE_JS, polling=POLL_MS, timeout=STEP_MS)


async def wait_text(page, text: str) -> None:
    await page.wait_for_function(TEXT_JS, arg=text, polling=TEXT_POLL_MS, timeout=STEP_MS)


async def errors(page) -> str | None:
    for selector in ("[data-testid='stException']", "[data-testid='stAlertContentError']"):
        found = page.locator(selector)
        if await found.count():
            return (await found.first.inner_text())[:300]
    return None


def main_uploader(page):
    """The Data page's "Your file" uploader's input (by its label: never the campaign log's)."""
    box = page.locator("[data-testid='stFileUploader']").filter(
        has=page.get_by_text("Your file", exact=True)
    )
    return box.locator("input[type=file]").first


async def nav(page, title: str) -> float:
    start = time.perf_counter()
    await page.locator("[data-testid='stSidebarNavLink']", has_text=title).first.click()
    if title != "Data":  # the default page's address is the app's root
        await page.wait_for_url(f"**/{title.lower()}*")
    await page.get_by_role("heading", name=title).first.wait_for()
    await idle(page)
    return time.perf_counter() - start


async def trainer(browser, url: str, i: int, data: Path, out: dict) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(STEP_MS)
    try:
        await page.goto(url)
        await idle(page)
        await main_uploader(page).set_input_files(str(data))
        await wait_text(page, "Validation report")
        await idle(page)
        box = page.get_by_label("Dataset name")
        await box.fill(f"trainer{i}")
        await box.press("Enter")
        await idle(page)
        await page.get_by_role("button", name="Save to workspace").click()
        await wait_text(page, "and made it the current dataset")
        await idle(page)
        await nav(page, "Segments")
        start = time.perf_counter()
        await page.get_by_role("button", name="Find segments").click()
        await wait_text(page, "Names and keywords")
        await idle(page)
        out["segment_s"] = time.perf_counter() - start
        await nav(page, "Policy")
        start = time.perf_counter()
        await page.get_by_role("button", name="Train", exact=True).click()
        await wait_text(page, "Learned policy's worth")
        await idle(page)
        out["train_s"] = time.perf_counter() - start
        out["error"] = await errors(page)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"trainer{i}.png"), full_page=True)
        raise
    finally:
        await context.close()


async def browser_session(
    browser, url: str, upload: Path, busy, out: dict, think_s: float = 0.0
) -> None:
    """Retention, Strategies, then an upload on the Data page, round after round while
    ``busy()``; after each page or upload the session pauses ``think_s`` seconds, as a person
    reads what came (0: the next click at once, a closed loop that keeps every browser busy)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(STEP_MS)
    out.update(pages=[], uploads=[], errors=[])
    try:
        await page.goto(url)
        await idle(page)
        while busy() or not out["uploads"]:
            for title in ("Retention", "Strategies"):
                out["pages"].append(await nav(page, title))
                if err := await errors(page):
                    out["errors"].append(f"{title}: {err}")
                await think(page, think_s)
            await nav(page, "Data")
            start = time.perf_counter()
            await main_uploader(page).set_input_files(str(upload))
            await wait_text(page, "Validation report")
            await idle(page)
            out["uploads"].append(time.perf_counter() - start)
            if err := await errors(page):
                out["errors"].append(f"upload: {err}")
            await think(page, think_s)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"browser{id(out)}.png"), full_page=True)
        raise
    finally:
        await context.close()


async def think(page, seconds: float) -> None:
    if seconds > 0:
        await page.wait_for_timeout(seconds * 1000)


async def run_sessions(
    url: str,
    files: dict,
    trainers: int,
    browsers: int,
    deadline_s: float | None = None,
    think_s: float = 0.0,
) -> tuple[list, list]:
    """Runs the sessions; with ``deadline_s``, trainers not done by then are stopped (their
    pages: recorded as unfinished; their jobs run on and are compared if done) and browsers
    stop after their current round, so a locked run stays short."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            warm = await browser.new_page()
            await warm.goto(url)
            await idle(warm)
            await warm.close()
            t_out = [{} for _ in range(trainers)]
            b_out = [{} for _ in range(browsers)]
            tasks = [
                asyncio.create_task(trainer(browser, url, i, files["trainers"][i], t_out[i]))
                for i in range(trainers)
            ]

            started = time.perf_counter()

            def busy() -> bool:
                late = deadline_s is not None and time.perf_counter() - started > deadline_s
                return not late and not all(t.done() for t in tasks)

            b_tasks = [
                asyncio.create_task(
                    browser_session(browser, url, files["upload"], busy, o, think_s)
                )
                for o in b_out
            ]
            if deadline_s is not None:
                await asyncio.wait(tasks, timeout=deadline_s)
                for i, task in enumerate(tasks):
                    if not task.done():
                        task.cancel()
                        t_out[i]["unfinished"] = True
            results = await asyncio.gather(*tasks, *b_tasks, return_exceptions=True)
            failures = [
                r
                for r in results
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
            ]
            if failures:
                raise failures[0]
            return t_out, b_out
        finally:
            await browser.close()


# ----------------------------------------------------------------------------- one mode


def difference(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """How two tables differ: shape, or the largest difference of a number, or other values."""
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return f"shape {a.shape} vs {b.shape}"
    nums = a.select_dtypes("number").columns
    worst = (
        float(np.nanmax(np.abs(a[nums].to_numpy(float) - b[nums].to_numpy(float))))
        if len(nums)
        else 0.0
    )
    other = [c for c in a.columns if c not in nums and not a[c].equals(b[c])]
    return f"largest number difference {worst:.3g}" + (f", other columns {other}" if other else "")


def same_as_alone(folder: Path) -> tuple[int, list[str]]:
    """Compute every finished job's result again, alone and inline; the jobs compared and the
    differences found."""
    from retention.jobs import policy_request
    from retention.policy_runs import train_or_reuse_policy
    from retention.runs import load_policy, run_segmentation
    from retention.segments import SegmentSettings
    from retention.workspace import Workspace

    ws = Workspace(folder)
    diffs, compared = [], 0
    try:
        for job in ws.jobs(statuses=["done"]):
            compared += 1
            if job.kind == "segmentation":
                settings = SegmentSettings.coerce(job.settings["segmentation"])
                alone = run_segmentation(ws, job.dataset_id, settings=settings, force=True)
                a, b = ws.load_run(job.run_id).artifacts, ws.load_run(alone).artifacts
                for name in ("assignments", "labels", "map2d", "profile"):
                    if not a[name].equals(b[name]):
                        diffs.append(f"{job.id} {name}: {difference(a[name], b[name])}")
            else:
                request = policy_request(job.settings["request"])
                seg = ws.load_run(request.segmentation_run).artifacts["assignments"]
                alone, _ = train_or_reuse_policy(
                    ws, job.dataset_id, seg[["user_id", "segment"]], request, reuse=False
                )
                p, q = load_policy(ws, job.run_id), load_policy(ws, alone)
                if not (np.array_equal(p.q, q.q) and p.recommendations.equals(q.recommendations)):
                    diffs.append(f"{job.id} policy")
    finally:
        ws.close()
    return compared, diffs


def job_times(folder: Path) -> list[dict]:
    from retention.workspace import Workspace

    ws = Workspace(folder)
    try:
        return [
            {
                "kind": j.kind,
                "status": j.status,
                "wait_s": (j.started - j.created).total_seconds() if j.started else None,
                "run_s": (j.finished - j.started).total_seconds() if j.finished else None,
                "error": j.error,
            }
            for j in ws.jobs()
        ]
    finally:
        ws.close()


def run_mode(mode: str, args: argparse.Namespace, files: dict, base: Path) -> dict:
    workspace = base / f"ws_{mode}"
    if args.prepared is not None:  # made beforehand (niced, outside the benchmark lock)
        shutil.copytree(args.prepared, workspace)
    else:
        workspace.mkdir()
        print(f"== {mode}: preparing the workspace", flush=True)
        prepare_workspace(workspace)
    url, proc = start_server(workspace, 1 if mode == "workers" else 0)
    watch = MemoryWatch(proc.pid)
    watch.start()
    cpu = CpuWatch(proc.pid, args.browser_nice)
    cpu.sample()
    base_cpu = {pid: used for pid, (_, _, used) in cpu.seen.items()}
    cpu.start()
    spy = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid),
             "--rate", "50", "--nonblocking", "--format", "raw", "--threads",
             "--output", str(args.profile / f"server_{mode}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        print(f"== {mode}: {args.trainers} trainers + {args.browsers} browsers", flush=True)
        start, sessions_start = time.perf_counter(), time.time()
        t_out, b_out = asyncio.run(
            run_sessions(url, files, args.trainers, args.browsers, args.deadline_s, args.think_s)
        )
        wall = time.perf_counter() - start
        watch.sample()
        cpu.sample()
    finally:
        watch.stop.set()
        cpu.stop.set()
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its samples and ends
            spy.wait(timeout=60)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    for pid, used in base_cpu.items():  # only what the sessions used
        if pid in cpu.seen:
            group, p_, now = cpu.seen[pid]
            cpu.seen[pid] = (group, p_, now - used)
    cpu_s = cpu.totals()
    runs_file = workspace / "runs.jsonl"
    runs = [json.loads(x) for x in runs_file.read_text().splitlines()] if runs_file.exists() else []
    writes = [r for r in runs if "write_held_s" in r and r["at"] >= sessions_start]
    runs = [r for r in runs if "wall_s" in r]
    full = [r for r in runs if not r["fragment"] and r["at"] >= sessions_start]
    log = (workspace / "server.log").read_text()
    jobs = job_times(workspace)
    compared, diffs = same_as_alone(workspace)
    pages = [t for o in b_out for t in o["pages"]]
    uploads = [t for o in b_out for t in o["uploads"]]
    return {
        "mode": mode,
        "wall_s": wall,
        "page_loads": len(pages),
        "page_p50_s": statistics.median(pages) if pages else None,
        "page_p95_s": p95(pages),
        "uploads": len(uploads),
        "upload_p50_s": statistics.median(uploads) if uploads else None,
        "upload_p95_s": p95(uploads),
        "segment_s": [o.get("segment_s") for o in t_out],
        "train_s": [o.get("train_s") for o in t_out],
        "trainers_unfinished": sum(1 for o in t_out if o.get("unfinished")),
        "deadline_s": args.deadline_s,
        "think_s": args.think_s,
        "jobs": jobs,
        "job_run_p50_s": {
            kind: statistics.median([j["run_s"] for j in jobs if j["kind"] == kind and j["run_s"]])
            for kind in ("segmentation", "policy")
            if any(j["kind"] == kind and j["run_s"] for j in jobs)
        },
        "jobs_failed": [j for j in jobs if j["status"] in ("failed", "cancelled")],
        "jobs_unfinished": [j for j in jobs if j["status"] not in ("done", "failed", "cancelled")],
        "same_as_alone": {"compared": compared, "different": diffs},
        "cpu_s": cpu_s,
        "server_runs": len(full),
        "server_run_p50_s": statistics.median([r["wall_s"] for r in full]) if full else None,
        "server_run_p95_s": p95([r["wall_s"] for r in full]),
        "server_run_cpu_p50_s": statistics.median([r["cpu_s"] for r in full]) if full else None,
        "server_run_cpu_p95_s": p95([r["cpu_s"] for r in full]),
        "server_runs_by_kind": runs_by_kind(full),
        "server_run_log": full,
        "server_slow_writes": writes,
        "browser_nice": args.browser_nice,
        "server_peak_mb": watch.server,
        "worker_peak_mb": sorted(watch.children.values(), reverse=True),
        "errors": [e for o in b_out for e in o["errors"]]
        + [o["error"] for o in t_out if o.get("error")],
        "tracebacks_in_log": log.count("Traceback"),
    }


def run_kind(run: dict) -> str:
    """A server run's kind for the breakdown: its page, and whether it received an upload."""
    page = run.get("page") or "?"
    return f"{page} (upload)" if run.get("upload") else page


def runs_by_kind(runs: list[dict]) -> dict[str, dict]:
    """The server's page runs by page (and upload), with their wall and CPU p50 / p95."""
    kinds: dict[str, list[dict]] = {}
    for run in runs:
        kinds.setdefault(run_kind(run), []).append(run)
    return {
        kind: {
            "runs": len(mine),
            "wall_p50_s": statistics.median([r["wall_s"] for r in mine]),
            "wall_p95_s": p95([r["wall_s"] for r in mine]),
            "cpu_p50_s": statistics.median([r["cpu_s"] for r in mine]),
            "cpu_p95_s": p95([r["cpu_s"] for r in mine]),
        }
        for kind, mine in sorted(kinds.items())
    }


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Load benchmark (issue 22)",
        "",
        f"{args.trainers} sessions segment + train (event logs of {args.users}–"
        f"{args.users + 20 * (args.trainers - 1)} users, with text) while {args.browsers} "
        f"sessions open Retention and Strategies and upload a {args.upload_mb:g} MB file, "
        "again and again until the trainings are done"
        + (
            f", pausing {args.think_s:g} s after each page or upload (a person reading it)"
            if args.think_s
            else ", each click right after the last (no pause)"
        )
        + "; real headless Chromium, one app server. "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "| mode | page loads | page p50 s | page p95 s | uploads | upload p50 s | upload p95 s "
        "| segment job p50 s | train job p50 s | trainer wall s (max) | server peak MB "
        "| worker peak MB | same result alone | failed jobs | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        walls = [a + b for a, b in zip(r["segment_s"], r["train_s"], strict=True) if a and b]
        workers = ", ".join(f"{m:.0f}" for m in r["worker_peak_mb"][:2]) or "—"
        same = r["same_as_alone"]
        lines.append(
            f"| {r['mode']} | {r['page_loads']} | {r['page_p50_s']:.2f} | {r['page_p95_s']:.2f} "
            f"| {r['uploads']} | {r['upload_p50_s']:.2f} | {r['upload_p95_s']:.2f} "
            f"| {r['job_run_p50_s'].get('segmentation', float('nan')):.1f} "
            f"| {r['job_run_p50_s'].get('policy', float('nan')):.1f} "
            f"| {max(walls) if walls else float('nan'):.0f} | {r['server_peak_mb']:.0f} "
            f"| {workers} | {same['compared'] - len(same['different'])}/{same['compared']} "
            f"| {len(r['jobs_failed'])} | {len(r['errors'])} |"
        )
    for r in results:
        c = r["cpu_s"]
        lines += [
            "",
            f"CPU seconds during the {r['mode']} sessions ({r['wall_s']:.0f} s wall, "
            f"{os.cpu_count()} cores = {r['wall_s'] * (os.cpu_count() or 1):.0f} core-seconds): "
            f"app server {c['server']:.0f}, job workers {c['workers']:.0f}, the load generator's "
            f"browsers (Chromium + Playwright) {c['browsers']:.0f}"
            + (f" (reniced to {r['browser_nice']})" if r["browser_nice"] is not None else "")
            + f", everything else on the machine {c['everything_else']:.0f}."
            + (
                f" The server's page runs (all sessions, job-progress polls left out; the time "
                f"the server spends on a page, apart from the browser drawing it): "
                f"{r['server_runs']} runs, p50 {r['server_run_p50_s']:.2f} s, p95 "
                f"{r['server_run_p95_s']:.2f} s (of which the script thread's own CPU: p50 "
                f"{r['server_run_cpu_p50_s']:.2f} s, p95 {r['server_run_cpu_p95_s']:.2f} s)."
                if r.get("server_runs")
                else ""
            )
            + (
                " By page (server wall p50 / p95, its CPU p50 / p95): "
                + "; ".join(
                    f"{kind} {k['runs']} runs {k['wall_p50_s']:.2f} / {k['wall_p95_s']:.2f} s "
                    f"({k['cpu_p50_s']:.2f} / {k['cpu_p95_s']:.2f} s)"
                    for kind, k in r["server_runs_by_kind"].items()
                )
                + "."
                if r.get("server_runs_by_kind")
                else ""
            )
            + (
                f" Workspace writes that waited for the write lock or held it 0.1 s or more: "
                f"{len(r['server_slow_writes'])}, waits summing to "
                f"{sum(w['write_wait_s'] for w in r['server_slow_writes']):.1f} s, holds to "
                f"{sum(w['write_held_s'] for w in r['server_slow_writes']):.1f} s."
                if "server_slow_writes" in r
                else ""
            )
            + (
                f" Sessions stopped after {r['deadline_s']:.0f} s: {r['trainers_unfinished']} "
                f"trainer(s) not done, {len(r['jobs_unfinished'])} job(s) still queued or "
                "running then (not failures; not compared)."
                if r.get("deadline_s")
                else ""
            ),
        ]
    lines += [
        "",
        "*workers*: jobs run in a worker process (`RETENTION_WORKERS=1`, the default); *inline*: "
        "the same jobs computed inside the server process (`RETENTION_WORKERS=0`, as before issue "
        "22). Page load = sidebar click until the page's run is over; upload = file chosen until "
        "the validation report shows. Job times from the workspace's `jobs` table (run time, "
        "without the wait in the queue). Worker peak MB: the child processes of the server "
        "(job worker, multiprocessing's resource tracker). Same result alone: jobs whose stored "
        "result equals the one computed again alone, inline, after the run.",
        "",
        "Load average (1, 5, 15 min) of the machine before / after: "
        + "; ".join(
            f"{r['mode']}: {tuple(round(x, 1) for x in r['load_average_before'])} / "
            f"{tuple(round(x, 1) for x in r['load_average_after'])}"
            for r in results
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["workers", "inline"])
    parser.add_argument("--trainers", type=int, default=5)
    parser.add_argument("--browsers", type=int, default=5)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--upload-mb", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="2 + 2 sessions, small files")
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=None,
        help="run the load generator's Chromium processes at this nice level (19: lowest)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="sample the server with py-spy into this folder"
    )
    parser.add_argument("--tag", default="", help="suffix of the results files")
    parser.add_argument(
        "--think-s",
        type=float,
        default=0.0,
        help="seconds a browsing session pauses after each page or upload (default 0: none)",
    )
    parser.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="copy this workspace (made by --prepare-only) instead of preparing one in the run",
    )
    parser.add_argument(
        "--prepare-only",
        type=Path,
        default=None,
        help="prepare the browsers' workspace into this new folder and stop",
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="stop the sessions after this many seconds (trainers not done: recorded)",
    )
    args = parser.parse_args()
    if args.quick:
        args.trainers, args.browsers, args.users, args.upload_mb = 2, 2, 120, 1.0
    if args.prepare_only is not None:
        args.prepare_only.mkdir(parents=True)
        prepare_workspace(args.prepare_only)
        return 0
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="retention-load-") as tmp:
        base = Path(tmp)
        files = make_files(base, args.trainers, args.users, args.upload_mb)
        size = files["upload"].stat().st_size / 2**20
        print(f"upload file: {size:.1f} MB", flush=True)
        for mode in args.modes:
            results.append(run_mode(mode, args, files, base))
            results[-1]["load_average_before"] = load_before
            results[-1]["load_average_after"] = os.getloadavg()
            results[-1]["command"] = " ".join(sys.argv)
            shown = {
                k: v
                for k, v in results[-1].items()
                if k not in ("jobs", "server_run_log", "server_slow_writes")
            }
            print(json.dumps(shown, default=str))
    suffix = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"load{suffix}.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / f"load{suffix}.md").write_text(markdown(results, args))
    print(markdown(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

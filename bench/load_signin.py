"""A team server under load (issue 16): signed-in sessions of several people at once.

One app server with sign-in against a real OpenID Connect provider (``oidc-provider-mock`` on
localhost). ``--sessions`` browser sessions (default 10) of ``--users`` people (default 5: two
sessions each, in separate browser contexts) each sign in, upload their own event log, find
segments and train a policy, all at once. A person's second training while their first runs is
refused with the "one training at a time" message; that session waits and presses Train again
(counted as ``limit_waits``, not as an error).

Measured: errors (an exception or an error box other than that message), cross-user leaks
(each session lists every dataset its picker offers and every name on "Your datasets"; after the
server stops, every person's workspace is opened and its datasets and runs listed: a dataset or
run named after another person is a leak), server peak RSS (VmHWM) and its workers', and page
times (sidebar click → the page's script run is over), p50/p95. Usage::

    python bench/load_signin.py [--sessions 10] [--users 5] [--rows-users 300]

writes ``bench/results/load_signin.json`` and ``.md``. The uploaded logs have no text column, so
segmenting needs no language model (what is measured is the sign-in, the separation of people
and the queue, not the embedder; bench/load.py measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import CHROMIUM, CHROMIUM_ARGS, STEP_MS, MemoryWatch, errors, idle, nav, p95  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LIMIT_WORDS = "one training at a time per person"


def make_files(folder: Path, sessions: int, users: int, rows_users: int) -> list[Path]:
    """One event log per session (no text column), named after its person and session."""
    from retention.synth import make_planted

    files = []
    for s in range(sessions):
        events = make_planted(n_users=rows_users + 10 * s, n_periods=12, seed=300 + s).events
        events = events.drop(columns=["text"])
        path = folder / f"user{s % users}-s{s}.csv"
        events.to_csv(path, index=False)
        files.append(path)
    return files


def start_server(root: Path, port: int, provider: str) -> tuple[str, object]:
    import subprocess
    import urllib.request

    secrets = root / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
        'cookie_secret = "bench-cookie-secret-0123456789abcdef0123456789"\n'
        'client_id = "retention-bench"\nclient_secret = "bench"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    env = dict(os.environ, RETENTION_WORKSPACE=str(root), HF_HUB_OFFLINE="1")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--secrets.files", str(secrets)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start: " + (root / "server.log").read_text()[-2000:])


async def sign_in(page, url: str, who: str) -> float:
    start = time.perf_counter()
    await page.goto(url)
    await idle(page)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    await page.fill("input[name=sub]", who)
    await page.get_by_role("button", name="Authorize").click()
    await page.get_by_text(f"Signed in as {who}").wait_for()
    await page.get_by_role("combobox", name="Dataset").wait_for()
    await idle(page)
    return time.perf_counter() - start


async def seen_names(page) -> list[str]:
    """Every dataset name the session can see: the picker's options and "Your datasets"."""
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    await picker.click()
    names = await page.get_by_role("option").all_inner_texts()
    await page.keyboard.press("Escape")
    await idle(page)
    await nav(page, "Data")
    await page.get_by_role("tab", name="Your datasets").click()
    await idle(page)
    table = await page.locator("[data-testid='stMain']").inner_text()
    names += re.findall(r"user\d+-s\d+", table)
    return names


async def session(browser, url: str, s: int, users: int, data: Path, out: dict) -> None:
    who = f"user{s % users}@example.com"
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(STEP_MS)
    out.update(who=who, pages=[], limit_waits=0, error=None)
    try:
        out["sign_in_s"] = await sign_in(page, url, who)
        await page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(
            str(data)
        )
        await page.get_by_text("Validation report", exact=True).wait_for()
        await idle(page)
        await page.get_by_role("button", name="Save to workspace").click()
        await page.get_by_text("and made it the current dataset").wait_for()
        await idle(page)
        out["pages"].append(await nav(page, "Segments"))
        await page.get_by_role("button", name="Find segments").click()
        await page.get_by_text("Names and keywords").wait_for()
        await idle(page)
        out["pages"].append(await nav(page, "Policy"))
        while True:
            await page.get_by_role("button", name="Train", exact=True).click()
            # Wait for the answer itself (refused, running or done): an idle check alone can
            # pass before the click's rerun has started.
            refused = page.get_by_text(LIMIT_WORDS)
            answer = refused.or_(page.get_by_text(re.compile(r"^Training: "))).or_(
                page.get_by_text("Learned policy's worth", exact=True)
            )
            await answer.first.wait_for()
            await idle(page)
            if await refused.count():
                out["limit_waits"] += 1  # this person's other session is training: wait
                await page.wait_for_timeout(3000)
                out["pages"].append(await nav(page, "Policy"))
                continue
            break
        await page.get_by_text("Learned policy's worth", exact=True).wait_for()
        await idle(page)
        out["error"] = await errors(page)
        for title in ("Retention", "Strategies"):
            out["pages"].append(await nav(page, title))
            out["error"] = out["error"] or await errors(page)
        out["seen"] = await seen_names(page)
    except Exception as exc:  # noqa: BLE001 - reported as this session's error
        out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        await page.screenshot(path=str(RESULTS / f"load_signin_fail_{s}.png"), full_page=True)
    finally:
        await context.close()


async def run_sessions(url: str, files: list[Path], users: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            outs = [{} for _ in files]
            await asyncio.gather(
                *(session(browser, url, s, users, f, outs[s]) for s, f in enumerate(files))
            )
            return outs
        finally:
            await browser.close()


def workspace_listing(root: Path) -> dict[str, dict]:
    """Every person's workspace (server stopped): its datasets and runs, by folder."""
    from retention.workspace import Workspace

    listing = {}
    for folder in sorted((root / "people").iterdir()):
        ws = Workspace(folder)
        try:
            datasets = ws.datasets()
            runs = ws.runs()
            names = dict(zip(datasets["id"], datasets["name"], strict=True))
            listing[folder.name] = {
                "datasets": sorted(datasets["name"]),
                "runs": sorted(
                    f"{k}:{names.get(d, d)}"
                    for k, d in zip(runs["kind"], runs["dataset_id"], strict=True)
                ),
                "owners": sorted(set(j.owner for j in ws.jobs())),
            }
        finally:
            ws.close()
    return listing


def leaks(outs: list[dict], listing: dict[str, dict]) -> list[str]:
    found = []
    for out in outs:
        me = out["who"].split("@")[0]
        for name in out.get("seen", []):
            owner = re.match(r"(user\d+)-s\d+", name)
            if owner and owner.group(1) != me:
                found.append(f"{out['who']} saw {name}")
    for folder, content in listing.items():
        prefixes = {
            re.match(r"(user\d+)-", n).group(1)
            for n in content["datasets"]
            if re.match(r"user\d+-", n)
        }
        owners = {o.split("@")[0] for o in content["owners"]}
        if len(prefixes | owners) > 1:
            found.append(f"workspace {folder} holds {sorted(prefixes | owners)}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--rows-users", type=int, default=300, help="customers per uploaded log")
    args = parser.parse_args()
    from load import free_port
    from oidc_provider_mock import run_server_in_thread

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, run_server_in_thread(port=free_port()) as idp:
        root = Path(tmp) / "root"
        root.mkdir()
        files = make_files(Path(tmp), args.sessions, args.users, args.rows_users)
        url, proc = start_server(root, free_port(), f"http://localhost:{idp.server_port}")
        watch = MemoryWatch(proc.pid)
        watch.start()
        start = time.perf_counter()
        try:
            outs = asyncio.run(run_sessions(url, files, args.users))
        finally:
            wall = time.perf_counter() - start
            watch.sample()
            watch.stop.set()
            proc.terminate()
            proc.wait(timeout=30)
        listing = workspace_listing(root)
    pages = [t for o in outs for t in o.get("pages", [])]
    result = {
        "sessions": args.sessions,
        "users": args.users,
        "rows_users": args.rows_users,
        "wall_s": round(wall, 1),
        "errors": [f"{o['who']}: {o['error']}" for o in outs if o.get("error")],
        "leaks": leaks(outs, listing),
        "limit_waits": sum(o.get("limit_waits", 0) for o in outs),
        "server_peak_mb": round(watch.server),
        "workers_peak_mb": round(sum(watch.children.values())),
        "page_p50_s": round(statistics.median(pages), 2) if pages else None,
        "page_p95_s": round(p95(pages), 2) if pages else None,
        "sign_in_p95_s": round(p95([o["sign_in_s"] for o in outs if "sign_in_s" in o]), 2),
        "seen": {o["who"]: sorted(set(o.get("seen", []))) for o in outs},
        "workspaces": listing,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    (RESULTS / "load_signin.json").write_text(json.dumps(result, indent=2))
    md = [
        f"# Signed-in load: {args.sessions} sessions of {args.users} people",
        "",
        f"upload → segment → train, all at once ({result['machine']}, wall {result['wall_s']} s)",
        "",
        "| errors | cross-user leaks | limit waits | server peak | workers peak | page p50 | page p95 |",
        "|---|---|---|---|---|---|---|",
        f"| {len(result['errors'])} | {len(result['leaks'])} | {result['limit_waits']} | "
        f"{result['server_peak_mb']} MB | {result['workers_peak_mb']} MB | "
        f"{result['page_p50_s']} s | {result['page_p95_s']} s |",
    ]
    (RESULTS / "load_signin.md").write_text("\n".join(md) + "\n")
    print(
        json.dumps({k: v for k, v in result.items() if k not in ("seen", "workspaces")}, indent=1)
    )
    return 0 if not result["errors"] and not result["leaks"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

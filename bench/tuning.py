"""Instant tuning in the browser: slider release → the Policy page's preview map redrawn for the
new settings, on the full Online Retail data.

What is measured: a real Streamlit server and headless Chromium (Playwright driving Debian's
``/usr/bin/chromium``). The page is opened once (the first preview estimates the MDP of the data:
reported apart as the cold start); then each move presses an arrow key on a reward slider (the
future weight or the churn penalty, alternately, up and down — a key press is a press and a
release) and the clock stops when the preview map's title names the slider's new value, that is
when the exact solution of the new settings is on screen. Median and 95th percentile over
``--moves`` moves (default 30).

The workspace is prepared with the library, not through the upload page (that is measured by
``bench_ingest.py``): ``ingest`` of ``../shared/data/online_retail_2010_2011.parquet``, and a
segmentation of four spend quartiles stored as a segmentation run (the benchmark is about the
policy, not the segments; the MDP's size, 4 segments × 4 stages × 4 actions, is the default
one).

Usage: ``python bench/tuning.py [--moves N] [--port P] [--data PATH]``. Writes
``bench/results/tuning.json`` and ``bench/results/tuning.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
RESULTS = ROOT / "bench" / "results"
from load import IDLE_JS  # noqa: E402 -- the benches' one "Streamlit is idle" check

TITLE_JS = """() => [...document.querySelectorAll('.gtitle')].map(e => e.textContent)
    .find(t => t.startsWith('Preview: best action')) || ''"""
#: True once the preview map's title names the focused slider's value (``words`` its name).
MOVED_JS = (
    "([words]) => { const t = ("
    + TITLE_JS
    + ")(); const m = t.match(new RegExp(words + ' ([0-9.]+)'));"
    " const v = document.activeElement.value;"
    " return !!m && v !== null && Math.abs(parseFloat(m[1]) - parseFloat(v)) < 1e-9; }"
)
SLIDERS = {
    "gamma": ("How much the future counts", "future weight"),
    "penalty": ("Penalty when a user is lost", "churn penalty"),
}


def prepare(folder: Path, data: Path) -> tuple[str, int, int]:
    """A workspace holding Online Retail and a four-quartile segmentation: (dataset id, rows,
    customers)."""
    import pandas as pd

    from retention.ingest import ingest
    from retention.runs import store_dataset
    from retention.workspace import Workspace

    ws = Workspace(folder)
    ws.set_meta("samples.loaded", "1")  # only the benchmark's data
    prepared = ingest(data)
    ds = store_dataset(ws, prepared, "Online Retail")
    ws.set_meta("ui.last_dataset", ds)
    rows = prepared.report.rows
    if ws.latest_run("segmentation", ds) is not None:  # a reused workspace: prepared already
        users = (
            ws.cursor()
            .execute(
                f"SELECT count(DISTINCT user_id) FROM {ws.table(ds, 'events')}"  # noqa: S608
            )
            .fetchone()[0]
        )
        ws.close()
        return ds, rows, int(users)
    spend = (
        ws.cursor()
        .execute(
            f"SELECT user_id, sum(amount) AS spend FROM {ws.table(ds, 'events')} GROUP BY user_id"  # noqa: S608
        )
        .df()
    )
    quartile = pd.qcut(spend["spend"].rank(method="first"), 4, labels=False).to_numpy()
    run = ws.start_run("segmentation", ds, {"k": 4, "method": "spend quartiles (benchmark)"})
    names = ["Lowest spend", "Low spend", "High spend", "Highest spend"]
    labels = pd.DataFrame(
        {"segment": range(4), "label": names, "keywords": [""] * 4,
         "users": np.bincount(quartile, minlength=4).tolist(), "representatives": [""] * 4}
    )  # fmt: skip
    assignments = pd.DataFrame({"user_id": spend["user_id"].astype(str), "segment": quartile})
    ws.finish_run(run, metrics={}, artifacts={"assignments": assignments, "labels": labels})
    ws.close()
    return ds, rows, len(spend)


def server_side(folder: Path, moves: int) -> dict:
    """The page's own work per move, in-process: the exact solution of the new settings
    (value iteration on the cached MDP), the value's parts and the preview map as JSON; wall
    and CPU seconds (CPU time says what the work costs on a machine shared with others)."""
    from retention.charts.policy import policy_map
    from retention.mdp import RewardSettings
    from retention.policy_runs import PolicyForm, estimated_mdp, exact_preview, policy_choices
    from retention.workspace import Workspace

    ws = Workspace(folder)
    ds = ws.get_meta("ui.last_dataset")
    seg = ws.latest_run("segmentation", ds)
    assignments = seg.artifacts["assignments"]
    choices = policy_choices(ws, ds, "auto")
    request = PolicyForm(actions=choices.action_table()).request(choices, seg.id)
    t0 = time.perf_counter()
    mdp = estimated_mdp(ws, ds, assignments, request)
    estimate = time.perf_counter() - t0
    wall, cpu = [], []
    for i in range(moves):
        reward = RewardSettings(gamma=0.5 + 0.02 * (i % 20), churn_penalty=float(i % 10))
        w0, c0 = time.perf_counter(), time.process_time()
        shown = exact_preview(mdp, reward)
        policy_map(shown.recommendations, shown.actions, {}).to_json()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    ws.close()
    return {
        "estimate_mdp_s": estimate,
        "states": mdp.n_states,
        "server_wall_p50_s": float(np.percentile(wall, 50)),
        "server_wall_p95_s": float(np.percentile(wall, 95)),
        "server_cpu_p50_s": float(np.percentile(cpu, 50)),
        "server_cpu_p95_s": float(np.percentile(cpu, 95)),
    }


def wait_idle(page, timeout: int = 300_000) -> None:
    for _ in range(2):
        page.wait_for_function(IDLE_JS, timeout=timeout)
        page.wait_for_timeout(200)
    page.wait_for_function(IDLE_JS, timeout=timeout)


def measure(port: int, moves: int, shot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/policy")
        page.wait_for_function(f"() => ({TITLE_JS})() !== ''", timeout=600_000)
        cold = time.perf_counter() - start
        wait_idle(page)
        times, checks = [], []
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        for i in range(moves):
            which = "gamma" if i % 2 == 0 else "penalty"
            label, words = SLIDERS[which]
            thumb = (
                page.locator('[data-testid="stSlider"]', has_text=label)
                .locator('input[type="range"]')
                .first
            )
            thumb.focus()
            key = "ArrowLeft" if (i // 2) % 4 < 2 else "ArrowRight"
            t0 = time.perf_counter()
            thumb.press(key)  # key down and up: the slider is released at its new value
            page.wait_for_function(
                MOVED_JS,
                arg=[words],
                timeout=60_000,
            )
            times.append(time.perf_counter() - t0)
            checks.append(page.evaluate(TITLE_JS))
            wait_idle(page)
        browser.close()
    return {"cold_first_preview_s": cold, "move_seconds": times, "last_titles": checks[-2:]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--port", type=int, default=8611)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--workspace", type=Path, default=None, help="prepare here (default: a new temp folder)"
    )
    parser.add_argument("--shot", type=Path, default=None, help="a screenshot at the end")
    args = parser.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data} not found: the benchmark needs the Online Retail parquet file.")
    folder = args.workspace or Path(tempfile.mkdtemp(prefix="retention_tuning_"))
    t0 = time.perf_counter()
    _, rows, users = prepare(folder, args.data)
    prep = time.perf_counter() - t0
    inside = server_side(folder, args.moves)
    env = {**os.environ, "RETENTION_WORKSPACE": str(folder), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
         str(args.port), "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(4)
        out = measure(args.port, args.moves, args.shot)
    finally:
        server.terminate()
        server.wait(timeout=30)
    seconds = np.asarray(out["move_seconds"])
    load = os.getloadavg()[0]
    result = {
        "data": f"{args.data.name}: {rows:,} rows, {users:,} customers",
        "prepare_seconds": prep,
        "moves": len(seconds),
        "p50_s": float(np.percentile(seconds, 50)),
        "p95_s": float(np.percentile(seconds, 95)),
        "max_s": float(seconds.max()),
        "load_average": load,
        **inside,
        **out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tuning.json").write_text(json.dumps(result, indent=2))
    table = (
        "| step | p50 | p95 | max |\n|---|---:|---:|---:|\n"
        f"| slider release → preview map redrawn ({len(seconds)} moves) | "
        f"{result['p50_s']:.2f} s | {result['p95_s']:.2f} s | {result['max_s']:.2f} s |\n"
        f"| the page's own work per move, wall (in-process: solve + map) | "
        f"{inside['server_wall_p50_s']:.3f} s | {inside['server_wall_p95_s']:.3f} s | |\n"
        f"| the same, CPU time | {inside['server_cpu_p50_s']:.3f} s | "
        f"{inside['server_cpu_p95_s']:.3f} s | |\n"
    )
    md = (
        f"# Instant tuning (bench/tuning.py)\n\n{result['data']}; {inside['states']} states; "
        f"MDP estimated in-process in {inside['estimate_mdp_s']:.1f} s; first preview (MDP estimated, "
        f"cold) {out['cold_first_preview_s']:.1f} s after opening the page; load average "
        f"{load:.1f}.\n\n{table}"
    )
    (RESULTS / "tuning.md").write_text(md)
    print(md)
    assert all(re.match(r"Preview: best action", t) for t in out["last_titles"])


if __name__ == "__main__":
    main()

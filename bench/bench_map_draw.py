"""What drawing the Segments page's map costs headless Chromium (no GPU: WebGL runs in software)
— Plotly ``scattergl`` (what the page draws) against ``scatter`` (SVG), issue 19 (s8-segk).

The map of a stored run (``segment_map`` on its ``map2d``: 4,339 users on the full Online
Retail file) is written once as a page with plotly.js inline, opened once in Chromium (the
benches' flags); each repetition draws one kind into a fresh element (the previous plot purged),
alternating the two kinds, and measures:

* ``drawn_ms``: in the page, from just before ``Plotly.newPlot`` until its promise resolved and
  two animation frames later (the plot laid out and painted);
* ``cpu_s``: CPU seconds (user + system) of all of Chromium's processes from the call until
  one second after ``drawn_ms`` (WebGL draws in the GPU process, outside the page's clock;
  Playwright's driver is counted too, the same for both kinds).

Usage: ``python bench/bench_map_draw.py WORKSPACE [--reps N] [--points N] [--suffix S]`` (its
newest segmentation run); writes ``bench/results/map_draw{suffix}.json`` and ``.md``. Bench-only; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"

from load import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PAGE = """<!doctype html><html><head><meta charset="utf-8"><script>{plotly}</script></head>
<body><div id="host"></div><script>
const figures = {figures};
window.draw = (kind) => new Promise((done) => {{
    const host = document.getElementById('host');
    for (const old of host.children) Plotly.purge(old);
    host.innerHTML = '<div id="map" style="width:1200px;height:500px"></div>';
    const fig = figures[kind];
    const t0 = performance.now();
    Plotly.newPlot('map', fig.data, fig.layout).then(() => requestAnimationFrame(() =>
        requestAnimationFrame(() => done(performance.now() - t0))));
}});
</script></body></html>"""


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _browser_pids() -> list[int]:
    """This process's children: Playwright's driver and the Chromium it started."""
    return [c.pid for c in psutil.Process(os.getpid()).children(recursive=True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument(
        "--points", type=int, default=None, help="draw this many users (the run's, repeated)"
    )
    parser.add_argument("--suffix", default="", help="results file suffix")
    args = parser.parse_args(argv)

    import plotly
    import plotly.io as pio
    from playwright.sync_api import sync_playwright

    from retention.charts.segments import segment_map
    from retention.workspace import Workspace

    ws = Workspace(args.workspace)
    try:
        runs = ws.runs("segmentation").sort_values("created")
        run = ws.load_run(str(runs["id"].iloc[-1]))
    finally:
        ws.close()
    names = {int(r.segment): str(r.label) for r in run.artifacts["labels"].itertuples()}
    map2d = run.artifacts["map2d"]
    if args.points:  # a bigger map: the run's users repeated, each copy shifted a little
        copies = -(-args.points // len(map2d))
        map2d = pd.concat(
            [map2d.assign(x=map2d["x"] + 0.01 * i, y=map2d["y"] - 0.01 * i) for i in range(copies)]
        ).head(args.points)
    gl = segment_map(map2d, names)
    svg = gl.to_dict()  # the same figure, each trace an SVG scatter
    for trace in svg["data"]:
        trace["type"] = "scatter"
    js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    folder = Path(tempfile.mkdtemp(prefix="map_draw_"))
    figures = {"scattergl": json.loads(pio.to_json(gl, validate=False)), "scatter": svg}
    page_file = folder / "map.html"
    page_file.write_text(PAGE.format(plotly=js, figures=json.dumps(figures, default=str)))
    points = len(map2d)
    load_before = os.getloadavg()
    got: dict[str, list[dict]] = {"scattergl": [], "scatter": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(page_file.as_uri())  # plotly.js parsed once, as the app's page has it
        page.wait_for_function("() => typeof window.draw === 'function'")
        page.wait_for_timeout(1000)
        for rep in range(args.reps):
            order = ("scattergl", "scatter") if rep % 2 == 0 else ("scatter", "scattergl")
            for kind in order:
                pids = _browser_pids()
                before = _cpu(pids)
                drawn = page.evaluate(f"() => window.draw('{kind}')")
                page.wait_for_timeout(1000)
                cpu = _cpu(_browser_pids()) - before
                got[kind].append({"drawn_ms": round(drawn, 1), "cpu_s": round(cpu, 3)})
        browser.close()
    load_after = os.getloadavg()
    result = {
        "points": points,
        "reps": args.reps,
        "load_before": load_before,
        "load_after": load_after,
        "runs": got,
        "median": {
            kind: {key: statistics.median(r[key] for r in rows) for key in ("drawn_ms", "cpu_s")}
            for kind, rows in got.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"map_draw{args.suffix}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# The Segments page's map in headless Chromium: {points:,} users (issue 19, s8-segk)",
        "",
        f"{args.reps} alternating repetitions, each drawn into a fresh element; load "
        f"{', '.join(f'{x:.2f}' for x in load_before)} → "
        f"{', '.join(f'{x:.2f}' for x in load_after)}. `python bench/bench_map_draw.py WS {' '.join(argv or sys.argv[1:])}`.",
        "",
        "| trace | drawn (ms, median) | Chromium CPU s (median) | every drawn ms | every CPU s |",
        "|---|---:|---:|---|---|",
    ]
    for kind, rows in got.items():
        med = result["median"][kind]
        drawn = ", ".join(f"{r['drawn_ms']:.0f}" for r in rows)
        cpu = ", ".join(f"{r['cpu_s']:.2f}" for r in rows)
        lines.append(f"| {kind} | {med['drawn_ms']:.0f} | {med['cpu_s']:.2f} | {drawn} | {cpu} |")
    (RESULTS / f"map_draw{args.suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

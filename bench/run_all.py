"""Run every benchmark and collect their Markdown tables into ``bench/results/SUMMARY.md``.

    python bench/run_all.py            # full runs (several minutes each on 2 cores)
    python bench/run_all.py --quick    # smoke-sized inputs, about a minute each
    python bench/run_all.py --collect  # only rebuild SUMMARY.md from the saved results

Each benchmark measures ours side by side with the naive way in the same run and writes
``bench/results/<name>.json`` and ``<name>.md`` (``<name>_quick.*`` with --quick).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("ingest", "embeddings", "cohorts", "learn", "pipeline", "scale")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=BENCHES, default=list(BENCHES))
    parser.add_argument("--collect", action="store_true", help="no runs: rebuild SUMMARY.md")
    args = parser.parse_args()
    if args.collect:
        args.only = []
    suffix = "_quick" if args.quick else ""
    failures = []
    for name in args.only:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        if subprocess.run(cmd, check=False).returncode != 0:
            failures.append(name)
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    parts = [
        "# Benchmark results",
        "",
        f"Command: `python bench/run_all.py{' --quick' if args.quick else ''}`",
        "",
    ]
    for name in BENCHES:
        md = HERE / "results" / f"{name}{suffix}.md"
        if md.exists():
            parts += [f"## {name}", "", md.read_text().strip(), ""]
    (HERE / "results" / f"SUMMARY{suffix}.md").write_text("\n".join(parts))
    if failures:
        print("failed:", ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

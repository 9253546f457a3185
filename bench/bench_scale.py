"""Scale: generated event logs of 1, 10 and 50 million events → report.html, time and peak
memory per stage, beside a naive pandas pipeline on the same files.

    python bench/bench_scale.py                      # 1M and 10M (about 15 minutes here)
    python bench/bench_scale.py --sizes 1 10 50      # + 50M (about 15 more minutes)
    python bench/bench_scale.py --quick              # 1M only, one run

* **ours** — ``python -m retention run FILE --out DIR`` on an empty workspace, a fresh process
  per run (cold: embeddings computed, nothing reused). Per stage: seconds and peak RSS from the
  command's own ``summary.json`` (``timings``, ``peak_memory_mb``); whole command: wall seconds
  and the process's peak RSS (``wait4``).
* **naive** — the article-style pipeline of ``bench/bench_pipeline.py`` on the same file
  (pandas read, pandas cohorts by week, each user's whole document embedded with
  ``SentenceTransformer.encode`` defaults, k-means, a per-user Python panel loop, a per-step
  Python Q-learning loop); the slow loops are measured on a sample and scaled linearly (the
  table says which). Not run above 10M events: pandas alone would need more memory than the
  budget the issue sets (8 GB), which is the point of the comparison.

The data (``bench/scale_data.py``) is generated once into ``--data-dir`` and reused. Writes
``bench/results/scale{_quick}.json`` and ``.md``.

* **reference** (``--reference REV``, optional) — another commit's command on the same file in
  the same run, alternated with ours (reference first in odd pairs, ours first in even ones),
  from a temporary ``git worktree`` with this environment's packages. Seconds in absolute terms
  move by a third from one host to the next (sessions 10 and 15, the same CPU model); a
  reference timed beside ours says whether a figure changed because of the code or the
  machine. With ``--reference-seconds S`` (what REV took where a target was set or met) the
  table also gives ours scaled to that machine: ours × S / the reference's median here, an
  estimate that assumes every step slowed alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_pipeline import naive_pipeline, run_cli  # noqa: E402
from scale_data import write_scale_data  # noqa: E402

RESULTS = HERE / "results"
#: millions of events → users (the issue: 100,000 to 1,000,000 users)
SIZES = {1: 100_000, 10: 400_000, 50: 1_000_000}
STAGES = (
    "ingest",
    "store",
    "period",
    "segments",
    "retention",
    "stages",
    "policy",
    "strategies",
    "report",
)
NAIVE_MAX = 10  # millions of events


def _data(size: int, folder: Path) -> Path:
    path = folder / f"scale_{size}m.parquet"
    if not path.exists():
        print(f"generating {size}M events …", flush=True)
        print(write_scale_data(size * 1_000_000, SIZES[size], path), flush=True)
    return path


def _one_run(path: Path, cwd: Path = ROOT) -> dict:
    """One cold run of the command in ``cwd``'s checkout, on an empty workspace."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("RETENTION_BENCH_TMP")) as tmp:
        seconds, peak, summary = run_cli(path, Path(tmp) / "out", Path(tmp) / "ws", cwd=cwd)
    return {"seconds": seconds, "peak_mb": peak, "timings": summary["timings"],
            "stage_peak_mb": summary.get("peak_memory_mb", {}),
            "events": summary["input"]["rows_used"], "users": summary["input"]["users"],
            "segments": len(summary["segments"])}  # fmt: skip


def _median(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run


def _ours(path: Path, repeats: int, reference: Path | None = None) -> dict:
    """``repeats`` runs of ours; with a ``reference`` checkout, as many of it, alternated."""
    runs, ref_runs = [], []
    for i in range(repeats):
        order = [("ours", ROOT)]
        if reference is not None:
            order.insert(i % 2, ("reference", reference))  # reference first in odd pairs
        for who, cwd in order:
            run = _one_run(path, cwd)
            (runs if who == "ours" else ref_runs).append(run)
            print(f"  {who} run {i + 1}: {run['seconds']:.1f} s, peak {run['peak_mb']:,.0f} MB",
                  flush=True)  # fmt: skip
    result = {"runs": runs, "median": _median(runs)}
    if ref_runs:
        result["reference"] = {"runs": ref_runs, "median": _median(ref_runs)}
    return result


def _compile(*checkouts: Path | None) -> None:
    """Each checkout's package compiled to bytecode first (what ``pip install`` does), as
    ``bench_pipeline.py`` does: with ``PYTHONDONTWRITEBYTECODE=1`` (this sandbox sets it) a
    checkout without bytecode compiles its modules at every run, and a fresh reference worktree
    would pay that (about 0.5 s of CPU a run) where ours does not."""
    import compileall

    for checkout in checkouts:
        if checkout is not None:
            compileall.compile_dir(str(checkout / "retention"), quiet=1)


@contextmanager
def _checkout(rev: str | None) -> Iterator[Path | None]:
    """A temporary detached ``git worktree`` of ``rev`` (its ``.venv`` this one's), removed after."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench_ref_") as tmp:
        where = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                        str(where), rev], check=True)  # fmt: skip
        try:
            yield where
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                           check=False)  # fmt: skip


def _naive(path: Path, k: int, quick: bool) -> dict:
    import pandas as pd

    from retention.learn import QLearner

    def read() -> pd.DataFrame:
        df = pd.read_parquet(path, columns=["user_id", "ts", "amount", "text"])
        df = df.dropna(subset=["user_id", "ts"])
        return df.rename(columns={"user_id": "user"})

    learner = QLearner()
    user_steps = learner.episodes * learner.n_users * learner.horizon
    return naive_pipeline(read, k, user_steps, naive_users=60 if quick else 200,
                          naive_steps=20_000 if quick else 200_000, period="W",
                          panel_users=5_000)  # fmt: skip


def _table(results: dict, repeats: dict[int, int], reference: dict | None = None) -> str:
    sizes = sorted(results, key=int)
    head = " | ".join(f"{s}M events" for s in sizes)
    lines = [
        "Per stage: seconds / peak RSS MB of the stage (the median run of ours; "
        f"runs: {', '.join(f'{s}M ×{repeats[int(s)]}' for s in sizes)}).",
        "",
        f"| stage | {head} |",
        "|---|" + "---:|" * len(sizes),
    ]
    for stage in STAGES:
        cells = []
        for s in sizes:
            med = results[s]["ours"]["median"]
            sec = med["timings"].get(stage)
            mb = med["stage_peak_mb"].get(stage)
            cells.append("–" if sec is None else f"{sec:,.1f} s / {mb:,.0f} MB")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    meds = [results[s]["ours"]["median"] for s in sizes]
    lines.append("| **whole command** | " + " | ".join(
        f"**{m['seconds']:,.1f} s / {_peak(m):,.0f} MB**" for m in meds) + " |")  # fmt: skip
    if reference:
        lines += _reference_rows(results, sizes, reference)
    lines.append("| users · segments | " + " | ".join(
        f"{m['users']:,} · {m['segments']}" for m in meds) + " |")  # fmt: skip
    base = meds[0]
    lines.append("| time per event vs the smallest | " + " | ".join(
        f"{(m['seconds'] / m['events']) / (base['seconds'] / base['events']):.2f}×"
        for m in meds) + " |")  # fmt: skip
    lines.append("| naive (pandas, article-style) | " + " | ".join(
        (f"{results[s]['naive']['total_s']:,.1f} s / {results[s]['naive']['peak_mb']:,.0f} MB"
         if results[s].get("naive") else "not run") for s in sizes) + " |")  # fmt: skip
    lines.append("| speed-up vs naive | " + " | ".join(
        (f"{results[s]['naive']['total_s'] / results[s]['ours']['median']['seconds']:.1f}×"
         if results[s].get("naive") else "–") for s in sizes) + " |")  # fmt: skip
    growth = [
        f"{a}M → {b}M: events ×{meds[j + 1]['events'] / meds[j]['events']:.1f}, time "
        f"×{meds[j + 1]['seconds'] / meds[j]['seconds']:.1f}, peak memory "
        f"×{_peak(meds[j + 1]) / _peak(meds[j]):.1f}"
        for j, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))
    ]
    if growth:
        lines += ["", "Growth: " + "; ".join(growth) + "."]
    for s in sizes:
        if results[s].get("naive"):
            lines += ["", f"Naive at {s}M: " + "; ".join(results[s]["naive"]["notes"]) + "."]
    return "\n".join(lines)


def _reference_rows(results: dict, sizes: list[str], reference: dict) -> list[str]:
    """The reference commit's whole-command row, ours over it, and (with the reference's time
    elsewhere) ours scaled to that machine; every run's seconds in the order they ran."""
    refs = [results[s]["ours"].get("reference") for s in sizes]
    rev, elsewhere = reference["rev"], reference.get("seconds_elsewhere")
    rows = [
        f"| reference `{rev}`, whole command (same run, alternated) | " + " | ".join(
            f"{r['median']['seconds']:,.1f} s / {_peak(r['median']):,.0f} MB" if r else "–"
            for r in refs) + " |",
        "| ours ÷ reference | " + " | ".join(
            f"{results[s]['ours']['median']['seconds'] / r['median']['seconds']:.2f}" if r
            else "–" for s, r in zip(sizes, refs, strict=True)) + " |",
        "| every run, s (ours; reference) | " + " | ".join(
            ", ".join(f"{x['seconds']:.1f}" for x in results[s]["ours"]["runs"]) + "; "
            + ", ".join(f"{x['seconds']:.1f}" for x in r["runs"]) if r else "–"
            for s, r in zip(sizes, refs, strict=True)) + " |",
    ]  # fmt: skip
    if elsewhere:
        rows.append(
            f"| ours scaled to where `{rev}` took {elsewhere:g} s (× {elsewhere:g} / reference) | "
            + " | ".join(
                f"{results[s]['ours']['median']['seconds'] * elsewhere / r['median']['seconds']:.1f}"
                " s" if r else "–" for s, r in zip(sizes, refs, strict=True)) + " |"
        )  # fmt: skip
    return rows


def _peak(run: dict) -> float:
    """The command's peak RSS: its ru_maxrss covers only the stretch since the last per-stage
    reset of the kernel's mark, so take the larger of it and every stage's peak."""
    return max([run["peak_mb"], *run["stage_peak_mb"].values()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", choices=sorted(SIZES), default=[1, 10])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of ours per size (default: 3 at 1M, 2 at 10M, 1 at 50M)")  # fmt: skip
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the Markdown from the saved JSON (no runs)")  # fmt: skip
    parser.add_argument("--reference", metavar="REV",
                        help="another commit's command, alternated with ours in the same run")  # fmt: skip
    parser.add_argument("--reference-seconds", type=float, metavar="S",
                        help="what REV took at the one size run, on the machine where the target "
                        "was met: ours is also scaled to it")  # fmt: skip
    parser.add_argument("--naive-for", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_for:  # the naive pipeline's own process (see naive_pipeline_total)
        print(json.dumps(_naive(args.naive_for, args.k, args.quick), default=float))
        return 0
    suffix = "_quick" if args.quick else ""
    saved = RESULTS / f"scale{suffix}.json"
    if args.render:
        _write(json.loads(saved.read_text()), suffix)
        return 0
    sizes = [1] if args.quick else args.sizes
    default_repeats = {1: 3, 10: 2, 50: 1}
    repeats = {s: 1 if args.quick else (args.repeats or default_repeats[s]) for s in sizes}
    if args.reference_seconds and not args.reference:
        parser.error("--reference-seconds needs --reference")
    if args.reference_seconds and len(sizes) != 1:
        parser.error("--reference-seconds is REV's time at one size: give one --sizes value")
    results: dict[str, dict] = {}
    with _checkout(args.reference) as reference:
        _compile(ROOT, reference)
        for size in sizes:
            results[str(size)] = _size(size, args, repeats[size], reference)
    meta = {
        "command": "python bench/bench_scale.py"
        + (" --quick" if args.quick else " --sizes " + " ".join(map(str, sizes))),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "duckdb_memory": os.environ.get("RETENTION_DUCKDB_MEMORY", "2GB"),
        "load_at_end": round(os.getloadavg()[0], 1),
        "repeats": {str(s): r for s, r in repeats.items()},
    }
    if args.reference:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.reference],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        meta["reference"] = {"rev": commit, "seconds_elsewhere": args.reference_seconds}
        meta["command"] += f" --reference {args.reference}" + (
            f" --reference-seconds {args.reference_seconds:g}" if args.reference_seconds else ""
        )
    _write({"meta": meta, "results": results}, suffix)
    return 0


def _size(size: int, args: argparse.Namespace, repeats: int, reference: Path | None) -> dict:
    """Ours (and the reference's) runs at ``size`` million events, and the naive pipeline's."""
    path = _data(size, args.data_dir)
    print(f"== {size}M events ({path})", flush=True)
    ours = _ours(path, repeats, reference)
    entry: dict = {"ours": ours, "file_bytes": path.stat().st_size}
    if size <= NAIVE_MAX and not args.no_naive:
        t = time.perf_counter()
        naive = naive_pipeline_total(path, ours["median"]["segments"], args.quick)
        entry["naive"] = naive
        print(f"  naive: {naive['total_s']:.1f} s ({time.perf_counter() - t:.0f} s to "
              f"measure), peak {naive['peak_mb']:,.0f} MB", flush=True)  # fmt: skip
    return entry


def _write(saved: dict, suffix: str) -> None:
    meta, results = saved["meta"], saved["results"]
    text = "\n".join([
        "# Scale: generated event logs → report.html (time and peak memory per stage)",
        "",
        f"Command: `{meta['command']}`; {meta['machine']}, DuckDB memory cap "
        f"{meta['duckdb_memory']}; load average {meta['load_at_end']} at the end (shared "
        "machine).",
        "",
        _table(results, {int(s): r for s, r in meta["repeats"].items()}, meta.get("reference")),
    ])  # fmt: skip
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"scale{suffix}.md").write_text(text + "\n")
    (RESULTS / f"scale{suffix}.json").write_text(json.dumps(saved, indent=2, default=float))


def naive_pipeline_total(path: Path, k: int, quick: bool) -> dict:
    """The naive pipeline in a fresh process: its step times, total and its own peak RSS."""
    import subprocess

    cmd = [sys.executable, __file__, "--naive-for", str(path), "--k", str(k)]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*cmd, *(["--quick"] if quick else [])], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"naive failed: {text[-2000:]}")
    naive = json.loads(text.strip().splitlines()[-1])
    naive["total_s"] = float(np.sum(list(naive["times"].values())))
    naive["peak_mb"] = usage.ru_maxrss / 1024
    return naive


if __name__ == "__main__":
    raise SystemExit(main())

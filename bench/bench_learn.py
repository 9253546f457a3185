"""Benchmark: the vectorised Q-learner vs a per-step Python loop like the original article's, on
the same MDP, in one run; and the time default training takes to reach 99% of the optimum.

    python bench/bench_learn.py            # full (a few minutes)
    python bench/bench_learn.py --quick    # smoke test (under a minute)

The MDP is estimated from the planted demo data (``retention.synth.make_planted``: 2,000 users,
40 weeks, randomised campaign log; the true segments). Part 1, throughput:

* naive: the article's loop — one simulated user, ``env.reset()`` / ``env.step(a)`` on the
  Gymnasium env (:class:`retention.mdp.RetentionEnv`), one ``np.argmax`` and one Q update per
  step, epsilon-greedy;
* ours: :class:`retention.learn.QLearner` with default settings (2,000 users stepped at once).
  Its time includes everything ``fit`` does (the exact greedy-policy evaluations of the learning
  curve too), so its steps per second are a lower bound.

Part 2, time to 99% of the value-iteration optimum with default settings: the learning curve's
first evaluation whose greedy policy reaches 99% (``retention.learn.fraction_of_optimum``), on
(a) the planted data with its campaign log, (b) the planted data without it (assumed lift table)
and (c) the real Online Retail data (``../shared/data``; weekly panel, four segments by spend
quartile as a stand-in segmentation, assumed lift table) when present.

Medians over repeats; peak memory with tracemalloc (Python allocations, numpy included) in a
separate traced call, never while timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retention.learn import QLearner, value_iteration  # noqa: E402
from retention.mdp import MDP, RetentionEnv, estimate_mdp  # noqa: E402
from retention.periods import build_panel, period_grid, period_of  # noqa: E402
from retention.synth import make_planted  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"


def naive_loop(mdp: MDP, n_steps: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """The article's loop: one user, one argmax and one update per step."""
    env = RetentionEnv(mdp, horizon=20)
    rng = np.random.default_rng(seed)
    q = np.zeros((mdp.n_states, mdp.n_actions))
    alpha, gamma, eps = 0.1, mdp.gamma, 0.5
    steps = 0
    state, _ = env.reset(seed=seed)
    while steps < n_steps:
        if rng.random() < eps:
            action = int(rng.integers(mdp.n_actions))
        else:
            action = int(np.argmax(q[state]))
        nxt, reward, terminated, truncated, _ = env.step(action)
        target = reward + (0.0 if terminated else gamma * np.max(q[nxt]))
        q[state, action] += alpha * (target - q[state, action])
        steps += 1
        state = nxt
        if terminated or truncated:
            state, _ = env.reset()
    return q, steps


def measure(fn, repeats: int) -> tuple[float, float, object]:
    """Median seconds of ``fn()`` over repeats (untraced), then the peak traced memory (MiB) of
    one more traced call (tracemalloc slows Python code, so it never runs while timing)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak, out


def planted_mdps() -> dict[str, MDP]:
    planted = make_planted(n_users=2000, n_periods=40, seed=0)
    con = duckdb.connect()
    panel = build_panel(con, planted.events, period="week")
    camp = period_of(con, planted.campaigns, period_grid(con, planted.events, "week"))
    return {
        "planted, campaign log": estimate_mdp(panel, planted.truth, campaigns=camp),
        "planted, lift table": estimate_mdp(panel, planted.truth),
    }


def online_retail_mdp() -> MDP | None:
    path = SHARED / "online_retail_2010_2011.parquet"
    if not path.exists():
        return None
    raw = pd.read_parquet(path)
    raw = raw[raw["CustomerID"].notna() & (raw["Quantity"] > 0)]
    events = pd.DataFrame(
        {
            "user_id": raw["CustomerID"].astype("int64").astype(str),
            "ts": pd.to_datetime(raw["InvoiceDate"]),
            "amount": raw["Quantity"] * raw["UnitPrice"],
        }
    )
    panel = build_panel(duckdb.connect(), events, period="week")
    spend = events.groupby("user_id")["amount"].sum()
    assign = pd.DataFrame(
        {
            "user_id": spend.index.to_numpy(),
            "segment": pd.qcut(spend.rank(method="first"), 4, labels=False).to_numpy(),
        }
    )
    return estimate_mdp(panel, assign)


def time_to_99(mdp: MDP, seeds: list[int]) -> dict:
    reached, steps, final, total = [], [], [], []
    for seed in seeds:
        learner = QLearner(seed=seed).fit(mdp)
        curve = learner.curve_
        hit = curve[curve["fraction_of_optimum"] >= 0.99]
        reached.append(float(hit["seconds"].iloc[0]) if len(hit) else float("nan"))
        steps.append(int(hit["steps"].iloc[0]) if len(hit) else -1)
        final.append(float(curve["fraction_of_optimum"].iloc[-1]))
        total.append(learner.fit_seconds_)
    return {
        "seconds_to_99": statistics.median(reached),
        "steps_to_99": int(statistics.median(steps)),
        "final_fraction_min": min(final),
        "fit_seconds": statistics.median(total),
        "seeds": seeds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    naive_steps = 50_000 if args.quick else 300_000
    seeds = [0] if args.quick else [0, 1, 2]

    mdps = planted_mdps()
    mdp = mdps["planted, campaign log"]
    t_naive, mem_naive, _ = measure(lambda: naive_loop(mdp, naive_steps), repeats)
    fast = QLearner(seed=0)
    t_fast, mem_fast, learner = measure(lambda: QLearner(seed=0).fit(mdp), repeats)
    n_fast = learner.n_steps_
    sps_naive, sps_fast = naive_steps / t_naive, n_fast / t_fast
    del fast

    _, _, opt = value_iteration(mdp)
    throughput = {
        "mdp": f"planted, campaign log ({mdp.n_states} states x {mdp.n_actions} actions)",
        "naive": {
            "steps": naive_steps,
            "seconds": t_naive,
            "steps_per_second": sps_naive,
            "peak_mib": mem_naive,
        },
        "ours": {
            "steps": n_fast,
            "seconds": t_fast,
            "steps_per_second": sps_fast,
            "peak_mib": mem_fast,
            "fraction_of_optimum": float(learner.curve_["fraction_of_optimum"].iloc[-1]),
            "disagreements_with_vi": int((learner.policy_ != opt).sum()),
        },
        "speedup": sps_fast / sps_naive,
    }
    convergence = {name: time_to_99(m, seeds) for name, m in mdps.items()}
    retail = None if args.quick else online_retail_mdp()
    if retail is not None:
        convergence[f"Online Retail, lift table ({retail.n_states} states)"] = time_to_99(
            retail, seeds
        )

    lines = [
        f"## Q-learning throughput ({throughput['mdp']}, median of {repeats})",
        "",
        "| learner | user-steps | seconds | steps / s | peak MiB |",
        "|---|---:|---:|---:|---:|",
        f"| per-step Python loop (article) | {naive_steps:,} | {t_naive:.2f} | {sps_naive:,.0f} | {mem_naive:.1f} |",
        f"| vectorised QLearner (defaults) | {n_fast:,} | {t_fast:.2f} | {sps_fast:,.0f} | {mem_fast:.1f} |",
        "",
        f"Speed-up: **{throughput['speedup']:.0f}×** steps per second (target ≥ 30×).",
        "",
        f"## Default training: time to 99% of the optimum (median over seeds {seeds})",
        "",
        "| data | seconds to 99% | user-steps to 99% | full fit seconds | final fraction (min) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in convergence.items():
        lines.append(
            f"| {name} | {c['seconds_to_99']:.2f} | {c['steps_to_99']:,} | {c['fit_seconds']:.2f} | {c['final_fraction_min']:.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"learn{suffix}.json").write_text(
        json.dumps(
            {"throughput": throughput, "convergence": convergence, "quick": args.quick}, indent=2
        )
    )
    (RESULTS / f"learn{suffix}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()

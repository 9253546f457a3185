"""Benchmark: the vectorised Q-learner vs a per-step Python loop like the original article's, on
the same MDP, in one run; and the time default training takes to reach 99% of the optimum.

    python bench/bench_learn.py            # full (a few minutes)
    python bench/bench_learn.py --quick    # smoke test (under a minute)

The MDP is estimated from the planted demo data (``retention.synth.make_planted``: 2,000 users,
40 weeks, randomised campaign log; the true segments). Part 1, throughput:

* naive: the article's loop — one simulated user, ``env.reset()`` / ``env.step(a)`` on the
  Gymnasium env (:class:`retention.env.RetentionEnv`), one ``np.argmax`` and one Q update per
  step, epsilon-greedy;
* ours: :class:`retention.learn.QLearner` with default settings (10,000 users stepped at once).
  Its time includes everything ``fit`` does (the exact greedy-policy evaluations of the learning
  curve too), so its steps per second are a lower bound.

Part 2, time to 99% of the value-iteration optimum with default settings: the learning curve's
first evaluation whose greedy policy reaches 99% (``retention.learn.fraction_of_optimum``) and
the first from which it stays there, and the final fraction over seeds, on (a) the planted data
with its campaign log, (b) the planted data without it (assumed lift table) and (c) the real
Online Retail data (``../shared/data``; monthly and weekly panels, four segments by spend
quartile as a stand-in segmentation, assumed lift table) when present. Beside it, the final
fraction of the learner this project had before (one learning rate per episode for every
(state, action), ``max(0.0005, 0.5 / (1 + e))``, 2,000 users, no averaging), kept here only as a
reference (:func:`episode_rate_learner`).

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

from retention.env import RetentionEnv  # noqa: E402
from retention.learn import (  # noqa: E402
    QLearner,
    fraction_of_optimum,
    start_value,
    value_iteration,
)
from retention.mdp import MDP, estimate_mdp  # noqa: E402
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


def episode_rate_learner(mdp: MDP, seed: int, episodes: int = 200, n_users: int = 2000) -> float:
    """The previous default learner (reference only): epsilon-greedy Q-learning, epsilon
    ``max(0.5, 0.97**e)``, one learning rate ``max(0.0005, 0.5 / (1 + e))`` per episode for every
    (state, action), 20-step episodes from uniform starts. Returns its fraction of the optimum."""
    g, rng = mdp.gamma, np.random.default_rng(seed)
    n_s, n_a, n = mdp.n_states, mdp.n_actions, n_users
    cum = np.cumsum(mdp.T, axis=-1)
    cum /= cum[..., -1:]
    start = np.cumsum(~mdp.terminal) / (~mdp.terminal).sum()
    q = np.zeros(n_s * n_a)

    def choose(qm: np.ndarray, s: np.ndarray, eps: float) -> np.ndarray:
        explore = rng.random(len(s)) < eps
        return np.where(explore, rng.integers(0, n_a, size=len(s)), np.argmax(qm[s], axis=1))

    for e in range(episodes):
        eps, lr = max(0.5, 0.97**e), max(0.0005, 0.5 / (1 + e))
        s = np.searchsorted(start, rng.random(n), side="right")
        alive = np.ones(n, bool)
        a = choose(q.reshape(n_s, n_a), s, eps)
        for _ in range(20):
            s2 = (rng.random(n)[:, None] >= cum[s, a]).sum(axis=1)
            qm = q.reshape(n_s, n_a)
            a2 = choose(qm, s2, eps)
            done = mdp.terminal[s2]
            target = mdp.R[s, a, s2] + g * np.where(done, 0.0, qm[s2].max(axis=1))
            idx = (s * n_a + a)[alive]
            cnt = np.bincount(idx, minlength=n_s * n_a)
            tot = np.bincount(idx, weights=target[alive], minlength=n_s * n_a)
            seen = cnt > 0
            q[seen] += lr * (tot[seen] / cnt[seen] - q[seen])
            alive &= ~done
            if not alive.any():
                break
            s, a = s2, a2
    _, _, best = value_iteration(mdp)
    policy = np.argmax(q.reshape(n_s, n_a), axis=1)
    return fraction_of_optimum(start_value(mdp, policy), start_value(mdp, best))


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


def online_retail_mdp(period: str) -> MDP | None:
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
    panel = build_panel(duckdb.connect(), events, period=period)
    spend = events.groupby("user_id")["amount"].sum()
    assign = pd.DataFrame(
        {
            "user_id": spend.index.to_numpy(),
            "segment": pd.qcut(spend.rank(method="first"), 4, labels=False).to_numpy(),
        }
    )
    return estimate_mdp(panel, assign)


def time_to_99(mdp: MDP, seeds: list[int], reference: bool) -> dict:
    reached, stays, steps, final, total, before = [], [], [], [], [], []
    for seed in seeds:
        learner = QLearner(seed=seed).fit(mdp)
        curve = learner.curve_
        ok = (curve["fraction_of_optimum"] >= 0.99).to_numpy()
        hit = curve[ok]
        reached.append(float(hit["seconds"].iloc[0]) if len(hit) else float("nan"))
        steps.append(int(hit["steps"].iloc[0]) if len(hit) else -1)
        below = np.flatnonzero(~ok)
        first_stay = 0 if len(below) == 0 else below[-1] + 1
        stays.append(
            float(curve["seconds"].iloc[first_stay]) if first_stay < len(curve) else float("nan")
        )
        final.append(float(curve["fraction_of_optimum"].iloc[-1]))
        total.append(learner.fit_seconds_)
        if reference:
            before.append(episode_rate_learner(mdp, seed))
    return {
        "seconds_to_99": statistics.median(reached),
        "seconds_to_stay_99": statistics.median(stays),
        "steps_to_99": int(statistics.median(steps)),
        "final_fraction_min": min(final),
        "final_fraction_median": statistics.median(final),
        "fit_seconds": statistics.median(total),
        "before_fraction_min": min(before) if before else None,
        "before_below_99": sum(f < 0.99 for f in before) if before else None,
        "seeds": seeds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    naive_steps = 50_000 if args.quick else 300_000
    seeds = [0] if args.quick else list(range(10))

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
    reference = not args.quick
    convergence = {name: time_to_99(m, seeds, reference) for name, m in mdps.items()}
    for period in () if args.quick else ("month", "week"):
        retail = online_retail_mdp(period)
        if retail is not None:
            name = f"Online Retail by {period}, lift table ({retail.n_states} states)"
            convergence[name] = time_to_99(retail, seeds, reference)

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
        f"## Default training: time to 99% of the optimum (medians over seeds {seeds})",
        "",
        "| data | seconds to 99% | stays ≥ 99% after (s) | user-steps to 99% | full fit seconds "
        "| final fraction (min / median) | before: per-episode rate, min (seeds < 99%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in convergence.items():
        before = (
            "—"
            if c["before_fraction_min"] is None
            else f"{c['before_fraction_min']:.4f} ({c['before_below_99']} of {len(seeds)})"
        )
        lines.append(
            f"| {name} | {c['seconds_to_99']:.2f} | {c['seconds_to_stay_99']:.2f} "
            f"| {c['steps_to_99']:,} | {c['fit_seconds']:.2f} "
            f"| {c['final_fraction_min']:.4f} / {c['final_fraction_median']:.4f} | {before} |"
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

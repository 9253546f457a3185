"""Benchmark: a randomised test's loop (issue 13) in the planted world, side by side with the
naive way (the assumed lift table: the same multiplier for every segment and stage).

    python bench/bench_experiment.py            # full: 100 simulated tests (a few minutes)
    python bench/bench_experiment.py --quick    # smoke test: 10 simulated tests

The world is the planted generator (:class:`retention.experiment.World`, 4 segments, their true
P(active next) per stage and their true effect per strategy). Data: ``make_planted`` (8,000 users,
30 weeks, no campaign log used), segmented by the planted truth. Each simulated test: plan
(default settings: 3 strategies + a 10% holdout, MDE 10%, power 0.8, α 0.05, 10 weeks), a new
salt per test, simulate 10 weeks, read the results. Figures:

* best action recovered in N of the 12 active/lapsing/at-risk cells (median, min over tests);
  naive: the assumed table's best action everywhere;
* the retrained policy's value as a share of the oracle's (value iteration on the planted MDP);
  naive: the policy of the assumed-lift MDP, valued on the planted MDP;
* 95% interval coverage of the planted effects over all cells of all tests;
* SRM flag rate on the clean logs and on logs with a fifth of one arm missing;
* the Thompson next wave's share of each segment × stage sent to its best arm vs uniform;
* IPS with the wave's logged propensities: the uniform policy's one-period value vs the truth
  (interval coverage over tests), beside the naive unweighted mean of the wave.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retention.experiment import (  # noqa: E402
    PlanSettings,
    World,
    best_actions,
    cell_counts,
    ips_value,
    measure_effects,
    measured_mdp,
    next_wave,
    plan_inputs,
    plan_test,
    planned_effects,
    read_results,
    srm_check,
    thompson_allocation,
)
from retention.learn import fraction_of_optimum, optimum, start_value  # noqa: E402
from retention.mdp import DEFAULT_LIFT, NONE, mdp_from_summary, summarize_events  # noqa: E402
from retention.synth import make_planted  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PLANNED = ("active", "lapsing", "at_risk")


def one_test(k, inputs, planted, world, assumed, oracle, oracle_value, truth_lifts, truth_best):
    plan = plan_test(inputs.users, inputs.baseline, PlanSettings(seed=k), start=str(inputs.start),
                     periods=10)  # fmt: skip
    campaigns, events = world.simulate_logs(plan, seed=1000 + k)
    data = read_results(plan, campaigns, events)
    srm_clean = srm_check(data.users).flagged
    dropped = plan.assignment[plan.assignment["action"] == "discount"]["user_id"]
    dropped = set(dropped.iloc[: len(dropped) // 5])
    cut = read_results(plan, campaigns[~campaigns["user_id"].isin(dropped)], events)
    srm_cut = srm_check(cut.users).flagged
    counts = cell_counts(data.transitions)
    effects = planned_effects(measure_effects(counts), plan)
    best = best_actions(effects)
    hits = int((best["action"] == best["segment"].map(truth_best)).sum())
    e = effects.merge(truth_lifts, on=["segment", "stage", "action"], suffixes=("", "_true"))
    covered = ((e["ci_lo"] <= e["lift_true"]) & (e["lift_true"] <= e["ci_hi"])).to_numpy()
    policy = optimum(measured_mdp(assumed, effects, plan.plan_id)).policy
    ratio = fraction_of_optimum(start_value(oracle, policy), oracle_value)
    # Thompson next wave, then one period of it in the world; IPS of the uniform policy.
    shares = thompson_allocation(counts, plan.settings.arms, holdout=0.1, seed=k)
    uniform = 1.0 / len(plan.settings.arms)
    to_best = []
    for (g, st), grp in shares.groupby(["segment", "stage"]):
        if st in PLANNED:
            to_best.append(float(grp.set_index("action").loc[truth_best[int(g)], "propensity"]))
    users = plan.assignment[["user_id", "segment", "stage", "recency"]]
    wave = next_wave(users, shares, plan_id=f"{plan.plan_id}-2")
    tr = world.simulate(wave, periods=1, seed=2000 + k)
    r = tr["active_next"].to_numpy(float)
    value, lo, hi = ips_value(r, np.full(len(tr), uniform), tr["propensity"])
    stage = np.array([PLANNED.index(s) for s in users["stage"]])
    seg = users["segment"].to_numpy()
    true = float(np.mean([world.p(seg, stage, np.full(len(seg), j)).mean()
                          for j in range(len(world.actions))]))  # fmt: skip
    return {
        "hits": hits,
        "cells": len(best),
        "ratio": ratio,
        "covered": covered,
        "srm_clean": srm_clean,
        "srm_cut": srm_cut,
        "to_best": float(np.mean(to_best)),
        "uniform": uniform,
        "ips": (value, lo, hi, true),
        "naive_mean": float(r.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 simulated tests, not 100")
    parser.add_argument("--tests", type=int, default=None)
    args = parser.parse_args()
    n_tests = args.tests or (10 if args.quick else 100)
    t0 = time.perf_counter()
    planted = make_planted(n_users=8000, n_periods=30, seed=3)
    con = duckdb.connect()
    inputs = plan_inputs(con, planted.events, planted.truth, period="week")
    world = World.planted()
    summary = summarize_events(con, planted.events, planted.truth, period="week")
    acts = ("recommendation", "engagement", "discount")
    base = mdp_from_summary(summary, lift={a: 1.0 for a in acts})
    oracle = world_mdp_of(base, world)
    oracle_value = optimum(oracle).value
    truth_lifts = world.true_lifts()
    truth_lifts = truth_lifts[truth_lifts["action"] != NONE]
    truth_best = {g: s.best_action for g, s in enumerate(planted.specs)}
    # The naive way: the assumed lift table, the same for every segment and stage.
    naive_mdp = mdp_from_summary(summary)  # also the base the measured effects replace
    naive_policy = optimum(naive_mdp).policy
    naive_ratio = fraction_of_optimum(start_value(oracle, naive_policy), oracle_value)
    naive_best = max(acts, key=lambda a: DEFAULT_LIFT.get(a, 1.0))
    naive_hits = sum(truth_best[g] == naive_best for g in range(4)) * 3
    runs = []
    for k in range(n_tests):
        runs.append(one_test(k, inputs, planted, world, naive_mdp, oracle, oracle_value, truth_lifts,
                             truth_best))  # fmt: skip
        print(f"test {k + 1}/{n_tests}: best action in {runs[-1]['hits']}/12 cells, "
              f"{runs[-1]['ratio']:.3f} of the oracle", file=sys.stderr)  # fmt: skip
    hits = [r["hits"] for r in runs]
    ratios = [r["ratio"] for r in runs]
    ips_cover = [lo <= true <= hi for _, lo, hi, true in (r["ips"] for r in runs)]
    ips_err = [abs(v - true) for v, _, _, true in (r["ips"] for r in runs)]
    naive_err = [abs(r["naive_mean"] - r["ips"][3]) for r in runs]
    out = {
        "tests": n_tests,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
        "best_action_cells": {
            "median": statistics.median(hits),
            "min": min(hits),
            "share_of_tests_with_at_least_11": float(np.mean([h >= 11 for h in hits])),
            "of": 12,
            "naive_assumed_table": naive_hits,
        },
        "policy_value_vs_oracle": {
            "median": round(statistics.median(ratios), 4),
            "min": round(min(ratios), 4),
            "naive_assumed_table": round(naive_ratio, 4),
        },
        "interval_coverage": round(float(np.mean(np.concatenate([r["covered"] for r in runs]))), 4),
        "srm_flag_rate": {
            "clean": float(np.mean([r["srm_clean"] for r in runs])),
            "fifth_of_one_arm_missing": float(np.mean([r["srm_cut"] for r in runs])),
            "alpha": 0.001,
        },
        "thompson_share_to_best_arm": {
            "mean": round(float(np.mean([r["to_best"] for r in runs])), 4),
            "uniform": runs[0]["uniform"],
        },
        "ips_uniform_policy": {
            "interval_coverage": float(np.mean(ips_cover)),
            "mean_abs_error": round(float(np.mean(ips_err)), 5),
            "naive_unweighted_mean_abs_error": round(float(np.mean(naive_err)), 5),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "experiment_quick.json" if args.quick else "experiment.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def world_mdp_of(base, world):
    from retention.experiment import world_mdp

    return world_mdp(base, world)


if __name__ == "__main__":
    main()

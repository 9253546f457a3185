"""Plan a test, run it in the planted world, read its results (retention.experiment)."""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.experiment import (
    ExperimentPlan,
    PlanSettings,
    World,
    assign,
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
    users_needed,
    world_mdp,
)
from retention.learn import fraction_of_optimum, optimum, start_value
from retention.mdp import NONE, mdp_from_summary, summarize_events
from retention.synth import make_planted

PLANNED = ("active", "lapsing", "at_risk")


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=8000, n_periods=30, seed=3)


@pytest.fixture(scope="module")
def inputs(planted):
    return plan_inputs(duckdb.connect(), planted.events, planted.truth, period="week")


@pytest.fixture(scope="module")
def plan(inputs):
    return plan_test(inputs.users, inputs.baseline, PlanSettings(seed=1), start=str(inputs.start),
                     periods=10)  # fmt: skip


def test_users_needed_is_the_two_proportion_formula():
    # p0 = 0.5 -> p1 = 0.6, alpha 0.05, power 0.8: the textbook answer is 388 per arm.
    assert users_needed(np.array([0.5]), 0.2, 0.8, 0.05)[0] == 388
    assert np.isinf(users_needed(np.array([0.9]), 0.2, 0.8, 0.05)[0])  # 1.08 > 1: impossible


def test_assignment_is_stratified_exact_and_reproducible():
    users = pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(1003)], "segment": np.arange(1003) % 2,
         "stage": np.where(np.arange(1003) % 3 == 0, "active", "lapsing")}
    )  # fmt: skip
    shares = PlanSettings(holdout=0.1).shares()
    a = assign(users, shares, salt="s1")
    for _, g in a.groupby(["segment", "stage"]):
        counts = g["action"].value_counts()
        for arm, share in shares.items():
            assert abs(counts.get(arm, 0) - share * len(g)) < 1  # exact to the rounding
    assert a.equals(assign(users.sample(frac=1, random_state=0), shares, salt="s1"))
    assert not a["action"].equals(assign(users, shares, salt="s2")["action"])


def test_plan_files_round_trip_and_cells_say_when_power_is_out_of_reach(plan):
    data = json.loads(plan.plan_json())
    assert {"plan_id", "actions", "holdout", "mde", "power", "alpha", "cells"} <= set(data)
    assert data["actions"][0] == NONE and data["holdout"] == 0.1
    cell = data["cells"][0]
    assert {"segment", "stage", "users", "baseline", "n_per_arm", "periods_needed"} <= set(cell)
    assert not plan.cells["reachable"].all()  # lapsing cells of this size cannot reach power
    csv = pd.read_csv(pd.io.common.BytesIO(plan.assignment_csv()))
    assert list(csv.columns[:3]) == ["user_id", "segment", "segment_name"]
    back = ExperimentPlan.from_json(data, csv)
    assert back.plan_id == plan.plan_id and back.periods == plan.periods
    assert set(plan.assignment["stage"]) == set(PLANNED)


def test_the_loop_recovers_the_planted_best_actions_and_a_near_oracle_policy(planted, plan):
    world = World.planted()
    campaigns, events = world.simulate_logs(plan, seed=5)
    data = read_results(plan, campaigns, events)
    assert not srm_check(data.users).flagged
    effects = planned_effects(measure_effects(cell_counts(data.transitions)), plan)
    assert set(effects["stage"]) == set(PLANNED)
    best = best_actions(effects)
    truth = {g: s.best_action for g, s in enumerate(planted.specs)}
    hits = int((best["action"] == best["segment"].map(truth)).sum())
    print(f"planted best action recovered in {hits} of {len(best)} cells")
    assert len(best) == 12 and hits >= 11, best

    con = duckdb.connect()
    summary = summarize_events(con, planted.events, planted.truth, period="week")
    base = mdp_from_summary(summary)  # the assumed lift table, as the product's base
    measured = measured_mdp(base, effects, plan.plan_id)
    assert any("measured in test" in a for a in measured.assumptions)
    assert not any(a.startswith("No campaign log") for a in measured.assumptions)
    # Churned users were not planned: their cells keep the assumed table, and say so.
    assert any("did not measure keep the assumed lift table" in a for a in measured.assumptions)
    oracle = world_mdp(base, world)
    chosen = optimum(measured).policy
    ratio = fraction_of_optimum(start_value(oracle, chosen), optimum(oracle).value)
    print(f"policy value from the measured effects: {ratio:.3f} of the oracle's")
    assert ratio >= 0.95, ratio


@pytest.mark.parametrize(("n_arm", "n_none"), [(400, 150), (120, 40)])
def test_effect_intervals_cover_the_planted_effects_over_many_tests(n_arm, n_none):
    # 200 tests simulated directly as counts per cell and arm (vectorised); thin cells too,
    # where the shrinkage across segments does most.
    world = World.planted()
    rng = np.random.default_rng(0)
    truth = world.true_lifts()
    truth = truth[truth["stage"].isin(PLANNED) & (truth["action"] != NONE)]
    cells = [(g, st, a) for g in range(4) for st in PLANNED for a in world.actions]
    seg = np.array([c[0] for c in cells])
    stg = np.array([("active", "lapsing", "at_risk").index(c[1]) for c in cells])
    act = np.array([world.actions.index(c[2]) for c in cells])
    n = np.where(act == 0, n_none, n_arm)
    p = world.p(seg, stg, act)
    active = rng.binomial(n, p, size=(200, len(cells)))
    covered = []
    for k in range(200):
        counts = pd.DataFrame({"segment": seg, "stage": [c[1] for c in cells],
                               "action": [c[2] for c in cells], "n": n, "active": active[k]})  # fmt: skip
        e = measure_effects(counts).merge(truth, on=["segment", "stage", "action"])
        covered.append((e["ci_lo"] <= e["lift_y"]) & (e["lift_y"] <= e["ci_hi"]))
    rate = float(np.mean(np.concatenate(covered)))
    print(f"coverage of the planted effects ({n_arm}/{n_none} per arm/holdout): {rate:.3f}")
    assert 0.90 <= rate <= 0.98


def _logged_users(counts: dict[str, int], shares: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [(0, "active", a, n, shares[a]) for a, n in counts.items()],
        columns=["segment", "stage", "action", "users", "propensity"],
    )


def test_srm_flags_a_fifth_of_one_arm_missing_and_is_quiet_on_clean_logs():
    shares = PlanSettings().shares()
    arms, p = list(shares), np.array(list(shares.values()))
    rng = np.random.default_rng(1)
    flags_clean, flags_cut, p_clean = [], [], []
    for _ in range(1000):
        drawn = rng.multinomial(5000, p)
        clean = srm_check(_logged_users(dict(zip(arms, drawn, strict=True)), shares))
        flags_clean.append(clean.flagged)
        p_clean.append(clean.p)
        cut = drawn.copy()
        cut[1] = round(cut[1] * 0.8)
        flags_cut.append(
            srm_check(_logged_users(dict(zip(arms, cut, strict=True)), shares)).flagged
        )
    print(
        f"SRM flag rate: clean {np.mean(flags_clean):.4f}, a fifth missing {np.mean(flags_cut):.3f}"
    )
    assert np.mean(flags_cut) >= 0.99
    assert np.mean(flags_clean) <= 0.005
    # Calibrated: on clean logs p is uniform, so a 5% threshold flags about 5% of them.
    assert 0.03 <= np.mean(np.array(p_clean) < 0.05) <= 0.07
    cut_check = srm_check(_logged_users(dict(zip(arms, cut, strict=True)), shares))
    assert "Warning" in cut_check.sentence() and cut_check.to_dict()["flagged"]


def test_bad_results_are_refused_naming_the_rows(plan):
    world = World.planted()
    campaigns, events = world.simulate_logs(plan, seed=5)
    small = campaigns.head(50).reset_index(drop=True)
    cases = {
        "not in plan": small.assign(user_id=["X1"] + list(small["user_id"][1:])),
        "arms not in plan": small.assign(action=["sms"] + list(small["action"][1:])),
        "sum to": small.assign(propensity=0.2),
        "outside the test window": small.assign(
            ts=[pd.Timestamp("2001-01-01")] + list(small["ts"][1:])
        ),
    }
    for words, log in cases.items():
        with pytest.raises(InputError, match=words) as err:
            read_results(plan, log, events)
        assert re.search(r"\brows? \d", str(err.value))
        if words != "sum to":
            assert "row 2" in str(err.value)


def test_thompson_wave_favours_the_best_arm_and_ips_recovers_uniform(planted, plan):
    world = World.planted()
    data = read_results(plan, *world.simulate_logs(plan, seed=5))
    counts = cell_counts(data.transitions)
    shares = thompson_allocation(counts, plan.settings.arms, holdout=0.1, seed=0)
    uniform = 1.0 / len(plan.settings.arms)
    assert (shares["propensity"] >= 0.05 - 1e-9).all()
    assert np.allclose(shares.groupby(["segment", "stage"])["propensity"].sum(), 1.0)
    for g, spec in enumerate(planted.specs):
        s = shares[(shares["segment"] == g) & (shares["stage"] == "active")].set_index("action")
        assert s.loc[spec.best_action, "propensity"] > uniform
    assert (shares[shares["action"] == NONE]["propensity"] >= 0.1 - 1e-9).all()

    users = plan.assignment[["user_id", "segment", "stage", "recency"]]
    wave = next_wave(users, shares, plan_id="W2")
    tr = world.simulate(wave, periods=1, seed=9)
    arms = list(world.actions)
    target = np.full(len(tr), uniform)
    value, lo, hi = ips_value(tr["active_next"].to_numpy(float), target, tr["propensity"])
    stage = np.array([("active", "lapsing", "at_risk").index(s) for s in users["stage"]])
    seg = users["segment"].to_numpy()
    true = np.mean([world.p(seg, stage, np.full(len(seg), k)).mean() for k in range(len(arms))])
    assert lo <= true <= hi, (lo, true, hi)


def test_a_plain_campaign_log_gets_an_srm_check_and_lifts():
    from retention.experiment import evidence_counts, log_experiment, srm_from_log

    per_action = pd.DataFrame(
        {"action": ["discount", "engagement", "recommendation"], "rows": [1000, 1010, 800],
         "propensity": [0.25, 0.25, 0.25]}
    )  # fmt: skip
    assert srm_from_log(per_action).flagged  # a fifth of one arm missing
    assert not srm_from_log(per_action.assign(rows=[1000, 1010, 990])).flagged
    assert srm_from_log(per_action.assign(propensity=[0.25, None, 0.25])) is None
    evidence = pd.DataFrame(
        {"segment": [0, 0], "stage": ["active", "active"], "action": ["discount", "engagement"],
         "n": [100, 120], "p_active": [0.6, 0.5], "n_none": [90, 90], "p_none": [0.5, 0.5]}
    )  # fmt: skip
    counts = evidence_counts(evidence)
    assert counts.set_index("action").loc[NONE, "active"] == 45
    block = log_experiment(None, evidence)
    assert block["srm"] is None and len(block["lifts"]) == 2


def test_a_thin_segment_is_pulled_toward_the_pooled_rate_and_thompson_uses_the_shrunk_rates():
    from retention.experiment import shrunk_rates

    # Three well-measured segments at 40% active; a thin one (10 user-periods) at 90% by luck.
    rows = []
    for g, (n, k) in enumerate([(2000, 800), (2000, 790), (2000, 810), (10, 9)]):
        rows.append((g, "active", "discount", n, k))
        rows.append((g, "active", NONE, 2000 if g < 3 else 10, 800 if g < 3 else 4))
    counts = pd.DataFrame(rows, columns=["segment", "stage", "action", "n", "active"])
    post = shrunk_rates(counts).set_index(["segment", "action"])
    pooled = 2409 / 6010
    thin = post.loc[(3, "discount"), "rate"]
    assert abs(thin - pooled) < 0.05 < abs(0.9 - thin)  # pulled most of the way to the pool
    assert abs(post.loc[(0, "discount"), "rate"] - 0.4) < 0.005  # a well-measured cell keeps it
    # Raw Beta(1 + k, 1 + n - k) draws would make discount the clear best of the thin segment
    # (0.9 vs 0.4); the shrunk posteriors leave it close to an even call.
    shares = thompson_allocation(counts, ["discount"], holdout=0.1, seed=0)
    s = shares[shares["segment"] == 3].set_index("action")["propensity"]
    assert s["discount"] < 0.8


def test_measured_effects_shrink_a_thin_cell_toward_the_other_segments():
    world = World.planted()
    rng = np.random.default_rng(4)
    rows = []
    for g in range(4):
        for j, st in enumerate(PLANNED):
            for k, a in enumerate(world.actions):
                n = 20 if (g == 3 and st == "active") else 3000
                p = float(world.p(np.array([g]), np.array([j]), np.array([k]))[0])
                rows.append((g, st, a, n, int(rng.binomial(n, p))))
    counts = pd.DataFrame(rows, columns=["segment", "stage", "action", "n", "active"])
    e = measure_effects(counts).set_index(["segment", "stage", "action"])
    thin = e.loc[(3, "active")]
    others = e.drop(index=3, level=0)
    assert (thin["shrinkage"] > 0.2).all()  # the thin cell leans on the other segments
    assert (others["shrinkage"] < 0.1).all()  # well-measured cells keep their own estimate
    common = np.log(others.xs("active", level="stage")["lift"]).groupby("action").mean()
    pulled = (np.log(thin["lift"]) - common).abs() < (np.log(thin["raw_lift"]) - common).abs()
    assert pulled.all(), thin

"""`python -m retention plan` and `results`: files written, the planted loop, bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from retention.cli import main
from retention.experiment import ExperimentPlan, World
from retention.synth import make_planted


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    planted = make_planted(n_users=1200, n_periods=30, seed=3)
    planted.events.to_csv(folder / "events.csv", index=False)
    common = ["--segments", "4", "--workspace", str(folder / "ws")]
    code = main(["plan", str(folder / "events.csv"), "--out", str(folder / "plan"),
                 "--holdout", "0.2", *common])  # fmt: skip
    assert code == 0
    return folder, planted, common


def _simulated(folder, planted, plan_dir):
    """The test run in the planted world (each user's planted segment drives the outcome)."""
    data = json.loads((plan_dir / "plan.json").read_text())
    assignment = pd.read_csv(plan_dir / "assignment.csv", dtype={"user_id": str})
    plan = ExperimentPlan.from_json(data, assignment)
    truth = planted.truth.set_index("user_id")["segment"]
    seg = plan.assignment["user_id"].map(truth).to_numpy()
    return World.planted().simulate_logs(
        replace(plan, assignment=plan.assignment.assign(segment=seg))
    )


def test_plan_writes_the_assignment_and_the_plan(planned):
    folder, _, _ = planned
    data = json.loads((folder / "plan" / "plan.json").read_text())
    assert data["holdout"] == 0.2 and data["actions"][0] == "none" and data["cells"]
    a = pd.read_csv(folder / "plan" / "assignment.csv")
    assert {"user_id", "segment", "stage", "action", "propensity", "plan_id",
            "segment_name"} <= set(a.columns)  # fmt: skip
    assert a["user_id"].is_unique and set(a["stage"]) <= {"active", "lapsing", "at_risk"}
    for _, g in a.groupby(["segment", "stage"]):
        assert abs((g["action"] == "none").sum() - 0.2 * len(g)) < 1


def test_results_measure_the_test_and_write_the_experiment_block(planned):
    folder, planted, common = planned
    campaigns, events = _simulated(folder, planted, folder / "plan")
    campaigns.to_csv(folder / "log.csv", index=False)
    events.to_csv(folder / "since.csv", index=False)
    out = folder / "results"
    code = main(["results", str(folder / "events.csv"), "--plan", str(folder / "plan"),
                 "--log", str(folder / "log.csv"), "--events", str(folder / "since.csv"),
                 "--out", str(out), *common])  # fmt: skip
    assert code == 0
    exp = json.loads((out / "summary.json").read_text())["experiment"]
    assert set(exp["srm"]) == {"chi2", "p", "flagged"} and not exp["srm"]["flagged"]
    lift = exp["lifts"][0]
    assert {"segment", "stage", "action", "lift", "ci", "n"} <= set(lift)
    assert exp["ope"]["policy"]["ips"]["ci"][0] is not None
    assert any("measured in test" in a for a in exp["assumptions"])
    wave = pd.read_csv(out / "next_assignment.csv")
    assert (wave.groupby(["segment", "stage"])["action"].nunique() >= 1).all()


def test_results_with_bad_rows_fail_with_one_line_and_leave_out_as_it_was(planned, capsys):
    folder, planted, common = planned
    campaigns, events = _simulated(folder, planted, folder / "plan")
    campaigns.loc[3, "user_id"] = "nobody"
    campaigns.to_csv(folder / "bad_log.csv", index=False)
    events.to_csv(folder / "since.csv", index=False)
    out = folder / "kept"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    capsys.readouterr()
    code = main(["results", str(folder / "events.csv"), "--plan", str(folder / "plan"),
                 "--log", str(folder / "bad_log.csv"), "--events", str(folder / "since.csv"),
                 "--out", str(out), *common])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")
    assert "not in plan" in err[0] and "row 5" in err[0]
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_plan_options_are_checked_first(planned, capsys):
    folder, _, common = planned
    for option, value in (("--holdout", "1.5"), ("--actions", "none,discount")):
        with pytest.raises(SystemExit) as exc:
            main(["plan", str(folder / "events.csv"), "--out", str(folder / "x"), option, value,
                  *common])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and option in err[0]
        assert "retention plan --help" in err[0]
    assert not (folder / "x").exists()


def test_run_with_a_campaign_log_reads_it_as_an_experiment(planned, tmp_path):
    folder, planted, common = planned
    planted.campaigns.to_csv(folder / "campaigns.csv", index=False)
    out = tmp_path / "run"
    code = main(["run", str(folder / "events.csv"), "--campaigns", str(folder / "campaigns.csv"),
                 "--out", str(out), "--quiet", "--episodes", "2000", *common])  # fmt: skip
    assert code == 0
    exp = json.loads((out / "summary.json").read_text())["experiment"]
    assert set(exp["srm"]) == {"chi2", "p", "flagged"} and not exp["srm"]["flagged"]
    assert exp["lifts"] and {"segment", "stage", "action", "lift", "ci", "n"} <= set(
        exp["lifts"][0]
    )


def test_results_store_the_retrained_policy_and_write_measured_strategies(planned, capsys):
    folder, planted, common = planned
    campaigns, events = _simulated(folder, planted, folder / "plan")
    campaigns.to_csv(folder / "log.csv", index=False)
    events.to_csv(folder / "since.csv", index=False)
    out = folder / "results2"
    capsys.readouterr()
    code = main(["results", str(folder / "events.csv"), "--plan", str(folder / "plan"),
                 "--log", str(folder / "log.csv"), "--events", str(folder / "since.csv"),
                 "--out", str(out), "--progress", "lines", *common])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if line.startswith("[")]
    assert len(steps) >= 5 and "Measuring" in err and "Storing the policy" in err
    exp = json.loads((out / "summary.json").read_text())["experiment"]
    plan_id = exp["plan_id"]
    assert exp["policy_run"] and exp["effect_source"].startswith(f"measured in test {plan_id}")
    measured = [x for x in exp["lifts"] if x["source"] == f"measured in test {plan_id}"]
    assert measured and all(x["ci"][0] <= x["lift"] <= x["ci"][1] for x in measured)
    table = pd.read_csv(out / "strategies.csv")
    assert {"effect_lift", "effect_ci_lo", "effect_ci_hi", "effect_source"} <= set(table.columns)
    acting = table[table["action"] != "none"]
    assert acting["effect_source"].str.startswith(("measured in test", "assumed")).all()


def test_plan_can_be_narrowed_to_segments_and_include_churned_users(planned):
    folder, _, common = planned
    out = folder / "narrow"
    code = main(["plan", str(folder / "events.csv"), "--out", str(out), "--test-segments", "0,2",
                 "--include-churned", "--quiet", *common])  # fmt: skip
    assert code == 0
    a = pd.read_csv(out / "assignment.csv")
    assert set(a["segment"]) == {0, 2} and "churned" in set(a["stage"])
    data = json.loads((out / "plan.json").read_text())
    assert data["segments"] == [0, 2] and "churned" in data["stages"]


def test_plan_takes_the_settings_file_of_the_segments_page(planned, capsys):
    """The app's "Download these settings" file plans on the segments the page shows: the
    plan's segmentation run is the one `run` makes from the same file."""
    from retention.workspace import Workspace

    folder, _, _ = planned
    (folder / "page.toml").write_text("segments = 3\ntext_weight = 0.5\nsegment_seed = 7\n")
    ws = folder / "ws_settings"
    code = main(["plan", str(folder / "events.csv"), "--out", str(folder / "plan3"),
                 "--settings", str(folder / "page.toml"), "--workspace", str(ws), "--quiet"])  # fmt: skip
    assert code == 0
    data = json.loads((folder / "plan3" / "plan.json").read_text())
    run = Workspace(ws).load_run(data["source"]["segmentation_run"], artifacts=False)
    assert run.settings["k"] == 3 and run.settings["text_weight"] == 0.5
    assert run.settings["random_state"] == 7
    assert pd.read_csv(folder / "plan3" / "assignment.csv")["segment"].nunique() == 3

    (folder / "bad.toml").write_text("segmnts = 3\n")
    bad_out = folder / "plan_bad"
    code = main(["plan", str(folder / "events.csv"), "--out", str(bad_out), "--settings",
                 str(folder / "bad.toml"), "--workspace", str(folder / "ws_bad"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "segmnts" in err[0] and "segments" in err[0]
    assert not bad_out.exists() and not (folder / "ws_bad").exists()

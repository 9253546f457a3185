"""Issue 12: campaign timing rules, the campaign-log checks, the evidence table, bad logs.

Oracles: hand-placed timestamps; the planted truth of ``retention.synth`` (best action per
segment, a randomised log sent at a known time); a log whose actions are chosen by stage.
Recovery uses the estimated MDP + exact value iteration, not Q-learning (fast, no noise).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.campaigns import (
    check_campaigns,
    effects_side_by_side,
    evidence_table,
    with_timing,
)
from retention.cli import main
from retention.errors import InputError
from retention.ingest import prepare
from retention.learn import optimum
from retention.mdp import RewardSettings, estimate_mdp, logged_transitions
from retention.periods import build_panel, credit_period, period_grid, period_of
from retention.runs import store_dataset
from retention.synth import SEND_TIMES, make_planted
from retention.workspace import Workspace

EVENT_MAP = {"user": "user_id", "time": "ts", "amount": "amount", "text": "text", "event": "event"}
CAMPAIGN_MAP = {"user": "user_id", "time": "ts", "action": "action", "propensity": "propensity"}


# --------------------------------------------------------------------------- the rule


def _place(period: str, times: list[str]) -> pd.DataFrame:
    con = duckdb.connect()
    events = pd.DataFrame(
        {"user_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-01 10:00", "2024-03-20 00:00"])}
    )
    grid = period_grid(con, events, period)
    rows = pd.DataFrame({"user_id": "a", "ts": pd.to_datetime(times)})
    return period_of(con, rows, grid)


@pytest.mark.parametrize(
    ("period", "when", "start", "nearest", "next_"),
    [
        # 2024-01-01 is a Monday: week 0 starts then, week 1 on Monday 2024-01-08.
        ("week", "2024-01-07 20:00", 0, 1, 1),  # Sunday evening -> the week starting Monday
        ("week", "2024-01-08 08:00", 1, 1, 2),  # Monday morning -> the same week
        ("week", "2024-01-04 12:00", 0, 1, 1),  # exactly mid-week: a tie goes to the later
        ("week", "2024-01-04 11:59", 0, 0, 1),
        ("day", "2024-01-03 18:00", 2, 3, 3),
        ("day", "2024-01-03 06:00", 2, 2, 3),
        ("day", "2024-01-03 12:00", 2, 3, 3),  # tie
        # February 2024 has 29 days: its middle is the 15th at noon.
        ("month", "2024-02-15 12:00", 1, 2, 2),  # tie
        ("month", "2024-02-15 11:00", 1, 1, 2),
        ("month", "2024-01-31 22:00", 0, 1, 1),  # last evening of January -> February
        ("month", "2024-03-02 09:00", 2, 2, 3),
    ],
)
def test_credit_period_by_hand(period, when, start, nearest, next_) -> None:
    placed = _place(period, [when])
    t, phase = placed["t"].to_numpy(), placed["phase"].to_numpy()
    assert credit_period(t, phase, "start").tolist() == [start]
    assert credit_period(t, phase, "nearest").tolist() == [nearest]
    assert credit_period(t, phase, "next").tolist() == [next_]


def test_credit_period_refuses_unknown_rule() -> None:
    with pytest.raises(InputError, match="nearest, start, next"):
        credit_period(np.array([1]), np.array([0.2]), "later")


# --------------------------------------------------------------------------- planted logs


def _planted(send_time: str, seed: int, n_users: int = 1200, n_periods: int = 30):
    planted = make_planted(n_users=n_users, n_periods=n_periods, seed=seed, send_time=send_time)
    con = duckdb.connect()
    panel = build_panel(con, planted.events, period="week", churn_after=4)
    grid = period_grid(con, planted.events, "week")
    placed = period_of(con, planted.campaigns, grid).rename(columns={"t": "t_in"})
    return planted, panel, placed


def _recovered(planted, panel, placed, timing: str) -> int:
    """Active/lapsing/at-risk cells whose optimal action (estimated MDP) is the planted one."""
    mdp = estimate_mdp(
        panel, planted.truth, campaigns=with_timing(placed, timing), reward=RewardSettings()
    )
    best = np.asarray(mdp.actions, dtype=object)[optimum(mdp, mdp.gamma).policy]
    states = mdp.states_frame()
    planted_best = states["segment"].map({g: s.best_action for g, s in enumerate(planted.specs)})
    cells = states["stage"].isin(["active", "lapsing", "at_risk"]).to_numpy()
    return int((best[cells] == planted_best.to_numpy()[cells]).sum())


@pytest.mark.parametrize("send_time", SEND_TIMES)
def test_planted_best_action_recovered_with_nearest(send_time: str) -> None:
    hits = {seed: _recovered(*_planted(send_time, seed), "nearest") for seed in (0, 1, 2)}
    assert all(h >= 11 for h in hits.values()), hits  # of 12 cells


def test_sends_before_the_period_are_wrong_under_start() -> None:
    """The issue's case: sends at the end of the period before, read with 'start'."""
    assert _recovered(*_planted("end_before", 0), "start") <= 8


@pytest.fixture(scope="module")
def end_before():
    return _planted("end_before", 1)


def test_checks_warn_on_a_rule_against_the_log_and_stay_quiet_on_a_right_one(end_before) -> None:
    planted, panel, placed = end_before
    wrong = check_campaigns(panel, planted.truth, placed, timing="start", period="week")
    assert wrong.randomised is True
    text = " ".join(wrong.warnings)
    assert "'start'" in text and "'nearest'" in text
    assert "last seventh" in text  # the sends cluster at the end of the week
    right = check_campaigns(panel, planted.truth, placed, timing="nearest", period="week")
    assert right.warnings == ()
    assert right.randomisation["end_share"] > 0.9
    assert right.send_times.set_index("label").loc["Sun", "share"] > 0.9
    effects = right.effects.set_index(["timing", "segment", "action"])
    assert effects.loc[("nearest", 0, "recommendation"), "clear"]
    assert not effects.loc[("start", 0, "recommendation"), "clear"]
    wide = effects_side_by_side(right.effects, "week", {0: "kitchen lovers"})
    assert len(wide) == 12 and wide.shape[1] == 5
    assert set(wide["segment"]) == {"kitchen lovers", "Segment 2", "Segment 3", "Segment 4"}


def test_checks_warn_when_start_sends_are_read_as_next() -> None:
    planted, panel, placed = _planted("start", 2)
    wrong = check_campaigns(panel, planted.truth, placed, timing="next", period="week")
    assert any("'next'" in w for w in wrong.warnings)
    right = check_campaigns(panel, planted.truth, placed, timing="start", period="week")
    assert right.warnings == ()


def test_targeted_log_is_flagged_not_reported_as_causal(end_before) -> None:
    planted, panel, _ = end_before
    tr = logged_transitions(panel, planted.truth)
    by_stage = {"active": "none", "lapsing": "engagement", "at_risk": "discount"}
    tr = tr.assign(action=tr["stage"].astype(str).map(by_stage).fillna("recommendation"))
    tr = tr[tr["action"] != "none"]
    placed = pd.DataFrame(
        {"user_id": tr["user_id"], "t_in": tr["t"], "phase": 0.05, "action": tr["action"]}
    ).assign(propensity=np.nan)
    checks = check_campaigns(panel, planted.truth, placed, timing="nearest", period="week")
    assert checks.randomised is False
    assert checks.randomisation["cramer_v"] > 0.5
    assert "not randomised" in checks.warnings[0] and "not measured effects" in checks.warnings[0]


# --------------------------------------------------------------------------- the evidence


def test_evidence_table_by_hand() -> None:
    """One cell: 30 of 40 back after a discount, 10 of 40 after nothing."""
    rows = [("discount", True)] * 30 + [("discount", False)] * 10
    rows += [("none", True)] * 10 + [("none", False)] * 30
    tr = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(80)],
            "segment": 0,
            "stage": "lapsing",
            "action": [a for a, _ in rows],
            "next_stage": ["active" if b else "at_risk" for _, b in rows],
        }
    )
    ev = evidence_table(tr).iloc[0]
    assert (ev["segment"], ev["stage"], ev["action"], ev["n"], ev["n_none"]) == (
        0, "lapsing", "discount", 40, 40,
    )  # fmt: skip
    assert ev["change"] == pytest.approx(0.5)
    # By hand: Wilson 95% of 30/40 is [0.5981, 0.8581], of 10/40 [0.1419, 0.4019]; Newcombe:
    # 0.5 - sqrt(0.1519² + 0.1519²) = 0.2851 and 0.5 + sqrt(0.1081² + 0.1081²) = 0.6529.
    assert ev["ci_lo"] == pytest.approx(0.2851, abs=1e-3)
    assert ev["ci_hi"] == pytest.approx(0.6529, abs=1e-3)


# --------------------------------------------------------------------------- bad logs


def _small():
    return make_planted(n_users=40, n_periods=10, seed=1)


def test_campaign_log_outside_the_event_span_is_refused() -> None:
    planted = _small()
    late = planted.campaigns.assign(ts=planted.campaigns["ts"] + pd.Timedelta(days=3650))
    with pytest.raises(InputError, match="falls within the event log's time span"):
        prepare(planted.events, EVENT_MAP, "events", campaigns=late, campaign_mapping=CAMPAIGN_MAP)


def test_campaign_actions_that_never_repeat_are_refused() -> None:
    planted = _small()
    ids = planted.campaigns.assign(action=[f"C{i}" for i in range(len(planted.campaigns))])
    with pytest.raises(InputError, match="never repeats a value"):
        prepare(planted.events, EVENT_MAP, "events", campaigns=ids, campaign_mapping=CAMPAIGN_MAP)


def test_bad_campaign_log_on_the_command_line_stores_nothing(tmp_path, capsys) -> None:
    planted = _small()
    planted.events.to_csv(tmp_path / "events.csv", index=False)
    late = planted.campaigns.assign(ts=planted.campaigns["ts"] - pd.Timedelta(days=3650))
    late.to_csv(tmp_path / "campaigns.csv", index=False)
    ws_dir, out = tmp_path / "ws", tmp_path / "out"
    code = main(
        ["run", str(tmp_path / "events.csv"), "--campaigns", str(tmp_path / "campaigns.csv"),
         "--out", str(out), "--workspace", str(ws_dir), "--quiet"]
    )  # fmt: skip
    assert code == 2
    assert "time span" in capsys.readouterr().err
    assert not out.exists()
    ws = Workspace(ws_dir)
    try:
        assert ws.datasets().empty
    finally:
        ws.close()


# --------------------------------------------------------------------------- stored + CLI


def test_timing_is_stored_with_the_dataset(tmp_path) -> None:
    planted = _small()
    ws = Workspace(tmp_path / "ws")
    try:
        ids = {}
        for timing in ("nearest", "next"):
            prepared = prepare(
                planted.events, EVENT_MAP, "events", campaigns=planted.campaigns,
                campaign_mapping=CAMPAIGN_MAP, campaign_timing=timing,
            )  # fmt: skip
            ids[timing] = store_dataset(ws, prepared, "planted")
            assert ws.dataset(ids[timing]).mapping["campaign.timing"] == timing
        assert ids["nearest"] != ids["next"]
    finally:
        ws.close()


def test_cli_accepts_campaign_timing_and_refuses_a_bad_one(tmp_path, capsys) -> None:
    from retention.cli import build_parser

    args = build_parser().parse_args(["run", "in.csv", "--out", "o", "--campaign-timing", "next"])
    assert args.campaign_timing == "next"
    assert build_parser().parse_args(["run", "in.csv", "--out", "o"]).campaign_timing == "nearest"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(tmp_path / "missing.csv"), "--out", str(out), "--campaign-timing", "later"])  # fmt: skip
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--campaign-timing" in err and "later" in err
    assert not out.exists()


def test_the_randomisation_sentence_reads_the_test():
    from retention.campaigns import CampaignChecks, randomisation_sentence

    def checks(randomisation: dict) -> CampaignChecks:
        empty = pd.DataFrame()
        return CampaignChecks("nearest", "week", empty, empty, randomisation, ())

    assert randomisation_sentence(checks({})) is None
    yes = randomisation_sentence(checks({"p": 0.5, "cramer_v": 0.02, "randomised": True}))
    assert "no sign that actions were chosen by stage" in yes and "p = 0.5" in yes
    no = randomisation_sentence(checks({"p": 1e-9, "cramer_v": 0.4, "randomised": False}))
    assert "actions depend on the stage" in no and "V = 0.40" in no


def test_evidence_view_lists_stages_in_lifecycle_order() -> None:
    """Alphabetical order put 'lapsing' after 'churned'; people read active → churned."""
    from retention.campaigns import evidence_view
    from retention.strategies import in_period_words

    stages = ["churned", "lapsing", "at_risk", "active"]
    evidence = pd.DataFrame(
        {
            "segment": [1, 0, 0, 0, 0],
            "stage": ["active", *stages],
            "action": "discount",
            "p_active": 0.5, "p_none": 0.4, "change": 0.1, "ci_lo": 0.0, "ci_hi": 0.2,
            "n": 10, "n_none": 10,
        }
    )  # fmt: skip
    view = evidence_view(evidence, {0: "Gardeners", 1: "Cooks"})
    assert list(zip(view["segment"], view["stage"], strict=True)) == [
        ("Gardeners", "active"), ("Gardeners", "lapsing"), ("Gardeners", "at_risk"),
        ("Gardeners", "churned"), ("Cooks", "active"),
    ]  # fmt: skip
    assert in_period_words("share one at_risk stage for 2 periods", "week") == (
        "share one at risk stage for 2 weeks"
    )

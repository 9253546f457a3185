"""The policy steps without a pandas panel: the MDP's counts and users' current stages computed
in DuckDB must equal what the pandas panel gives (the oracle), down to the learned Q-table and the
command line's summary.json."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.learn import QLearner
from retention.mdp import PanelSummary, estimate_mdp, summarize_events, summarize_panel
from retention.periods import build_panel, period_grid, period_of, user_stages
from retention.policy import train_policy
from retention.strategies import current_stages, user_actions
from retention.synth import make_planted

MONDAY = pd.Timestamp("2024-01-01")


def _tiny_events() -> pd.DataFrame:
    """Weekly events, weeks 0..6 (T = 6), with churn_after = 3 (at_risk = recency 2):

    a (segment 0): weeks 0 (two events, 10 + 20), 1 (5), 4 (no amount)
        -> A A L R A L R
    b (segment 0): week 2 (7)                  -> . . A L R C C
    c (segment 1): week 6 (3)                  -> . . . . . . A   (no transition)
    d (segment 2): weeks 0 (8), 6 (12)         -> A L R C C C A
    e (no segment): every week (1)
    """
    rows = [
        ("a", 0, 10.0), ("a", 0, 20.0), ("a", 1, 5.0), ("a", 4, None),
        ("b", 2, 7.0), ("c", 6, 3.0), ("d", 0, 8.0), ("d", 6, 12.0),
        *[("e", w, 1.0) for w in range(7)],
    ]  # fmt: skip
    return pd.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            # Different days inside each week: the period, not the day, counts.
            "ts": [MONDAY + pd.Timedelta(weeks=w, days=i % 5) for i, (_, w, _) in enumerate(rows)],
            "amount": [a for _, _, a in rows],
        }
    )


TINY_ASSIGN = pd.DataFrame({"user_id": ["a", "b", "c", "d", "x"], "segment": [0, 0, 1, 2, 0]})


def _check_same(a: PanelSummary, b: PanelSummary) -> None:
    assert a.segments == b.segments
    pd.testing.assert_frame_equal(a.transitions, b.transitions)
    np.testing.assert_array_equal(a.revenue, b.revenue)
    np.testing.assert_array_equal(a.current, b.current)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    assert a.campaign_log == b.campaign_log


def test_tiny_log_counts_by_hand():
    con = duckdb.connect()
    events = _tiny_events()
    got = summarize_events(con, events, TINY_ASSIGN, period="week", churn_after=3)
    assert got.segments == (0, 2)  # segment 1's only user has a single period
    counts = {
        (r.segment, r.stage, r.next_stage): r.n for r in got.transitions.itertuples(index=False)
    }
    assert counts == {
        (0, "active", "active"): 1,
        (0, "active", "lapsing"): 3,
        (0, "lapsing", "at_risk"): 3,
        (0, "at_risk", "active"): 1,
        (0, "at_risk", "churned"): 1,
        (0, "churned", "churned"): 1,
        (2, "active", "lapsing"): 1,
        (2, "lapsing", "at_risk"): 1,
        (2, "at_risk", "churned"): 1,
        (2, "churned", "churned"): 2,
        (2, "churned", "active"): 1,
    }
    assert set(got.transitions["action"]) == {"none"}
    # Active periods: segment 0 earned 30, 5, 0 (a) and 7 (b); segment 2 earned 8 and 12.
    np.testing.assert_array_equal(got.revenue, [42 / 4, 10.0])
    # Week 6: a at_risk, b churned (segment 0); d active (segment 2).
    np.testing.assert_array_equal(got.current, [[0, 0, 1, 1], [1, 0, 0, 0]])
    np.testing.assert_array_equal(got.sizes, [2, 1])
    # The pandas panel says the same.
    panel = build_panel(con, events, period="week", churn_after=3)
    _check_same(summarize_panel(panel, TINY_ASSIGN), got)
    stages = user_stages(con, events, period="week", churn_after=3)
    assert dict(zip(stages["user_id"], stages["stage"], strict=True)) == {
        "a": "at_risk", "b": "churned", "c": "active", "d": "active", "e": "active",
    }  # fmt: skip
    pd.testing.assert_frame_equal(stages, current_stages(panel))


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=700, n_periods=30, seed=5)


@pytest.mark.parametrize(
    ("period", "churn_after"), [("week", 4), ("week", 2), ("day", 3), ("month", 2)]
)
def test_sql_summary_and_stages_equal_the_pandas_panel(planted, period, churn_after):
    con = duckdb.connect()
    panel = build_panel(con, planted.events, period=period, churn_after=churn_after)
    sql = summarize_events(
        con, planted.events, planted.truth, period=period, churn_after=churn_after
    )
    _check_same(summarize_panel(panel, planted.truth), sql)
    for start in ("current", "first"):
        a = estimate_mdp(panel, planted.truth, start=start)
        b = estimate_mdp(sql, start=start)
        for name in ("T", "R", "start", "counts", "revenue", "stage_of"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert (a.segments, a.actions, a.assumptions) == (b.segments, b.actions, b.assumptions)
    stages = user_stages(con, planted.events, period=period, churn_after=churn_after)
    pd.testing.assert_frame_equal(stages, current_stages(panel))


def test_events_in_a_table_and_a_user_listed_twice(planted):
    """A table reference works like a frame; a user listed twice keeps their last segment, in
    both paths."""
    con = duckdb.connect()
    con.register("ev_view", planted.events)
    con.execute("CREATE TABLE ev AS SELECT * FROM ev_view")
    twice = pd.concat([planted.truth, planted.truth.head(50).assign(segment=3)])
    panel = build_panel(con, "ev", period="week", churn_after=4)
    sql = summarize_events(con, "ev", twice, period="week", churn_after=4)
    _check_same(summarize_panel(panel, twice), sql)
    once = summarize_events(con, "ev", planted.truth, period="week", churn_after=4)
    moved = (planted.truth.head(50)["segment"] != 3).sum()
    assert moved > 0 and sql.sizes[3] == once.sizes[3] + moved


def test_train_policy_same_q_table_from_summary_and_panel(planted):
    con = duckdb.connect()
    panel = build_panel(con, planted.events, period="week", churn_after=4)
    sql = summarize_events(con, planted.events, planted.truth, period="week", churn_after=4)
    learner = QLearner(episodes=40, n_users=2000)
    a = train_policy(panel, planted.truth, learner=learner, seed=3)
    b = train_policy(sql, None, learner=learner, seed=3)
    np.testing.assert_array_equal(a.q, b.q)
    pd.testing.assert_frame_equal(a.recommendations, b.recommendations)
    pd.testing.assert_frame_equal(a.projections, b.projections)
    pd.testing.assert_frame_equal(a.stability, b.stability)
    assert a.summary() == b.summary()
    assert a.settings == b.settings


def test_errors(planted):
    con = duckdb.connect()
    events = _tiny_events()
    with pytest.raises(InputError, match="share user ids"):
        summarize_events(con, events, pd.DataFrame({"user_id": ["zz"], "segment": [0]}))
    with pytest.raises(InputError, match="segment"):
        summarize_events(con, events, pd.DataFrame({"user": ["a"]}))
    # Only users seen in a single period: nothing to count.
    only_c = summarize_events(
        con, events, pd.DataFrame({"user_id": ["c"], "segment": [1]}), period="week"
    )
    with pytest.raises(InputError, match="no consecutive periods"):
        estimate_mdp(only_c)
    summary = summarize_events(con, events, TINY_ASSIGN, period="week", churn_after=3)
    campaigns = pd.DataFrame({"user_id": ["a"], "t": [1], "action": ["discount"]})
    with pytest.raises(InputError, match="panel itself"):
        train_policy(summary, TINY_ASSIGN, campaigns=campaigns)
    with pytest.raises(InputError, match="summarize_panel"):
        estimate_mdp(summary, campaigns=campaigns)
    with pytest.raises(InputError, match="churn_after"):
        summarize_events(con, events, TINY_ASSIGN, churn_after=1)
    with pytest.raises(InputError, match="assignments"):
        train_policy(build_panel(con, events, period="week"), None)


def test_campaign_log_summary_counts_each_logged_action(planted):
    """With a campaign log (the pandas path) the same transitions are split by action."""
    con = duckdb.connect()
    panel = build_panel(con, planted.events, period="week", churn_after=4)
    campaigns = period_of(con, planted.campaigns, period_grid(con, planted.events, "week"))
    logged = summarize_panel(panel, planted.truth, campaigns)
    plain = summarize_panel(panel, planted.truth)
    assert logged.campaign_log and not plain.campaign_log
    assert set(logged.transitions["action"]) == {
        "none", "recommendation", "engagement", "discount",
    }  # fmt: skip
    keys = ["segment", "stage", "next_stage"]
    merged = logged.transitions.groupby(keys, sort=False)["n"].sum().reset_index()
    pd.testing.assert_frame_equal(merged, plain.transitions[[*keys, "n"]])


# -- the command line without a campaign log ------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from retention.pipeline import PipelineConfig, run_pipeline

    folder = tmp_path_factory.mktemp("planted_sql")
    planted = make_planted(n_users=600, n_periods=26, seed=4)
    planted.events.to_csv(folder / "orders.csv", index=False)
    config = PipelineConfig(
        input=folder / "orders.csv",
        segments=3,
        seed=2,
        episodes=60,
        workspace=tmp_path_factory.mktemp("ws_sql"),
    )
    out = tmp_path_factory.mktemp("out_sql") / "result"

    def no_panel(*args, **kwargs):
        raise AssertionError("the pipeline built the pandas panel without a campaign log")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("retention.policy_runs.build_panel", no_panel)
        run_pipeline(config, out)
    return config, out


def test_pipeline_policy_and_users_equal_the_pandas_path(pipeline_run):
    from retention.learn import QLearner
    from retention.policy import train_policy
    from retention.results import segment_names, stored_strategies
    from retention.runs import load_segmentation
    from retention.workspace import Workspace

    config, out = pipeline_run
    summary = json.loads((out / "summary.json").read_text())
    ids = summary["workspace"]
    ws = Workspace(config.workspace)
    try:
        segmentation = load_segmentation(ws, ids["segmentation_run"])
        con, events = ws.cursor(), ws.table(ids["dataset"], "events")
        period = summary["period"]
        panel = build_panel(con, events, period=period, churn_after=config.churn_after)
        # The pandas path: the same training on the pandas panel.
        pandas_policy = train_policy(
            panel, segmentation.assignments, reward=config.reward(), seed=config.seed,
            learner=QLearner(episodes=config.episodes) if config.episodes else None,
        )  # fmt: skip
        expected = json.loads(json.dumps(pandas_policy.summary()["policy"]))
        assert summary["policy"] == expected
        names = segment_names(ws, ids["segmentation_run"], segmentation)
        per_user = user_actions(
            current_stages(panel), segmentation.assignments, pandas_policy.recommendations, names
        )
        written = pd.read_csv(out / "user_segments.csv", dtype={"user_id": str})
        assert written["stage"].tolist() == per_user["stage"].tolist()
        assert written["recommended_action"].tolist() == per_user["recommended_action"].tolist()
        stored = stored_strategies(
            ws, ids["dataset"], ids["segmentation_run"], ids["policy_run"], names
        )
        pd.testing.assert_frame_equal(stored.per_user, per_user)
    finally:
        ws.close()

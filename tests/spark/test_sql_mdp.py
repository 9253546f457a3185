"""Differential tests: the MDP's transition sums (``mdp.summarize_events``) and the arrays of the
MDP built from them, campaign periods, current stages from the shared per-user facts, and the
validation counts — DuckDB and Spark on the same generated inputs, compared exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention import mdp, periods, user_pass
from tests.spark.compare import assert_same, assert_same_frame


def test_transition_sums_and_mdp_arrays_are_the_same(engines, assignments):
    con, cur = engines
    for period in ("week", "day"):
        duck = mdp.summarize_events(con, "events", assignments, period=period, churn_after=3)
        spark = mdp.summarize_events(cur, "events", assignments, period=period, churn_after=3)
        assert duck.transitions["n"].sum() > 0 and duck.current.sum() > 0
        assert_same(duck, spark, f"summary ({period})")
        a, b = mdp.mdp_from_summary(duck), mdp.mdp_from_summary(spark)
        for name in ("T", "R", "terminal", "start", "counts", "revenue"):
            assert_same(getattr(a, name), getattr(b, name), f"MDP {name} ({period})")
        assert (a.segments, a.stages, a.actions) == (b.segments, b.stages, b.actions)


def test_campaign_periods_current_stages_and_counts_are_the_same(engines, spark, events):
    con, cur = engines
    grid = periods.period_grid(con, "events", "week")
    rng = np.random.default_rng(3)
    campaigns = pd.DataFrame(
        {
            "user_id": rng.choice(events["user_id"].unique(), 60),
            "ts": grid.origin + pd.to_timedelta(rng.integers(-3 * 86400, 90 * 86400, 60), unit="s"),
            "action": rng.choice(["discount", "it's new"], 60),
            "propensity": rng.uniform(0.1, 0.9, 60),
        }
    ).astype({"ts": "datetime64[us]"})
    con.register("campaigns", campaigns)
    cur.register("campaigns", campaigns)
    try:
        assert_same_frame(
            periods.period_of(con, "campaigns", grid),
            periods.period_of(cur, "campaigns", grid),
            what="campaign periods",
        )
        # The per-action counts of the experiment check (retention/pipeline.py, _experiment).
        sql = (
            "SELECT action, count(*) AS rows, CASE WHEN count(propensity) = count(*) "
            "THEN avg(propensity) END AS propensity FROM campaigns GROUP BY 1"
        )
        assert_same_frame(con.execute(sql).df(), cur.execute(sql).df(), sort=True, what="actions")
    finally:
        con.unregister("campaigns")
        cur.unregister("campaigns")

    user_pass.share_user_facts(True)
    try:
        duck = periods.user_stages(con, "events", period="week", churn_after=3)
        user_pass.share_user_facts(True)
        spark_stages = periods.user_stages(cur, "events", period="week", churn_after=3)
        assert_same_frame(duck, spark_stages, what="current stages (shared facts)")
        assert_same(
            periods.period_grid(con, "events", "month"),
            periods.period_grid(cur, "events", "month"),
            "grid (shared facts)",
        )
    finally:
        user_pass.share_user_facts(False)

    # The validation counts over an ingested table (retention/ingest/validate.py's _stats SQL).
    from retention.ingest.validate import _stats

    table = events.assign(action=np.where(events.index % 3 == 0, "discount", None))
    table.loc[: len(table) // 2, "user_id"] = (
        table.loc[: len(table) // 2, "user_id"].str.len().astype(str)
    )
    assert _stats(cur, table, True) == _stats(con, table, True)

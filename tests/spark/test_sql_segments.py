"""Differential tests: cohorts, retention by segment, Kaplan–Meier curves, segment features and
groups — DuckDB and Spark on the same generated events, compared exactly (curves to 1e-9)."""

from __future__ import annotations

import numpy as np

from retention import cohorts, user_pass
from retention.segments import features
from retention.segments.pipeline import dataset_text_model
from retention.segments.settings import SegmentSettings
from tests.spark.compare import assert_same, assert_same_frame


def test_cohorts_curves_and_groups_are_the_same(engines, assignments):
    con, cur = engines
    for mode in ("classic", "unbounded"):
        duck = cohorts.cohort_table(con, "events", period="week", mode=mode)
        assert duck.counts.to_numpy()[0, 0] > 0
        assert_same(duck, cohorts.cohort_table(cur, "events", period="week", mode=mode), mode)
    some = sorted(assignments["user_id"])[:40]
    assert_same(
        cohorts.cohort_table(con, "events", period="month", user_ids=some),
        cohorts.cohort_table(cur, "events", period="month", user_ids=some),
        "cohorts of some users",
    )
    assert_same(
        cohorts.retention_by_segment(con, "events", assignments, period="week"),
        cohorts.retention_by_segment(cur, "events", assignments, period="week"),
        "retention by segment",
    )
    duck = cohorts.retention_curves(con, "events", period="week", churn_after=3, by=assignments)
    spark = cohorts.retention_curves(cur, "events", period="week", churn_after=3, by=assignments)
    assert len(duck.groups) >= 4
    assert_same(duck, spark, "Kaplan-Meier")
    assert_same(
        cohorts.retention_summary(con, "events", period="week", assignments=assignments),
        cohorts.retention_summary(cur, "events", period="week", assignments=assignments),
        "summary.json retention",
    )
    assert cohorts.categorical_columns(cur, "events") == cohorts.categorical_columns(con, "events")
    assert_same(
        cohorts.user_groups(con, "events", "country", top_n=3),
        cohorts.user_groups(cur, "events", "country", top_n=3),
        "groups by country",
    )


def test_segment_features_are_the_same(engines):
    con, cur = engines
    duck = features.aggregate_users(con, '"events"')
    spark = features.aggregate_users(cur, '"events"')
    assert duck.users["monetary"].eq(0).any() and len(duck.items) > len(duck.users)
    assert_same_frame(duck.users, spark.users, what="features")
    # A user's items come in no particular order (UserData): compared sorted.
    assert_same_frame(duck.items, spark.items, sort=True, what="items")
    np.testing.assert_array_equal(spark.texts, duck.texts)
    assert spark.has_amount == duck.has_amount
    assert features.has_text(cur, '"events"') and features.has_text(con, '"events"')
    settings = SegmentSettings()
    assert (
        dataset_text_model(cur, '"events"', settings).model_id
        == dataset_text_model(con, '"events"', settings).model_id
    )
    # The command's shared per-user pass (facts computed once, then registered per step).
    user_pass.share_user_facts(True)
    try:
        shared_duck = features.aggregate_users(con, '"events"')
        user_pass.share_user_facts(True)  # forget DuckDB's facts: Spark computes its own
        shared_spark = features.aggregate_users(cur, '"events"')
        assert_same_frame(shared_duck.users, shared_spark.users, what="features (shared facts)")
        assert_same_frame(shared_duck.users, duck.users, what="shared facts = direct")
    finally:
        user_pass.share_user_facts(False)

"""A dataset made by ``retention run --engine spark`` keeps its events in Spark (issue 15): the
workspace holds its record and an events table with the columns and no rows. The pages say so in
plain words; the pages that work from the events stop there instead of failing or showing empty
charts."""

from __future__ import annotations

import pytest

from tests.app.conftest import make_app


@pytest.fixture
def spark_dataset(app_workspace):
    """A dataset record as the Spark command stores it: validation report and engine record,
    no event rows in the workspace."""
    from retention.ingest import prepare
    from retention.synth import make_planted

    events = make_planted(n_users=60, n_periods=8, seed=3).events
    mapping = {"user": "user_id", "time": "ts", "amount": "amount", "text": "text"}
    prepared = prepare(events, mapping, "events", source_name="events.parquet")
    report = prepared.report_dict()
    report["engine"] = {"name": "spark", "master": "sc://spark.example:15002",
                        "source": "lake.shop_events", "source_kind": "table"}  # fmt: skip
    empty = prepared.events.iloc[:0]
    dataset_id = app_workspace.save_dataset(
        name="lake.shop_events",
        source_name="lake.shop_events",
        sha256=None,
        shape="events",
        frames={"events": empty},
        mapping=prepared.mapping,
        report=report,
    )
    return dataset_id


def _texts(at) -> str:
    return " ".join(str(x.value) for x in [*at.info, *at.markdown, *at.caption])


@pytest.mark.parametrize(
    ("page", "stops"),
    [
        ("pages/3_retention.py", True),
        ("pages/6_test.py", True),
        ("pages/5_strategies.py", True),
        ("pages/2_segments.py", True),
        ("pages/4_policy.py", False),
    ],
)
def test_pages_say_the_events_live_in_spark(spark_dataset, page, stops):
    at = make_app(page)
    assert not at.exception, [e.value for e in at.exception]
    shown = _texts(at)
    assert "This dataset's events live in Spark (table lake.shop_events" in shown
    assert "sc://spark.example:15002" in shown
    assert ("This page works from the events themselves" in shown) is stops
    if stops:  # nothing else of the page: no empty charts, no error
        assert not at.error and not at.get("plotly_chart")
    # A dataset read from a file has no such note.
    assert all("live in Spark" not in str(x.value) for x in at.error)


def test_a_duckdb_dataset_gets_no_spark_note(planted_dataset):
    at = make_app("pages/3_retention.py")
    assert not at.exception and "live in Spark" not in _texts(at)


def test_pickers_and_the_data_page_mark_a_spark_dataset(
    spark_dataset, planted_dataset, app_workspace
):
    """The sidebar's and the Data page's dataset pickers mark the dataset whose events live in
    Spark; the Data page offers its policy, not "Find segments in it" (the Segments page would
    only stop with the note)."""
    app_workspace.set_meta("ui.last_dataset", spark_dataset)  # the person's last choice
    at = make_app()  # the sidebar, on the app's first page
    sidebar = at.sidebar.selectbox[0]
    assert sidebar.value == spark_dataset
    assert [label.endswith(" (Spark)") for label in sidebar.options].count(True) == 1
    assert sidebar.options[sidebar.index].endswith(" (Spark)")
    at = make_app("pages/1_data.py")
    assert not at.exception, [e.value for e in at.exception]
    manage = at.selectbox(key="manage.target")
    assert manage.options[manage.index].endswith(" (Spark)")
    links = [link.label for link in at.get("page_link")]
    assert "See the policy the command computed" in links
    assert "Find segments in it" not in links
    assert "events kept in Spark, not here" in _texts(at)

    app_workspace.set_meta("ui.last_dataset", planted_dataset)
    at = make_app()
    sidebar = at.sidebar.selectbox[0]
    assert sidebar.value == planted_dataset
    assert not sidebar.options[sidebar.index].endswith(" (Spark)")
    at = make_app("pages/1_data.py")
    links = [link.label for link in at.get("page_link")]
    assert "Find segments in it" in links
    assert "See the policy the command computed" not in links

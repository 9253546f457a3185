"""The compact events behind the retention analyses (retention.compact): a dataset table gets
its copy built once, stored next to it and reused; a changed or replaced table gets a new one;
and every analysis over a stored copy agrees with the pandas oracle of test_analyses."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention import compact
from retention.analyses import (
    ACQUISITION,
    Definition,
    cell_users,
    property_groups,
    retention_matrix,
)
from retention.workspace import Workspace
from tests.unit.test_analyses import oracle, tiny
from tests.unit.test_analyses import planted as planted  # noqa: F401 -- the fixture


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def stored_tables(con) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '_rx_') ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def as_table(con, frame: pd.DataFrame, name: str = "events") -> str:
    con.register("_frame", frame)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")  # noqa: S608
    con.unregister("_frame")
    return name


@pytest.mark.parametrize("period", ["week", "month", "day"])
@pytest.mark.parametrize(
    "definition",
    [Definition(), Definition(start_event="review", return_event="purchase")],
    ids=["any", "review-purchase"],
)
def test_a_stored_copy_agrees_with_pandas(con, planted, period, definition) -> None:  # noqa: F811
    table = as_table(con, planted)
    truth = oracle(planted, definition, period)
    for _ in range(2):  # built and stored, then reused
        m = retention_matrix(con, table, period=period, definition=definition)
        cells = m.cells.set_index(["cohort_t", "column"])
        got = cells["returned"][cells["returned"] > 0].sort_index()
        expected = truth["classic"].rename_axis(["cohort_t", "column"]).astype("int64")
        pd.testing.assert_series_equal(got, expected.sort_index(), check_names=False)
        rev = cells["revenue"][cells["revenue"] != 0].sort_index()
        expected_rev = truth["revenue"][truth["revenue"] != 0].rename_axis(["cohort_t", "column"])
        pd.testing.assert_series_equal(
            rev, expected_rev.sort_index(), check_names=False, check_dtype=False
        )
    assert compact.is_stored(con, table)


def test_unbounded_brackets_and_cells_over_a_stored_copy(con, planted) -> None:  # noqa: F811
    table = as_table(con, planted)
    truth = oracle(planted, Definition())
    m = retention_matrix(con, table, period="week", mode="unbounded")
    last = truth["last_k"]
    for (cohort_t, k), n in m.cells.set_index(["cohort_t", "column"])["returned"].items():
        mine = last[last["cohort"] == cohort_t]
        assert n == int((mine["k"] >= k).sum())
    b = retention_matrix(con, table, period="week", mode="brackets")
    got = b.cells.set_index(["cohort_t", "column"])["returned"]
    expected = truth["brackets"]
    for (cohort_t, i), n in expected.items():
        assert got[(cohort_t, int(i))] == n
    assert got.sum() == expected.sum()
    # One cell's users: those of the pandas oracle, from the stored copy as from the frame.
    cohort = m.cells["cohort"].iloc[0]
    ids = cell_users(con, table, cohort, 2, period="week")
    assert ids == cell_users(con, planted, cohort, 2, period="week")
    assert len(ids) == truth["classic"][(0, 2)]


def test_property_groups_from_the_stored_copy_match_the_frame(con, planted) -> None:  # noqa: F811
    table = as_table(con, planted)
    for prop in (ACQUISITION, "first:text"):
        stored = property_groups(con, table, prop, top_n=3)
        direct = property_groups(con, planted, prop, top_n=3)
        pd.testing.assert_frame_equal(stored, direct)
        assert list(stored["user_id"]) == sorted(stored["user_id"])


def test_built_once_and_kept_in_memory(con) -> None:
    table = as_table(con, tiny())
    compact.forget_memory()
    first = compact.compact_events(con, table)
    names = stored_tables(con)
    assert len(names) == 4 and all("events" in n for n in names)
    assert compact.compact_events(con, table) is first  # no second build, no second read
    compact.forget_memory()
    again = compact.compact_events(con, table)  # read back from the stored copy
    assert again is not first and stored_tables(con) == names
    assert list(again.user_ids) == ["A", "B", "C", "D"]
    assert again.kinds == ("purchase", "review", "view")
    assert again.firsts["text"].tolist() == ["mug", "lamp", "rug", "rug"]


def test_a_changed_or_replaced_table_gets_a_new_copy(con) -> None:
    table = as_table(con, tiny())
    d = Definition(start_event="purchase", return_event="purchase")
    before = retention_matrix(con, table, period="week", definition=d).sizes().sum()
    assert before == 3
    old = stored_tables(con)
    # More rows: a new user's purchase.
    con.execute("INSERT INTO events VALUES ('E', TIMESTAMP '2024-01-02 09:00', 'purchase', 9, 'x')")
    assert retention_matrix(con, table, period="week", definition=d).sizes().sum() == 4
    assert stored_tables(con) != old and len(stored_tables(con)) == 4  # the old copy dropped
    # The same name, other rows (as many): a new table, a new copy.
    other = tiny().assign(event="view")
    other.loc[0, "user_id"] = "Z"
    other = pd.concat([other, other.iloc[[0]].assign(event="purchase")], ignore_index=True)
    as_table(con, other)
    m = retention_matrix(con, table, period="week", definition=d)
    assert m.sizes().sum() == 1
    assert len(stored_tables(con)) == 4


def test_a_view_is_read_without_storing(con) -> None:
    as_table(con, tiny())
    con.execute("CREATE VIEW ev_view AS SELECT * FROM events WHERE user_id <> 'D'")
    m = retention_matrix(con, "ev_view", period="week")
    assert m.sizes().sum() == 3 and stored_tables(con) == []


def test_deleting_a_dataset_drops_its_copy(tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    frame = tiny().assign(ts=lambda f: f["ts"].astype("datetime64[us]"))
    dataset_id = ws.save_dataset(
        name="t", source_name=None, sha256=None, shape="events", frames={"events": frame},
        mapping={}, report={},
    )  # fmt: skip
    con, table = ws.cursor(), ws.table(dataset_id, "events")
    m = retention_matrix(con, table, period="week", mode="brackets", brackets=((1, 7), (8, 30)))
    assert m.sizes().sum() == 4 and len(stored_tables(con)) == 4
    ws.delete_dataset(dataset_id)
    assert stored_tables(ws.cursor()) == []
    ws.close()


def test_compact_arrays_are_sorted_by_user_and_time(con) -> None:
    shuffled = tiny().sample(frac=1.0, random_state=1)
    table = as_table(con, shuffled)
    c = compact.compact_events(con, table)
    assert (np.diff(c.uid) >= 0).all()
    same_user = c.uid[1:] == c.uid[:-1]
    assert (c.ts[1:] >= c.ts[:-1])[same_user].all()
    assert c.day[0] == (pd.Timestamp("2024-01-01") - pd.Timestamp("1970-01-01")).days
    assert c.amount.sum() == pytest.approx(120.0)
    assert compact.day_number(pd.Timestamp(date(2024, 1, 1))) == c.day[0]

"""The retention figures mark what is not final: the cohort triangle's last, incomplete period."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from retention.charts.retention import cohort_heatmap, incomplete_cells
from retention.cohorts import cohort_table


def _log(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": [u for u, _ in rows], "ts": pd.to_datetime([t for _, t in rows])}
    )


# Monthly, January to March 2024. a: January and March; b: February and March; c: January.
# The data ends on Sunday 10 March: March (the last period) holds a third of its days.
MID_MARCH = _log(
    [
        ("a", "2024-01-05 10:00"),
        ("a", "2024-03-02 10:00"),
        ("b", "2024-02-07 10:00"),
        ("b", "2024-03-10 10:00"),
        ("c", "2024-01-20 10:00"),
    ]
)


def test_the_last_incomplete_period_is_marked_on_the_triangle() -> None:
    con = duckdb.connect()
    table = cohort_table(con, MID_MARCH, period="month")
    # Rows: the January cohort (a, c) and the February cohort (b); columns k = 0, 1, 2.
    np.testing.assert_array_equal(
        incomplete_cells(table), [[False, False, True], [False, True, False]]
    )
    fig = cohort_heatmap(table)
    main, grey = fig.data
    assert grey.name == "incomplete"
    # The March cells: half of January's cohort (a), all of February's (b); not in the main trace.
    assert grey.z[0][2] == 0.5 and grey.z[1][1] == 1.0
    assert np.isnan(main.z[0][2]) and np.isnan(main.z[1][1])
    assert main.z[0][0] == 1.0 and main.z[0][1] == 0.0 and np.isnan(grey.z[0][0])
    note = "2024-03 is incomplete: the data ends on 2024-03-10"
    assert note in fig.layout.title.text
    assert note in grey.hovertemplate
    assert fig.layout.yaxis.title.text == "Cohort (first month, users)"


def test_a_complete_last_period_is_not_marked() -> None:
    con = duckdb.connect()
    full = pd.concat([MID_MARCH, _log([("c", "2024-03-31 18:00")])], ignore_index=True)
    table = cohort_table(con, full, period="month")
    assert not incomplete_cells(table).any()
    fig = cohort_heatmap(table)
    assert len(fig.data) == 1
    assert "incomplete" not in fig.layout.title.text


def _weekly_log(weeks: int) -> pd.DataFrame:
    """One new user a week for ``weeks`` weeks, each back every later week: a full triangle
    of ``weeks`` cohorts × ``weeks`` columns."""
    start = pd.Timestamp("2024-01-01 10:00")  # a Monday
    rows = [
        (f"u{w}", str(start + pd.Timedelta(weeks=k))) for w in range(weeks) for k in range(w, weeks)
    ]
    return _log(rows)


def test_cell_numbers_are_written_only_where_they_can_be_read() -> None:
    """Up to 20 columns, 40 rows and 600 cells each cell carries its share as text; beyond that
    the text would be a few pixels high (the demo's 39 weekly columns: ~5 px), so only the
    colour and the hover carry it."""
    from retention.charts.retention import MAX_TEXT_COLUMNS, cell_text_shown

    con = duckdb.connect()
    small = cohort_heatmap(cohort_table(con, _weekly_log(12), period="week"))
    assert len(small.data[0].x) == 12 and small.data[0].texttemplate == "%{text}"
    assert small.data[0].text[0][0] == "100%"
    wide = cohort_heatmap(cohort_table(con, _weekly_log(MAX_TEXT_COLUMNS + 1), period="week"))
    assert len(wide.data[0].x) == MAX_TEXT_COLUMNS + 1
    assert all(trace.texttemplate is None for trace in wide.data)
    assert wide.data[0].hovertemplate  # the share is still there, on hover
    assert cell_text_shown(30, 20) and not cell_text_shown(31, 20)  # 620 cells > 600
    assert cell_text_shown(1, 20) and not cell_text_shown(1, 21)
    assert cell_text_shown(40, 15) and not cell_text_shown(41, 5)  # rows under ~18 px: no text

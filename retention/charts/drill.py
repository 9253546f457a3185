"""Clickable cells for the cohort heatmap (drill-down).

Plotly heatmaps cannot be selected (they have no ``selectedpoints``), so a click on a cell
would tell the app nothing. :func:`clickable_cells` lays one invisible square marker on each
cell of the heatmap; a click selects that marker, whose ``customdata`` names the cell (the
cohort's first day and the column). The selected cell is outlined.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from retention.analyses import INCOMPLETE, RetentionMatrix
from retention.words import period_word_singular

#: Marker size (px) of a cell's click target: about a cell of the default heatmap.
TARGET_SIZE = 26


def incomplete_words(matrix: RetentionMatrix) -> str:
    """What a not-yet-complete cell's hover says: why it will still grow."""
    grid = matrix.grid
    if matrix.mode != "brackets" and grid.ends_mid_period and grid.last_ts is not None:
        return (
            f"{grid.label(grid.last_t)} is incomplete: the data ends on {grid.last_ts:%Y-%m-%d}, "
            "so this cell will still grow"
        )
    return (
        "not yet complete: the data has not followed all of these users through this range of "
        "days, so it will still grow"
    )


def column_words(matrix: RetentionMatrix, column: int) -> str:
    """A column in words: "in week 2 after the start", "in the start week", "in week 2 or
    later after the start", "on days 8–30 after the start"."""
    if matrix.mode == "brackets":
        lo, hi = matrix.brackets[column]
        if lo == hi == 0:
            return "on their start day"
        return f"on {matrix.columns[column]} after the start"
    word = period_word_singular(matrix.period)
    later = " or later" if matrix.mode == "unbounded" else ""
    if column == 0:
        return f"in the start {word}{later}"
    return f"in {word} {column}{later} after the start"


def clickable_cells(fig: go.Figure, matrix: RetentionMatrix, group: str | None = None) -> go.Figure:
    """``fig`` (:func:`~retention.charts.retention.matrix_heatmap` of ``matrix`` and ``group``)
    with a click target on each filled cell.

    Each target's ``customdata`` is ``[cohort start (YYYY-MM-DD), column (periods since the
    start, or the day range's index), users retained, users followed there, share, the
    not-yet-complete note or "", the column in words]``; its hover (which takes over from the heatmap's) repeats the
    cell's numbers and says that a click lists the users."""
    heat = fig.data[0]
    ys = list(heat.y)
    counts = matrix.table(group, "count")
    shares = matrix.table(group, "percent")
    status = matrix.status(group).reindex(index=counts.index)
    cells = matrix.cells if group is None else matrix.cells[matrix.cells["group"] == group]
    observed = cells.groupby(["cohort", "column"])["observed"].sum()
    values = counts.to_numpy(dtype=float)
    rows, cols = np.nonzero(~np.isnan(values))
    if rows.size == 0:
        return fig
    note = incomplete_words(matrix)
    custom = []
    for r, c in zip(rows, cols, strict=True):
        cohort, column = counts.index[r], int(counts.columns[c])
        custom.append(
            [
                f"{cohort:%Y-%m-%d}",
                column,
                int(values[r, c]),
                int(observed.get((cohort, column), 0)),
                float(shares.iloc[r, c]),
                f"<br><i>{note}</i>" if status.iloc[r, c] == INCOMPLETE else "",
                column_words(matrix, column),
            ]
        )
    fig.add_trace(
        go.Scatter(
            x=[matrix.columns[int(counts.columns[c])] for c in cols],
            y=[ys[r] for r in rows],
            mode="markers",
            marker={
                "symbol": "square",
                "size": TARGET_SIZE,
                "color": "rgba(0,0,0,0)",
                "line": {"width": 0},
            },
            selected={"marker": {"color": "rgba(255,140,0,0.45)"}},
            unselected={"marker": {"opacity": 1}},
            customdata=custom,
            hovertemplate=(
                "cohort %{y}<br>%{customdata[6]}<br>"
                "%{customdata[4]:.1%} came back (%{customdata[2]:,} of %{customdata[3]:,} users)"
                "%{customdata[5]}"
                "<br><b>Click to list these users</b><extra></extra>"
            ),
            showlegend=False,
            name="cells",
        )
    )
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig

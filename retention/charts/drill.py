"""Clickable cells for the cohort heatmap (drill-down).

Plotly heatmaps cannot be selected (they have no ``selectedpoints``), so a click on a cell
would tell the app nothing. :func:`clickable_cells` lays one invisible square marker on each
cell of the triangle; a click selects that marker, whose ``customdata`` names the cell (the
cohort's first day and ``k``). The selected cell is outlined.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from retention.charts.retention import incomplete_cells, incomplete_note
from retention.cohorts import CohortTable
from retention.words import period_word

#: Marker size (px) of a cell's click target: about a cell of the default heatmap.
TARGET_SIZE = 26


def clickable_cells(fig: go.Figure, table: CohortTable) -> go.Figure:
    """``fig`` (the cohort heatmap of ``table``) with a click target on each filled cell.

    Each target's ``customdata`` is ``[cohort start (YYYY-MM-DD), k, users, cohort size,
    share, the incomplete-period note or ""]``; its hover (which takes over from the heatmap's) repeats the cell's numbers and
    says that a click lists the users."""
    heat = fig.data[0]
    ys = list(heat.y)
    words = period_word(table.period)
    counts = table.counts.to_numpy(dtype=float)
    rows, cols = np.nonzero(~np.isnan(counts))
    if rows.size == 0:
        return fig
    ks = [int(table.counts.columns[c]) for c in cols]
    sizes = table.sizes.to_numpy()
    rates = table.rates.to_numpy(dtype=float)
    partial, note = incomplete_cells(table), incomplete_note(table)
    custom = [
        [
            f"{table.counts.index[r]:%Y-%m-%d}", k, int(counts[r, c]), int(sizes[r]), rates[r, c],
            f"<br><i>{note}</i>" if partial[r, c] and note else "",
        ]
        for r, c, k in zip(rows, cols, ks, strict=True)
    ]  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=ks,
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
                "cohort %{y}<br>%{x} " + words + " later<br>"
                "%{customdata[4]:.1%} retained (%{customdata[2]:,} of %{customdata[3]:,} users)"
                "%{customdata[5]}"
                "<br><b>Click to list these users</b><extra></extra>"
            ),
            showlegend=False,
            name="cells",
        )
    )
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig

"""Retention figures: cohort heatmap triangle, Kaplan–Meier curves with bands, at-risk table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from retention.analyses import AVERAGE, TOTAL, RetentionMatrix
from retention.cohorts import CohortTable, Survival
from retention.periods import PeriodGrid
from retention.words import currency_unit, period_word, period_word_singular, segment_name

PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)


def _cohort_label(grid: PeriodGrid, start: pd.Timestamp) -> str:
    if grid.period == "month":
        return f"{start:%Y-%m}"
    if grid.period == "week":
        return f"wk {start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d}"


INCOMPLETE_COLOURS = [[0.0, "#f0f0f0"], [1.0, "#9e9e9e"]]


def incomplete_cells(table: CohortTable) -> np.ndarray:
    """Cells of the data's last period ``T`` (each cohort's last cell, the triangle's diagonal)
    when the data ends before that period does: their shares are not final. All False when the
    last period is complete."""
    rates = table.rates.to_numpy(dtype=float)
    mask = np.zeros(rates.shape, dtype=bool)
    if not table.grid.ends_mid_period or rates.size == 0:
        return mask
    known = ~np.isnan(rates)
    last = known.shape[1] - 1 - np.argmax(known[:, ::-1], axis=1)  # each row's last known cell
    rows = np.flatnonzero(known.any(axis=1))
    mask[rows, last[rows]] = True
    return mask


def incomplete_note(table: CohortTable) -> str | None:
    """ "2024-09 is incomplete: the data ends on 2024-09-18" when the last period is partial."""
    grid = table.grid
    if not grid.ends_mid_period or grid.last_ts is None:
        return None
    return (
        f"{grid.label(grid.last_t)} is incomplete: the data ends on {grid.last_ts:%Y-%m-%d}, so "
        "its shares (the grey diagonal) will still grow"
    )


def _percent_text(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), "", np.vectorize(lambda v: f"{v:.0%}")(np.nan_to_num(values)))


#: Cells get their number written in them up to this many columns: on the page's usual width
#: (1,400 px) a column is then at least ~40 px, room for "100%" at a readable size. Session 13:
#: weekly cohorts of the demo (39 columns, 858 cells) were written in ~5 px text nobody could
#: read (hiding it did not change the page's drawing cost measurably: it is for reading).
MAX_TEXT_COLUMNS = 20
#: ... and rows: the chart grows 28 px a row up to 900 px (:func:`matrix_heatmap`), so past 40
#: rows a row is under ~18 px, too short for its text (100 daily cohorts: ~7 px).
MAX_TEXT_ROWS = 40
#: ... and up to this many cells in all.
MAX_TEXT_CELLS = 600


def cell_text_shown(rows: int, columns: int) -> bool:
    """Whether a cohort heatmap of ``rows`` × ``columns`` writes each cell's number in it
    (else the colour and the hover say it)."""
    return (
        columns <= MAX_TEXT_COLUMNS and rows <= MAX_TEXT_ROWS and rows * columns <= MAX_TEXT_CELLS
    )


def _shares_heatmap(
    shares: np.ndarray,
    counts: np.ndarray,
    sizes: np.ndarray,
    partial: np.ndarray,
    *,
    x: list,
    y: list[str],
    text: np.ndarray,
    hover: str,
    partial_hover: str,
    partial_name: str,
) -> go.Figure:
    """Cohort rows × columns of shares retained, blue; the cells in ``partial`` (not yet fully
    observed) drawn grey on a second trace with ``partial_hover`` added to their hover."""
    custom = np.dstack([np.nan_to_num(counts), np.repeat(sizes[:, None], shares.shape[1], 1)])
    show_text = "%{text}" if cell_text_shown(*shares.shape) else None

    def trace(z: np.ndarray, **style) -> go.Heatmap:
        return go.Heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate=show_text,
            customdata=custom,
            zmin=0,
            zmax=1,
            hoverongaps=False,
            **style,
        )

    fig = go.Figure(
        trace(
            np.where(partial, np.nan, shares),
            colorscale="Blues",
            colorbar={"title": "retained", "tickformat": ".0%"},
            hovertemplate=hover + "<extra></extra>",
            name="retained",
        )
    )
    if partial.any():
        fig.add_trace(
            trace(
                np.where(partial, shares, np.nan),
                colorscale=INCOMPLETE_COLOURS,
                showscale=False,
                hovertemplate=hover + f"<br><i>{partial_hover}</i><extra></extra>",
                name=partial_name,
            )
        )
    return fig


def cohort_heatmap(table: CohortTable, *, title: str | None = None) -> go.Figure:
    """The cohort triangle as a heatmap: one row per cohort (labelled with its size), one column
    per period since first; cells show the share retained. When the data ends mid-period, the
    cells of that last period (the diagonal) are grey and say so on hover."""
    rates = table.rates
    words = period_word(table.period)
    y = [
        f"{_cohort_label(table.grid, c)} (n={n:,})"
        for c, n in zip(rates.index, table.sizes, strict=True)
    ]
    z = rates.to_numpy(dtype=float)
    hover = (
        "cohort %{y}<br>%{x} " + words + " later<br>"
        "%{z:.1%} retained (%{customdata[0]:,.0f} of %{customdata[1]:,.0f} users)"
    )
    note = incomplete_note(table)
    fig = _shares_heatmap(
        z,
        table.counts.to_numpy(dtype=float),
        table.sizes.to_numpy(),
        incomplete_cells(table),
        x=list(rates.columns),
        y=y,
        text=_percent_text(z),
        hover=hover,
        partial_hover=note or "",
        partial_name="incomplete",
    )
    mode = "active in that period" if table.mode == "classic" else "active then or later"
    heading = title or f"Cohort retention ({table.mode}: share {mode})"
    if note:
        heading += f"<br><sup>{note}</sup>"
    fig.update_layout(
        title=heading,
        xaxis_title=f"{words.capitalize()} since first activity",
        yaxis_title=f"Cohort (first {period_word_singular(table.period)}, users)",
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"dtick": 1 if z.shape[1] <= 30 else None},
        height=max(320, min(900, 28 * len(y) + 160)),
        margin={"l": 10, "r": 10, "t": 70 if note else 50, "b": 40},
    )
    return fig


def _rgba(color: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners of a Kaplan–Meier step line: each value holds from its ``x`` until the next
    one (``y[i]`` on ``[x[i], x[i+1])``), then drops. Drawn as straight lines, so the same path
    can be walked backwards (a band's lower edge) without moving its steps."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return x, y
    xs = np.empty(2 * len(x) - 1)
    ys = np.empty(2 * len(x) - 1)
    xs[0::2], ys[0::2] = x, y
    xs[1::2], ys[1::2] = x[1:], y[:-1]
    return xs, ys


def survival_figure(surv: Survival, *, title: str | None = None, bands: bool = True) -> go.Figure:
    """Kaplan–Meier curves (share not yet churned) per group, as steps, with confidence bands."""
    words = period_word(surv.period)
    fig = go.Figure()
    for i, group in enumerate(surv.groups):
        curve = surv.curve(group)
        color = PALETTE[i % len(PALETTE)]
        k = curve.index.to_numpy()
        name = f"{group} (n={int(surv.sizes[group]):,})"
        if bands:
            # The band is one closed shape: the upper edge's steps forward, then the lower
            # edge's steps backward (plotly's "hv" shape would step early when walked back).
            ux, uy = steps(k, curve["upper"].to_numpy())
            lx, ly = steps(k, curve["lower"].to_numpy())
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([ux, lx[::-1]]),
                    y=np.concatenate([uy, ly[::-1]]),
                    mode="lines",  # no corner markers on short curves
                    fill="toself",
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=group,
                    name=f"{group} band",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=k,
                y=curve["survival"],
                mode="lines",
                line={"color": color, "shape": "hv", "width": 2},
                name=name,
                legendgroup=group,
                customdata=np.stack([curve["lower"], curve["upper"], curve["at_risk"]], axis=-1),
                hovertemplate=(
                    f"{group}<br>after %{{x}} {words}: %{{y:.1%}} not yet churned"
                    "<br>95% band %{customdata[0]:.1%}–%{customdata[1]:.1%}"
                    "<br>%{customdata[2]:,} users still followed<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=title
        or f"Share of users not yet churned (churned = {surv.churn_after} {words} inactive)",
        xaxis_title=f"{words.capitalize()} since first activity",
        yaxis={"title": "Not yet churned", "tickformat": ".0%", "range": [0, 1.02]},
        legend={"title": None},
        hovermode="closest",
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return fig


def at_risk_columns(surv: Survival, max_columns: int = 12) -> list[int]:
    """Evenly spaced periods for an at-risk table that fits on screen."""
    n = surv.at_risk.shape[1]
    step = max(1, int(np.ceil(n / max_columns)))
    return list(range(0, n, step))


def at_risk_table(surv: Survival, max_columns: int = 12) -> pd.DataFrame:
    """Users still followed (at risk) per group at evenly spaced periods, as whole numbers, with
    columns named for a reader ("3 weeks")."""
    cols = at_risk_columns(surv, max_columns)
    table = surv.at_risk.reindex(columns=cols).fillna(0).astype("int64")
    table.columns = [
        f"{c} {period_word(surv.period) if c != 1 else period_word_singular(surv.period)}"
        for c in cols
    ]
    table.index.name = "Group"
    return table


def at_risk_figure(surv: Survival, *, max_columns: int = 12) -> go.Figure:
    """The number of users still followed (at risk) per group at evenly spaced periods."""
    cols = at_risk_columns(surv, max_columns)
    words = period_word(surv.period)
    table = surv.at_risk.reindex(columns=cols)
    cells = [list(table.index)] + [
        ["" if pd.isna(v) else f"{int(v):,}" for v in table[c]] for c in cols
    ]
    fig = go.Figure(
        go.Table(
            header={"values": ["Users at risk"] + [f"{c} {words}" for c in cols], "align": "left"},
            cells={"values": cells, "align": "left"},
        )
    )
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=60 + 30 * (len(table) + 1)
    )
    return fig


# -- retention analyses (retention.analyses) ---------------------------------------------------

#: What each measure of a retention line shows, for the axis (``{unit}``: the currency's).
MEASURE_AXES: dict[str, str] = {
    "percent": "Retained (% of the cohort)",
    "count": "Users retained",
    "revenue_retention": "Revenue (% of the first period's)",
    "ltv": "Revenue per user so far ({unit})",
}
AVERAGE_COLOUR = "#222222"


def column_title(matrix: RetentionMatrix) -> str:
    """The x axis of a matrix's columns: "Weeks since the start" or "Days since the start"."""
    if matrix.mode == "brackets":
        return "Days since the start (ranges)"
    return f"{period_word(matrix.period).capitalize()} since the start"


def _value_format(measure: str, unit: str) -> tuple[str, str]:
    """(hover format, tick format) of a measure."""
    if measure in ("percent", "revenue_retention"):
        return "%{y:.1%}", ".0%"
    if measure == "count":
        return "%{y:,.0f} users", ",.0f"
    return "%{y:,.2f} " + unit, ",.2f"


def retention_lines(
    matrix: RetentionMatrix,
    curves: pd.DataFrame,
    measure: str = "percent",
    *,
    title: str | None = None,
    unit: str = "",
) -> go.Figure:
    """One line per group (and the average, dark and dashed) over the matrix's columns, from
    :meth:`RetentionMatrix.curves`. Points that rest on cells the data has not fully observed
    yet are drawn as open circles on a dotted segment, and say so on hover: they are not a
    drop. ``unit``: the currency's, for the LTV measure."""
    labels = list(matrix.columns)
    hover_value, tick = _value_format(measure, unit)
    fig = go.Figure()
    lines = list(dict.fromkeys(curves["line"]))
    for i, line in enumerate(lines):
        part = curves[curves["line"] == line].sort_values("column")
        average = line in (AVERAGE, TOTAL)
        colour = AVERAGE_COLOUR if average else PALETTE[i % len(PALETTE)]
        x = [labels[c] for c in part["column"]]
        done = ~part["incomplete"].to_numpy()
        users = part["users"].to_numpy()
        solid_y = np.where(done, part["value"], np.nan)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=solid_y,
                mode="lines+markers",
                name=line,
                legendgroup=line,
                line={
                    "color": colour,
                    "width": 3 if average else 2,
                    "dash": "dash" if average else "solid",
                },  # fmt: skip
                marker={"size": 6},
                customdata=users,
                hovertemplate=(
                    f"{line}<br>%{{x}}: {hover_value}<br>over %{{customdata:,}} users"
                    "<extra></extra>"
                ),
            )
        )
        if not done.all():
            # The dotted tail: from the last complete point through the incomplete ones.
            idx = np.flatnonzero(~done)
            start = max(idx[0] - 1, 0) if done[: idx[0]].any() else idx[0]
            tail = part.iloc[start:]
            fig.add_trace(
                go.Scatter(
                    x=[labels[c] for c in tail["column"]],
                    y=tail["value"],
                    mode="lines+markers",
                    name=f"{line} (not yet complete)",
                    legendgroup=line,
                    showlegend=False,
                    line={"color": colour, "width": 1.5, "dash": "dot"},
                    marker={
                        "size": 8,
                        "symbol": "circle-open",
                        "opacity": [0 if d else 1 for d in ~tail["incomplete"].to_numpy()],
                    },  # fmt: skip
                    customdata=tail["users"],
                    hovertemplate=(
                        f"{line}<br>%{{x}}: {hover_value}<br>over %{{customdata:,}} users<br>"
                        "<i>not yet complete: the data has not followed these users through "
                        "all of it, so it will still grow</i><extra></extra>"
                    ),
                )
            )
    fig.update_layout(
        title=title,
        xaxis={"title": column_title(matrix), "type": "category"},
        yaxis={
            "title": MEASURE_AXES[measure].format(unit=unit or "your data's currency"),
            "tickformat": tick,
            "rangemode": "tozero",
        },
        legend={"title": None},
        hovermode="closest",
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 40},
    )
    return fig


def matrix_heatmap(
    matrix: RetentionMatrix,
    group: str | None = None,
    measure: str = "percent",
    *,
    title: str | None = None,
) -> go.Figure:
    """The cohort × column table of a matrix (one group or all users) as a heatmap: each row a
    cohort labelled with its size, cells the share retained (``percent``) or the users
    (``count``). Cells the data has not fully observed yet are grey and say so on hover."""
    shares = matrix.table(group, "percent")
    counts = matrix.table(group, "count")
    status = matrix.status(group).reindex(index=shares.index)
    sizes = matrix.sizes(group).reindex(shares.index)
    # Columns no cohort reached are left out (a later cohort start from the date range).
    keep = [c for c in shares.columns if shares[c].notna().any()]
    shares, counts, status = shares[keep], counts[keep], status[keep]
    x = [matrix.columns[c] for c in keep]
    y = [f"{_cohort_label(matrix.grid, c)} (n={int(n):,})" for c, n in sizes.items()]
    z = shares.to_numpy(dtype=float)
    c = counts.to_numpy(dtype=float)
    partial = status.to_numpy() == "incomplete"
    if measure == "count":
        text = np.where(np.isnan(c), "", np.vectorize(lambda v: f"{v:,.0f}")(np.nan_to_num(c)))
    else:
        text = _percent_text(z)
    hover = (
        "cohort %{y}<br>%{x}<br>%{z:.1%} retained "
        "(%{customdata[0]:,.0f} of %{customdata[1]:,.0f} users)"
    )
    fig = _shares_heatmap(
        z,
        c,
        sizes.to_numpy(),
        partial,
        x=x,
        y=y,
        text=text,
        hover=hover,
        partial_hover="not yet complete: the data has not followed all of these users through "
        "this cell, so it will still grow",
        partial_name="not yet complete",
    )
    fig.update_layout(
        title=title,
        xaxis={"title": column_title(matrix), "type": "category"},
        yaxis={
            "title": f"Cohort (start {period_word_singular(matrix.period)}, users)",
            "autorange": "reversed",
            "type": "category",
        },
        height=max(320, min(900, 28 * len(y) + 160)),
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 40},
    )
    return fig


def segment_lines_figures(
    matrix: RetentionMatrix, names: Mapping[int, str], currency: str | None = None
) -> list[go.Figure]:
    """The report's retention analyses by segment (a :func:`~retention.analyses.segment_matrix`,
    groups are segment ids): retention, revenue retention and revenue per user (LTV), one line
    per segment (by its display name) and the average."""

    def named(curves: pd.DataFrame) -> pd.DataFrame:
        label = {g: segment_name(names, int(g)) for g in matrix.groups}
        return curves.assign(line=curves["line"].map(lambda g: label.get(g, g)))

    unit = currency_unit(currency)
    figures = [
        retention_lines(
            matrix,
            named(matrix.curves("percent")),
            "percent",
            title=f"Share of each segment that came back, by {period_word(matrix.period)} "
            "since the start",
        )
    ]
    if float(matrix.cells["revenue"].abs().sum()) > 0:
        figures.append(
            retention_lines(
                matrix,
                named(matrix.curves("revenue_retention")),
                "revenue_retention",
                title="Revenue retention (revenue as a share of the first period's)",
            )
        )
        figures.append(
            retention_lines(
                matrix,
                named(matrix.curves("ltv")),
                "ltv",
                title=f"Revenue per user so far (LTV, {unit})",
                unit=unit,
            )
        )
    return figures

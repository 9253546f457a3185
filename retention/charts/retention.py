"""Retention figures: cohort heatmap triangle, Kaplan–Meier curves with bands, at-risk table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from retention.cohorts import CohortTable, Survival
from retention.periods import PeriodGrid
from retention.words import period_word

PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)


def _cohort_label(grid: PeriodGrid, start: pd.Timestamp) -> str:
    if grid.period == "month":
        return f"{start:%Y-%m}"
    if grid.period == "week":
        return f"wk {start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d}"


def cohort_heatmap(table: CohortTable, *, title: str | None = None) -> go.Figure:
    """The cohort triangle as a heatmap: one row per cohort (labelled with its size), one column
    per period since first; cells show the share retained."""
    rates = table.rates
    words = period_word(table.period)
    y = [
        f"{_cohort_label(table.grid, c)} (n={n:,})"
        for c, n in zip(rates.index, table.sizes, strict=True)
    ]
    z = rates.to_numpy(dtype=float)
    counts = table.counts.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.0%}")(np.nan_to_num(z)))
    custom = np.dstack(
        [np.nan_to_num(counts), np.repeat(table.sizes.to_numpy()[:, None], z.shape[1], 1)]
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(rates.columns),
            y=y,
            text=text,
            texttemplate="%{text}" if z.size <= 900 else None,
            customdata=custom,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hoverongaps=False,
            colorbar={"title": "retained", "tickformat": ".0%"},
            hovertemplate=(
                "cohort %{y}<br>%{x} " + words + " later<br>"
                "%{z:.1%} retained (%{customdata[0]:,.0f} of %{customdata[1]:,.0f} users)"
                "<extra></extra>"
            ),
        )
    )
    mode = "active in that period" if table.mode == "classic" else "active then or later"
    fig.update_layout(
        title=title or f"Cohort retention ({table.mode}: share {mode})",
        xaxis_title=f"{words.capitalize()} since first activity",
        yaxis_title="Cohort (first period, users)",
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"dtick": 1 if z.shape[1] <= 30 else None},
        height=max(320, min(900, 28 * len(y) + 140)),
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
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
    table.columns = [f"{c} {period_word(surv.period)}" for c in cols]
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

"""Test figures (issue 13): the measured effect of each strategy per segment and stage.

Builders take :func:`retention.experiment.measure_effects`' table, so the Test page and the
tests draw the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from retention.mdp import STAGES
from retention.words import segment_display_name


def effects_figure(
    effects: pd.DataFrame, names: Mapping[int, str] | None = None, one: str = "period"
) -> go.Figure:
    """Measured change of the chance of being active next period (%), with 95% intervals: one
    row per segment × stage, one colour per strategy; 0 is doing nothing."""
    names = dict(names or {})
    fig = go.Figure()
    order = {s: i for i, s in enumerate(STAGES)}
    e = effects.sort_values(
        ["segment", "stage"], key=lambda c: c.map(order) if c.name == "stage" else c
    )
    from retention.strategies import stage_words

    label = [f"{names.get(int(g), segment_display_name(int(g)))} · {stage_words(st, one)}" for g, st in
             zip(e["segment"], e["stage"], strict=True)]  # fmt: skip
    e = e.assign(label=label)
    for action, part in e.groupby("action", sort=False):
        change = 100 * (part["lift"] - 1)
        fig.add_trace(
            go.Scatter(
                x=change,
                y=part["label"],
                mode="markers",
                name=str(action),
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": 100 * (part["ci_hi"] - part["lift"]),
                    "arrayminus": 100 * (part["lift"] - part["ci_lo"]),
                },
                hovertemplate=f"{action}: %{{x:+.0f}}%<extra>%{{y}}</extra>",
            )
        )
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    fig.update_layout(
        title=f"Measured effect on the chance of being active the next {one} (95% intervals)",
        xaxis_title="change vs doing nothing (%)",
        yaxis={"autorange": "reversed"},
        height=max(300, 28 * e["label"].nunique() + 120),
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return fig

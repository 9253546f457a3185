"""Campaign-log figures: where in the period the sends fall (issue 12).

Builders take the tables of :class:`retention.campaigns.CampaignChecks` (or their stored
``to_dict`` form), so the Policy page, the report and the tests draw the same.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def send_time_histogram(send_times: pd.DataFrame, period: str = "period") -> go.Figure:
    """Bars of the share of sends per part of the period (weekday for weeks), labelled with the
    same share the axis shows (the count of sends is on hover)."""
    fig = go.Figure(
        go.Bar(
            x=send_times["label"],
            y=100 * send_times["share"],
            text=[f"{100 * s:.0f}%" for s in send_times["share"]],
            customdata=send_times["sends"].astype(int),
            hovertemplate="%{x}: %{y:.1f}% of sends (%{customdata:,} sends)<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"When in the {period} the campaigns were sent",
        xaxis_title=f"part of the {period}",
        yaxis_title="share of sends (%)",
        height=300,
        margin={"l": 40, "r": 10, "t": 50, "b": 40},
    )
    return fig

"""Policy figures: learning curve, Q-table heatmap, policy map, projected retention, stability
map and the off-policy evaluation forest plot.

Every builder takes parts of a :class:`retention.learn.PolicyResult` (DataFrames and arrays, so a
run reopened from the workspace draws the same) and an optional ``names`` map segment -> display
name. Actions keep one colour everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from retention.words import segment_display_name, stage_rank, stage_word

ACTION_COLOURS: dict[str, str] = {
    "none": "#9e9e9e",
    "recommendation": "#1f77b4",
    "engagement": "#2ca02c",
    "discount": "#d62728",
}
_EXTRA = [c for c in qualitative.Plotly if c not in ACTION_COLOURS.values()]


def action_colours(actions: Sequence[str]) -> dict[str, str]:
    """A stable colour per action: the defaults for the four known ones, then a palette."""
    out, extra = {}, iter(_EXTRA * 3)
    for a in actions:
        out[a] = ACTION_COLOURS.get(a) or next(extra)
    return out


def _seg_name(segment: int, names: Mapping[int, str] | None) -> str:
    """A segment as the policy charts label it: its number (1-based, as on every page) and name."""
    if names and int(segment) in names:
        return f"{int(segment) + 1} · {names[int(segment)]}"
    return segment_display_name(segment)


def learning_curve(curve: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Value of the greedy policy (exact, from the users' starting mix) as training goes, with
    the value-iteration optimum as a dashed line, and the simulated users' mean return."""
    fig = go.Figure()
    if curve.empty:
        fig.add_annotation(
            text="No learning curve: this policy was not trained by simulation.", showarrow=False
        )
        return fig
    fig.add_scatter(
        x=curve["episode"],
        y=curve["greedy_value"],
        mode="lines+markers",
        name="learned policy (exact worth)",
        hovertemplate="training round %{x}<br>worth %{y:.3f} points per user<extra></extra>",
    )
    fig.add_scatter(
        x=curve["episode"],
        y=curve["mean_return"],
        mode="lines",
        name="simulated users while trying actions",
        line={"dash": "dot", "width": 1},
        opacity=0.6,
    )
    optimum = float(curve["optimal_value"].iloc[-1])
    fig.add_hline(
        y=optimum,
        line_dash="dash",
        line_color="black",
        annotation_text=f"best possible {optimum:.2f}",
        annotation_position="bottom right",
    )
    fig.update_layout(
        title=title or "Learning curve",
        xaxis_title="training round (episode)",
        yaxis_title="worth per user (points)",
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def _state_labels(frame: pd.DataFrame, names: Mapping[int, str] | None) -> list[str]:
    return [
        f"{_seg_name(g, names)} / {stage_word(st)}"
        for g, st in zip(frame["segment"], frame["stage"], strict=True)
    ]


def q_heatmap(
    recommendations: pd.DataFrame, actions: Sequence[str], names: Mapping[int, str] | None = None
) -> go.Figure:
    """The Q-table: one row per (segment, stage), one column per action; the chosen action of
    each row is marked with a star."""
    q = recommendations[[f"q_{a}" for a in actions]].to_numpy(dtype=float)
    labels = _state_labels(recommendations, names)
    chosen = recommendations["action"].to_numpy()
    text = [
        [f"{'★ ' if chosen[i] == a else ''}{q[i, j]:.2f}" for j, a in enumerate(actions)]
        for i in range(len(labels))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=q,
            x=list(actions),
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            colorbar={"title": "points<br>per user"},
            hovertemplate="%{y}<br>%{x}: worth %{z:.3f} points per user<extra></extra>",
        )
    )
    fig.update_layout(
        title="What each action is worth per user, in reward points (★ = the policy's choice)",
        yaxis={"autorange": "reversed"},
        height=max(320, 28 * len(labels) + 120),
    )
    return fig


def policy_map(
    recommendations: pd.DataFrame,
    actions: Sequence[str],
    names: Mapping[int, str] | None = None,
    *,
    title: str = "Recommended action per segment and stage",
) -> go.Figure:
    """Segment x stage -> recommended action, coloured by action (stages in lifecycle order)."""
    segs = list(dict.fromkeys(int(g) for g in recommendations["segment"]))
    stages = sorted(dict.fromkeys(recommendations["stage"]), key=stage_rank)
    pos = {a: i for i, a in enumerate(actions)}
    z = np.full((len(segs), len(stages)), np.nan)
    text = np.full((len(segs), len(stages)), "", dtype=object)
    for row in recommendations.itertuples(index=False):
        i, j = segs.index(int(row.segment)), stages.index(row.stage)
        z[i, j] = pos[row.action]
        text[i, j] = row.action
    colours = action_colours(actions)
    n = len(actions)
    scale = []
    for k, a in enumerate(actions):  # a step colour scale: one flat band per action
        scale += [[k / n, colours[a]], [(k + 1) / n, colours[a]]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[stage_word(st) for st in stages],
            y=[_seg_name(g, names) for g in segs],
            text=text,
            texttemplate="%{text}",
            colorscale=scale,
            zmin=-0.5,
            zmax=n - 0.5,
            showscale=False,
            xgap=3,
            ygap=3,
            hovertemplate="%{y}, %{x}: <b>%{text}</b><extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="stage of the user",
        yaxis={"autorange": "reversed"},
        height=max(260, 60 * len(segs) + 140),
    )
    return fig


def retention_projection(
    projections: pd.DataFrame,
    names: Mapping[int, str] | None = None,
    *,
    period_word: str = "periods",
) -> go.Figure:
    """Projected share of a segment's users active each period (a cohort active at period 0),
    under the learned policy vs doing nothing, always each action, and random; one panel per
    segment."""
    segs = list(dict.fromkeys(int(g) for g in projections["segment"]))
    policies = list(dict.fromkeys(projections["policy"]))
    cols = min(2, len(segs))
    rows = int(np.ceil(len(segs) / cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[_seg_name(g, names) for g in segs],
        shared_yaxes=True,
        vertical_spacing=min(0.3, 0.45 / rows),
        horizontal_spacing=0.06,
    )
    actions = [p.removeprefix("always ") for p in policies if p.startswith("always ")]
    colours = action_colours(actions)
    traces, where = [], []  # built as plain dicts, added at once: fast enough for a preview
    for k, g in enumerate(segs):
        part = projections[projections["segment"] == g]
        for p in policies:
            line = part[part["policy"] == p]
            if p.startswith("always "):
                style = {"color": colours[p.removeprefix("always ")], "width": 1.5, "dash": "dot"}
            elif p == "random":
                style = {"color": "#7f7f7f", "width": 1, "dash": "dash"}
            else:
                style = {"color": "black", "width": 3}
            traces.append(
                {
                    "type": "scatter",
                    "x": line["period"].to_numpy(),
                    "y": line["active_share"].to_numpy(),
                    "mode": "lines",
                    "name": p,
                    "line": style,
                    "legendgroup": p,
                    "showlegend": k == 0,
                    "hovertemplate": f"{p}<br>{period_word} %{{x}}: %{{y:.1%}} active<extra></extra>",
                }
            )
            where.append((k // cols + 1, k % cols + 1))
    fig.add_traces(traces, rows=[r for r, _ in where], cols=[c for _, c in where])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(title_text="users active", col=1)
    for c in range(1, cols + 1):  # the x title only under the lowest panel of each column
        last = max(k for k in range(len(segs)) if k % cols == c - 1)
        fig.update_xaxes(title_text=f"{period_word} from now", row=last // cols + 1, col=c)
    fig.update_layout(
        title="Projected retention: share of users active, starting from users active now",
        height=300 * rows + 120,
        margin={"t": 90, "b": 60, "r": 20},
        legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top",
                "title": {"text": "policy"}},
    )  # fmt: skip
    return fig


def stability_map(
    stability: pd.DataFrame,
    actions: Sequence[str],
    names: Mapping[int, str] | None = None,
    *,
    current: tuple[float, float] | None = None,
) -> go.Figure:
    """How the optimal action of each (segment, stage) changes over discount (γ, x) and churn
    penalty (y): one small panel per state, coloured by action. ``current`` marks the settings
    in use."""
    states = stability[["segment", "stage"]].drop_duplicates().reset_index(drop=True)
    segs = list(dict.fromkeys(int(g) for g in states["segment"]))
    stages = sorted(dict.fromkeys(states["stage"]), key=stage_rank)
    gammas = sorted(stability["gamma"].unique())
    pens = sorted(stability["churn_penalty"].unique())
    colours = action_colours(actions)
    n = len(actions)
    scale = []
    for k, a in enumerate(actions):
        scale += [[k / n, colours[a]], [(k + 1) / n, colours[a]]]
    pos = {a: i for i, a in enumerate(actions)}
    fig = make_subplots(
        rows=len(segs),
        cols=len(stages),
        column_titles=[stage_word(st) for st in stages],
        row_titles=[_seg_name(g, names) for g in segs],
        horizontal_spacing=0.04,
        vertical_spacing=min(0.06, 0.3 / max(1, len(segs))),
    )
    for i, g in enumerate(segs):
        for j, st in enumerate(stages):
            part = stability[(stability["segment"] == g) & (stability["stage"] == st)]
            grid = part.pivot(index="churn_penalty", columns="gamma", values="action").reindex(
                index=pens, columns=gammas
            )
            z = grid.apply(lambda col: col.map(pos)).to_numpy(dtype=float)
            fig.add_heatmap(
                z=z,
                x=[f"{v:g}" for v in gammas],
                y=[f"{v:g}" for v in pens],
                text=grid.to_numpy(),
                colorscale=scale,
                zmin=-0.5,
                zmax=n - 0.5,
                showscale=False,
                xgap=1,
                ygap=1,
                hovertemplate="future weight γ %{x}, churn penalty %{y}: <b>%{text}</b>"
                "<extra></extra>",
                row=i + 1,
                col=j + 1,
            )
            if current is not None:
                fig.add_scatter(
                    x=[f"{current[0]:g}"],
                    y=[f"{current[1]:g}"],
                    mode="markers",
                    marker={"symbol": "x", "color": "white", "size": 9, "line": {"width": 1}},
                    showlegend=False,
                    hoverinfo="skip",
                    row=i + 1,
                    col=j + 1,
                )
    for a in actions:  # a legend for the action colours
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"color": colours[a], "size": 10, "symbol": "square"},
            name=a,
        )
    # Tick labels on the outer panels only (inner ones collided); every other γ at an angle.
    fig.update_xaxes(showticklabels=False, type="category")
    fig.update_yaxes(showticklabels=False, type="category")
    fig.update_xaxes(showticklabels=True, tickangle=-45, tickfont={"size": 10}, row=len(segs))
    fig.update_yaxes(showticklabels=True, tickfont={"size": 10}, col=1)
    fig.update_xaxes(title_text="future weight γ", title_standoff=4, row=len(segs))
    fig.update_yaxes(title_text="churn penalty", title_standoff=12, automargin=True, col=1)
    fig.for_each_annotation(lambda a: a.update(font={"size": 12}))
    fig.update_layout(
        title="Stability: the best action as the future weight γ (across) and the churn penalty "
        "(up) change",
        height=170 * len(segs) + 170,
        margin={"t": 90, "b": 80, "r": 160},
        legend={"orientation": "h", "x": 0, "y": -0.5 / max(1, len(segs)), "yanchor": "top"},
    )
    return fig


def ope_forest(ope: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Off-policy estimates with 95% intervals: one row per policy, one marker per estimator."""
    base = ope[~ope["policy"].str.contains(" − ", regex=False)]
    policies = list(dict.fromkeys(base["policy"]))
    fig = go.Figure()
    symbols = {"ips": "circle", "snips": "diamond", "dr": "square"}
    offsets = {"ips": -0.2, "snips": 0.0, "dr": 0.2}
    for est, part in base.groupby("estimator", sort=False):
        y = [policies.index(p) + offsets.get(est, 0.0) for p in part["policy"]]
        fig.add_scatter(
            x=part["value"],
            y=y,
            mode="markers",
            name=est.upper(),
            marker={"symbol": symbols.get(est, "circle"), "size": 9},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": part["ci_hi"] - part["value"],
                "arrayminus": part["value"] - part["ci_lo"],
            },
            customdata=np.column_stack([part["policy"], part["ci_lo"], part["ci_hi"]]),
            hovertemplate="%{customdata[0]}<br>"
            + est.upper()
            + " %{x:.4f} (95% CI %{customdata[1]:.4f} – %{customdata[2]:.4f})<extra></extra>",
        )
    fig.update_layout(
        title=title or "Off-policy estimates on held-out users (95% bootstrap intervals)",
        yaxis={
            "tickvals": list(range(len(policies))),
            "ticktext": policies,
            "autorange": "reversed",
        },
        xaxis_title="estimated value per logged decision",
        height=90 * len(policies) + 160,
    )
    return fig

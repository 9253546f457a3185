"""Figures of a segmentation: the 2-D map, segment sizes, retention by segment, silhouette by k.

Each builder takes the stored artifacts (``map2d``, ``profile``, ``metrics``) and the display
names (``{segment: name}``, the user's renames over the computed labels) and returns a figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from retention.words import (
    NOISE_SEGMENT,
    period_word,
    period_word_singular,
    segment_display_name,
)

MAP_MAX_POINTS = 20_000
#: issue 19 (s8-segk): up to this many users the map is drawn as SVG, above it with WebGL. In
#: headless Chromium without a GPU (WebGL in software) the 4,339 users of Online Retail cost
#: 0.73 CPU s as SVG against 0.95 s as WebGL (drawn in 710 against 796 ms); at 8,000 the two
#: are level, at 20,000 WebGL wins by half (``bench/bench_map_draw.py``, ``map_draw*.md``).
MAP_SVG_POINTS = 5_000
NOISE_COLOUR = "#b0b0b0"


def _name(segment: int, names: Mapping[int, str] | None) -> str:
    """The user's name for a segment, else its default display name."""
    if names and int(segment) in names:
        return str(names[int(segment)])
    return segment_display_name(segment)


def segment_colours(segments: list[int]) -> dict[int, str]:
    """One colour per segment, stable by segment number; noise (-1) is grey."""
    palette = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
    return {
        s: NOISE_COLOUR if s == NOISE_SEGMENT else palette[s % len(palette)]
        for s in sorted(set(segments))
    }


def sample_map(
    map2d: pd.DataFrame, max_points: int = MAP_MAX_POINTS, seed: int = 0
) -> pd.DataFrame:
    """At most ``max_points`` rows, sampled within each segment in proportion to its size (every
    segment keeps at least one point)."""
    if len(map2d) <= max_points:
        return map2d
    rng = np.random.default_rng(seed)
    fraction = max_points / len(map2d)
    keep = []
    for _, group in map2d.groupby("segment", sort=True):
        n = max(1, int(round(len(group) * fraction)))
        keep.append(group.index.to_numpy()[rng.choice(len(group), size=n, replace=False)])
    return map2d.loc[np.sort(np.concatenate(keep))]


def segment_map(
    map2d: pd.DataFrame,
    names: Mapping[int, str] | None = None,
    *,
    max_points: int = MAP_MAX_POINTS,
    seed: int = 0,
) -> go.Figure:
    """The users on the 2-D map, one trace per segment; hover shows the user's top items.

    Above ``max_points`` users a stratified sample is drawn (the title says so). Up to
    :data:`MAP_SVG_POINTS` users the traces are SVG, above that WebGL.
    """
    shown = sample_map(map2d, max_points, seed)
    colours = segment_colours(map2d["segment"].astype(int).tolist())
    trace = go.Scatter if len(shown) <= MAP_SVG_POINTS else go.Scattergl
    fig = go.Figure()
    for segment, group in shown.groupby("segment", sort=True):
        fig.add_trace(
            trace(
                x=group["x"],
                y=group["y"],
                mode="markers",
                name=_name(int(segment), names),
                text=group["hover"],
                hovertemplate="%{text}<extra></extra>",
                marker={"size": 5, "opacity": 0.7, "color": colours[int(segment)]},
            )
        )
    title = "Users by segment"
    if len(shown) < len(map2d):
        title += f" (a sample of {len(shown):,} of {len(map2d):,} users)"
    fig.update_layout(
        title=title,
        xaxis={"showticklabels": False, "title": None, "zeroline": False},
        yaxis={"showticklabels": False, "title": None, "zeroline": False},
        legend={"title": "Segment", "itemsizing": "constant"},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


def segment_sizes(profile: pd.DataFrame, names: Mapping[int, str] | None = None) -> go.Figure:
    """Users per segment, as a horizontal bar (largest on top)."""
    frame = profile.sort_values("users")
    colours = segment_colours(profile["segment"].astype(int).tolist())
    fig = go.Figure(
        go.Bar(
            x=frame["users"],
            y=[_name(s, names) for s in frame["segment"]],
            orientation="h",
            marker_color=[colours[int(s)] for s in frame["segment"]],
            text=[f"{share:.0%}" for share in frame["share"]],
            textposition="auto",
            hovertemplate="%{y}: %{x:,} users<extra></extra>",
        )
    )
    fig.update_layout(
        title="Users per segment",
        xaxis={"title": "users", "automargin": True},
        yaxis={"title": None, "automargin": True},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


def segment_retention(
    profile: pd.DataFrame, names: Mapping[int, str] | None = None, period: str | None = None
) -> go.Figure:
    """Retention after k periods per segment (:func:`retention.cohorts.retention_by_segment`:
    back k periods after the first or later), one bar per k, side by side."""
    columns = [c for c in profile.columns if c.startswith("retention_")]
    labels = [_name(s, names) for s in profile["segment"]]
    words, word = period_word(period), period_word_singular(period)

    def after(column: str) -> str:
        k = int(column.removeprefix("retention_"))
        return f"after {k} {word if k == 1 else words}"

    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=profile[c],
                name=after(c),
                hovertemplate=f"%{{x}}: %{{y:.0%}} came back {after(c)} or later<extra></extra>",
            )
            for c in columns
        ]
    )
    fig.update_layout(
        title="Retention by segment",
        barmode="group",
        yaxis={"tickformat": ".0%", "title": "share of users who came back", "range": [0, 1]},
        xaxis={"automargin": True},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


def silhouette_curve(metrics: Mapping[str, object]) -> go.Figure | None:
    """Silhouette (and, when measured, stability) by k of an automatic choice of k (``None``
    when k was set by hand), the chosen k marked."""
    scores = metrics.get("silhouette_by_k") or {}
    if not isinstance(scores, Mapping) or not scores:
        return None
    stable = metrics.get("stability_by_k") or {}
    stable = stable if isinstance(stable, Mapping) else {}
    ks = sorted(int(k) for k in scores)
    values = [float(scores[str(k)] if str(k) in scores else scores[k]) for k in ks]
    chosen = metrics.get("k")
    fig = go.Figure(
        go.Scatter(x=ks, y=values, mode="lines+markers", name="separation (silhouette)")
    )
    if stable:
        sk = sorted(int(k) for k in stable)
        fig.add_trace(
            go.Scatter(
                x=sk,
                y=[float(stable[str(k)] if str(k) in stable else stable[k]) for k in sk],
                mode="lines+markers",
                name="stability (1 = same segments on every sample)",
                line={"dash": "dash"},
            )
        )
    best = ks[int(np.argmax(values))]
    if chosen in ks:
        # Before stability was measured the rule took the fewest k within 5% of the best.
        why = "" if stable or chosen == best else " (the fewest within 5% of the best)"
        fig.add_vline(
            x=chosen,
            line_dash="dot",
            annotation_text=f"chosen: k = {chosen}{why}",
            annotation_position="bottom right",  # clear of the "best score" mark at the top
        )
    if chosen in ks and best != chosen and not stable:
        fig.add_annotation(
            x=best,
            y=max(values),
            text=f"best score: k = {best}",
            showarrow=True,
            arrowhead=0,
            ay=-30,
        )
    fig.update_layout(
        title="How clearly apart and how stable the segments are, by k"
        if stable
        else "How well separated the segments are, by k",
        xaxis_title="number of segments k",
        yaxis_title="score (higher is better)" if stable else "silhouette (higher is better)",
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig

"""Plotly figure builders, shared by the app, the HTML report and the tests.

One submodule per topic: :mod:`~retention.charts.segments` (map, sizes, retention by segment),
:mod:`~retention.charts.retention` (cohort heatmap, Kaplan–Meier curves, at-risk table) and
:mod:`~retention.charts.policy` (learning curve, Q-table, policy map, projections, stability,
off-policy estimates). Each takes results and returns a ``plotly.graph_objects.Figure``.
"""

from retention.charts import policy, retention, segments

__all__ = ["policy", "retention", "segments"]

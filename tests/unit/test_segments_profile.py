"""The Segments page's profile table as a reader sees it (pages.ui.segments_views.profile_display)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pages.ui.segments_views import profile_display

PROFILE = pd.DataFrame(
    {
        "segment": [0, 1, 2],
        "label": ["kids, kit", "tea, cups", "garden"],
        "users": [1, 2_499, 12_000],
        "share": [1 / 14_500, 2_499 / 14_500, 12_000 / 14_500],
        "recency_days": [73.4, 41.0, np.nan],
        "frequency": [19.64, 28.5, 3.0],
        "monetary": [345.99, 1_079.7851, 12.5],
        "revenue": [345.99, 2_698_382.0, 150_000.0],
        "retention_1": [0.6982, 0.8594, np.nan],
        "retention_4": [0.4813, 0.7249, np.nan],
    }
)


def test_profile_cells_have_units_and_no_none() -> None:
    table, config = profile_display(PROFILE, {1: "Tea lovers"}, "week", "GBP")
    assert table.to_dict("list") == {
        "Segment": ["Segment 1", "Tea lovers", "Segment 3"],
        "Users": ["1", "2,499", "12,000"],
        "Share": ["0%", "17%", "83%"],
        "Days since active": ["73", "41", "—"],
        "Active days": ["19.6", "28.5", "3.0"],  # one decimal: 1.4 shows as 1.4, not 1
        "Spend per user (£)": ["£345.99", "£1,079.79", "£12.50"],
        "Revenue (£)": ["£346", "£2,698,382", "£150,000"],
        "Retention after 1 week": ["70%", "86%", "—"],
        "Retention after 4 weeks": ["48%", "72%", "—"],
    }
    assert "first week is at least 4 weeks before the data ends" in str(
        config["Retention after 4 weeks"]
    )


def test_unknown_currency_and_no_amounts() -> None:
    table, config = profile_display(PROFILE, {}, "month", None)
    assert table["Revenue"].tolist()[1] == "2,698,382"
    assert "In your data's currency" in str(config["Revenue"])
    no_money = PROFILE.assign(monetary=np.nan, revenue=np.nan)
    table, _ = profile_display(no_money, {}, "month", "SEK")
    assert not [c for c in table.columns if "Revenue" in c or "Spend" in c]
    assert "Retention after 1 month" in table.columns


def test_silhouette_chart_says_why_k_is_not_the_best_score() -> None:
    from retention.charts.segments import silhouette_curve

    # A run from before stability was measured (the fewest within 5% of the best silhouette).
    metrics = {"k": 2, "silhouette_by_k": {"2": 0.112, "3": 0.115, "4": 0.101}}
    fig = silhouette_curve(metrics)
    texts = [a.text for a in fig.layout.annotations]
    assert "chosen: k = 2 (the fewest within 5% of the best)" in texts
    assert "best score: k = 3" in texts
    same = silhouette_curve({"k": 3, "silhouette_by_k": {"2": 0.1, "3": 0.2}})
    assert [a.text for a in same.layout.annotations] == ["chosen: k = 3"]
    # Today's runs also measure stability: both lines, the chosen k marked, no "5%" rule.
    stable = silhouette_curve(dict(metrics, k=3, stability_by_k={"2": 0.98, "3": 0.96, "4": 0.56}))
    assert [t.name for t in stable.data] == [
        "separation (silhouette)",
        "stability (1 = same segments on every sample)",
    ]
    assert [a.text for a in stable.layout.annotations] == ["chosen: k = 3"]

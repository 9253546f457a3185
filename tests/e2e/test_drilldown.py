"""Drill-down in a real headless Chromium: click a cohort cell and a segment, see the users,
download the CSV and check its rows (against pandas on the sample file, and against the
Segments page's own users CSV)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import ROOT, screenshot, wait_idle

pytestmark = pytest.mark.e2e

SAMPLE = ROOT / "sample_data" / "planted_events.csv.gz"
#: The cohort heatmap's click targets (cohort, column, users, ...) and which Plotly chart of the
#: page holds them (the retention lines come first), once Plotly has drawn them.
CELLS_JS = """() => {
    const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
    for (const [i, el] of plots.entries()) {
        const plot = el.querySelector('.js-plotly-plot');
        const trace = plot && plot.data && plot.data.find(t => t.name === 'cells');
        if (trace && el.querySelector('.scatterlayer .trace .points path'))
            return {chart: i, cells: trace.customdata};
    }
    return null;
}"""


def _pick_dataset(page, name: str) -> None:
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    if picker.input_value().startswith(name):
        return
    picker.click()
    page.get_by_role("option", name=re.compile(re.escape(name))).click()
    wait_idle(page)


def _download(page, name: re.Pattern) -> pd.DataFrame:
    with page.expect_download() as download:
        page.get_by_role("button", name=name).click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    wait_idle(page)  # a rerun the click caused ends before the next click
    return pd.read_csv(io.StringIO(text), dtype={"user_id": str})


def _weekly_oracle() -> pd.DataFrame:
    """Per user, by hand in pandas: first week, active weeks, last seen, spend."""
    events = pd.read_csv(SAMPLE, parse_dates=["ts"])
    week = events["ts"].dt.to_period("W-SUN").dt.start_time  # weeks start on Monday
    g = events.assign(week=week).groupby("user_id")
    return pd.DataFrame(
        {
            "first": g["week"].min(),
            "weeks": g["week"].agg(lambda s: set(s)),
            "active_periods": g["week"].nunique(),
            "last_seen": g["ts"].max().dt.strftime("%Y-%m-%d"),
            "spend": g["amount"].sum(),
        }
    )


def test_click_a_cohort_cell_and_a_segment_and_download_their_users(app_url, page):
    page.goto(f"{app_url}/retention")
    wait_idle(page)
    _pick_dataset(page, "Planted demo")
    page.get_by_text("Click a cell of the cohort table").wait_for()

    # The cell of the first cohort, 4 weeks later (the default definition: any event starts,
    # any event counts as back, in that week).
    found = page.wait_for_function(CELLS_JS).json_value()
    cells = found["cells"]
    index = next(i for i, c in enumerate(cells) if c[1] == 4)
    cohort, k, count = pd.Timestamp(cells[index][0]), cells[index][1], cells[index][2]
    targets = page.locator('[data-testid="stPlotlyChart"]').nth(found["chart"])
    targets.locator(".scatterlayer .trace .points path").nth(index).click(force=True)
    wait_idle(page)
    page.get_by_text("who were active in week 4 after the start").first.wait_for()
    body = page.locator("[data-testid='stMain']").inner_text()
    assert f"{count:,} users" in body
    screenshot(page, "drill-cohort-cell")

    users = _download(page, re.compile(r"Download these [\d,]+ users \(CSV\)"))
    assert list(users.columns) == [
        "user_id",
        "segment",
        "stage",
        "last_seen",
        "active_periods",
        "spend",
    ]
    oracle = _weekly_oracle()
    cell = oracle[
        (oracle["first"] == cohort)
        & oracle["weeks"].map(lambda w: cohort + pd.Timedelta(weeks=k) in w)
    ]
    assert len(users) == count == len(cell)
    assert set(users["user_id"]) == set(cell.index)
    got = users.set_index("user_id").loc[cell.index]
    assert (got["active_periods"] == cell["active_periods"]).all()
    assert (got["last_seen"] == cell["last_seen"]).all()
    assert ((got["spend"] - cell["spend"]).abs() < 0.01).all()
    assert set(users["stage"]) <= {"active", "lapsing", "at_risk", "churned"}

    # Segments: find them, click the first segment's row, download its users.
    page.goto(f"{app_url}/segments")
    wait_idle(page)
    if page.get_by_text("No segmentation yet").count():
        page.get_by_role("button", name="Find segments").click()
    page.get_by_text("Names and keywords").wait_for()
    wait_idle(page)
    page.get_by_text("Click a segment's row").wait_for()
    profile = page.locator("[data-testid='stDataFrame']").first
    profile.scroll_into_view_if_needed()
    box = profile.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's selection box
    wait_idle(page)
    page.get_by_text("Users of ").first.wait_for()
    screenshot(page, "drill-segment")
    title = page.get_by_text(re.compile(r"^Users of ")).first.inner_text()
    name = title.removeprefix("Users of ").strip()

    members = _download(page, re.compile(r"Download these [\d,]+ users \(CSV\)"))
    assert set(members["segment"]) == {name}
    everyone = _download(page, re.compile(r"Download user → segment \(CSV\)"))
    # The users CSV for a CRM carries last seen, active periods and spend too.
    assert {"last_seen", "active_periods", "spend"} <= set(everyone.columns)
    same = everyone[everyone["name"] == name]
    assert set(members["user_id"]) == set(same["user_id"])
    both = members.set_index("user_id").join(same.set_index("user_id"), rsuffix="_crm")
    assert (both["spend"] - both["spend_crm"]).abs().max() < 0.01
    assert (both["last_seen"] == both["last_seen_crm"]).all()

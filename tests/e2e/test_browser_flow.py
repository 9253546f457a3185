"""End to end in a real headless Chromium: upload a file, see the validation report, save it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e

MESSY_CSV = """Customer ID;Order Date;Product;Quantity;Price
C1;2024-01-03 10:00;ceramic mug;2;4.50
C1;2024-01-20 11:00;tea kettle;1;19.99
C2;2024-01-05 09:30;garden hose;1;25.00
C2;not a date;garden hose;1;25.00
;2024-01-06 12:00;silk scarf;1;12.00
C3;2024-02-01 08:00;silk scarf;-1;12.00
C3;2024-02-11 08:00;leather wallet;1;30.00
C4;2024-02-15 18:00;toy train;3;8.00
"""


def _wait_idle(page) -> None:
    wait_idle(page)


def _current_dataset(page) -> str:
    """The dataset picked in the sidebar's picker."""
    return (
        page.locator("[data-testid='stSidebar']")
        .get_by_role("combobox", name="Dataset")
        .input_value()
    )


def test_upload_csv_shows_validation_report_and_saves(app_url, page, tmp_path):
    data = tmp_path / "orders.csv"
    data.write_text(MESSY_CSV, encoding="utf-8")
    page.goto(app_url)
    _wait_idle(page)
    uploader = page.locator("[data-testid='stFileUploader']").first
    uploader.locator("input[type=file]").set_input_files(str(data))
    page.get_by_text("Validation report", exact=True).wait_for()
    page.get_by_text("Rows used").first.wait_for()
    _wait_idle(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Rows left out" in body
    assert re.search(r"Rows used\s+5", body), body[:2000]
    screenshot(page, "data_validation_report")

    page.get_by_role("button", name="Save to workspace").click()
    page.get_by_text("and made it the current dataset").wait_for()
    _wait_idle(page)
    assert _current_dataset(page).startswith("orders")
    screenshot(page, "data_saved")

    page.reload()  # a refresh keeps the current dataset
    _wait_idle(page)
    assert _current_dataset(page).startswith("orders")


def _goto_page(page, app_url: str, path: str) -> None:
    page.goto(f"{app_url}/{path}")
    _wait_idle(page)


def _pick_dataset(page, name: str) -> None:
    """Choose a dataset in the sidebar picker, as a user would."""
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    picker.click()
    page.get_by_role("option", name=re.compile(re.escape(name))).click()
    _wait_idle(page)
    assert _current_dataset(page).startswith(name)


def _record_requests(page) -> list[str]:
    """Every URL the browser asks for from now on."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def _off_the_machine(urls: list[str], app_url: str) -> list[str]:
    """The requests that left this machine (the app promises to run offline)."""
    local = (app_url, "data:", "blob:", "about:", "http://127.0.0.1", "http://localhost")
    return sorted({u for u in urls if not u.startswith(local)})


def test_segments_retention_policy_and_strategies_in_the_browser(app_url, page):
    requests = _record_requests(page)
    page.goto(app_url)
    _wait_idle(page)
    _pick_dataset(page, "Planted demo")

    # Segments: run a segmentation and see the map and the keywords.
    _goto_page(page, app_url, "segments")
    asked_before = len(requests)
    page.get_by_role("button", name="Find segments").click()
    page.get_by_text("Finding segments:").first.wait_for()  # the job's progress box is up
    page.get_by_text("Names and keywords").wait_for()
    _wait_idle(page)
    # Plotly draws its charts (and their titles) after Streamlit is idle: wait for the map.
    page.get_by_text("Users by segment").first.wait_for()
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Users by segment" in body and "Profile" in body
    # Issue 19 (s16): while the job ran, the page had the browser import Streamlit's Plotly
    # module (pages/ui/jobs_view.py); the charts then used that very module: its chunk was
    # fetched once, from the address Streamlit's own lazy import resolves to.
    page.wait_for_function("() => window.__retentionChartsReadyMs !== undefined")
    chunks = [url for url in requests[asked_before:] if "/PlotlyChart." in url]
    assert len(chunks) == 1, chunks
    screenshot(page, "segments")

    # Retention: cohorts and survival curves per segment.
    _goto_page(page, app_url, "retention")
    page.get_by_text("Time to churn").wait_for()
    page.get_by_text("very unlikely to be chance").first.wait_for()
    _wait_idle(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "very unlikely to be chance" in body
    screenshot(page, "retention")

    # Policy: train with the default settings.
    _goto_page(page, app_url, "policy")
    page.get_by_role("button", name="Train", exact=True).click()
    # Training is a background job of the workspace: a refresh right after the click neither
    # cancels it nor drops it, and the refreshed page shows the run when the job ends.
    page.get_by_text("Training:").first.wait_for()
    page.reload()
    page.get_by_text("Learned policy's worth", exact=True).wait_for()  # the trained run shows
    _wait_idle(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "best possible" in body.lower()
    screenshot(page, "policy")

    # Strategies: the plan per segment and a download.
    _goto_page(page, app_url, "strategies")
    page.get_by_text("Downloads", exact=True).wait_for()
    page.get_by_text("Leave them alone").first.wait_for()
    _wait_idle(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Leave them alone" in body
    with page.expect_download() as download:
        page.get_by_role("button", name="Users → action (CSV)").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("user_id,segment,segment_name,stage,recommended_action")
    assert len(lines) == 2001
    screenshot(page, "strategies")
    assert requests and _off_the_machine(requests, app_url) == []

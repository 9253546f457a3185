"""issue 22 (s10): a job's result shows even when the browser loses its progress box's timer.

In one of 20 ten-browser runs a page said "waiting for a free worker" for 15 minutes after its
job had ended: the browser had stopped the progress box's ``run_every`` timer. Here the browser
loses every such timer on purpose (each ``setInterval`` whose callback asks the server to rerun
a fragment is dropped), so only the page's watchdog (``pages/ui/jobs_view.py``) can bring the
result.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import new_context, screenshot, wait_idle

pytestmark = pytest.mark.e2e

#: Drops the browser's fragment auto-rerun timers (Streamlit's ``handleAutoRerun`` starts a
#: ``setInterval`` whose callback sends ``sendUpdateWidgetsMessage`` for the fragment) and
#: counts them; every other interval (the watchdog's, the spinners') runs as usual.
LOSE_FRAGMENT_TIMERS = """
(() => {
  const realSetInterval = window.setInterval;
  window.__lostFragmentTimers = 0;
  window.setInterval = function (callback, ms, ...rest) {
    if (typeof callback === "function" && String(callback).includes("sendUpdateWidgetsMessage")) {
      window.__lostFragmentTimers += 1;
      return 0;
    }
    return realSetInterval.call(window, callback, ms, ...rest);
  };
})();
"""


def _open(browser, app_url: str, lose_timers: bool):
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    if lose_timers:
        context.add_init_script(LOSE_FRAGMENT_TIMERS)
    page = context.new_page()
    page.goto(app_url)
    wait_idle(page)
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    picker.click()
    page.get_by_role("option", name=re.compile("Planted demo")).click()
    wait_idle(page)
    return context, page


def _counter(page, name: str) -> int:
    return int(page.evaluate(f"window.{name} || 0"))


def test_a_lost_progress_timer_is_made_up_for_and_a_working_one_is_left_alone(app_url, browser):
    # A working timer: the segmentation's result shows and the watchdog never steps in.
    context, page = _open(browser, app_url, lose_timers=False)
    page.goto(f"{app_url}/segments")
    wait_idle(page)
    page.get_by_role("button", name="Find segments").click()
    page.get_by_text("Finding segments:").first.wait_for()  # the job's progress box is up
    page.get_by_text("Names and keywords").wait_for()
    wait_idle(page)
    assert _counter(page, "__lostFragmentTimers") == 0
    assert _counter(page, "__retentionJobStalls") == 0
    context.close()

    # Every progress timer lost: without them the box never asks the server again, so the
    # trained policy can only come from the watchdog's page run (15 s without a heartbeat),
    # not from a click or a refresh.
    context, page = _open(browser, app_url, lose_timers=True)
    page.goto(f"{app_url}/policy")
    wait_idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Training:").first.wait_for()
    page.get_by_text("Learned policy's worth", exact=True).wait_for(timeout=240_000)
    wait_idle(page)
    assert _counter(page, "__lostFragmentTimers") >= 1  # the timers really were lost
    assert _counter(page, "__retentionJobStalls") >= 1  # and the watchdog brought the result
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Training:" not in body
    screenshot(page, "policy_after_lost_timer")
    context.close()

"""Take a full-page screenshot of a running app page in headless Chromium (a developer aid).

python scripts/screenshot.py http://127.0.0.1:8501/segments out.png [--wait 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait", type=float, default=4.0)
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1000})
        page.goto(args.url)
        page.wait_for_selector("[data-testid='stApp']")
        deadline = time.monotonic() + 120
        time.sleep(1.5)
        while time.monotonic() < deadline:
            if page.locator("[data-testid='stStatusWidget']").count() == 0:
                break
            time.sleep(0.5)
        time.sleep(args.wait)
        height = page.evaluate(
            '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
            '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 1000)'
        )
        page.set_viewport_size({"width": args.width, "height": min(int(height) + 100, 8000)})
        time.sleep(1.0)
        page.screenshot(path=args.out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()

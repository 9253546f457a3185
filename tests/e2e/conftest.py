"""End-to-end fixtures: a real Streamlit server and Debian's headless Chromium (Playwright)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scripts.browser import CHROMIUM, CHROMIUM_ARGS, IDLE_JS

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "e2e" / "screenshots"

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(
    workspace: Path, port: int | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app served on a loopback port (a free one unless given) over ``workspace``, with
    ``extra_args`` for Streamlit (e.g. ``--secrets.files``); yields (url, process)."""
    port = port or free_port()
    env = dict(
        os.environ, RETENTION_WORKSPACE=str(workspace), HF_HUB_OFFLINE="1", RETENTION_PREFETCH="0"
    )  # issue 19: the jobs embed what the tests expect them to (no embedding ahead)
    log = open(workspace / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", *extra_args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start: " + (workspace / "server.log").read_text()[-2000:])
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app with a fresh workspace; its URL."""
    with running_app(tmp_path_factory.mktemp("e2e_ws")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


#: How long a browser step may take before it fails: far above the slowest honest case on a
#: loaded 2-core machine (a first segmentation loads the model and embeds), so only a real hang
#: fails. Every wait is on a condition; none of them sleeps this long when things work.
STEP_TIMEOUT_MS = 300_000


def wait_idle(page, timeout: int = STEP_TIMEOUT_MS) -> None:
    """Wait until the app has finished its script run (twice in a row 200 ms apart, so a rerun
    that a widget queued just before is not missed)."""
    for _ in range(2):
        page.wait_for_function(IDLE_JS, polling=200, timeout=timeout)  # not every frame
        page.wait_for_timeout(200)
    page.wait_for_function(IDLE_JS, polling=200, timeout=timeout)


def leaves_this_computer(url: str) -> bool:
    """A browser request to another machine (the app promises to run offline: no font, icon or
    script from a CDN)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def new_context(browser, **options):
    """A browser context whose every wait has the step limit (:data:`STEP_TIMEOUT_MS`), not
    Playwright's own 30 s: a first segmentation took 33 s on a loaded machine (session 16)."""
    context = browser.new_context(**options)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser):
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    outside: list[str] = []
    context.on("request", lambda r: outside.append(r.url) if leaves_this_computer(r.url) else None)
    pg = context.new_page()
    pg.set_default_timeout(STEP_TIMEOUT_MS)
    yield pg
    context.close()
    assert not outside, f"the browser fetched from outside this computer: {sorted(set(outside))}"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Streamlit scrolls inside its main container: grow the viewport to show the whole page.
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 1000)'
    )
    size = page.viewport_size or {"width": 1400, "height": 1000}
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 100, 8000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path

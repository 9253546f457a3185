"""What every headless-Chromium driver of the app shares: the browser, its flags, and the
"Streamlit is idle" check (the e2e tests, the benchmarks and ``scripts/screenshot.py``)."""

from __future__ import annotations

import shutil

#: Debian's Chromium (``make test`` installs it).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Headless, no sandbox (root in a container), software drawing, and nothing that reaches the
#: network on its own (no QUIC, no background requests, no component updates, no sync).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The app is idle: connected, and no script run going on (Streamlit's own attributes on
#: ``stApp``, the ones its end-to-end tests wait on), and no "Running…" status widget. Ask it
#: with a polling interval (``polling=200``): Playwright's default, every animation frame, cost
#: each headless tab ~10% of a core (``bench/browser_cpu.py``).
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app
        && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stStatusWidget"]');
}"""

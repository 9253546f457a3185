"""The app server's Streamlit settings that keep pages responsive under load (issue 22)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from streamlit import config

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def _settings() -> dict:
    return tomllib.loads(CONFIG.read_text())


def test_no_full_garbage_collection_after_every_run():
    """Streamlit's default runs ``gc.collect(2)`` after every script run, fragments included:
    under load that was the server's largest cost (a profile of bench/load.py: 45% of the script
    thread's samples), holding the GIL that serves every other session's page and upload."""
    assert "runner.postScriptGC" in config._config_options_template  # the option Streamlit reads
    assert _settings()["runner"]["postScriptGC"] is False


def test_no_file_watching():
    """No reloading on file changes: the app is not a dev server."""
    assert "server.fileWatcherType" in config._config_options_template
    assert _settings()["server"]["fileWatcherType"] == "none"

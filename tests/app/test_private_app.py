"""The app itself refuses to serve customer data on a network address without sign-in, however it
was started (issue 21); on this computer it runs as usual."""

from __future__ import annotations

import pytest
from streamlit import config

from tests.app.conftest import make_app


@pytest.fixture
def address():
    """Set Streamlit's server.address for one test, then put it back."""
    before = config.get_option("server.address")
    yield lambda value: config.set_option("server.address", value)
    config.set_option("server.address", before)


@pytest.mark.parametrize("host", ["0.0.0.0", ""])
def test_an_open_address_without_sign_in_shows_only_the_refusal(app_workspace, address, host):
    address(host)
    at = make_app()
    assert not at.exception
    assert [e.value for e in at.error] and "without sign-in" in at.error[0].value
    assert not at.sidebar.selectbox  # no dataset picker: nothing from the workspace is shown


def test_allow_open_lets_it_run(app_workspace, address, monkeypatch):
    address("0.0.0.0")
    monkeypatch.setenv("RETENTION_ALLOW_OPEN", "1")
    at = make_app()
    assert not at.exception and not at.error


def test_loopback_runs_as_usual(app_workspace, address):
    address("127.0.0.1")
    at = make_app()
    assert not at.exception and not at.error

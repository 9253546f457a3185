"""Issue 16 in a real browser: sign-in against a real OpenID Connect flow, a workspace per person,
broken sign-in settings, and a tab that keeps its dataset (also without sign-in).

The identity provider is ``oidc-provider-mock`` (a real OIDC provider: discovery, authorization
code, tokens, end of session) started here on localhost; anyone may sign in as any subject by
typing it on its authorization form.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, new_context, running_app, screenshot, wait_idle

pytestmark = pytest.mark.e2e

ORDERS_CSV = """Customer ID;Order Date;Product;Quantity;Price
C1;2024-01-03 10:00;ceramic mug;2;4.50
C1;2024-01-20 11:00;tea kettle;1;19.99
C2;2024-01-05 09:30;garden hose;1;25.00
C3;2024-02-11 08:00;leather wallet;1;30.00
C4;2024-02-15 18:00;toy train;3;8.00
"""


def _secrets(folder: Path, app_port: int, metadata_url: str, drop: str | None = None) -> Path:
    settings = {
        "redirect_uri": f"http://localhost:{app_port}/oauth2callback",
        "cookie_secret": "e2e-cookie-secret-0123456789abcdef0123456789",
        "client_id": "retention-e2e",
        "client_secret": "e2e-client-secret",
        "server_metadata_url": metadata_url,
    }
    lines = ["[auth]"] + [f'{k} = "{v}"' for k, v in settings.items() if k != drop]
    path = folder / "secrets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=free_port()) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def team_server(provider, tmp_path_factory):
    """The app with sign-in against the provider; yields (url, workspace root, log file)."""
    root = tmp_path_factory.mktemp("team_ws")
    port = free_port()
    secrets = _secrets(root, port, f"{provider}/.well-known/openid-configuration")
    with running_app(root, port, ("--secrets.files", str(secrets))) as (_, _proc):
        yield f"http://localhost:{port}", root


def _text(page) -> str:
    return page.locator("[data-testid='stApp']").inner_text()


def _sign_in(page, url: str, who: str) -> None:
    page.goto(url)
    wait_idle(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    page.fill("input[name=sub]", who)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(url) + r"/?(\?.*)?$"))
    page.get_by_text(f"Signed in as {who}").wait_for()
    page.get_by_role("combobox", name="Dataset").wait_for()
    wait_idle(page)


def _datasets(page) -> list[str]:
    """Every dataset the sidebar's picker offers."""
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    picker.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    wait_idle(page)
    return options


def _current(page) -> str:
    return (
        page.locator("[data-testid='stSidebar']")
        .get_by_role("combobox", name="Dataset")
        .input_value()
    )


def _upload(page, path: Path) -> None:
    page.locator("[data-testid='stFileUploader']").first.locator(
        "input[type=file]"
    ).set_input_files(str(path))
    page.get_by_role("button", name="Save to workspace").click()
    page.get_by_text("and made it the current dataset").wait_for()
    wait_idle(page)


def test_a_visitor_sees_only_the_sign_in_page(team_server, browser):
    url, _ = team_server
    context = new_context(browser, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        for path in ("", "/policy", "/strategies?dataset=anything"):
            page.goto(url + path)
            wait_idle(page)
            page.get_by_role("button", name="Sign in").wait_for()
            text = _text(page)
            assert "Sign in with your team account" in text
            for secret in ("Dataset", "Planted demo", "Online Retail", "Segments", "Policy"):
                assert secret not in text, (path, secret)
            assert page.locator("[data-testid='stSidebarNav']").count() == 0
        screenshot(page, "signin_visitor")
    finally:
        context.close()


def test_two_people_at_once_see_only_their_own_work(team_server, browser, tmp_path):
    url, root = team_server
    alice_ctx = new_context(browser, viewport={"width": 1400, "height": 1000})
    bob_ctx = new_context(browser, viewport={"width": 1400, "height": 1000})
    alice, bob = alice_ctx.new_page(), bob_ctx.new_page()
    try:
        _sign_in(alice, url, "alice@example.com")
        _sign_in(bob, url, "bob@example.com")
        alice_before, bob_before = _datasets(alice), _datasets(bob)
        assert alice_before and bob_before  # each has the samples in their own workspace

        orders = tmp_path / "alice_secret_orders.csv"
        orders.write_text(ORDERS_CSV, encoding="utf-8")
        _upload(alice, orders)
        assert _current(alice).startswith("alice_secret_orders")
        alice_id = dict(re.findall(r"(dataset)=([0-9a-f]+)", alice.url))["dataset"]
        screenshot(alice, "signin_alice_uploaded")

        bob.reload()
        wait_idle(bob)
        assert "alice_secret_orders" not in " ".join(_datasets(bob))
        # A link to Alice's dataset opens Bob's own work, never hers.
        bob.goto(f"{url}/?dataset={alice_id}")
        wait_idle(bob)
        assert "alice_secret_orders" not in _text(bob)
        assert _current(bob) != _current(alice)
        bob.get_by_role("tab", name="Your datasets").click()
        wait_idle(bob)
        assert "alice_secret_orders" not in _text(bob)
        screenshot(bob, "signin_bob_sees_his_own")

        people = sorted(p.name for p in (root / "people").iterdir())
        assert len(people) == 2  # one workspace each, named by a hash (no e-mail on disk)
        assert not any("alice" in p or "bob" in p for p in people)

        # Sign-out ends Alice's access: the app shows the sign-in page again.
        alice.get_by_role("button", name="Sign out").click()
        alice.wait_for_url(re.compile(r".*/oauth2/end_session.*"))  # and at the provider too
        alice.get_by_role("button", name="End session").click()
        alice.wait_for_url(re.compile(re.escape(url) + r"/?(\?.*)?$"))
        wait_idle(alice)
        alice.get_by_role("button", name="Sign in").wait_for()
        alice.goto(url)  # a fresh visit: still signed out
        wait_idle(alice)
        alice.get_by_role("button", name="Sign in").wait_for()
        assert "alice_secret_orders" not in _text(alice)
        bob.reload()  # Bob is still signed in
        wait_idle(bob)
        assert "Signed in as bob@example.com" in _text(bob)
    finally:
        alice_ctx.close()
        bob_ctx.close()


@pytest.mark.parametrize("broken", ["missing client_secret", "unreachable provider"])
def test_broken_sign_in_is_named_and_nothing_is_served(broken, provider, browser, tmp_path):
    port = free_port()
    if broken == "unreachable provider":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        secrets = _secrets(
            tmp_path, port, f"http://127.0.0.1:{dead}/.well-known/openid-configuration"
        )
        expected = "cannot be reached"
    else:
        secrets = _secrets(
            tmp_path, port, f"{provider}/.well-known/openid-configuration", drop="client_secret"
        )
        expected = "'client_secret' is missing"
    with running_app(tmp_path, port, ("--secrets.files", str(secrets))):
        context = new_context(browser, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        try:
            page.goto(f"http://localhost:{port}/segments")
            wait_idle(page)
            page.get_by_text("Sign-in is not working").wait_for()
            text = _text(page)
            assert expected in text
            assert "Planted demo" not in text and "Dataset" not in text
            assert page.get_by_role("button", name="Sign in").count() == 0
            screenshot(page, f"signin_broken_{broken.split()[-1]}")
        finally:
            context.close()
    log = (tmp_path / "server.log").read_text()
    assert "Sign-in is not" in log and expected.split("'")[-1].strip() in log
    assert not (tmp_path / "people").exists()


def test_a_tab_keeps_its_dataset(app_url, browser):
    """Without sign-in: two tabs, each on its own dataset, across page moves and refreshes."""
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    first, second = context.new_page(), context.new_page()
    try:
        first.goto(app_url)
        wait_idle(first)
        names = _datasets(first)
        assert len(names) >= 2
        _pick(first, names[0])
        second.goto(app_url)
        wait_idle(second)
        _pick(second, names[1])  # the last pick is now the second dataset

        for label in ("Segments", "Retention", "Data"):
            first.locator("[data-testid='stSidebarNav']").get_by_text(label, exact=True).click()
            wait_idle(first)
            assert _current(first) == names[0], label
            assert "dataset=" in first.url, label
        first.reload()
        wait_idle(first)
        assert _current(first) == names[0]
        assert _current(second) == names[1]

        third = context.new_page()  # a new session opens on the last pick
        third.goto(app_url)
        wait_idle(third)
        assert _current(third) == names[1]
    finally:
        context.close()


def _pick(page, name: str) -> None:
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Dataset")
    picker.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)
    assert _current(page) == name

"""The sign-in gate (issue 16) in AppTest: a visitor sees the sign-in page only; broken settings
are named on it; each signed-in person works in their own workspace."""

from __future__ import annotations

import pytest

from tests.app.conftest import ROOT

AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "c" * 40,
    "client_id": "retention",
    "client_secret": "x",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
ISSUER = "http://idp.test"


@pytest.fixture
def provider(monkeypatch):
    """The provider answers (its check is replaced); returns the list of problems to report."""
    from pages.ui import people
    from retention import auth

    answer: list[str] = []
    monkeypatch.setattr(
        auth, "provider_problem", lambda url, timeout=5: answer[0] if answer else None
    )
    people._checks.clear()
    yield answer
    people._checks.clear()


def _app(auth=AUTH, user=None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = dict(auth)
    at.user = dict(user) if user else {"is_logged_in": False}
    return at.run()


def _person(sub: str) -> dict:
    return {"is_logged_in": True, "iss": ISSUER, "sub": sub, "email": f"{sub}@example.com"}


def _texts(at) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.error, *at.title, *at.caption])


def test_a_visitor_sees_only_the_sign_in_page(app_workspace, planted_dataset, provider):
    at = _app()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.selectbox and not at.sidebar.children
    assert "Sign in with your team account" in _texts(at)
    assert "planted" not in _texts(at).lower()


@pytest.mark.parametrize("missing", ["cookie_secret", "client_id", "server_metadata_url"])
def test_missing_setting_is_named_and_nothing_served(app_workspace, provider, missing):
    at = _app({k: v for k, v in AUTH.items() if k != missing})
    assert not at.exception
    assert "Sign-in is not working" in at.error[0].value and f"'{missing}'" in at.error[0].value
    assert not at.button and not at.selectbox


def test_an_unreachable_provider_is_named(app_workspace, provider):
    provider.append("The sign-in provider cannot be reached at http://127.0.0.1:9/ (refused).")
    at = _app(user=_person("alice"))  # even a signed-in cookie gets nothing
    assert "cannot be reached" in at.error[0].value
    assert not at.button and not at.selectbox


def test_each_person_has_their_own_workspace(app_workspace, provider):
    from retention import auth
    from retention.workspace import Workspace

    root = app_workspace.folder
    alice = _app(user=_person("alice"))
    assert not alice.exception
    assert "Signed in as **alice@example.com**" in _texts(alice)
    assert "Sign out" in [b.label for b in alice.button]
    folder = auth.person_folder(root, ISSUER, "alice")
    assert folder.is_dir()  # her workspace, with the samples loaded on first sign-in
    ws = Workspace(folder)
    names = set(ws.datasets()["name"])
    assert names
    ws.rename_dataset(ws.datasets()["id"][0], "Alice's secret shop")

    bob = _app(user=_person("bob"))
    bob_ws = Workspace(auth.person_folder(root, ISSUER, "bob"))
    assert "Alice's secret shop" not in set(bob_ws.datasets()["name"])
    assert "Alice's secret shop" not in str(bob.selectbox(key="sidebar.dataset").options)
    assert len(bob.selectbox(key="sidebar.dataset").options) == len(bob_ws.datasets())
    assert bob.session_state["dataset_id"] in set(bob_ws.datasets()["id"])
    assert not set(bob_ws.datasets()["id"]) & set(ws.datasets()["id"])
    assert len(app_workspace.datasets()) == 0  # the root is nobody's workspace


def test_team_workspace_read_only_and_publish(app_workspace, provider, monkeypatch):
    from retention import auth
    from retention.errors import InputError
    from retention.workspace import Workspace

    monkeypatch.setenv(auth.TEAM_ENV, "1")
    alice = _app(user=_person("alice"))
    assert not alice.exception
    alice.button(key="people.publish").click().run()
    team = Workspace(auth.team_folder(app_workspace.folder))
    published = team.datasets()
    assert len(published) == 1
    assert "(published by alice@example.com, " in published["name"][0]

    bob = _app(user=_person("bob"))
    bob.radio(key="people.team_view").set_value(True).run()
    assert not bob.exception
    assert bob.session_state["dataset_id"] == published["id"][0]  # bob looks at the team's
    from pages.ui.common import _open_workspace

    served = _open_workspace(str(auth.team_folder(app_workspace.folder)))  # what the app uses
    with pytest.raises(InputError, match="team workspace is read-only"):
        served.check_room()  # adding a dataset or starting a run there is refused in words

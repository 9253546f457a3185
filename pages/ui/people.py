"""Who uses the app: the sign-in gate of a team server, each person's workspace, the team's.

Without an ``[auth]`` section in ``.streamlit/secrets.toml`` none of this shows: the app is the
one-person app on the local workspace. With it, ``app.py`` calls :func:`sign_in_gate` before
anything else: a person who is not signed in (or a server whose sign-in settings are broken)
gets the sign-in page and nothing else. A signed-in person works in their own workspace
(:func:`retention.auth.person_folder`), and every cache of the app is keyed by that folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from retention import auth
from retention.errors import InputError

log = logging.getLogger("retention")

#: This session's choice of workspace: False (their own) or True (the team's, read-only).
TEAM_VIEW = "people.team_view"
TEAM_READ_ONLY = (
    "The team workspace is read-only: nothing can be added or computed in it. Switch back to "
    "your workspace in the sidebar (Team workspace) to work; publish from there to share."
)
#: How long a provider check is trusted (seconds): a working one rarely, a broken one often.
_RECHECK_OK = 300.0
_RECHECK_BROKEN = 15.0
_checks: dict[str, tuple[float, str | None]] = {}
_checks_lock = threading.Lock()


@dataclass(frozen=True)
class Person:
    """A signed-in person: the key of their workspace folder and how to call them."""

    key: str
    issuer: str
    subject: str
    name: str
    email: str | None


def auth_section() -> dict[str, Any] | None:
    """The ``[auth]`` section of the secrets, or None when sign-in is not configured."""
    try:
        if st.secrets._secrets is None and not st.secrets.load_if_toml_exists():
            return None
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - a broken secrets file is reported by Streamlit's log
        return None
    if section is None:
        return None
    if hasattr(section, "to_dict"):
        section = section.to_dict()
    return dict(section) if isinstance(section, Mapping) else None


def sign_in_on() -> bool:
    """True when the server signs people in (an ``[auth]`` section exists)."""
    return auth_section() is not None


def _provider_problem(url: str) -> str | None:
    """:func:`retention.auth.provider_problem`, asked again at most every few seconds."""
    now = time.monotonic()
    with _checks_lock:
        seen = _checks.get(url)
    if seen is not None:
        when, problem = seen
        if now - when < (_RECHECK_BROKEN if problem else _RECHECK_OK):
            return problem
    problem = auth.provider_problem(url)
    with _checks_lock:
        _checks[url] = (now, problem)
    if problem:
        log.error("Sign-in is not working: %s", problem)
    return problem


def sign_in_gate() -> None:
    """On a server with sign-in: stop here with the sign-in page unless someone is signed in
    (and with what is wrong, when the sign-in settings or the provider are broken)."""
    section = auth_section()
    if section is None:
        return
    settings, problems = auth.settings_problems(section)
    if settings is not None:
        problem = _provider_problem(settings.server_metadata_url)
        problems = [problem] if problem else []
    elif not st.session_state.get("people.logged_problems"):
        st.session_state["people.logged_problems"] = True
        log.error("Sign-in is not configured correctly: %s", " ".join(problems))
    if problems:
        _sign_in_page(None, problems)
    if not st.user.is_logged_in:
        _sign_in_page(settings.provider if settings else None, [])
    person()  # a token without a subject is refused here, in words


def _sign_in_page(provider: str | None, problems: list[str]) -> None:
    """The only page a visitor who is not signed in sees; stops the script."""
    from pages.ui.common import app_pages, mark_routed

    st.navigation(app_pages(), position="hidden")  # no page menu, no page runs
    mark_routed()
    st.title("Retention Studio")
    if problems:
        st.error(
            "**Sign-in is not working, so the app is closed.**\n\n"
            + "\n".join(f"- {p}" for p in problems)
            + "\n\nWhoever runs this server: fix `.streamlit/secrets.toml` (the example is in "
            "`.streamlit/secrets.example.toml`; README, *Serving a team*) and restart the app.",
            icon=":material/lock:",
        )
        st.stop()
    st.markdown(
        "Sign in with your team account to see your datasets. Each person has their own "
        "workspace on this server: nobody else sees what you add or compute."
    )
    st.button(
        "Sign in",
        key="people.sign_in",
        type="primary",
        icon=":material/login:",
        on_click=lambda: st.login(provider) if provider else st.login(),
    )
    st.stop()


def person() -> Person | None:
    """The signed-in person, or None when the server does not sign people in."""
    if not sign_in_on():
        return None
    user = st.user
    if not user.is_logged_in:
        st.stop()  # the gate shows the sign-in page; nothing is served to a visitor
    issuer = str(user.get("iss") or "")
    subject = str(user.get("sub") or "")
    try:
        key = auth.person_key(issuer, subject)
    except InputError as exc:
        st.error(exc.in_app, icon=":material/error:")
        st.stop()
        raise
    email = user.get("email")
    name = str(user.get("name") or email or subject)
    return Person(key, issuer, subject, name, str(email) if email else None)


def team_offered() -> bool:
    """True when the server offers a team workspace (``RETENTION_TEAM_WORKSPACE=1`` or
    ``[retention] team_workspace = true`` in the secrets) and someone is signed in."""
    if not sign_in_on():
        return False
    if os.environ.get(auth.TEAM_ENV, "").strip() not in ("", "0"):
        return True
    try:
        return bool((st.secrets.get("retention") or {}).get("team_workspace"))
    except Exception:  # noqa: BLE001
        return False


def people_folder(root: Path) -> tuple[Path, str | None] | None:
    """(folder, why it is read-only or None) of the workspace this session works in, or None
    when the server does not sign people in (then the root is the workspace)."""
    who = person()
    if who is None:
        return None
    if team_offered() and st.session_state.get(TEAM_VIEW):
        return auth.team_folder(root), TEAM_READ_ONLY
    return root / auth.PEOPLE_FOLDER / who.key, None


def people_sidebar() -> None:
    """Who is signed in, Sign out, and the team workspace (shown only with sign-in)."""
    who = person()
    if who is None:
        return
    st.caption(f"Signed in as **{who.name}**")
    if team_offered():
        _team_box(who)
    st.button(
        "Sign out",
        key="people.sign_out",
        icon=":material/logout:",
        on_click=st.logout,
        help="Ends your session here: the next visit asks you to sign in again.",
    )


def _team_box(who: Person) -> None:
    from pages.ui.common import current_dataset_id

    with st.expander("Team workspace", icon=":material/groups:"):
        st.radio(
            "Show",
            [False, True],
            key=TEAM_VIEW,
            format_func=lambda team: "The team's (read-only)" if team else "Mine",
            help="The team workspace holds what people published for everyone. You can look "
            "at it but not change it; to share your own dataset, publish it from yours.",
        )
        if st.session_state.get(TEAM_VIEW):
            st.caption("You are looking at the team workspace: read-only.")
            return
        dataset_id = current_dataset_id()
        if dataset_id is None:
            return
        st.button(
            "Publish this dataset to the team",
            key="people.publish",
            icon=":material/publish:",
            on_click=_publish,
            args=(who, dataset_id),
            help="Copies this dataset and its finished segmentations and trainings into the "
            "team workspace, with your name and the time. Later changes stay in yours.",
        )
        done = st.session_state.pop(_PUBLISHED, None)
        if done:
            (st.error if done.startswith("!") else st.success)(done.lstrip("!"))


_PUBLISHED = "people.published"


def _publish(who: Person, dataset_id: str) -> None:
    """Copy the dataset into the team workspace (the button's callback)."""
    from pages.ui.common import open_workspace_at, workspace, workspace_root

    team = open_workspace_at(auth.team_folder(workspace_root()), None)
    try:
        auth.publish_dataset(workspace(), dataset_id, team, who.name)
    except InputError as exc:
        st.session_state[_PUBLISHED] = "!" + exc.in_app
    else:
        st.session_state[_PUBLISHED] = "Published: the team sees a copy in the team workspace."

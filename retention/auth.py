"""Sign-in for a team server: what is wrong with its settings, where each person's work lives.

The app signs people in with Streamlit's built-in OpenID Connect (``st.login``), configured in an
``[auth]`` section of ``.streamlit/secrets.toml`` (``.streamlit/secrets.example.toml`` documents
it). This module holds what does not need Streamlit, so it is tested on its own:

* :func:`settings_problems` reads the ``[auth]`` section and says, in words, which setting is
  missing (a sign-in page that only says "error" helps nobody, and Streamlit's own message
  comes only after someone pressed "Sign in").
* :func:`provider_problem` asks the identity provider for its OpenID configuration, so a
  provider that cannot be reached is reported on the sign-in page and in the log at once.
* :func:`person_folder`: each person's workspace, a folder named by a hash of who they are at
  their provider (issuer + subject, both stable; an e-mail address can change or be reused),
  under the server's workspace root. The optional team workspace is :data:`TEAM_FOLDER` there.
* :func:`publish_dataset` copies a dataset and its finished runs into the team workspace,
  recording who published it and when.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retention.errors import InputError

log = logging.getLogger("retention")

#: Settings every ``[auth]`` section needs (Streamlit's own names).
SHARED_KEYS = ("redirect_uri", "cookie_secret")
#: Settings the identity provider's part needs (in ``[auth]`` or in ``[auth.NAME]``).
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
#: Each person's workspace is ``<root>/people/<hash>``; the team's is ``<root>/team``.
PEOPLE_FOLDER = "people"
TEAM_FOLDER = "team"
#: Set to 1 (or ``[retention] team_workspace = true`` in the secrets) to offer a team workspace.
TEAM_ENV = "RETENTION_TEAM_WORKSPACE"
#: The most a person's workspace may hold, in megabytes (signed-in servers only).
WORKSPACE_LIMIT_ENV = "RETENTION_WORKSPACE_LIMIT_MB"
DEFAULT_WORKSPACE_LIMIT_MB = 5000
#: How long the provider check may wait (seconds).
PROVIDER_TIMEOUT = 5.0


@dataclass(frozen=True)
class SignIn:
    """The sign-in settings the app needs: which provider ``st.login`` is called with (None:
    the one configured directly in ``[auth]``) and where its OpenID configuration is."""

    provider: str | None
    server_metadata_url: str


def _provider_sections(auth: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {k: v for k, v in auth.items() if isinstance(v, Mapping) and k != "client_kwargs"}


def settings_problems(auth: Mapping[str, Any]) -> tuple[SignIn | None, list[str]]:
    """The sign-in settings of an ``[auth]`` section, or what is wrong with them.

    Returns ``(settings, [])`` when they are complete, else ``(None, problems)``: one sentence
    per missing setting, naming the file and the section. Values are never repeated.
    """
    problems = [
        f"The setting '{key}' is missing from the [auth] section of .streamlit/secrets.toml."
        for key in SHARED_KEYS
        if not str(auth.get(key) or "").strip()
    ]
    sections = _provider_sections(auth)
    if any(auth.get(key) for key in PROVIDER_KEYS) or not sections:
        name, section, where = None, auth, "[auth]"
    elif len(sections) == 1:
        name, section = next(iter(sections.items()))
        where = f"[auth.{name}]"
    else:
        names = ", ".join(f"[auth.{n}]" for n in sorted(sections))
        problems.append(
            f"The secrets name several identity providers ({names}); this app signs people in "
            "with one. Keep one of them."
        )
        return None, problems
    problems += [
        f"The setting '{key}' is missing from the {where} section of .streamlit/secrets.toml."
        for key in PROVIDER_KEYS
        if not str(section.get(key) or "").strip()
    ]
    redirect = str(auth.get("redirect_uri") or "")
    if redirect and not redirect.rstrip("/").endswith("/oauth2callback"):
        problems.append(
            "The setting 'redirect_uri' in [auth] must be the app's address followed by "
            f"/oauth2callback (for example https://retention.example.com/oauth2callback). Got "
            f"{redirect!r}."
        )
    if problems:
        return None, problems
    return SignIn(name, str(section["server_metadata_url"]).strip()), []


def provider_problem(url: str, timeout: float = PROVIDER_TIMEOUT) -> str | None:
    """Why the identity provider's OpenID configuration at ``url`` cannot be used (None: it can).

    Fetches the document once; a provider that does not answer, answers with an error or with
    something that is not an OpenID configuration is a problem stated in words.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the admin's URL
            document = json.loads(response.read(1_000_000))
    except urllib.error.HTTPError as exc:
        return f"The sign-in provider answered {url} with an error ({exc.code} {exc.reason})."
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return f"The sign-in provider cannot be reached at {url} ({reason})."
    except ValueError:
        return f"The sign-in provider's address {url} did not answer with an OpenID configuration."
    if not isinstance(document, dict) or "authorization_endpoint" not in document:
        return f"The sign-in provider's address {url} did not answer with an OpenID configuration."
    return None


def person_key(issuer: str, subject: str) -> str:
    """A person's folder name: a hash of who they are at their provider (issuer + subject)."""
    if not subject:
        raise InputError("The identity provider did not say who signed in (no 'sub' claim).")
    return hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:32]


def person_folder(root: str | os.PathLike[str], issuer: str, subject: str) -> Path:
    """The workspace folder of the person ``subject`` of ``issuer`` under the server's root."""
    return Path(root) / PEOPLE_FOLDER / person_key(issuer, subject)


def team_folder(root: str | os.PathLike[str]) -> Path:
    return Path(root) / TEAM_FOLDER


def workspace_limit_bytes(value: str | None = None) -> int:
    """The most a person's workspace may hold: ``$RETENTION_WORKSPACE_LIMIT_MB`` or 5000 MB."""
    raw = value if value is not None else os.environ.get(WORKSPACE_LIMIT_ENV)
    if raw in (None, ""):
        return DEFAULT_WORKSPACE_LIMIT_MB * 1_000_000
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if megabytes <= 0:
        raise InputError(
            f"{WORKSPACE_LIMIT_ENV} must be a number of megabytes above 0. Got {raw!r}."
        )
    return int(megabytes * 1_000_000)


def publish_dataset(source: Any, dataset_id: str, team: Any, who: str) -> str:
    """Copy a dataset and its finished runs (with their segment names) from the workspace
    ``source`` into the team workspace ``team``; returns the copy's id there.

    The copy is named "<name> (published by <who>, <when>)" and keeps who and when in its
    report (``published_by``, ``published_at``). Later changes on either side stay on that side.
    """
    import pandas as pd

    info = source.dataset(dataset_id)
    when = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    runs = source.runs(dataset_id=dataset_id)
    runs = runs[runs["status"] == "done"] if not runs.empty else runs
    frames = {kind: source.load(dataset_id, kind) for kind in info.kinds}
    report = dict(info.report, published_by=who, published_at=when)
    new_id = team.save_dataset(
        name=f"{info.name} (published by {who}, {when})",
        source_name=info.source_name,
        sha256=info.sha256,
        shape=info.shape,
        frames=frames,
        mapping=info.mapping,
        report=report,
    )
    new_ids: dict[str, str] = {}

    def remap(value: Any) -> Any:
        if isinstance(value, str):
            return new_ids.get(value, new_id if value == dataset_id else value)
        if isinstance(value, dict):
            return {k: remap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [remap(v) for v in value]
        return value

    # Oldest first, so a policy's segmentation is copied (and its new id known) before it.
    for run_id in reversed(list(runs["id"])):
        run = source.load_run(run_id)
        copy_id = team.start_run(run.kind, new_id, remap(run.settings))
        new_ids[run_id] = copy_id
        team.finish_run(
            copy_id,
            metrics=remap(run.metrics),
            artifacts={name: remap(value) for name, value in run.artifacts.items()},
            settings=remap(run.settings),
        )
        for segment, name in source.segment_names(run_id).items():
            team.rename_segment(copy_id, segment, name)
    log.info("%s published dataset %s as %s in the team workspace", who, dataset_id, new_id)
    return new_id

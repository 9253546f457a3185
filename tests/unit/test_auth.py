"""Sign-in settings, the provider check, each person's folder, the workspace size limit and
publishing to the team workspace (retention.auth)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from retention import auth
from retention.errors import InputError
from retention.workspace import Workspace

GOOD = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "s" * 40,
    "client_id": "retention",
    "client_secret": "x",
    "server_metadata_url": "http://localhost:9/.well-known/openid-configuration",
}


def test_complete_settings():
    settings, problems = auth.settings_problems(GOOD)
    assert problems == []
    assert settings == auth.SignIn(None, GOOD["server_metadata_url"])


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_each_missing_setting_is_named(missing):
    settings, problems = auth.settings_problems({k: v for k, v in GOOD.items() if k != missing})
    assert settings is None
    assert len(problems) == 1
    assert f"'{missing}'" in problems[0] and ".streamlit/secrets.toml" in problems[0]
    assert GOOD["cookie_secret"] not in problems[0]  # values are never repeated


def test_a_named_provider_section():
    shared = {"redirect_uri": GOOD["redirect_uri"], "cookie_secret": "c" * 40}
    provider = {k: GOOD[k] for k in auth.PROVIDER_KEYS}
    settings, problems = auth.settings_problems({**shared, "okta": provider})
    assert problems == [] and settings.provider == "okta"
    _, problems = auth.settings_problems({**shared, "okta": {"client_id": "a"}})
    assert any("[auth.okta]" in p and "'client_secret'" in p for p in problems)
    _, problems = auth.settings_problems({**shared, "okta": provider, "google": provider})
    assert "several identity providers" in problems[0]


def test_a_redirect_uri_without_the_callback_path():
    _, problems = auth.settings_problems({**GOOD, "redirect_uri": "http://localhost:8501/"})
    assert "/oauth2callback" in problems[0]


def _serve(body: bytes, status: int = 200):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/.well-known/openid-configuration"


def test_provider_check():
    document = json.dumps({"issuer": "x", "authorization_endpoint": "http://x/auth"}).encode()
    server, url = _serve(document)
    try:
        assert auth.provider_problem(url) is None
    finally:
        server.shutdown()
    server, url = _serve(b"<html>not it</html>")
    try:
        assert "did not answer with an OpenID configuration" in auth.provider_problem(url)
    finally:
        server.shutdown()
    server, url = _serve(b"gone", status=404)
    try:
        assert "404" in auth.provider_problem(url)
    finally:
        server.shutdown()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    problem = auth.provider_problem(f"http://127.0.0.1:{port}/x", timeout=2)
    assert "cannot be reached" in problem and str(port) in problem


def test_person_folders(tmp_path):
    a = auth.person_folder(tmp_path, "https://idp.example", "alice")
    assert a == auth.person_folder(tmp_path, "https://idp.example", "alice")  # stable
    assert a.parent == tmp_path / "people" and "alice" not in a.name
    assert a != auth.person_folder(tmp_path, "https://idp.example", "bob")
    assert a != auth.person_folder(tmp_path, "https://other.example", "alice")  # issuer counts
    with pytest.raises(InputError, match="'sub'"):
        auth.person_key("https://idp.example", "")


def test_workspace_limit_setting():
    assert auth.workspace_limit_bytes("") == auth.DEFAULT_WORKSPACE_LIMIT_MB * 1_000_000
    assert auth.workspace_limit_bytes("2.5") == 2_500_000
    with pytest.raises(InputError, match=auth.WORKSPACE_LIMIT_ENV):
        auth.workspace_limit_bytes("lots")


def _save(ws: Workspace, name: str = "shop") -> str:
    events = pd.DataFrame(
        {"user_id": ["u1", "u2"], "timestamp": pd.to_datetime(["2024-01-01", "2024-02-01"])}
    )
    return ws.save_dataset(
        name=name, source_name="shop.csv", sha256=None, shape="events",
        frames={"events": events}, mapping={}, report={},
    )  # fmt: skip


def test_a_full_workspace_refuses_more_in_words(tmp_path):
    ws = Workspace(tmp_path / "ws")
    try:
        _save(ws)
        ws.size_limit = ws.used_bytes()  # full now
        with pytest.raises(InputError, match="Your workspace is full") as caught:
            _save(ws, "another")
        assert "Delete datasets" in str(caught.value)
        with pytest.raises(InputError, match="Your workspace is full"):
            ws.start_run("segmentation", None, {})
        assert len(ws.datasets()) == 1
        ws.size_limit = None
        ws.read_only = "The team workspace is read-only."
        with pytest.raises(InputError, match="read-only"):
            _save(ws, "another")
    finally:
        ws.close()


def test_publish_copies_a_dataset_and_its_runs_with_who_and_when(tmp_path):
    mine, team = Workspace(tmp_path / "mine"), Workspace(tmp_path / "team")
    try:
        dataset = _save(mine)
        seg = mine.start_run("segmentation", dataset, {"k": 2})
        mine.finish_run(seg, metrics={"n": 2}, artifacts={"table": pd.DataFrame({"a": [1]})})
        mine.rename_segment(seg, 0, "Loyal")
        policy = mine.start_run("policy", dataset, {"segmentation_run": seg})
        mine.finish_run(policy, metrics={}, artifacts={})
        failed = mine.start_run("policy", dataset, {"segmentation_run": seg, "x": 1})
        mine.fail_run(failed, "no")

        copy = auth.publish_dataset(mine, dataset, team, "Alice")
        info = team.dataset(copy)
        assert info.name.startswith("shop (published by Alice, ")
        assert info.report["published_by"] == "Alice" and "UTC" in info.report["published_at"]
        pd.testing.assert_frame_equal(team.load(copy, "events"), mine.load(dataset, "events"))
        runs = team.runs(dataset_id=copy)
        assert sorted(runs["kind"]) == ["policy", "segmentation"]  # finished runs only
        new_seg = runs.loc[runs["kind"] == "segmentation", "id"].item()
        new_policy = team.load_run(runs.loc[runs["kind"] == "policy", "id"].item())
        assert new_policy.settings["segmentation_run"] == new_seg  # points at the copy
        assert team.segment_names(new_seg) == {0: "Loyal"}
        assert team.load_run(new_seg).artifacts["table"]["a"].tolist() == [1]
        assert list(mine.datasets()["id"]) == [dataset]  # the original is untouched
    finally:
        mine.close()
        team.close()

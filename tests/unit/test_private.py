"""Private by default (issue 21): what the product writes is readable by its owner only, and the
app is served on this computer only unless sign-in (or an explicit flag) says otherwise."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import psutil
import pytest

from retention import serve
from retention.private import restrict_umask, tighten_tree
from retention.synth import make_planted
from retention.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-client-value-never-printed"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose(folder: Path) -> list[str]:
    """Everything under ``folder`` (itself included) that another account could read."""
    paths = [folder, *folder.rglob("*")]
    return [f"{p} {oct(_mode(p))}" for p in paths if not p.is_symlink() and _mode(p) & 0o077]


def _run(args: list[str], umask: int, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The command line in a new process whose umask is ``umask`` (as a user's shell sets it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(umask),  # noqa: PLW1509 - the point of the test
        timeout=900,
    )


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """A small behaviour-only event log (no text: no model to load)."""
    planted = make_planted(n_users=120, n_periods=12, seed=5)
    path = tmp_path_factory.mktemp("private") / "events.csv"
    planted.events.drop(columns=["text"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o027])
def test_the_command_line_writes_nothing_others_can_read(tmp_path, events_file, umask):
    ws, out, backup = tmp_path / "ws", tmp_path / "out", tmp_path / "backups" / "ws.zip"
    done = _run(["run", str(events_file), "--out", str(out), "--workspace", str(ws),
                 "--segments", "3", "--episodes", "20", "--quiet"], umask)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _mode(ws) == 0o700 and _mode(ws / "retention.duckdb") == 0o600
    assert _mode(out) == 0o700
    assert {p.name: _mode(p) for p in out.iterdir()} == {
        name: 0o600
        for name in ("report.html", "strategies.csv", "summary.json", "user_segments.csv")
    }
    saved = _run(["backup", "--workspace", str(ws), "--to", str(backup)], umask)
    assert saved.returncode == 0, saved.stderr
    assert _mode(backup) == 0o600
    restored = tmp_path / "restored"
    back = _run(["restore", str(backup), "--workspace", str(restored)], umask)
    assert back.returncode == 0, back.stderr
    assert _loose(ws) == [] and _loose(out) == [] and _loose(restored) == []


def test_a_stricter_umask_is_kept():
    old = os.umask(0o277)
    try:
        restrict_umask()
        assert os.umask(0o277) == 0o277  # nothing was widened
        os.umask(0o022)
        restrict_umask()
        assert os.umask(0o022) == 0o077  # looser ones are narrowed to the owner only
    finally:
        os.umask(old)


def test_an_existing_loose_workspace_is_tightened_on_open_with_a_note(tmp_path, caplog):
    folder = tmp_path / "ws"
    Workspace(folder).close()
    folder.chmod(0o755)
    (folder / "retention.duckdb").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="retention"):
        Workspace(folder).close()
    assert _mode(folder) == 0o700 and _mode(folder / "retention.duckdb") == 0o600
    notes = [r.getMessage() for r in caplog.records if "owner only" in r.getMessage()]
    assert len(notes) == 2 and all("customer data" in n for n in notes), notes
    assert tighten_tree(folder) == 0  # nothing left to tighten, so no new note


def test_the_workspace_leaves_other_folders_in_its_parent_alone(tmp_path):
    """Only the workspace folder and its database files are tightened, not their neighbours."""
    neighbour = tmp_path / "notes.txt"
    neighbour.write_text("mine")
    neighbour.chmod(0o644)
    Workspace(tmp_path / "ws").close()
    assert _mode(neighbour) == 0o644


def test_upload_spool_and_ingest_staging_are_private():
    from retention.ingest.sources import _Spool
    from retention.ingest.staging import StagedTable  # noqa: F401 - documents where staging lives

    old = os.umask(0o022)
    try:
        spool = _Spool(b"user_id,ts\n1,2024-01-01\n")
        assert _mode(spool.path) == 0o600 and _mode(spool.path.parent) == 0o700
        spool.discard()
    finally:
        os.umask(old)


# -- serving -----------------------------------------------------------------------------------


def test_the_app_is_configured_for_this_computer_only():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert "retention.serve" in (ROOT / "Makefile").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_run_listens_on_loopback_only(tmp_path):
    """The server that `make run` starts (retention.serve with its defaults) binds 127.0.0.1."""
    port = _free_port()
    env = dict(os.environ, RETENTION_WORKSPACE=str(tmp_path / "ws"), PYTHONPATH=str(ROOT))
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a guard against a hung start, not a speed target
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(  # noqa: S310 - loopback
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=5
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start: " + (tmp_path / "server.log").read_text())
        listening = [
            c.laddr
            for c in psutil.Process(proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, "no listening socket"
        assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert "Network URL" not in (tmp_path / "server.log").read_text()


def _secrets(tmp_path: Path, auth: bool) -> Path:
    path = tmp_path / "secrets.toml"
    section = "[auth]\n" if auth else "[other]\n"
    path.write_text(
        f'{section}redirect_uri = "http://localhost:8501/oauth2callback"\n'
        f'cookie_secret = "{SECRET}"\nclient_id = "x"\nclient_secret = "{SECRET}"\n'
    )
    return path


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.10", "::", "shop-server"])
def test_a_network_address_needs_sign_in_or_an_explicit_flag(tmp_path, host):
    without = _secrets(tmp_path, auth=False)
    problem = serve.exposure_problem(host, allow_open=False, secrets=without)
    assert problem is not None and "sign-in" in problem and "--allow-open" in problem
    assert SECRET not in problem
    assert serve.exposure_problem(host, allow_open=True, secrets=without) is None
    assert serve.exposure_problem(host, allow_open=False, secrets=_secrets(tmp_path, True)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_nothing(tmp_path, host):
    assert serve.exposure_problem(host, allow_open=False, secrets=tmp_path / "absent") is None


def test_serve_refuses_an_open_address_with_one_line_and_no_secrets(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(serve, "SECRETS", _secrets(tmp_path, auth=False))
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not start the server"))
    assert serve.main(["--host", "0.0.0.0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert SECRET not in captured.err + captured.out


def test_serve_warns_when_allowed_open(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(serve, "SECRETS", _secrets(tmp_path, auth=False))
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append(argv))
    serve.main(["--host", "0.0.0.0", "--allow-open", "--port", "8599"])
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "WITHOUT sign-in" in err and SECRET not in err
    assert started and started[0][-6:] == [
        "--server.address", "0.0.0.0", "--server.port", "8599", "--server.headless", "true",
    ]  # fmt: skip

"""The DuckDB workspace: datasets, runs, embedding cache, atomicity and persistence."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-09", "2024-01-02"]),
            "amount": [1.0, 2.0, 3.5],
            "text": ["mug", "kettle", "mug"],
            "event": [None, None, None],
            '"; DROP TABLE datasets;--': ["x", "y", "z"],
        }
    )


def _save(ws: Workspace, name: str = "shop") -> str:
    return ws.save_dataset(
        name=name,
        source_name="shop.csv",
        sha256="00" * 32,
        shape="events",
        frames={"events": _events()},
        mapping={"user": "user_id", "time": "ts"},
        report={"rows": 3, "rows_used": 3},
    )


def test_dataset_round_trip_survives_reopen(tmp_path):
    ws = Workspace(tmp_path / "ws")
    dataset_id = _save(ws)
    ws.close()

    reopened = Workspace(tmp_path / "ws")
    info = reopened.dataset(dataset_id)
    assert (info.name, info.shape, info.rows, info.kinds) == ("shop", "events", 3, ("events",))
    assert info.mapping == {"user": "user_id", "time": "ts"}
    loaded = reopened.load(dataset_id, "events")
    pd.testing.assert_frame_equal(loaded, _events(), check_dtype=False)
    assert list(reopened.datasets()["id"]) == [dataset_id]
    reopened.close()


def test_hostile_column_name_is_only_data(workspace):
    dataset_id = _save(workspace)
    assert '"; DROP TABLE datasets;--' in workspace.load(dataset_id, "events").columns
    assert len(workspace.datasets()) == 1


def test_rename_and_delete(workspace):
    keep, gone = _save(workspace, "keep"), _save(workspace, "gone")
    run_id = workspace.start_run("segmentation", gone, {"k": 2})
    workspace.finish_run(run_id, metrics={}, artifacts={"x": np.arange(3)})
    workspace.rename_dataset(keep, "  Kept  ")
    workspace.delete_dataset(gone)
    assert list(workspace.datasets()["name"]) == ["Kept"]
    assert workspace.runs().empty
    tables = {r[0] for r in workspace.cursor().execute("SHOW TABLES").fetchall()}
    assert not any(gone in t for t in tables)
    with pytest.raises(InputError, match="no dataset"):
        workspace.dataset(gone)
    with pytest.raises(InputError, match="empty"):
        workspace.rename_dataset(keep, "   ")


def test_failed_save_leaves_no_trace(workspace):
    # The tables are written first; the metadata then fails: everything must roll back.
    with pytest.raises(TypeError):
        workspace.save_dataset(
            name="bad",
            source_name=None,
            sha256=None,
            shape="events",
            frames={"events": _events(), "campaigns": _events()[["user_id", "ts"]]},
            mapping={},
            report={"not json": object()},
        )
    assert workspace.datasets().empty
    tables = [t[0] for t in workspace.cursor().execute("SHOW TABLES").fetchall()]
    assert not [t for t in tables if t.startswith("ds_")]


def test_embedding_cache(workspace):
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    workspace.cache_vectors("model-a", ["h1", "h2"], vectors)
    workspace.cache_vectors("model-a", ["h1"], np.zeros((1, 3)))  # existing entries are kept
    got = workspace.cached_vectors("model-a", ["h1", "h2", "h3"])
    assert set(got) == {"h1", "h2"}
    np.testing.assert_array_equal(got["h1"], vectors[0])
    assert workspace.cached_vectors("model-b", ["h1"]) == {}


def test_runs_store_artifacts_and_are_found_by_settings(workspace):
    dataset_id = _save(workspace)
    settings = {"k": "auto", "text_weight": 0.5}
    run_id = workspace.start_run("segmentation", dataset_id, settings)
    assert workspace.find_run("segmentation", dataset_id, settings) is None  # not done yet
    frame = pd.DataFrame({"user_id": ["a", "b"], "segment": [0, 1]})
    workspace.finish_run(
        run_id,
        metrics={"silhouette": 0.4},
        artifacts={"assignments": frame, "q": np.eye(2), "meta": {"k": 2}},
    )
    found = workspace.find_run("segmentation", dataset_id, {"text_weight": 0.5, "k": "auto"})
    assert found is not None and found.id == run_id and found.status == "done"
    pd.testing.assert_frame_equal(found.artifacts["assignments"], frame)
    np.testing.assert_array_equal(found.artifacts["q"], np.eye(2))
    assert found.artifacts["meta"] == {"k": 2}
    assert workspace.find_run("segmentation", dataset_id, {"k": 3}) is None
    workspace.rename_segment(run_id, 1, "Gardeners")
    assert workspace.segment_names(run_id) == {1: "Gardeners"}


def test_killed_run_shows_as_interrupted(tmp_path):
    folder = tmp_path / "ws"
    script = textwrap.dedent(
        f"""
        import os, signal
        from retention.workspace import Workspace
        ws = Workspace({str(folder)!r})
        ws.start_run("policy", None, {{"gamma": 0.9}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT)
    assert proc.returncode == -9
    ws = Workspace(folder)
    runs = ws.runs("policy")
    assert list(runs["status"]) == ["failed"]
    assert "interrupted" in runs["error"].iloc[0]
    ws.close()


def test_workspace_in_use_by_another_process_is_a_clear_error(tmp_path):
    folder = tmp_path / "ws"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from retention.workspace import Workspace; "
            f"Workspace({str(folder)!r}); print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from retention.workspace import Workspace; Workspace({str(folder)!r})",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert probe.returncode != 0
        assert "in use by another program" in probe.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_version_1_workspace_gains_the_jobs_table(tmp_path):
    import duckdb

    from retention.workspace import _MIGRATIONS, SCHEMA_VERSION

    folder = tmp_path / "old"
    folder.mkdir()
    con = duckdb.connect(str(folder / "retention.duckdb"))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for statement in _MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.close()

    ws = Workspace(folder)
    try:
        assert ws.get_meta("schema_version") == str(SCHEMA_VERSION)
        job_id = ws.add_job("segmentation", None, {"k": 3}, "local")
        job = ws.job(job_id)
        assert (job.status, job.settings, job.progress) == ("queued", {"k": 3}, 0.0)
        assert ws.start_job(job_id) and not ws.start_job(job_id)
        assert ws.end_job(job_id, "done", run_id="r1") and not ws.end_job(job_id, "failed")
        assert (ws.job(job_id).status, ws.job(job_id).run_id) == ("done", "r1")
    finally:
        ws.close()


def test_a_job_left_running_by_a_dead_process_is_interrupted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    running, queued = (ws.add_job("policy", None, {"n": i}, "local") for i in range(2))
    ws.start_job(running)
    ws._write(lambda cur: cur.execute("UPDATE jobs SET pid = 2147483646 WHERE id = ?", [running]))
    ws.close()

    ws = Workspace(tmp_path / "ws")
    try:
        assert ws.job(running).status == "interrupted"
        assert "app stopped" in ws.job(running).error
        assert ws.job(queued).status == "queued"
    finally:
        ws.close()

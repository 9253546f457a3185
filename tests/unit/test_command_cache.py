"""An identical rerun of ``python -m retention run`` reopens the kept outputs (issue 19), and
anything that could change them (settings, a renamed segment, a deleted dataset) recomputes."""

from __future__ import annotations

import json

import pytest

from retention.cli import main
from retention.command_cache import FOLDER
from retention.synth import make_planted
from retention.workspace import Workspace


@pytest.fixture(scope="module")
def orders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orders")
    planted = make_planted(n_users=240, n_periods=14, seed=4, n_segments=3)
    planted.events.to_csv(folder / "orders.csv", index=False)
    return folder / "orders.csv"


def _run(orders, out, ws, *extra: str) -> dict:
    args = ["run", str(orders), "--out", str(out), "--workspace", str(ws), "--quiet"]
    assert main([*args, "--segments", "3", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _results(summary: dict) -> dict:
    """The summary without what describes the run itself."""
    return {
        k: v
        for k, v in summary.items()
        if k not in ("timings", "peak_memory_mb", "reused_from", "workspace")
    }


def test_an_identical_rerun_reopens_the_outputs(orders, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    first = _run(orders, tmp_path / "a", ws)
    assert "reused_from" not in first and "segments" in first["timings"]

    def no_pipeline(*args, **kwargs):
        raise AssertionError("an identical rerun should not run the pipeline")

    with monkeypatch.context() as patched:
        patched.setattr("retention.pipeline.run_pipeline", no_pipeline)
        again = _run(orders, tmp_path / "b", ws)
    assert set(again["timings"]) == {"reused"}
    assert again["reused_from"]["segmentation_run"] == first["workspace"]["segmentation_run"]
    assert _results(again) == _results(first)
    for name in ("strategies.csv", "user_segments.csv", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    # Another setting: computed (and its own outputs kept beside the first ones).
    other = _run(orders, tmp_path / "c", ws, "--seed", "7")
    assert "reused_from" not in other

    # A segment renamed in the app since: the report must show the new name, so recompute.
    workspace = Workspace(ws)
    workspace.rename_segment(first["workspace"]["segmentation_run"], 0, "Gardeners")
    workspace.close()
    renamed = _run(orders, tmp_path / "d", ws)
    assert "reused_from" not in renamed
    assert "Gardeners" in (tmp_path / "d" / "report.html").read_text()
    assert "reused_from" in _run(orders, tmp_path / "e", ws)  # and kept again

    # Deleting the dataset deletes the outputs kept from it.
    assert list((ws / FOLDER).iterdir())
    workspace = Workspace(ws)
    workspace.delete_dataset(first["workspace"]["dataset"])
    workspace.close()
    assert not list((ws / FOLDER).iterdir())
    assert "reused_from" not in _run(orders, tmp_path / "f", ws)


def test_another_input_file_is_never_mistaken_for_the_kept_one(orders, tmp_path):
    ws = tmp_path / "ws"
    mine = tmp_path / "orders.csv"
    mine.write_bytes(orders.read_bytes())
    _run(mine, tmp_path / "a", ws)
    lines = mine.read_text().splitlines()
    mine.write_text("\n".join(lines[:-5]) + "\n")  # the same file, other bytes
    assert "reused_from" not in _run(mine, tmp_path / "b", ws)

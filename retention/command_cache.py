"""A rerun of ``python -m retention run`` that can only write what the last one wrote, reopened.

Every step of the command is seeded, so the same input bytes, the same settings and the same code
give the same four output files. The command keeps the outputs of its last runs in the workspace
(``<workspace>/command_outputs/<fingerprint>/``, readable by the owner only, the newest
:data:`KEEP` kept) and a rerun with the same fingerprint copies them instead of recomputing
(issue 19: the warm rerun on full Online Retail in well under 1.5 s, most of it Python's start).

The fingerprint (:func:`fingerprint`) covers the input's and campaign log's bytes (SHA-256) and
path, every setting of :class:`~retention.config.PipelineConfig` but the workspace, the
package's own source files and the versions of the libraries that compute results. What the
workspace adds is checked before reuse: the dataset and both runs still exist and are finished,
and the segments still have the names the outputs show (a segment renamed in the app since gives
a recomputed report). A model folder given as the text model is never reused (its files could
change under the same path). Anything else, or a kept entry that cannot be read, runs the
command as before.

``summary.json`` of a reused run says so: ``timings`` is ``{"reused": seconds}`` and
``reused_from`` names the run it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retention.hashing import file_sha256, hashes_for_this_run

if TYPE_CHECKING:
    from retention.config import PipelineConfig

FOLDER = "command_outputs"
FILES = ("summary.json", "strategies.csv", "user_segments.csv", "report.html")
STATE = "state.json"
KEEP = 4
#: Libraries whose version can change a result (a new version: a recomputed run).
LIBRARIES = ("numpy", "pandas", "duckdb", "scikit-learn", "scipy", "lifelines", "torch",
             "sentence-transformers", "transformers", "plotly")  # fmt: skip
_OWN_MODELS = ("auto", "english", "multilingual")


def code_digest() -> str:
    """SHA-256 of the package's source files and the versions in :data:`LIBRARIES`."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    for name in LIBRARIES:
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent".encode())
    return digest.hexdigest()


def fingerprint(config: PipelineConfig) -> str | None:
    """What decides the outputs, hashed; None when they cannot be told from the settings (a
    model folder as text model) or a file cannot be read."""
    if config.text_model not in _OWN_MODELS:
        return None
    settings = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("workspace",)
    }
    try:
        settings["input_sha256"] = file_sha256(Path(config.input))
        if config.campaigns is not None:
            settings["campaigns_sha256"] = file_sha256(Path(config.campaigns))
    except OSError:
        return None
    settings["code"] = code_digest()
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _workspace_folder(config: PipelineConfig) -> Path:
    from retention.workspace import DEFAULT_FOLDER

    chosen = config.workspace or os.environ.get("RETENTION_WORKSPACE")
    return Path(chosen or DEFAULT_FOLDER).expanduser().resolve()


def _workspace_state(folder: Path, ids: dict[str, str]) -> dict[str, Any] | None:
    """What the workspace adds to the outputs (the segment names), or None when the dataset or
    a run is gone or unfinished."""
    from retention.workspace import Workspace

    ws = Workspace(folder)
    try:
        ws.dataset(ids["dataset"])
        for run_id in (ids["segmentation_run"], ids["policy_run"]):
            if ws.load_run(run_id, artifacts=False).status != "done":
                return None
        names = ws.segment_names(ids["segmentation_run"])
        return {"names": {str(k): v for k, v in sorted(names.items())}}
    except Exception:  # anything missing or unreadable: recompute
        return None
    finally:
        ws.close()


def reuse(config: PipelineConfig, out: Path) -> bool:
    """Write the kept outputs of an identical earlier run into ``out`` (created); False when
    there are none (or they no longer hold), and nothing is written."""
    start = time.perf_counter()
    key = fingerprint(config)
    folder = _workspace_folder(config)
    kept = folder / FOLDER / key if key else None
    if kept is None or not (kept / STATE).is_file():
        return False
    try:
        state = json.loads((kept / STATE).read_text())
        if _workspace_state(folder, state["workspace"]) != state["added"]:
            shutil.rmtree(kept, ignore_errors=True)  # stale: the next run keeps a new one
            return False
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES[1:]:
            shutil.copyfile(kept / name, out / name)
        summary = json.loads((kept / "summary.json").read_text())
    except (OSError, ValueError, KeyError):
        for name in FILES:
            (out / name).unlink(missing_ok=True)
        return False
    summary.pop("peak_memory_mb", None)
    summary["reused_from"] = state["workspace"]
    summary["timings"] = {"reused": round(time.perf_counter() - start, 3)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.utime(kept)  # the newest kept: the last to be dropped
    return True


def keep(config: PipelineConfig, out: Path, summary: dict[str, Any]) -> None:
    """Keep the outputs just written to ``out`` for a rerun (never fails the command)."""
    from retention.private import make_private_dir

    key = fingerprint(config)
    if key is None:
        return
    ids = summary.get("workspace") or {}
    if not all(ids.get(k) for k in ("folder", "dataset", "segmentation_run", "policy_run")):
        return
    folder = Path(ids["folder"])
    ids = {k: ids[k] for k in ("dataset", "segmentation_run", "policy_run")}
    added = _workspace_state(folder, ids)
    if added is None:
        return
    root = folder / FOLDER
    tmp = root / f".{key}.tmp"
    try:
        make_private_dir(root)
        shutil.rmtree(tmp, ignore_errors=True)
        make_private_dir(tmp)
        for name in FILES:
            shutil.copyfile(out / name, tmp / name)
        (tmp / STATE).write_text(json.dumps({"workspace": ids, "added": added}))
        shutil.rmtree(root / key, ignore_errors=True)
        os.replace(tmp, root / key)
        entries = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        for old in entries[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    except OSError:  # a full disk: the next rerun recomputes
        shutil.rmtree(tmp, ignore_errors=True)


def forget_dataset(workspace_folder: Path, dataset_id: str) -> None:
    """Drop the kept outputs made from a dataset (it is being deleted)."""
    root = Path(workspace_folder) / FOLDER
    if not root.is_dir():
        return
    for entry in root.iterdir():
        try:
            state = json.loads((entry / STATE).read_text())
        except (OSError, ValueError):
            state = {"workspace": {"dataset": dataset_id}}  # unreadable: drop it too
        if state.get("workspace", {}).get("dataset") == dataset_id:
            shutil.rmtree(entry, ignore_errors=True)


def run_or_reuse(
    config: PipelineConfig, out: Path, progress: Callable[[float, str], None] | None = None
) -> None:
    """:func:`~retention.pipeline.run_pipeline` into ``out``, or the kept outputs of an identical
    earlier run (:func:`reuse`); a new run's outputs are kept (:func:`keep`). The input file is
    hashed once for the three that need its digest (:mod:`retention.hashing`)."""
    with hashes_for_this_run():
        _run_or_reuse(config, out, progress)


def _run_or_reuse(
    config: PipelineConfig, out: Path, progress: Callable[[float, str], None] | None
) -> None:
    if reuse(config, out):
        if progress is not None:
            progress(1.0, "Same file, settings and version as an earlier run: its outputs reused")
        return
    from retention.pipeline import run_pipeline

    summary = run_pipeline(config, out, progress=progress)
    keep(config, out, summary)

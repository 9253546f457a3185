"""Crash safety and durability (SPEC §9: persisted work survives ``kill -9``).

Real subprocesses — the command line on the planted sample, and small library scripts that
ingest, embed, cluster and train in a loop — are killed with SIGKILL at seeded random moments.
After every kill the workspace is reopened and checked against what the killed process had
reported as committed: it opens, lists only complete datasets (every table loads with its row
count), shows every interrupted run as ``failed`` with a reason that says so, and keeps
everything committed before the kill. The command line's ``--out DIR`` is either as it was or
complete, never partial. Then backups: backup → delete → restore gives back the same datasets
and runs, and the pipeline's warm rerun reuses them; a killed restore leaves the target whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from retention.cli import main
from retention.workspace import SCHEMA_VERSION, Workspace

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
OUTPUTS = ("report.html", "strategies.csv", "summary.json", "user_segments.csv")
KILLS: list[str] = []  # one entry per SIGKILL sent, for the suite-wide count
KILL_TESTS: set[str] = set()  # the kill tests that ran (the count needs all of them)
ALL_KILL_TESTS = 6  # test_cli_killed_at_every_step, ..._while_embedding, 4 library steps


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )


@pytest.fixture(scope="module")
def small_files(tmp_path_factory) -> dict[str, Path]:
    """The planted sample cut to its first 250 users: with text, and without (behaviour only)."""
    folder = tmp_path_factory.mktemp("small")
    events = pd.read_csv(SAMPLE / "planted_events.csv.gz")
    campaigns = pd.read_csv(SAMPLE / "planted_campaigns.csv.gz")
    users = sorted(events["user_id"].unique())[:250]
    events = events[events["user_id"].isin(users)]
    campaigns = campaigns[campaigns["user_id"].isin(users)]
    events.to_csv(folder / "events_text.csv", index=False)
    events.drop(columns=["text"]).to_csv(folder / "events.csv", index=False)
    campaigns.to_csv(folder / "campaigns.csv", index=False)
    return {
        "events_text": folder / "events_text.csv",
        "events": folder / "events.csv",
        "campaigns": folder / "campaigns.csv",
    }


# -- running and killing --------------------------------------------------------------------------


class _Proc:
    """A subprocess whose stdout and stderr lines are collected as they come.

    Kills are aimed by what the process reports it is doing (a line it printed), never by a
    wall-clock guess: how long a step takes depends on the machine and what else runs on it.
    """

    def __init__(self, args: list[str]) -> None:
        self.lines: list[str] = []  # stdout
        self.err_lines: list[str] = []  # stderr
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(
                target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    def wait_until(self, ready, what: str, timeout: float = 600.0) -> bool:
        """Wait until ``ready(self)``; False if the process exited first. The timeout only
        guards against a hung process: it is far above the slowest honest run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready(self):
                return True
            if self.proc.poll() is not None:
                for reader in self._readers:
                    reader.join(timeout=10)
                return bool(ready(self))
            time.sleep(0.005)
        raise AssertionError(f"not seen within {timeout} s: {what}; stderr: {self.stderr}")

    def wait_for(self, prefix: str, *, stream: str = "stdout") -> bool:
        """Wait until a line starting with ``prefix`` appears; False if the process exited."""
        return self.wait_until(lambda p: p.count(prefix, stream=stream) > 0, repr(prefix))

    def count(self, prefix: str, *, stream: str = "stdout") -> int:
        lines = self.lines if stream == "stdout" else self.err_lines
        return sum(line.startswith(prefix) for line in list(lines))

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def kill(self, delay: float = 0.0) -> bool:
        """SIGKILL after ``delay`` seconds; False when the process had already exited."""
        try:
            self.proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.finish()
        if self.proc.returncode != -signal.SIGKILL:
            return False  # it had finished (perhaps just before the signal)
        KILLS.append(" ".join(self.proc.args[:4]))
        return True

    def kill_when(self, prefix: str, delay: float = 0.0, *, stream: str = "stdout") -> bool:
        """SIGKILL ``delay`` seconds after a line starting with ``prefix``; False when the
        process exited before it could be killed."""
        self.wait_for(prefix, stream=stream)
        return self.kill(delay)

    def finish(self, timeout: float = 600) -> int:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return self.proc.returncode


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "retention", *args]


# -- what must hold after a kill -----------------------------------------------------------------


def _check_workspace(folder: Path) -> pd.DataFrame:
    """Reopen the workspace, check that everything listed is whole; return its runs."""
    ws = Workspace(folder)
    try:
        for row in ws.datasets().itertuples(index=False):
            info = ws.dataset(row.id)
            main_kind = "snapshot" if info.shape == "snapshot" else "events"
            assert main_kind in info.kinds
            for kind in info.kinds:
                frame = ws.load(row.id, kind)
                if kind == main_kind:
                    assert len(frame) == info.rows, (row.id, kind)
                assert "user_id" in frame.columns
        runs = ws.runs()
        assert set(runs["status"]) <= {"done", "failed"}, runs[["id", "status"]]
        for run in runs.itertuples(index=False):
            loaded = ws.load_run(run.id)
            if run.status == "done":
                assert loaded.artifacts, run.id
            else:
                assert run.error, run.id
        return runs
    finally:
        ws.close()


def _outputs(out: Path) -> dict[str, bytes] | None:
    """The output folder's files (None when absent)."""
    if not out.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _assert_complete(files: dict[str, bytes] | None, seed: int) -> None:
    assert files is not None and set(OUTPUTS) <= set(files), sorted(files or {})
    summary = json.loads(files["summary.json"])
    assert summary["seed"] == seed
    assert f"<th>seed</th><td><code>{seed}</code></td>".encode() in files["report.html"]
    assert files["strategies.csv"].startswith(b"segment,")
    assert files["user_segments.csv"].startswith(b"user_id,segment,")


# -- the command line ------------------------------------------------------------------------------


def _unchanged_or_complete(before: dict[str, bytes] | None, out: Path, seed: int) -> None:
    """What ``--out DIR`` promises after a kill: as it was, or the whole new output."""
    after = _outputs(out)
    if after != before:
        _assert_complete(after, seed)


#: Where a kill of the command line is aimed: the progress line it waits for (``--progress
#: lines``). ``[100%] Publishing`` is the move into ``--out``; the rest are pipeline steps.
CLI_STEPS = (
    "[  0%] Reading the data",
    "[  5%] Reading events",
    "Finding segments",
    "Profiling segments",
    "Computing retention curves",
    "Estimating transitions",
    "episode",
    "Projecting retention",
    "Evaluating on held-out users",
    "[100%] Publishing",
)


def _at_step(proc: _Proc, step: str) -> bool:
    """Wait for the progress line of ``step`` (matched anywhere after the percentage)."""
    return proc.wait_until(lambda p: any(step in line for line in list(p.err_lines)), step)


def test_cli_killed_at_every_step(tmp_path, small_files):
    """kill -9 the whole pipeline (behaviour-only segments, so no model load) in every step it
    reports, the move into ``--out`` included; ``--out`` is as it was or complete."""
    KILL_TESTS.add("cli")
    rng = random.Random(20240601)
    ws = tmp_path / "ws"
    existing = tmp_path / "existing"
    args = ["--campaigns", str(small_files["campaigns"]), "--workspace", str(ws)]
    args += ["--segments", "3", "--episodes", "40", "--progress", "lines"]
    first = _Proc(_cli("run", str(small_files["events"]), "--out", str(existing), *args))
    assert first.finish() == 0, first.stderr
    (existing / "notes.txt").write_text("the user's own file\n")  # must survive every publish
    _assert_complete(_outputs(existing), 0)

    kills = 0
    for i, step in enumerate(CLI_STEPS, start=1):
        out = existing if i % 2 else tmp_path / f"fresh{i}"
        before = _outputs(out)
        # A new seed each time, so nothing is reused and every step really runs.
        proc = _Proc(
            _cli("run", str(small_files["events"]), "--out", str(out), "--seed", str(i), *args)
        )
        assert _at_step(proc, step), (step, proc.stderr)
        killed = proc.kill(rng.uniform(0.0, 0.05))
        if killed:
            kills += 1
            _unchanged_or_complete(before, out, i)
        else:  # it finished within the few milliseconds after the step began
            assert proc.returncode == 0, proc.stderr
            _assert_complete(_outputs(out), i)
        if out == existing:
            assert (existing / "notes.txt").read_text() == "the user's own file\n"
        runs = _check_workspace(ws)
        failed = runs[runs["status"] == "failed"]
        assert failed["error"].str.contains("interrupted").all(), failed["error"].tolist()
    # Every step but the last few milliseconds of a run leaves time to kill it.
    assert kills >= len(CLI_STEPS) - 2, kills

    # A clean run afterwards succeeds and clears the staging folders killed runs left behind.
    final = _Proc(_cli("run", str(small_files["events"]), "--out", str(existing), *args))
    assert final.finish() == 0, final.stderr
    _assert_complete(_outputs(existing), 0)
    assert not list(tmp_path.glob(".existing.*"))
    assert (existing / "notes.txt").exists()


def test_cli_on_the_planted_sample_killed_while_embedding(tmp_path):
    """The real sample with text: killed while the model loads, while it embeds, and (on the
    warm rerun, which embeds nothing) while the outputs are moved into place."""
    KILL_TESTS.add("embedding")
    for i, (step, delay) in enumerate(
        [("Loading the embedding model", 0.5), ("Embedding texts", 0.0), ("Publishing", 0.0)]
    ):
        # A workspace per step: the 51 texts embed in well under a second, so a run killed
        # 0.5 s after the model load may already have cached every vector, and a rerun in the
        # same workspace would then never reach "Embedding texts".
        ws = tmp_path / f"ws{i}"
        args = ["--campaigns", str(SAMPLE / "planted_campaigns.csv.gz"), "--workspace", str(ws)]
        args += ["--progress", "lines"]
        out = tmp_path / f"out{i}"
        if step == "Publishing":  # a finished run first, so the rerun reuses everything
            done = _Proc(
                _cli("run", str(SAMPLE / "planted_events.csv.gz"), "--out", str(out), *args)
            )
            assert done.finish() == 0, done.stderr
            out = tmp_path / f"out{i}b"
        proc = _Proc(_cli("run", str(SAMPLE / "planted_events.csv.gz"), "--out", str(out), *args))
        assert _at_step(proc, step), (step, proc.stderr)
        if proc.kill(delay):
            _unchanged_or_complete(None, out, 0)
            if step != "Publishing":
                assert _outputs(out) is None  # the run had not reached the publish step
        else:
            assert proc.returncode == 0, proc.stderr
            _assert_complete(_outputs(out), 0)
        runs = _check_workspace(ws)
        failed = runs[runs["status"] == "failed"]
        assert failed["error"].str.contains("interrupted").all()
        if step == "Embedding texts" and proc.returncode == -signal.SIGKILL:
            assert len(failed) >= 1, "the kill while embedding left no interrupted run"


# -- library steps in a loop -----------------------------------------------------------------------

WORKER = r"""
import hashlib, sys, time
import numpy as np
from retention.workspace import SCHEMA_VERSION, Workspace

mode, folder, data = sys.argv[1], sys.argv[2], sys.argv[3]
ws = Workspace(folder)
dataset_id = ws.get_meta("test.dataset")


def say(*parts):
    print(*parts, flush=True)


class FakeEmbedder:
    # Deterministic vectors from the text's hash; a little time per text like a real model.
    def __init__(self, model_id):
        self.model_id = model_id

    def embed(self, texts, progress=None):
        out = np.empty((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).digest()[:16]
            out[i] = np.frombuffer(digest, dtype=np.uint8).astype(np.float32) - 127.5
            time.sleep(0.002)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


if mode == "ingest":
    from retention.ingest import detect_roles, prepare, read_table

    raw = read_table(data)
    detection = detect_roles(raw)
    say("ready")
    i = 0
    while True:
        i += 1
        part = raw.iloc[: 400 + 211 * (i % 17)].copy()
        part.attrs = raw.attrs
        prepared = prepare(part, detection.roles, detection.shape)
        new = ws.save_dataset(
            name=f"part_{i}", source_name="events.csv", sha256=None, shape=prepared.shape,
            frames=prepared.frames, mapping=prepared.mapping, report=prepared.report.to_dict(),
        )
        say("dataset", new, len(prepared.frames["events"]), f"part_{i}")
        if i % 3 == 0:
            say("renaming", new, f"renamed_{i}")
            ws.rename_dataset(new, f"renamed_{i}")
            say("renamed", new, f"renamed_{i}")
        if i % 4 == 0:
            say("deleting", new)
            ws.delete_dataset(new)
            say("deleted", new)
elif mode in ("embed", "cluster"):
    from retention.runs import run_segmentation

    say("ready")
    i = 0
    while True:
        i += 1
        if mode == "embed":  # a new model id each time: every document is embedded and cached
            settings = {"k": 3, "text_weight": 0.6, "user_vector": "document"}
            embedder = FakeEmbedder(f"fake-{i}")
        else:
            settings = {"k": 2 + i % 4, "text_weight": 0.0, "random_state": i}
            embedder = FakeEmbedder("unused")
        run = run_segmentation(
            ws, dataset_id, settings=settings, embedder=embedder, force=True,
            progress=lambda f, m: say("progress", i, f),
        )
        say("run", run, f"fake-{i}")
elif mode == "train":
    from retention.learn import QLearner
    from retention.policy import train_policy
    from retention.periods import build_panel
    from retention.runs import load_segmentation, save_policy

    segmentation = load_segmentation(ws, ws.get_meta("test.segmentation"))
    panel = build_panel(ws.cursor(), ws.table(dataset_id, "events"), period="week")
    say("ready")
    i = 0
    while True:
        i += 1
        result = train_policy(
            panel, segmentation.assignments, learner=QLearner(episodes=30, n_users=500),
            n_bootstrap=20, seed=i,
        )
        say("run", save_policy(ws, dataset_id, result))
"""


def _setup_workspace(folder: Path, data: Path, with_segmentation: bool) -> None:
    from retention.ingest import ingest
    from retention.runs import run_segmentation, store_dataset

    ws = Workspace(folder)
    try:
        dataset_id = store_dataset(ws, ingest(data), "small")
        ws.set_meta("test.dataset", dataset_id)
        if with_segmentation:
            run = run_segmentation(ws, dataset_id, settings={"k": 3, "text_weight": 0.0})
            ws.set_meta("test.segmentation", run)
    finally:
        ws.close()


def _aim(proc: _Proc, mode: str, rng: random.Random, k: int) -> bool:
    """Wait for the moment a library worker's kill is aimed at, by what it has reported."""
    if mode in ("embed", "cluster"):  # inside run n, before its last progress report
        n = rng.randint(1, 2)

        def inside(p: _Proc) -> bool:
            return any(
                line.split()[:2] == ["progress", str(n)] and float(line.split()[2]) < 0.9
                for line in list(p.lines)
            )

        return proc.wait_until(inside, f"progress of run {n}")
    if mode == "ingest":  # after n datasets were committed (n = 0: straight away)
        n = rng.randint(0, 4)
        return proc.wait_until(lambda p: p.count("dataset") >= n, f"{n} datasets")
    n = k % 2  # train: after one stored policy (kill 1), while training the first (kill 2)
    return proc.wait_until(lambda p: p.count("run") >= n, f"{n} policies")


@pytest.mark.parametrize(
    ("mode", "kills"), [("ingest", 4), ("embed", 4), ("cluster", 3), ("train", 3)]
)
def test_library_steps_killed_at_random_moments(tmp_path, small_files, mode, kills):
    KILL_TESTS.add(mode)
    rng = random.Random(f"{mode}-42")
    folder = tmp_path / "ws"
    data = small_files["events"] if mode == "ingest" else small_files["events_text"]
    _setup_workspace(folder, data, with_segmentation=mode == "train")
    committed_runs: set[str] = set()
    datasets: dict[str, tuple[int, str]] = {}  # id -> (rows, name) as reported
    deleted: set[str] = set()
    deleting: set[str] = set()
    pending_names: dict[str, str] = {}
    models: list[str] = []
    interrupted = 0
    for k in range(kills):
        proc = _Proc([sys.executable, "-c", WORKER, mode, str(folder), str(data)])
        if k == 0:  # the first kill lands anywhere, opening the workspace included
            assert proc.kill(rng.uniform(0.2, 3.0)), proc.stderr
        else:
            assert proc.wait_for("ready"), (proc.finish(), proc.stderr)
            assert _aim(proc, mode, rng, k), (proc.finish(), proc.stderr)
            assert proc.kill(rng.uniform(0.0, 0.05)), proc.stderr
        for line in proc.lines:
            word, *rest = line.split()
            if word == "run":
                committed_runs.add(rest[0])
                models.extend(rest[1:])
            elif word == "dataset":
                datasets[rest[0]] = (int(rest[1]), rest[2])
            elif word == "renaming":  # until "renamed", either name may be there
                pending_names[rest[0]] = rest[1]
            elif word == "renamed":
                datasets[rest[0]] = (datasets[rest[0]][0], rest[1])
                pending_names.pop(rest[0], None)
            elif word == "deleting":  # until "deleted", it may or may not be there
                deleting.add(rest[0])
            elif word == "deleted":
                deleted.add(rest[0])

        runs = _check_workspace(folder)
        done = set(runs.loc[runs["status"] == "done", "id"])
        assert committed_runs <= done, "a committed run was lost"
        failed = runs[runs["status"] == "failed"]
        assert failed["error"].str.contains("interrupted").all(), failed["error"].tolist()
        interrupted = len(failed)
        ws = Workspace(folder)
        try:
            listed = ws.datasets().set_index("id")
            for dataset_id, (rows, name) in datasets.items():
                if dataset_id in deleted:
                    assert dataset_id not in listed.index
                    continue
                if dataset_id in deleting and dataset_id not in listed.index:
                    continue  # killed right after the delete committed
                assert dataset_id in listed.index, "a committed dataset was lost"
                assert int(listed.loc[dataset_id, "rows"]) == rows
                assert listed.loc[dataset_id, "name"] in {name, pending_names.get(dataset_id)}
            if mode == "embed" and models:  # vectors cached by committed runs are all there
                counts = dict(
                    ws.cursor()
                    .execute("SELECT model_id, count(*) FROM embeddings GROUP BY model_id")
                    .fetchall()
                )
                assert {counts.get(m) for m in models} == {counts[models[0]]} != {0}
        finally:
            ws.close()
    print(
        f"{mode}: {kills} kills, {len(committed_runs)} runs and {len(datasets)} datasets "
        f"committed, {interrupted} runs interrupted"
    )
    assert len(committed_runs) + len(datasets) > 0, "the kills never let any work finish"
    if mode in ("embed", "cluster"):  # training is stored in one step after it finishes
        assert interrupted >= 1, "no kill landed inside a run"


def test_at_least_twenty_kills_in_this_file():
    """The suite kills real processes at least 20 times (runs last in this file)."""
    if len(KILL_TESTS) < ALL_KILL_TESTS:
        pytest.skip(f"only {len(KILL_TESTS)} of the {ALL_KILL_TESTS} kill tests ran")
    print(f"{len(KILLS)} processes killed with SIGKILL")
    assert len(KILLS) >= 20, KILLS


# -- backups ---------------------------------------------------------------------------------------


def _workspace_state(folder: Path) -> dict[str, object]:
    ws = Workspace(folder)
    try:
        datasets = ws.datasets()
        runs = ws.runs()
        tables = {
            (d, kind): ws.load(d, kind) for d in datasets["id"] for kind in ws.dataset(d).kinds
        }
        names = {r: ws.segment_names(r) for r in runs["id"]}
        artifacts = {r: sorted(ws.load_run(r).artifacts) for r in runs["id"]}
        return {
            "datasets": datasets.drop(columns=["created"]).to_dict("records"),
            "runs": runs[["id", "kind", "dataset_id", "status"]].to_dict("records"),
            "tables": tables,
            "names": names,
            "artifacts": artifacts,
            "vectors": ws.cursor().execute("SELECT count(*) FROM embeddings").fetchone()[0],
        }
    finally:
        ws.close()


def _same_state(a: dict[str, object], b: dict[str, object]) -> None:
    for key in ("datasets", "runs", "names", "artifacts", "vectors"):
        assert a[key] == b[key], key
    assert a["tables"].keys() == b["tables"].keys()
    for key, frame in a["tables"].items():
        pd.testing.assert_frame_equal(frame, b["tables"][key])


def test_backup_delete_restore_and_the_warm_rerun_reuses_everything(tmp_path, small_files, capsys):
    ws_dir = tmp_path / "ws"
    args = [
        "run",
        str(small_files["events_text"]),
        "--campaigns",
        str(small_files["campaigns"]),
        "--segments",
        "3",
        "--episodes",
        "40",
        "--workspace",
        str(ws_dir),
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "out1")]) == 0
    first = json.loads((tmp_path / "out1" / "summary.json").read_text())
    ws = Workspace(ws_dir)
    ws.rename_segment(first["workspace"]["segmentation_run"], 0, "Kept <name>")
    ws.close()
    before = _workspace_state(ws_dir)

    backup_file = tmp_path / "backups" / "ws.zip"
    assert main(["backup", "--workspace", str(ws_dir), "--to", str(backup_file)]) == 0
    assert "Backed up 1 dataset(s) and 2 run(s)" in capsys.readouterr().out
    with zipfile.ZipFile(backup_file) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for entry in manifest["tables"].values():
            assert hashlib.sha256(zf.read(entry["file"])).hexdigest() == entry["sha256"]
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["datasets"] == 1

    shutil.rmtree(ws_dir)
    assert main(["restore", str(backup_file), "--workspace", str(ws_dir)]) == 0
    _same_state(before, _workspace_state(ws_dir))

    # The warm rerun finds the restored dataset, segmentation and policy and reuses them.
    assert main([*args, "--out", str(tmp_path / "out2")]) == 0
    second = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert second["workspace"] == first["workspace"]
    assert second["policy"] == first["policy"]
    assert second["segments"][0]["label"] == "Kept <name>"
    per_user = (tmp_path / "out2" / "user_segments.csv").read_text()
    assert "Kept <name>" in per_user
    assert per_user.count("\n") == (tmp_path / "out1" / "user_segments.csv").read_text().count("\n")
    Workspace(ws_dir).close()


def test_restore_refuses_a_non_empty_workspace_and_damaged_backups(tmp_path, small_files, capsys):
    source = tmp_path / "source"
    _setup_workspace(source, small_files["events"], with_segmentation=False)
    backup_file = tmp_path / "b.zip"
    assert main(["backup", "--workspace", str(source), "--to", str(backup_file)]) == 0
    # An existing backup file is not overwritten without --force.
    assert main(["backup", "--workspace", str(source), "--to", str(backup_file)]) == 2
    assert "--force" in capsys.readouterr().err

    target = tmp_path / "target"
    _setup_workspace(target, small_files["events_text"], with_segmentation=False)
    before = _workspace_state(target)
    assert main(["restore", str(backup_file), "--workspace", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not empty" in err and "--force" in err
    assert err.count("\n") == 1
    _same_state(before, _workspace_state(target))

    # A damaged copy: one table file's bytes changed (the zip is otherwise fine).
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(backup_file) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "tables/runs.parquet":
                data = data[:-20] + bytes(20)
            dst.writestr(item, data)
    for bad in (damaged, tmp_path / "missing.zip", small_files["events"]):
        assert main(["restore", str(bad), "--workspace", str(target), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        _same_state(before, _workspace_state(target))
    assert not list(tmp_path.glob(".target.*"))

    assert main(["restore", str(backup_file), "--workspace", str(target), "--force"]) == 0
    _same_state(_workspace_state(source), _workspace_state(target))


def test_a_killed_restore_leaves_the_workspace_old_or_new(tmp_path, small_files):
    source = tmp_path / "source"
    _setup_workspace(source, small_files["events"], with_segmentation=True)
    backup_file = tmp_path / "b.zip"
    assert main(["backup", "--workspace", str(source), "--to", str(backup_file)]) == 0
    new = _workspace_state(source)
    target = tmp_path / "target"
    _setup_workspace(target, small_files["events_text"], with_segmentation=False)
    old = _workspace_state(target)
    rng = random.Random(3)
    for _ in range(3):
        proc = _Proc(_cli("restore", str(backup_file), "--workspace", str(target), "--force"))
        # Either outcome is checked (old or new), so the moment needs no aiming.
        killed = proc.kill(rng.uniform(0.5, 3.5))
        assert killed or proc.returncode == 0, proc.stderr
        state = _workspace_state(target)
        try:
            _same_state(old, state)
        except AssertionError:
            _same_state(new, state)


# -- many threads, one workspace -------------------------------------------------------------------


def test_ten_threads_writing_at_once_never_conflict(workspace):
    """The app serves every session from one process: its threads upsert the same keys, cache
    the same vectors and store runs at once. (Before the write lock, DuckDB answered two
    concurrent upserts of one key with a ConstraintException.)"""
    import numpy as np

    frame = pd.DataFrame({"user_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-01"] * 2)})
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                workspace.set_meta("ui.last_dataset", f"{i}-{j}")
                workspace.cache_vectors("m", [f"h{j}", f"h{i}-{j}"], np.ones((2, 4)))
                if j % 5 == 0:
                    dataset_id = workspace.save_dataset(
                        name=f"d{i}-{j}", source_name=None, sha256=None, shape="events",
                        frames={"events": frame}, mapping={}, report={},
                    )  # fmt: skip
                    run = workspace.start_run("segmentation", dataset_id, {"i": i, "j": j})
                    workspace.rename_segment(run, 0, f"name {i}")
                    workspace.finish_run(run, metrics={"i": i}, artifacts={"a": [i, j]})
        except Exception as exc:  # collected: a thread's exception would be lost otherwise
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(workspace.datasets()) == 40
    runs = workspace.runs()
    assert len(runs) == 40 and set(runs["status"]) == {"done"}
    assert len(workspace.cached_vectors("m", [f"h{j}" for j in range(20)])) == 20

"""Each file hashed once per command run (issue 19): the digest is SHA-256's (hashlib over the
bytes as the oracle), a changed file is hashed again, and a whole command run on a Parquet file
read by the fast path hashes it once instead of three times."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from retention import hashing
from retention.cli import main
from retention.ingest import limits
from retention.synth import make_planted


@pytest.fixture
def counted(monkeypatch):
    """Every time a file's bytes are hashed: its path."""
    calls: list[str] = []
    inner = hashing._hash

    def counting(path):
        calls.append(str(path))
        return inner(path)

    monkeypatch.setattr(hashing, "_hash", counting)
    return calls


def test_the_digest_is_sha256_of_the_bytes(tmp_path, counted):
    path = tmp_path / "f.bin"
    data = os.urandom(20 * 1024**2 + 17)  # more than one 8 MB block
    path.write_bytes(data)
    oracle = hashlib.sha256(data).hexdigest()
    assert hashing.file_sha256(path) == oracle
    assert hashing.file_sha256(path) == oracle
    assert len(counted) == 2  # outside a run: hashed every time
    with hashing.hashes_for_this_run():
        assert hashing.file_sha256(path) == oracle
        assert hashing.file_sha256(str(path)) == oracle
        assert hashing.file_sha256(tmp_path / "." / "f.bin") == oracle
    assert len(counted) == 3  # once in the run
    assert hashing.file_sha256(path) == oracle
    assert len(counted) == 4  # forgotten after it


def test_a_file_changed_during_the_run_is_hashed_again(tmp_path, counted):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 1000)
    with hashing.hashes_for_this_run():
        assert hashing.file_sha256(path) == hashlib.sha256(b"a" * 1000).hexdigest()
        stat = path.stat()
        path.write_bytes(b"b" * 1000)  # same size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same mtime
        assert hashing.file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest()
        other = tmp_path / "g.bin"
        other.write_bytes(b"a" * 1000)
        assert hashing.file_sha256(other) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert len(counted) == 3


def test_a_command_run_hashes_its_parquet_input_once(tmp_path, monkeypatch, counted):
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)  # the big-file path: DuckDB reads it
    planted = make_planted(n_users=120, n_periods=10, seed=3, n_segments=2)
    source = tmp_path / "events.parquet"
    planted.events.to_parquet(source, index=False)
    out, ws = tmp_path / "out", tmp_path / "ws"
    args = ["run", str(source), "--out", str(out), "--workspace", str(ws), "--quiet"]
    assert main([*args, "--segments", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert [p for p in counted if p.endswith("events.parquet")] == [str(source)]
    # the kept outputs are found again by the same fingerprint: the rerun reuses them
    out2 = tmp_path / "out2"
    assert main(["run", str(source), "--out", str(out2), "--workspace", str(ws), "--quiet",
                 "--segments", "2"]) == 0  # fmt: skip
    assert "reused_from" in json.loads((out2 / "summary.json").read_text())

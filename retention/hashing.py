"""SHA-256 of files, each file hashed once per command run (issue 19, 50M events).

The command line hashed its input file three times: the command cache's fingerprint before the
run (:mod:`retention.command_cache`), the ingest's record of the file (``summary.json`` →
``input.sha256``) and the fingerprint again when the outputs are kept — about 0.5 GB of
Parquet each time at 50 million events. Inside :func:`hashes_for_this_run` a file's digest is
remembered under its identity and state (device, inode, size, modification and change times,
in nanoseconds) and reused while that state holds; a file that changes in between is hashed
again. Outside it (the app, tests) every call hashes the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_lock = threading.Lock()
_remembered: dict[tuple, str] | None = None


@contextmanager
def hashes_for_this_run() -> Iterator[None]:
    """Remember each file's digest for the duration of the block (one command run), then
    forget them all however it ends."""
    global _remembered
    with _lock:
        _remembered = {}
    try:
        yield
    finally:
        with _lock:
            _remembered = None


def _state(path: Path) -> tuple:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)  # fmt: skip


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * 1024**2):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256 (hex); inside :func:`hashes_for_this_run`, computed once per file
    state."""
    path = Path(path)
    with _lock:
        remembering = _remembered is not None
    if not remembering:
        return _hash(path)
    key = _state(path)
    with _lock:
        found = _remembered.get(key) if _remembered is not None else None
    if found is not None:
        return found
    digest = _hash(path)
    if _state(path) == key:  # unchanged while it was read: worth remembering
        with _lock:
            if _remembered is not None:
                _remembered[key] = digest
    return digest

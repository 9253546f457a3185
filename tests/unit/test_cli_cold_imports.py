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


def test_a_segmentation_worker_loads_lifelines_only_for_survival_curves():
    """Issue 19 (s16): the Segments page's worker process imports what a segmentation imports
    (``retention.jobs._warm_worker``'s list); lifelines, with the parts of SciPy it loads (0.9 s
    on 2 Zen 4 cores), comes only with the first Kaplan–Meier curve, which still works."""
    code = (
        "import sys\n"
        "import pandas as pd\n"
        "import retention.jobs, retention.segments.cluster, retention.segments.label\n"
        "import retention.segments.layout, retention.segments.pipeline\n"
        "print('lifelines' in sys.modules)\n"
        "from retention.cohorts import survival\n"
        "d = pd.DataFrame({'user_id': ['a', 'b', 'c'], 'duration': [1, 2, 2],"
        " 'churned': [True, True, False]})\n"
        "s = survival(d)\n"
        "print('lifelines' in sys.modules, round(float(s.curves['survival'].iloc[-1]), 6))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    before, after = done.stdout.strip().splitlines()[-2:]
    assert before == "False"
    # Kaplan–Meier by hand: 3 at risk, 1 churns at 1 -> 2/3; 2 at risk, 1 churns at 2 -> 1/3
    assert after == "True 0.333333"

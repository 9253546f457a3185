"""Build ``online_retail_sample.csv.gz``: a real, small subset of UCI Online Retail (CC0).

Source: ``../shared/data/online_retail_2010_2011.parquet`` (541,909 rows, 4,372 customers), as
published in the CRAN package onlineretail 0.1.2 (CC0). The sample keeps:

* 600 customers drawn with a fixed seed, with every one of their rows, cancellations (invoice
  numbers starting with ``C``, negative quantities) included;
* 400 rows without a CustomerID, drawn with the same seed, so the validation report has
  something to show.

Columns and their spelling are the original ones (``InvoiceNo, StockCode, Description,
Quantity, InvoiceDate, UnitPrice, CustomerID, Country``). ``InvoiceDate`` is written the way the
UCI CSV exports write it (``12/1/2010 8:26``) and ``CustomerID`` as the float the published
file holds (``17850.0``): both are things ingestion must handle. Rows keep the file's order.

Run from the project root: ``python sample_data/make_online_retail_sample.py``.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "online_retail_2010_2011.parquet"
TARGET = ROOT / "sample_data" / "online_retail_sample.csv.gz"


def build(
    source: Path = SOURCE, customers: int = 600, no_id_rows: int = 400, seed: int = 0
) -> pd.DataFrame:
    """The sample frame (original columns, original row order)."""
    full = pd.read_parquet(source)
    rng = np.random.default_rng(seed)
    ids = np.sort(full["CustomerID"].dropna().unique())
    chosen = rng.choice(ids, size=customers, replace=False)
    keep = full["CustomerID"].isin(chosen).to_numpy()
    no_id = np.flatnonzero(full["CustomerID"].isna().to_numpy())
    keep[rng.choice(no_id, size=no_id_rows, replace=False)] = True
    sample = full.loc[keep].copy()
    ts = sample["InvoiceDate"]
    sample["InvoiceDate"] = (
        ts.dt.month.astype(str) + "/" + ts.dt.day.astype(str) + "/" + ts.dt.year.astype(str)
        + " " + ts.dt.hour.astype(str) + ":" + ts.dt.strftime("%M")
    )  # fmt: skip
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sample = build(args.source, customers=args.customers, seed=args.seed)
    text = sample.to_csv(index=False, lineterminator="\n").encode("utf-8")
    # mtime=0 keeps the file byte-identical between runs (same seed → same sha256).
    args.out.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    size = args.out.stat().st_size
    users = sample["CustomerID"].nunique()
    print(f"wrote {args.out} ({len(sample):,} rows, {users} customers, {size / 1024:,.0f} KB)")


if __name__ == "__main__":
    main()

"""Generated event logs for the scale benchmark: N events over U users, written as Parquet.

    python bench/scale_data.py --events 10_000_000 --users 400_000 --out /tmp/scale_10m.parquet

Built from the planted generator (:func:`retention.synth.make_planted`), chunk by chunk so that
50 million events never sit in memory at once: each chunk of users gets its own seed and id
prefix, events are thinned at random to the requested number per user, and product names get one
of 48 variants (colour × size, Zipf-distributed), so that text is reused the way a shop's
catalogue is — about 2,500 distinct product names however many events there are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retention.synth import make_planted  # noqa: E402

COLOURS = ("black", "white", "red", "blue", "green", "grey", "pink", "natural")
SIZES = ("small", "medium", "large", "XL", "set of 2", "set of 4")
CHUNK_USERS = 25_000
PERIODS = 78  # a year and a half of weeks


def _variants(rng: np.random.Generator, n: int) -> np.ndarray:
    names = np.array([f"{c}, {s}" for c in COLOURS for s in SIZES], dtype=object)
    rank = np.minimum(rng.zipf(1.4, size=n) - 1, len(names) - 1)
    return names[rank]


def write_scale_data(events: int, users: int, out: Path, seed: int = 7) -> dict:
    """Write about ``events`` events of ``users`` users to ``out``; return what was written."""
    start = time.perf_counter()
    per_user = events / users
    chunks = -(-users // CHUNK_USERS)
    written = kept_users = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    writer: pq.ParquetWriter | None = None
    try:
        for c in range(chunks):
            n = min(CHUNK_USERS, users - c * CHUNK_USERS)
            planted = make_planted(n_users=max(n, 10), n_periods=PERIODS, seed=seed + c)
            frame = planted.events
            rng = np.random.default_rng([seed, c])
            keep = min(1.0, per_user * n / max(len(frame), 1))
            frame = frame[rng.random(len(frame)) < keep].reset_index(drop=True)
            frame["user_id"] = f"C{c:03d}-" + frame["user_id"]
            frame["text"] = frame["text"] + " (" + _variants(rng, len(frame)) + ")"
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=1_000_000)
            written += len(frame)
            kept_users += int(frame["user_id"].nunique())
            print(f"  chunk {c + 1}/{chunks}: {written:,} events", end="\r", flush=True)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    print()
    return {
        "events": written,
        "users": kept_users,
        "file": str(out),
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(write_scale_data(args.events, args.users, args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build ``reviews_sample.csv.gz``: a small, synthetic, review-like event log (hand-written
templates, no real reviews).

Shoppers of a small web shop write reviews of what they bought, the way reviews read: with
sentiment ("great", "love", "terrible"), star ratings ("5 stars") and contractions ("doesn't",
"don't", "I've"). Each shopper reviews products of one of four categories (headphones, coffee,
running shoes, skincare) and behaves in one of two ways: a **one-off** reviewer writes one review
(one purchase), a **loyal** one buys and reviews again and again, spends more and was active
recently. Columns: ``user_id, ts, amount, text, event`` (event ``review``; ``amount`` is the
price paid for the reviewed product). Truth (category and behaviour per user) is in
``reviews_truth.csv``.

What it is for: checking that segment labels on review text are product words, not sentiment
words or fragments ("doesn", "stars", "great"), and measuring the automatic number of segments on
text that mixes topic and behaviour (``bench/bench_segments_k.py``).

Run from the project root: ``python sample_data/make_reviews_sample.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "sample_data" / "reviews_sample.csv.gz"
TRUTH = ROOT / "sample_data" / "reviews_truth.csv"

CATEGORIES: dict[str, dict[str, list[str]]] = {
    "headphones": {
        "products": ["wireless headphones", "noise cancelling headphones", "earbuds",
                     "bluetooth headset", "studio headphones"],
        "aspects": ["the bass is deep", "battery lasts all week", "the noise cancelling works "
                    "on the train", "ear cushions are soft", "pairing with my phone was quick",
                    "the microphone is clear on calls", "sound is crisp"],
        "price": [35.0, 180.0],
    },
    "coffee": {
        "products": ["espresso machine", "coffee grinder", "french press", "coffee beans",
                     "milk frother"],
        "aspects": ["the crema is thick", "grind size is consistent", "the beans taste of "
                    "chocolate", "brews a strong cup", "the milk foam is silky",
                    "roast is fresh", "easy to descale"],
        "price": [12.0, 240.0],
    },
    "shoes": {
        "products": ["running shoes", "trail runners", "racing flats", "running socks",
                     "walking trainers"],
        "aspects": ["the cushioning helps on long runs", "grip on wet trails", "the sole is "
                    "springy", "laces stay tied", "fit is true to size", "light for marathon "
                    "training", "heel support is firm"],
        "price": [15.0, 160.0],
    },
    "skincare": {
        "products": ["face moisturiser", "vitamin serum", "sunscreen lotion", "night cream",
                     "cleansing balm"],
        "aspects": ["my skin feels hydrated", "absorbs without a greasy film", "the scent is "
                    "mild", "fine lines look softer", "no breakouts on sensitive skin",
                    "spf protects at the beach", "the texture is light"],
        "price": [9.0, 70.0],
    },
}  # fmt: skip

# Loyal shoppers mostly write the happy ones, one-off shoppers mostly the unhappy ones: so
# sentiment words and fragments are distinctive of behaviour, as in real reviews.
HAPPY_OPENERS = ["Great {p}!", "I love this {p}.", "Really good {p}.", "Best {p} I've bought.",
                 "Nice {p}, would recommend.", "This {p} is amazing.", "Awesome {p}."]  # fmt: skip
UNHAPPY_OPENERS = ["Terrible {p}, sadly.", "Not bad for a {p}.", "Disappointing {p}.",
                   "Meh {p}.", "Bad {p} honestly."]  # fmt: skip
HAPPY_CLOSERS = ["5 stars.", "Five stars!", "4 stars from me.", "Doesn't disappoint.",
                 "Don't hesitate, buy it.", "It's worth it.", "Love it!", "Highly recommend.",
                 "I'll buy it again."]  # fmt: skip
UNHAPPY_CLOSERS = ["Wouldn't buy again.", "I'd give it 2 stars.", "Didn't work for me.",
                   "Isn't worth it.", "1 star, returned it.", "Don't bother.",
                   "Doesn't do what it says."]  # fmt: skip


def review(rng: np.random.Generator, category: str, happy: bool) -> tuple[str, float]:
    """One review of a product of ``category`` and the price paid."""
    spec = CATEGORIES[category]
    product = spec["products"][rng.integers(len(spec["products"]))]
    aspect = spec["aspects"][rng.integers(len(spec["aspects"]))]
    openers, closers = (
        (HAPPY_OPENERS, HAPPY_CLOSERS) if happy else (UNHAPPY_OPENERS, UNHAPPY_CLOSERS)
    )
    opener = openers[rng.integers(len(openers))].format(p=product)
    closer = closers[rng.integers(len(closers))]
    lo, hi = spec["price"]
    return f"{opener} {aspect.capitalize()}. {closer}", round(float(rng.uniform(lo, hi)), 2)


def build(users: int = 800, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events and the truth (``user_id, category, behaviour``)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    days = 365
    names = list(CATEGORIES)
    rows, truth = [], []
    for u in range(users):
        user = f"R{u:04d}"
        category = names[u % len(names)]
        loyal = rng.random() < 0.35
        if loyal:  # many reviews across the year, the last one recent
            n = int(rng.integers(5, 13))
            first = int(rng.integers(0, 120))
            last = int(rng.integers(days - 30, days))
            when = np.sort(rng.integers(first, last + 1, size=n))
            when[-1] = last
        else:  # one review, any time
            when = np.array([int(rng.integers(0, days))])
        for d in when:
            happy = rng.random() < (0.85 if loyal else 0.3)
            text, price = review(rng, category, happy)
            if loyal:
                price = round(price * 1.5, 2)
            ts = start + pd.Timedelta(days=int(d), seconds=int(rng.integers(8 * 3600, 22 * 3600)))
            rows.append((user, ts, price, text, "review"))
        truth.append((user, category, "loyal" if loyal else "one-off"))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "amount", "text", "event"])
    events = events.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    return events, pd.DataFrame(truth, columns=["user_id", "category", "behaviour"])


def main() -> None:
    events, truth = build()
    events.to_csv(TARGET, index=False, compression={"method": "gzip", "mtime": 0})
    truth.to_csv(TRUTH, index=False)
    print(f"{len(events):,} reviews by {len(truth):,} users → {TARGET.name}, {TRUTH.name}")


if __name__ == "__main__":
    main()

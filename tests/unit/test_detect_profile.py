"""Role detection's column profiles, once per distinct value (issue 22).

A column of text values is profiled once per distinct value and the results spread back to the
rows. The oracle is the row-by-row profile (the code every other column takes): the profile,
and so the detected roles, must be the same.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.ingest import detect
from retention.ingest.read import read_table

ROOT = Path(__file__).resolve().parents[2]


def _row_by_row(name: str, series: pd.Series) -> detect._Profile:
    real = detect._all_text
    detect._all_text = lambda values: False  # the general path: every value on its own
    try:
        return detect._profile(name, series)
    finally:
        detect._all_text = real


def _same(a: detect._Profile, b: detect._Profile) -> bool:
    def equal(x, y) -> bool:
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y and type(x) is type(y)

    da, db = asdict(a), asdict(b)
    return da.keys() == db.keys() and all(equal(da[k], db[k]) for k in da)


# Values that test every step: blanks and null words, numbers with signs, commas, currency
# signs, underscores and exponents, booleans, dates, non-ASCII digits and spaces, plain text.
TRICKY = [
    "",
    " ",
    "nan",
    "NaN",
    " NULL ",
    "n/a",
    "#N/A",
    "none",
    "0",
    "1",
    "-2",
    "+3.5",
    "1,234",
    "1,234.56",
    "12,50",
    "$5",
    "€ 7,25",
    "£1 000",
    "¥30",
    "1_000",
    "1e3",
    "inf",
    "-Infinity",
    "true",
    "False",
    "yes",
    "NO",
    "2024-01-02",
    "01/02/2011",
    "2024-01-01 08:51:09",
    "U00362",
    "gift box",
    "١٢٣",
    "１２",
    "\u00a012\u00a0",
    "0x10",
    "3.",
    ".5",
    "1.0",
    "42",
    "42 ",
]


@given(st.lists(st.sampled_from(TRICKY) | st.text(max_size=6), min_size=1, max_size=60))
def test_a_text_column_profiles_as_row_by_row(values):
    series = pd.Series(values, dtype=object)
    assert detect._all_text(series)
    assert _same(detect._profile("col", series), _row_by_row("col", series))


@given(st.lists(st.sampled_from(TRICKY) | st.none(), min_size=1, max_size=40))
def test_missing_values_are_left_out_the_same_way(values):
    series = pd.Series(values, dtype=object)
    assert _same(detect._profile("col", series), _row_by_row("col", series))


def test_mixed_values_keep_the_row_by_row_profile():
    """True and 1 are equal in Python but not as text: a column that is not all str is not
    profiled by distinct value."""
    series = pd.Series([True, 1, "1", 1.0, "yes"], dtype=object)
    assert not detect._all_text(series)
    assert _same(detect._profile("col", series), _row_by_row("col", series))


@pytest.mark.parametrize(
    "sample", ["planted_events.csv.gz", "online_retail_sample.csv.gz", "reviews_sample.csv.gz"]
)
def test_the_samples_profiles_and_roles_are_unchanged(sample, monkeypatch):
    frame = detect.sample_rows(read_table(ROOT / "sample_data" / sample), 5000)
    for column in frame.columns:
        assert _same(
            detect._profile(str(column), frame[column]),
            _row_by_row(str(column), frame[column]),
        ), column
    fast = detect.detect_roles(frame)
    monkeypatch.setattr(detect, "_all_text", lambda values: False)
    assert fast == detect.detect_roles(frame)

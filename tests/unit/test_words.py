"""The shared words: amounts of money as a user reads them."""

from __future__ import annotations

import pytest

from retention.words import currency_unit, money


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1234.5, "GBP", "£1,234.50"),
        (1234.5, "gbp", "£1,234.50"),
        (-3.2, "SEK", "−3.20 SEK"),
        (0.004, "USD", "$0.00"),
        (-0.004, "USD", "$0.00"),  # no "−$0.00"
        (1_000_000, "EUR", "€1,000,000.00"),
        (12.0, None, "12.00 (currency of your data)"),
        (12.0, "", "12.00 (currency of your data)"),
    ],
)
def test_money_reads_as_the_user_writes_it(amount, currency, expected):
    assert money(amount, currency) == expected


def test_money_keeps_the_decimals_asked_for():
    assert money(0.0312, "GBP", decimals=3) == "£0.031"


def test_currency_unit_names_the_column_unit():
    assert currency_unit("GBP") == "£"
    assert currency_unit("SEK") == "SEK"
    assert currency_unit(None) == "your data's currency"

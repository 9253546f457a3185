"""``--currency CODE``: a three-letter code, checked before any data is read."""

from __future__ import annotations

import pytest

from retention.cli import build_parser


def test_currency_is_an_upper_case_iso_code():
    parser = build_parser()
    args = parser.parse_args(["run", "x.csv", "--out", "o", "--currency", "gbp"])
    assert args.currency == "GBP"
    assert parser.parse_args(["run", "x.csv", "--out", "o"]).currency is None


@pytest.mark.parametrize("bad", ["pounds", "£", "G1P", ""])
def test_a_bad_currency_is_refused_with_one_line(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "x.csv", "--out", "o", "--currency", bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "three-letter currency code" in err and "Traceback" not in err

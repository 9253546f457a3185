"""Strategy tables, verdicts, user exports and formula escaping, on hand-built cases."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from retention.strategies import (
    build_strategies,
    current_stages,
    escape_formulas,
    stage_counts,
    support_level,
    to_csv_bytes,
    user_actions,
)

ACTIONS = ("none", "recommendation", "discount")
COSTS = {"none": 0.0, "recommendation": 0.1, "discount": 1.0}


def _recs() -> pd.DataFrame:
    # Segment 0: discount wins clearly. Segment 1 active: every action hurts even before its
    # cost. Segment 1 lapsing: recommendation helps by 0.05 but costs 0.1 -> not worth it.
    return pd.DataFrame(
        {
            "segment": [0, 0, 1, 1],
            "stage": ["active", "lapsing", "active", "lapsing"],
            "action": ["discount", "discount", "none", "none"],
            "q_none": [1.0, 0.5, 2.0, 1.0],
            "q_recommendation": [1.1, 0.55, 1.5, 1.0 + 0.05 - 0.1],
            "q_discount": [1.6, 0.9, 0.5, 0.2],
            "n": [500, 40, 10, 300],
        }
    )


def _counts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": [0, 0, 1, 1],
            "stage": ["active", "lapsing", "active", "lapsing"],
            "users": [30, 10, 5, 15],
        }  # fmt: skip
    )


def test_verdicts_values_and_support():
    s = build_strategies(
        _recs(), actions=ACTIONS, names={0: "Bargain hunters"}, stage_counts=_counts(),
        action_costs=COSTS,
    )  # fmt: skip
    t = s.table.set_index(["segment", "stage"])
    assert t.loc[(0, "active"), "verdict"] == "act"
    assert t.loc[(0, "active"), "value_vs_nothing"] == pytest.approx(0.6)
    assert t.loc[(0, "active"), "cost_per_period"] == 1.0
    assert t.loc[(1, "active"), "verdict"] == "leave alone: every action hurts"
    assert t.loc[(1, "lapsing"), "verdict"] == "leave alone: not worth the cost"
    assert list(t["support"]) == ["solid", "moderate", "thin", "solid"]
    assert t.loc[(0, "active"), "label"] == "Bargain hunters"
    assert t.loc[(1, "active"), "label"] == "Segment 2"  # 1-based fallback name
    assert t.loc[(0, "active"), "share_of_segment"] == pytest.approx(0.75)

    seg = s.segments.set_index("segment")
    assert seg.loc[0, "users"] == 40 and seg.loc[1, "users"] == 20
    assert seg.loc[1, "leave_alone_everywhere"]
    assert not seg.loc[1, "every_action_hurts"]  # lapsing is "not worth it", not "hurts"
    assert seg.loc[0, "expected_cost_per_period"] == pytest.approx(1.0)


def test_retention_lift_from_projections():
    proj = pd.DataFrame(
        {
            "segment": [0] * 4,
            "policy": ["learned policy", "always none"] * 2,
            "period": [0, 0, 4, 4],
            "active_share": [1.0, 1.0, 0.5, 0.3],
        }
    )
    s = build_strategies(
        _recs(), actions=ACTIONS, names={}, stage_counts=_counts(), action_costs=COSTS,
        projections=proj,
    )  # fmt: skip
    row = s.segments.set_index("segment").loc[0]
    assert row["retention_lift_points"] == pytest.approx(20.0)


def test_current_stage_is_the_last_period_and_users_get_their_action():
    panel = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "t": [0, 1, 2, 1, 2],
            "stage": ["active", "lapsing", "active", "active", "lapsing"],
        }
    )
    stages = current_stages(panel).set_index("user_id")["stage"].to_dict()
    assert stages == {"a": "active", "b": "lapsing"}
    assignments = pd.DataFrame({"user_id": ["a", "b"], "segment": [1, 0]})
    counts = stage_counts(current_stages(panel), assignments)
    assert counts.set_index(["segment", "stage"])["users"].to_dict() == {
        (0, "lapsing"): 1,
        (1, "active"): 1,
    }
    out = user_actions(current_stages(panel), assignments, _recs(), {1: "Loyal"})
    assert out.to_dict("records") == [
        {"user_id": "a", "segment": 1, "segment_name": "Loyal", "stage": "active",
         "recommended_action": "none"},
        {"user_id": "b", "segment": 0, "segment_name": "Segment 1", "stage": "lapsing",
         "recommended_action": "discount"},
    ]  # fmt: skip


@pytest.mark.parametrize("cell", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"])
def test_formula_like_cells_are_escaped(cell):
    frame = pd.DataFrame({"user_id": [cell, "plain"], "value": [-1.5, 2.0]})
    escaped = escape_formulas(frame)
    assert escaped["user_id"].tolist() == ["'" + cell, "plain"]
    assert escaped["value"].tolist() == [-1.5, 2.0]  # numbers stay numbers
    back = pd.read_csv(io.BytesIO(to_csv_bytes(frame)), keep_default_na=False)
    assert back["user_id"].iloc[0] == "'" + cell.strip("\t\r") or back["user_id"].iloc[
        0
    ].startswith("'")


def test_csv_keeps_the_cents_of_large_amounts_and_drops_float_noise():
    """A CRM importing user_segments.csv gets spend to the cent (6 significant digits wrote
    12,345.67 as 12345.7 and 123,456.78 as 123457)."""
    frame = pd.DataFrame({"spend": [12345.67, 123456.78, 99999999.99, 0.1 + 0.2]})
    text = to_csv_bytes(frame).decode()
    assert text.splitlines()[1:] == ["12345.67", "123456.78", "99999999.99", "0.3"]


def test_support_levels():
    assert [support_level(n) for n in (0, 29, 30, 299, 300)] == [
        "thin", "thin", "moderate", "moderate", "solid",
    ]  # fmt: skip


def test_plan_sentence_says_why_users_are_left_alone():
    from retention.strategies import VERDICT_ACT, VERDICT_HURTS, VERDICT_NOT_WORTH, plan_sentence

    assert plan_sentence("new", 1200, "discount", VERDICT_ACT, "solid").endswith(
        "(1,200 users now): offer a discount"
    )
    assert plan_sentence("new", 5, "none", VERDICT_HURTS, "thin").endswith(
        "leave them alone — every action is estimated to do worse than nothing ⚠️ little data"
    )
    assert "not enough to pay for themselves" in plan_sentence(
        "new", 5, "none", VERDICT_NOT_WORTH, "moderate"
    )
    assert ": sms" in plan_sentence("odd stage", 1, "sms", VERDICT_ACT, "solid")


def test_a_period_word_in_the_singular():
    from retention.words import period_word, period_word_singular

    assert [period_word_singular(p) for p in ("day", "week", "month", None, "auto")] == [
        "day", "week", "month", "period", "period"
    ]  # fmt: skip
    assert period_word("week") == "weeks"


def _projected() -> pd.DataFrame:
    rows = []
    for seg, (plan, nothing) in {0: (0.47, 0.35), 1: (0.2, 0.2)}.items():
        for policy, share in (("learned policy", plan), ("always none", nothing)):
            rows += [
                {"segment": seg, "policy": policy, "period": k, "active_share": share}
                for k in range(6)
            ]
    return pd.DataFrame(rows)


def _strategies_with_churned():
    recs = pd.concat(
        [
            _recs(),
            pd.DataFrame(
                {
                    "segment": [0],
                    "stage": ["churned"],
                    "action": ["recommendation"],
                    "q_none": [0.1],
                    "q_recommendation": [0.3],
                    "q_discount": [0.0],
                    "n": [12],
                }  # fmt: skip
            ),
        ]
    )
    counts = pd.concat(
        [_counts(), pd.DataFrame({"segment": [0], "stage": ["churned"], "users": [60]})]
    )
    return build_strategies(
        recs, actions=ACTIONS, names={0: "Bargain hunters"}, stage_counts=counts,
        action_costs=COSTS, projections=_projected(),
    )  # fmt: skip


def test_segment_cards_say_assumed_on_the_number_money_and_months():
    from retention.strategies import segment_cards

    cards = segment_cards(_strategies_with_churned(), period="month", currency="GBP", assumed=True)
    first, second = cards
    assert first.name == "Bargain hunters" and second.name == "Segment 2"  # 1-based default
    assert first.users == 100 and first.share_of_users == pytest.approx(100 / 120)
    assert "+12.0 percentage points (assumed)" in first.effect
    assert "after 4 months" in first.effect and "47%" in first.effect
    # (30 users x 1 + 10 x 1 + 60 x 0.10 points) / 100 users = 0.46 points per user per month
    assert first.cost == "0.46 points per user per month"
    weighed = segment_cards(
        _strategies_with_churned(), period="month", currency="GBP", revenue_weight=0.1
    )[0]
    assert weighed.cost == "0.46 points per user per month (≈ £4.60 of revenue)"  # 0.46 / 0.1
    assert first.support == "552 observed user-months"  # 500 + 40 + 12
    lines = {line.stage: line for line in first.lines}
    assert lines["lapsing"].stage_words == "lapsing (1 quiet month)"
    assert lines["churned"].action_words == "win them back: send personalised recommendations"
    assert lines["churned"].thin and not lines["active"].thin
    assert "not enough to pay" in {line.stage: line for line in second.lines}["lapsing"].why
    measured = segment_cards(_strategies_with_churned(), period="week", assumed=False)[0]
    assert "(measured)" in measured.effect and measured.cost.endswith("per user per week")


def test_table_views_have_human_columns_with_units():
    from retention.strategies import segment_table_view, strategy_table_view

    s = _strategies_with_churned()
    table = strategy_table_view(s.table, period="month")
    assert list(table.columns) == [
        "segment", "stage", "users now", "share of the segment (%)", "what to do", "verdict",
        "value over doing nothing (points per user)", "cost per user per month (points)",
        "observed user-months behind it", "data behind it",
    ]  # fmt: skip
    assert "lapsing (1 quiet month)" in set(table["stage"])
    assert table["share of the segment (%)"].iloc[0] == pytest.approx(30.0)
    per_segment = segment_table_view(s.segments, period="month", assumed=True)
    assert "change (percentage points, assumed)" in per_segment.columns
    assert "expected cost per user per month (points)" in per_segment.columns
    assert "active after 4 months with the plan (%)" in per_segment.columns


def test_lift_is_assumed_only_for_an_event_log_without_a_campaign_log():
    from retention.strategies import lift_is_assumed, reward_units_sentence

    assert lift_is_assumed({"shape": "events", "campaign_log": False})
    assert not lift_is_assumed({"shape": "events", "campaign_log": True})
    assert not lift_is_assumed({"shape": "snapshot"})
    text = reward_units_sentence({"retain_reward": 1.0, "churn_penalty": 5.0}, "week")
    assert "active in a week earns 1 point;" in text and "given back" in text


def _old_to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The cell-by-cell way (before issue 19), the oracle for the vectorised one."""
    from retention.strategies import _FORMULA_START

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    out.columns = [
        "'" + c if isinstance(c, str) and c.startswith(_FORMULA_START) else c for c in out.columns
    ]
    return out.to_csv(index=False, float_format="%.10g").encode("utf-8")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_csv_bytes_equal_the_cell_by_cell_way(seed):
    """Issue 19: text columns escaped and floats formatted in one pass each, byte for byte as
    before: formula-like text, missing cells, mixed object columns, pyarrow strings, negative
    and tiny and huge floats, NaN and infinities, integers."""
    rng = np.random.default_rng(seed)
    n = 500
    words = np.array(["=1+1", "+x", "-3", "@a", "\tt", "\rr", "plain", "a,b", 'q"uote', "", "é"])
    text = rng.choice(words, n).astype(object)
    text[rng.random(n) < 0.1] = None
    mixed = text.copy()
    mixed[::7] = 5
    floats = rng.normal(0, 1e4, n)
    floats[::11] = np.nan
    floats[5] = np.inf
    floats[6] = -np.inf
    floats[7] = -0.0
    floats[8] = 0.1 + 0.2
    frame = pd.DataFrame(
        {
            "user_id": text,
            "name": pd.array(rng.choice(words, n), dtype="string[pyarrow]"),
            "mixed": mixed,
            "spend": floats,
            "tiny": rng.random(n) * 1e-9,
            "n": rng.integers(-5, 5, n),
            "=formula header": ["x"] * n,
            "empty": [None] * n,
        }
    )
    assert to_csv_bytes(frame) == _old_to_csv_bytes(frame)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_arrow_csv_bytes_equal_pandas_on_text_numbers_and_tricky_characters(seed):
    """Issue 19: the column-wise Arrow writer (``user_segments.csv`` at a million users) gives
    pandas' bytes: cells with commas, quotes, ``\\r``, ``\\n``, tabs, spaces, formula starts,
    accents and emoji, missing cells (None, NaN, pd.NA), pandas string columns, integers of
    several widths, bools and floats; the header escaped and quoted the same way."""
    from datetime import date

    from retention.strategies import _arrow_csv_bytes

    rng = np.random.default_rng(seed)
    n = 400
    alphabet = list("ab ,\"\r\n\t;=+-@é😀'x1.")
    text = np.array(
        ["".join(rng.choice(alphabet, rng.integers(0, 6))) for _ in range(n)], dtype=object
    )
    text[rng.random(n) < 0.1] = None
    text[rng.random(n) < 0.05] = np.nan
    floats = rng.normal(0, 1e4, n)
    floats[::13] = np.nan
    frame = pd.DataFrame(
        {
            "user_id": text,
            "segment": rng.integers(-3, 9, n),
            'na,"me': pd.array(rng.choice(["-x", "y", "a,b", None], n), dtype="string"),
            "small": rng.integers(0, 200, n).astype(np.int32),
            "flag": rng.random(n) < 0.5,
            "=spend": floats,
            "empty": [None] * n,
            "last_seen": [None if i % 17 == 0 else date(1999 + i % 30, 1 + i % 12, 1 + i % 28)
                          for i in range(n)],
        }
    )  # fmt: skip
    fast = _arrow_csv_bytes(frame)
    assert fast is not None  # the Arrow path covers these columns
    assert fast == _old_to_csv_bytes(frame) == to_csv_bytes(frame)
    # each row's line end rides on its last cell: a quoted or missing text cell there too
    for last in ("user_id", 'na,"me', "empty"):
        moved = frame[[c for c in frame.columns if c != last] + [last]]
        assert _arrow_csv_bytes(moved) == _old_to_csv_bytes(moved)


def test_arrow_csv_leaves_frames_it_does_not_cover_to_pandas():
    from retention.strategies import _arrow_csv_bytes

    dates = pd.DataFrame({"a": ["x"], "b": [pd.Timestamp("2024-01-02")]})
    mixed = pd.DataFrame({"a": ["x", 5], "b": [1, 2]})
    for frame in (dates, mixed, pd.DataFrame({"a": ["x"]}), pd.DataFrame({"a": [], "b": []})):
        assert _arrow_csv_bytes(frame) is None
        assert to_csv_bytes(frame) == _old_to_csv_bytes(frame)

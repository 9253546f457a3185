"""Synthetic event logs with planted truth.

The generator plants what the pipeline should find: segments with their own product vocabulary,
their own retention, and their own best retention action, plus a randomised campaign log (each
user-period gets each action with probability 1/4, so the log's propensities are known). Tests use
it as an oracle; the app ships a copy as its second demo data set.

Dynamics, per user and period ``t`` after the user's first period:

* the user's stage at ``t - 1`` follows SPEC §3 from their recency (``churn_after`` = 4);
* an action ``a`` is drawn uniformly from ``ACTIONS`` (``none`` leaves no campaign row; any other
  action is logged around the boundary into period ``t``, see ``send_time``);
* the user is active in ``t`` with probability ``min(0.97, p_active[stage] * lift[a])``;
* an active period has ``1 + Poisson(1)`` purchases of items from the segment's vocabulary
  (and, rarely, a generic item every segment buys).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ACTIONS: tuple[str, ...] = ("none", "recommendation", "engagement", "discount")
STAGES: tuple[str, ...] = ("active", "lapsing", "at_risk", "churned")
START = pd.Timestamp("2024-01-01")  # a Monday
_PERIOD = {"day": pd.Timedelta(days=1), "week": pd.Timedelta(weeks=1)}
#: When the campaign send for the move into period ``t`` is logged (``make_planted(send_time=)``):
#: ``start`` — just after period ``t`` starts (an hour in for weeks); ``end_before`` — late in the
#: period before (6 hours before ``t`` starts for weeks: "decide on Sunday, act on Monday");
#: ``around`` — uniformly within ±1 day of the boundary (±0.4 of a period for days).
SEND_TIMES: tuple[str, ...] = ("start", "end_before", "around")


@dataclass(frozen=True)
class SegmentSpec:
    """One planted segment: what its users buy, how they retain, what helps them."""

    name: str
    vocabulary: tuple[str, ...]
    p_active: dict[str, float]
    lift: dict[str, float]
    best_action: str
    spend: float


@dataclass(frozen=True)
class Planted:
    """A planted data set: the event log, the campaign log and the truth behind them."""

    events: pd.DataFrame
    campaigns: pd.DataFrame
    truth: pd.DataFrame
    specs: list[SegmentSpec]
    period: str
    churn_after: int


_VOCABULARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Home & kitchen",
        (
            "ceramic coffee mug",
            "enamel tea kettle",
            "bamboo cutting board",
            "cast iron frying pan",
            "glass storage jars",
            "stainless steel saucepan",
            "linen tea towel set",
            "porcelain dinner plates",
            "wooden spice rack",
            "copper measuring cups",
            "silicone baking mat",
            "chef knife with sheath",
        ),
    ),
    (
        "Kids & toys",
        (
            "wooden building blocks",
            "plush teddy bear",
            "toy racing car set",
            "children's picture book",
            "jigsaw puzzle for kids",
            "crayon colouring set",
            "doll house furniture",
            "toy train railway",
            "bath time rubber ducks",
            "kids science kit",
            "stacking rainbow rings",
            "play dough modelling set",
        ),
    ),
    (
        "Garden & outdoor",
        (
            "garden hose reel",
            "terracotta plant pot",
            "pruning shears",
            "vegetable seed collection",
            "outdoor solar lanterns",
            "bird feeder station",
            "compost bin",
            "watering can galvanised",
            "garden kneeling pad",
            "hanging flower basket",
            "lawn sprinkler",
            "wooden garden bench",
        ),
    ),
    (
        "Fashion & accessories",
        (
            "leather wallet",
            "silk scarf",
            "canvas tote bag",
            "silver hoop earrings",
            "wool beanie hat",
            "sunglasses with case",
            "cotton ankle socks",
            "woven leather belt",
            "charm bracelet",
            "knitted winter gloves",
            "travel makeup bag",
            "pearl hair clip",
        ),
    ),
    (
        "Stationery & crafts",
        (
            "fountain pen",
            "dotted notebook",
            "watercolour paint set",
            "washi tape pack",
            "calligraphy brush pens",
            "sketchbook hardback",
            "origami paper sheets",
            "sticker sheet collection",
            "desk organiser tray",
            "embroidery hoop kit",
            "rubber stamp set",
            "greeting card making kit",
        ),
    ),
    (
        "Pets",
        (
            "dog chew toy",
            "cat scratching post",
            "pet food bowl",
            "dog lead and collar",
            "cat litter tray",
            "pet grooming brush",
            "bird cage swing",
            "aquarium fish food",
            "dog bed cushion",
            "catnip mouse toy",
            "hamster exercise wheel",
            "pet travel carrier",
        ),
    ),
)
_GENERIC = ("gift wrap paper", "greeting card", "gift box")

#: The Chinese name of each product of the first four vocabularies and of the generic items, as a
#: Chinese shop would list it (hand-written, like sample_data/zh_en_product_pairs.csv).
CHINESE_NAMES: dict[str, str] = {
    # Home & kitchen
    "ceramic coffee mug": "陶瓷咖啡杯",
    "enamel tea kettle": "搪瓷烧水壶",
    "bamboo cutting board": "竹制砧板",
    "cast iron frying pan": "铸铁煎锅",
    "glass storage jars": "玻璃储物罐",
    "stainless steel saucepan": "不锈钢奶锅",
    "linen tea towel set": "亚麻茶巾套装",
    "porcelain dinner plates": "瓷餐盘",
    "wooden spice rack": "木质调料架",
    "copper measuring cups": "铜量杯",
    "silicone baking mat": "硅胶烘焙垫",
    "chef knife with sheath": "带刀套厨师刀",
    # Kids & toys
    "wooden building blocks": "木制积木",
    "plush teddy bear": "毛绒泰迪熊",
    "toy racing car set": "玩具赛车套装",
    "children's picture book": "儿童绘本",
    "jigsaw puzzle for kids": "儿童拼图",
    "crayon colouring set": "蜡笔涂色套装",
    "doll house furniture": "娃娃屋家具",
    "toy train railway": "玩具火车轨道",
    "bath time rubber ducks": "洗澡小黄鸭",
    "kids science kit": "儿童科学实验套装",
    "stacking rainbow rings": "彩虹叠叠圈",
    "play dough modelling set": "彩泥手工套装",
    # Garden & outdoor
    "garden hose reel": "花园水管卷盘",
    "terracotta plant pot": "陶土花盆",
    "pruning shears": "修枝剪",
    "vegetable seed collection": "蔬菜种子组合",
    "outdoor solar lanterns": "户外太阳能灯笼",
    "bird feeder station": "喂鸟器",
    "compost bin": "堆肥桶",
    "watering can galvanised": "镀锌洒水壶",
    "garden kneeling pad": "园艺跪垫",
    "hanging flower basket": "悬挂花篮",
    "lawn sprinkler": "草坪洒水器",
    "wooden garden bench": "木质花园长椅",
    # Fashion & accessories
    "leather wallet": "真皮钱包",
    "silk scarf": "真丝围巾",
    "canvas tote bag": "帆布托特包",
    "silver hoop earrings": "银质圈形耳环",
    "wool beanie hat": "羊毛针织帽",
    "sunglasses with case": "带盒太阳镜",
    "cotton ankle socks": "纯棉短袜",
    "woven leather belt": "编织皮带",
    "charm bracelet": "串珠手链",
    "knitted winter gloves": "针织冬季手套",
    "travel makeup bag": "旅行化妆包",
    "pearl hair clip": "珍珠发夹",
    # generic
    "gift wrap paper": "礼品包装纸",
    "greeting card": "贺卡",
    "gift box": "礼品盒",
}
_COUNTRIES = ("United Kingdom", "Germany", "France", "Netherlands")

# Base probability of being active next period under `none`, by stage, per segment.
_P_ACTIVE = (
    {"active": 0.78, "lapsing": 0.45, "at_risk": 0.25, "churned": 0.05},
    {"active": 0.62, "lapsing": 0.35, "at_risk": 0.18, "churned": 0.04},
    {"active": 0.70, "lapsing": 0.40, "at_risk": 0.22, "churned": 0.06},
    {"active": 0.85, "lapsing": 0.50, "at_risk": 0.30, "churned": 0.08},
    {"active": 0.66, "lapsing": 0.38, "at_risk": 0.20, "churned": 0.05},
    {"active": 0.74, "lapsing": 0.42, "at_risk": 0.24, "churned": 0.05},
)
# Planted best action per segment; the segment whose best action is `none` is hurt by every action.
_BEST = ("recommendation", "engagement", "discount", "none", "recommendation", "engagement")
_SPEND = (24.0, 15.0, 32.0, 40.0, 12.0, 18.0)


def _lift_for(best: str) -> dict[str, float]:
    if best == "none":
        return {"none": 1.0, "recommendation": 0.7, "engagement": 0.75, "discount": 0.72}
    lift = {"none": 1.0, "recommendation": 1.05, "engagement": 1.05, "discount": 1.05}
    lift[best] = 1.45
    return lift


def planted_specs(n_segments: int = 4) -> list[SegmentSpec]:
    """The planted segment specifications used by :func:`make_planted`."""
    if not 2 <= n_segments <= len(_VOCABULARIES):
        raise ValueError(
            f"The 'n_segments' parameter must be an int in [2, {len(_VOCABULARIES)}]. "
            f"Got {n_segments!r}."
        )
    return [
        SegmentSpec(
            name=_VOCABULARIES[i][0],
            vocabulary=_VOCABULARIES[i][1],
            p_active=dict(_P_ACTIVE[i]),
            lift=_lift_for(_BEST[i]),
            best_action=_BEST[i],
            spend=_SPEND[i],
        )
        for i in range(n_segments)
    ]


def _stage_of(recency: np.ndarray, churn_after: int) -> np.ndarray:
    stage = np.full(recency.shape, 2, dtype=np.int8)  # at_risk
    stage[recency == 0] = 0
    stage[recency == 1] = 1
    stage[recency >= churn_after] = 3
    return stage


def make_planted(
    n_users: int = 2000,
    n_periods: int = 40,
    period: str = "week",
    seed: int = 0,
    n_segments: int = 4,
    churn_after: int = 4,
    send_time: str = "start",
) -> Planted:
    """Generate an event log and a randomised campaign log with planted segments.

    Returns a :class:`Planted` whose ``events`` has columns ``user_id, ts, amount, text, event,
    country``, ``campaigns`` has ``user_id, ts, action, propensity`` and ``truth`` has
    ``user_id, segment``. ``send_time`` (one of :data:`SEND_TIMES`) places each send relative to
    the start of the period it acts on; the dynamics do not depend on it. Same arguments, same
    data.
    """
    if send_time not in SEND_TIMES:
        raise ValueError(
            f"The 'send_time' parameter must be one of {list(SEND_TIMES)}. Got {send_time!r}."
        )
    if period not in _PERIOD:
        raise ValueError(f"The 'period' parameter must be 'day' or 'week'. Got {period!r}.")
    if n_users < 10:
        raise ValueError(f"The 'n_users' parameter must be an int >= 10. Got {n_users!r}.")
    if n_periods < churn_after + 4:
        raise ValueError(
            f"The 'n_periods' parameter must be at least churn_after + 4 = {churn_after + 4}. "
            f"Got {n_periods!r}."
        )
    rng = np.random.default_rng(seed)
    specs = planted_specs(n_segments)
    step = _PERIOD[period]

    segment = rng.permutation(np.arange(n_users) % n_segments)
    first = rng.integers(0, max(1, n_periods // 2), size=n_users)
    user_ids = np.array([f"U{i:05d}" for i in range(n_users)])
    country = rng.choice(_COUNTRIES, size=n_users, p=(0.7, 0.1, 0.1, 0.1))
    # Each user has favourite items: a Zipf-like preference over the segment's vocabulary.
    vocab_size = len(specs[0].vocabulary)
    prefs = rng.permutation(np.tile(np.arange(vocab_size), (n_users, 1)).T).T

    p_table = np.array([[s.p_active[st] for st in STAGES] for s in specs])  # seg × stage
    lift_table = np.array([[s.lift[a] for a in ACTIONS] for s in specs])  # seg × action

    active = np.zeros((n_users, n_periods), dtype=bool)
    actions = np.zeros((n_users, n_periods), dtype=np.int8)
    recency = np.zeros(n_users, dtype=np.int64)
    for t in range(n_periods):
        started = first < t
        stage = _stage_of(recency, churn_after)
        a = rng.integers(0, len(ACTIONS), size=n_users).astype(np.int8)
        p = np.minimum(0.97, p_table[segment, stage] * lift_table[segment, a])
        act = rng.random(n_users) < p
        act = np.where(first == t, True, np.where(started, act, False))
        actions[:, t] = np.where(started, a, 0)
        active[:, t] = act
        recency = np.where(act, 0, recency + 1)

    # Events: one row per purchase in active periods.
    u_idx, t_idx = np.nonzero(active)
    n_each = 1 + rng.poisson(1.0, size=u_idx.size)
    u_ev = np.repeat(u_idx, n_each)
    t_ev = np.repeat(t_idx, n_each)
    rank = np.minimum(rng.zipf(1.6, size=u_ev.size) - 1, vocab_size - 1)
    item = prefs[u_ev, rank]
    generic = rng.random(u_ev.size) < 0.08
    texts = np.array([[v for v in s.vocabulary] for s in specs], dtype=object)
    text = texts[segment[u_ev], item]
    text[generic] = rng.choice(np.array(_GENERIC, dtype=object), size=int(generic.sum()))
    spend = np.array([s.spend for s in specs])[segment[u_ev]]
    amount = np.round(spend * rng.lognormal(0.0, 0.35, size=u_ev.size), 2)
    offset = rng.random(u_ev.size) * 0.9 + 0.05  # inside the period, after the campaign send
    ts = START + step * t_ev + pd.to_timedelta(offset * step.total_seconds(), unit="s")
    events = pd.DataFrame(
        {
            "user_id": user_ids[u_ev],
            "ts": ts.floor("s"),
            "amount": amount,
            "text": text.astype(str),
            "event": "purchase",
            "country": country[u_ev],
        }
    ).sort_values(["ts", "user_id"], kind="stable", ignore_index=True)

    cu, ct = np.nonzero(actions)
    campaigns = pd.DataFrame(
        {
            "user_id": user_ids[cu],
            "ts": START + step * ct + _send_offsets(send_time, period, cu.size, rng),
            "action": np.array(ACTIONS, dtype=object)[actions[cu, ct]].astype(str),
            "propensity": 1.0 / len(ACTIONS),
        }
    ).sort_values(["ts", "user_id"], kind="stable", ignore_index=True)
    truth = pd.DataFrame({"user_id": user_ids, "segment": segment.astype(int)})
    return Planted(events, campaigns, truth, specs, period, churn_after)


def make_bilingual(
    n_users: int = 1200, n_periods: int = 30, period: str = "week", seed: int = 0
) -> Planted:
    """A store whose shoppers buy the same four kinds of products, half of them in English and
    half in Chinese: :func:`make_planted` with four segments, where each user shops in one
    language (drawn at random, independently of the segment; ``truth`` gains ``language``,
    ``en`` or ``zh``) and the Chinese users' items carry their Chinese names
    (:data:`CHINESE_NAMES`). Truth: the segment is the product category. Same arguments, same
    data.
    """
    planted = make_planted(
        n_users=n_users, n_periods=n_periods, period=period, seed=seed, n_segments=4
    )
    rng = np.random.default_rng([seed, 14])
    truth = planted.truth.copy()
    truth["language"] = rng.permutation(np.arange(len(truth)) % 2 == 1)
    truth["language"] = np.where(truth["language"], "zh", "en")
    chinese = set(truth.loc[truth["language"] == "zh", "user_id"])
    events = planted.events.copy()
    in_chinese = events["user_id"].isin(chinese).to_numpy()
    events.loc[in_chinese, "text"] = events.loc[in_chinese, "text"].map(CHINESE_NAMES)
    return Planted(
        events, planted.campaigns, truth, planted.specs, planted.period, planted.churn_after
    )


def _send_offsets(
    send_time: str, period: str, n: int, rng: np.random.Generator
) -> pd.TimedeltaIndex:
    """Offsets of ``n`` sends from the start of the period they act on (see :data:`SEND_TIMES`).
    Drawn after the events, so ``start`` logs are the same as before the option existed."""
    step = _PERIOD[period]
    if send_time == "start":
        return pd.to_timedelta(np.full(n, 1 if period == "week" else 0.1), unit="h")
    if send_time == "end_before":
        return pd.to_timedelta(np.full(n, -(6 if period == "week" else 0.1 * 24)), unit="h")
    half_width = min(pd.Timedelta(days=1), 0.4 * step).total_seconds()
    return pd.to_timedelta(np.round(rng.uniform(-half_width, half_width, n)), unit="s")


def main(argv: list[str] | None = None) -> None:
    """Write a planted demo data set as CSV files (``python -m retention.synth --out DIR``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_data"))
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--periods", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    planted = make_planted(n_users=args.users, n_periods=args.periods, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    planted.events.to_csv(args.out / "planted_events.csv.gz", index=False)
    planted.campaigns.to_csv(args.out / "planted_campaigns.csv.gz", index=False)
    planted.truth.to_csv(args.out / "planted_truth.csv", index=False)


if __name__ == "__main__":
    main()

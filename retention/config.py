"""What one headless run is given (SPEC §8): the command line builds it, :func:`run_pipeline`
and the policy step read it.

The settings are checked when the object is made, with the library's own checks, so a bad value
stops a run before any data is read (``--churn-after 1`` used to fail only after ingest and
segmentation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention.errors import InputError
from retention.mdp import RewardSettings
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    DEFAULT_TIMING,
    check_churn_after,
    check_period,
    check_timing,
)
from retention.segments import DEFAULT_TEXT_WEIGHT, SegmentSettings, check_text_model_setting

#: Seeds go to NumPy and scikit-learn, which take unsigned 32-bit seeds.
SEED_MAX = 2**32 - 1


def check_seed(seed: int) -> int:
    """Validate a random seed (an int in [0, 2**32 - 1], as NumPy and scikit-learn take)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"The 'seed' parameter must be an int in [0, {SEED_MAX}]. Got {seed!r}.")
    return seed


def check_episodes(episodes: int | None) -> int | None:
    """Validate the number of training episodes (None: the learner's default)."""
    if episodes is not None and (
        isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1
    ):
        raise InputError(f"The 'episodes' parameter must be None or an int >= 1. Got {episodes!r}.")
    return episodes


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the command line can set (SPEC §8), checked when made."""

    input: Path
    campaigns: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    period: str | None = None
    campaign_timing: str = DEFAULT_TIMING
    churn_after: int = DEFAULT_CHURN_AFTER
    segments: int | str = "auto"
    gamma: float = 0.9
    retain_reward: float = 1.0
    churn_penalty: float = 5.0
    revenue_weight: float = 0.0
    action_costs: dict[str, float] = field(default_factory=dict)
    episodes: int | None = None
    seed: int = 0
    workspace: Path | None = None
    #: ISO code of the revenue's and costs' currency (None: not stated); report and summary.
    currency: str | None = None
    # The Segments page's choices (retention.settings): how users are segmented.
    text_weight: float = DEFAULT_TEXT_WEIGHT
    clustering: str = "kmeans"
    map_method: str = "pca"
    text_model: str = "auto"
    user_vector: str = "items"
    item_weighting: str = "spend"
    #: The segmentation's random seed (None: ``seed``, as before it could be set apart).
    segment_seed: int | None = None
    # The Policy page's learner (None: the learner's default) and the lift table.
    algorithm: str = "q"
    exploration: float | None = None
    learning_rate: float | None = None
    prior_strength: float | None = None
    #: Assumed lift per action (no campaign log); its actions are the ones considered.
    lift: dict[str, float] | None = None
    #: Where the aggregation steps run (issue 15): "duckdb" (embedded) or "spark".
    engine: str = "duckdb"
    #: The Spark master URL with ``engine="spark"`` (``sc://...``: Spark Connect).
    spark_master: str = "local[*]"

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], **given: Any) -> PipelineConfig:
        """A config from :func:`retention.settings.resolve`'s values (the settings file's keys)
        and the rest (``input``, ``campaigns``, ...)."""
        v = dict(values)
        period = v.pop("period", None)
        return cls(
            **given,
            period=None if period in (None, "auto") else period,
            segments=v.pop("segments", "auto"),
            action_costs=dict(v.pop("action_costs", None) or {}),
            **v,
        )

    def segment_settings(self, period: str | None = None) -> SegmentSettings:
        """The segmentation this run asks for (``period``: the one in use, when known)."""
        return SegmentSettings(
            k=self.segments,
            algorithm=self.clustering,
            text_weight=self.text_weight,
            user_vector=self.user_vector,
            weighting=self.item_weighting,
            text_model=self.text_model,
            map_method=self.map_method,
            period=period or "auto",
            random_state=self.seed if self.segment_seed is None else self.segment_seed,
        )

    def __post_init__(self) -> None:
        if self.period is not None:
            check_period(self.period)
        check_timing(self.campaign_timing)
        check_churn_after(self.churn_after)
        check_seed(self.seed)
        check_episodes(self.episodes)
        if self.segment_seed is not None:
            check_seed(self.segment_seed)
        self.segment_settings()  # checks k and the rest as segmenting will
        check_text_model_setting(self.text_model)
        self.reward()  # checks gamma, the rewards and the costs
        from retention.settings import check_settings

        learner = {"algorithm": self.algorithm, "exploration": self.exploration,
                   "learning_rate": self.learning_rate, "prior_strength": self.prior_strength,
                   "lift": self.lift}  # fmt: skip
        check_settings({k: v for k, v in learner.items() if v is not None})
        if self.algorithm == "batch" and self.campaigns is None:
            raise InputError(
                "--algorithm batch learns only from a campaign log: give one with --campaigns, "
                "or use q or sarsa."
            )
        if self.engine not in ("duckdb", "spark"):
            raise InputError(f"Unknown engine {self.engine!r}: use duckdb or spark.")
        if self.engine == "spark" and self.campaigns is not None:
            raise InputError(
                "--campaigns is not read on Spark yet: run a campaign log with --engine duckdb "
                "(the default)."
            )
        if self.lift and self.campaigns is not None:
            raise InputError(
                "--lift: with a campaign log (--campaigns) the effect of each action is "
                "measured from the log, not assumed. Leave out the lift table (or the log)."
            )

    def reward(self) -> RewardSettings:
        """The reward settings: the default action costs with the given ones over them."""
        defaults = RewardSettings()
        return RewardSettings(
            retain_reward=self.retain_reward,
            churn_penalty=self.churn_penalty,
            revenue_weight=self.revenue_weight,
            action_costs={**defaults.action_costs, **self.action_costs},
            gamma=self.gamma,
        )

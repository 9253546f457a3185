"""What one headless run is given (SPEC §8): the command line builds it, :func:`run_pipeline`
and the policy step read it.

The settings are checked when the object is made, with the library's own checks, so a bad value
stops a run before any data is read (``--churn-after 1`` used to fail only after ingest and
segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retention.errors import InputError
from retention.mdp import RewardSettings
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    DEFAULT_TIMING,
    check_churn_after,
    check_period,
    check_timing,
)
from retention.segments import SegmentSettings, check_text_model_setting

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
    #: The text model: auto, english, multilingual or a model folder (--text-model).
    text_model: str = "auto"

    def __post_init__(self) -> None:
        if self.period is not None:
            check_period(self.period)
        check_timing(self.campaign_timing)
        check_churn_after(self.churn_after)
        check_seed(self.seed)
        check_episodes(self.episodes)
        SegmentSettings(k=self.segments, random_state=self.seed)  # checks k as segmenting will
        check_text_model_setting(self.text_model)
        self.reward()  # checks gamma, the rewards and the costs

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

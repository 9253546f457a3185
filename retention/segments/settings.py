"""What decides a segmentation, and what one produces.

:class:`SegmentSettings` holds every choice (stored with the run: same settings, same run) and
checks it; :class:`SegmentationResult` holds the run's artifacts. The allowed values of each
choice live here so that the settings, the steps that use them and the pages agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from retention.embeddings import (
    DEFAULT_MODEL_ID,
    MULTILINGUAL_MODEL_ID,
    check_text_model,
    model_id_for,
    requested_model,
)
from retention.errors import InputError
from retention.words import Progress

ALGORITHMS: tuple[str, ...] = ("kmeans", "hdbscan")
USER_VECTORS: tuple[str, ...] = ("items", "document")
WEIGHTINGS: tuple[str, ...] = ("spend", "frequency")
MAP_METHODS: tuple[str, ...] = ("pca", "umap")
PERIOD_CHOICES: tuple[str, ...] = ("auto", "day", "week", "month")
# Share of the variance held by the text block. Behaviour (recency, tenure, ...) varies a lot
# within a segment, so an even split lets that noise blur segments that the text separates well;
# at 0.75 planted segments are recovered (ARI >= 0.97) and behaviour still shapes the segments.
DEFAULT_TEXT_WEIGHT = 0.75
K_MAX = 50


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise an :class:`InputError` naming the parameter unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise InputError(
            f"The '{name}' parameter must be one of {', '.join(allowed)}. Got {value!r}."
        )


def check_k(k: Any) -> None:
    """``k`` must be ``"auto"`` or an int in ``[2, K_MAX]``."""
    if k == "auto":
        return
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= K_MAX:
        raise InputError(f"The 'k' parameter must be 'auto' or an int in [2, {K_MAX}]. Got {k!r}.")


def announce(progress: Progress | None, at: float, message: str) -> None:
    """Tell ``progress`` (when there is one) that a step starts, at ``at`` of the whole bar.

    A step that reports its own progress gets :func:`retention.words.scaled` instead.
    """
    if progress is not None:
        progress(at, message)


@dataclass(frozen=True)
class SegmentSettings:
    """Everything that decides a segmentation (stored with the run; same settings, same run)."""

    k: int | str = "auto"
    algorithm: str = "kmeans"
    text_weight: float = DEFAULT_TEXT_WEIGHT
    user_vector: str = "items"
    weighting: str = "spend"
    model_path: str | None = None
    #: ``auto`` (chosen from the texts), ``english``, ``multilingual``, or a model folder
    #: (:func:`retention.embeddings.choose_text_model`).
    text_model: str = "auto"
    map_method: str = "pca"
    period: str = "auto"
    min_cluster_size: int | None = None
    random_state: int = 0

    def __post_init__(self) -> None:
        check_k(self.k)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        check_choice("user_vector", self.user_vector, USER_VECTORS)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_choice("map_method", self.map_method, MAP_METHODS)
        check_choice("period", self.period, PERIOD_CHOICES)
        check_text_model(self.text_model, self.model_path)
        weight = self.text_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise InputError(
                f"The 'text_weight' parameter must be a number in [0, 1]. Got {weight!r}."
            )
        mcs = self.min_cluster_size
        if mcs is not None and (isinstance(mcs, bool) or not isinstance(mcs, int) or mcs < 2):
            raise InputError(
                f"The 'min_cluster_size' parameter must be None or an int >= 2. Got {mcs!r}."
            )

    @classmethod
    def coerce(cls, settings: SegmentSettings | dict[str, Any] | None) -> SegmentSettings:
        """Settings from a dataclass, a dict of some of its fields, or ``None`` (defaults)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known - {"model"})
        if unknown:
            raise InputError(
                f"Unknown segmentation setting(s) {', '.join(unknown)}. "
                f"Known settings: {', '.join(sorted(known))}."
            )
        return cls(**{k: v for k, v in settings.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentationResult:
    """A segmentation: what :func:`retention.runs.run_segmentation` stores as the run's artifacts.

    * ``assignments``: ``user_id, segment`` (``-1`` = HDBSCAN noise)
    * ``labels``: ``segment, label, keywords, users, representatives``
    * ``map2d``: ``user_id, x, y, segment, hover``
    * ``profile``: one row per segment (users, share, behaviour means, revenue, retention)
    * ``metrics``: k, silhouette by k, what was embedded, ...
    """

    assignments: pd.DataFrame
    labels: pd.DataFrame
    map2d: pd.DataFrame
    profile: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def artifacts(self) -> dict[str, pd.DataFrame]:
        return {
            "assignments": self.assignments,
            "labels": self.labels,
            "map2d": self.map2d,
            "profile": self.profile,
        }


# Here, not in the pipeline, so checking a setting loads no step (the command line's start).
def requested_model_id(settings: SegmentSettings) -> str:
    """The id of the model the settings ask for, or ``auto`` when it depends on the texts."""
    choice, folder = requested_model(settings.text_model, settings.model_path)
    if choice == "folder":
        return model_id_for(folder)
    if choice == "multilingual":
        return MULTILINGUAL_MODEL_ID
    return DEFAULT_MODEL_ID if choice == "english" else "auto"


def check_text_model_setting(text_model: str) -> None:
    """Check a ``text_model`` setting before any work: one of auto, english, multilingual, or
    a folder that holds a sentence-transformers model."""
    settings = SegmentSettings(text_model=text_model)
    try:
        requested_model_id(settings)
    except InputError as exc:
        raise InputError(
            f"The text model must be auto, english, multilingual or the folder of a local "
            f"sentence-transformers model. {exc}"
        ) from None

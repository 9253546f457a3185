"""User segments from what users buy or write and how they behave (SPEC §4).

The package reads as the pipeline, each step a module and each swappable:

* :mod:`~retention.segments.features`: per-user behaviour and item counts (DuckDB), the
  behaviour matrix, and combining it with the text block;
* :mod:`~retention.segments.text`: users' documents and text vectors (each distinct text
  embedded once);
* :mod:`~retention.segments.reduce`: principal components, exactly or sampled and chunked;
* :mod:`~retention.segments.cluster`: :class:`Segmenter` (k-means with automatic k, HDBSCAN);
* :mod:`~retention.segments.label`: behaviour tags, c-TF-IDF keywords, labels, representative
  users;
* :mod:`~retention.segments.layout`: the 2-D map;
* :mod:`~retention.segments.pipeline`: the steps put together for an event log, and the
  segment profile; :mod:`~retention.segments.snapshot`: a campaign snapshot;
* :mod:`~retention.segments.settings`: the settings and the result.

This module re-exports the names other code uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Each re-exported name and the step module it lives in. Imported on first use (PEP 562): the
#: settings alone (the command line's options, the app's forms) do not load scikit-learn,
#: lifelines or the embedding code (issue 19: the command's start).
_WHERE = {
    "NOISE": "cluster",
    "Segmenter": "cluster",
    "auto_k_rule": "cluster",
    "k_choice_reason": "cluster",
    "UserData": "features",
    "aggregate_users": "features",
    "behaviour_matrix": "features",
    "coded": "features",
    "combine": "features",
    "has_text": "features",
    "ctfidf": "label",
    "ctfidf_scores": "label",
    "top_terms": "label",
    "map_2d": "layout",
    "map_rows": "layout",
    "check_text_model_setting": "settings",
    "run_settings": "pipeline",
    "segment_dataset": "pipeline",
    "segment_users": "pipeline",
    "segmentation_basis": "pipeline",
    "reduce_dimensions": "reduce",
    "reduce_in_chunks": "reduce",
    "ALGORITHMS": "settings",
    "DEFAULT_TEXT_WEIGHT": "settings",
    "K_MAX": "settings",
    "MAP_METHODS": "settings",
    "USER_VECTORS": "settings",
    "WEIGHTINGS": "settings",
    "SegmentationResult": "settings",
    "SegmentSettings": "settings",
    "segment_snapshot": "snapshot",
    "snapshot_features": "snapshot",
    "UserText": "text",
    "embed_user_text": "text",
    "text_vectors": "text",
    "user_documents": "text",
}

if TYPE_CHECKING:
    from retention.segments.cluster import NOISE, Segmenter, auto_k_rule, k_choice_reason
    from retention.segments.features import (
        UserData,
        aggregate_users,
        behaviour_matrix,
        coded,
        combine,
        has_text,
    )
    from retention.segments.label import ctfidf, ctfidf_scores, top_terms
    from retention.segments.layout import map_2d, map_rows
    from retention.segments.pipeline import (
        run_settings,
        segment_dataset,
        segment_users,
        segmentation_basis,
    )
    from retention.segments.reduce import reduce_dimensions, reduce_in_chunks
    from retention.segments.settings import (
        ALGORITHMS,
        DEFAULT_TEXT_WEIGHT,
        K_MAX,
        MAP_METHODS,
        USER_VECTORS,
        WEIGHTINGS,
        SegmentationResult,
        SegmentSettings,
        check_text_model_setting,
    )
    from retention.segments.snapshot import segment_snapshot, snapshot_features
    from retention.segments.text import UserText, embed_user_text, text_vectors, user_documents


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "check_text_model_setting",
    "ALGORITHMS",
    "DEFAULT_TEXT_WEIGHT",
    "K_MAX",
    "MAP_METHODS",
    "NOISE",
    "USER_VECTORS",
    "WEIGHTINGS",
    "SegmentSettings",
    "SegmentationResult",
    "Segmenter",
    "UserData",
    "UserText",
    "aggregate_users",
    "auto_k_rule",
    "behaviour_matrix",
    "coded",
    "combine",
    "ctfidf",
    "ctfidf_scores",
    "embed_user_text",
    "has_text",
    "k_choice_reason",
    "map_2d",
    "map_rows",
    "reduce_dimensions",
    "reduce_in_chunks",
    "run_settings",
    "segment_dataset",
    "segment_snapshot",
    "segment_users",
    "segmentation_basis",
    "snapshot_features",
    "text_vectors",
    "top_terms",
    "user_documents",
]

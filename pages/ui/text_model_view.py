"""Which text model a segmentation ran with, and why, in plain words (issue 14)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from retention.embeddings import DEFAULT_MODEL_ID, MULTILINGUAL_MODEL_ID

MODEL_NAMES = {
    "english": "the English model (all-MiniLM-L6-v2)",
    "multilingual": "the multilingual model (Universal Sentence Encoder, 16 languages)",
}


def model_words(metrics: dict[str, Any], settings: dict[str, Any]) -> tuple[str, str] | None:
    """``(model, why)`` of a stored segmentation, or None when it read no text. A run stored
    before the choice existed ran the English model, or the folder in its settings."""
    if not metrics.get("text_used"):
        return None
    info = metrics.get("text_model")
    if info:
        model = info.get("model")
        name = MODEL_NAMES.get(model) or f"the model {info.get('model_id', '')}"
        return name, str(info.get("reason", ""))
    model_id = (metrics.get("embedder") or {}).get("model_id") or settings.get("model")
    if model_id in (None, DEFAULT_MODEL_ID):
        return MODEL_NAMES["english"], "Segmented before the model could be chosen."
    if model_id == MULTILINGUAL_MODEL_ID:
        return MODEL_NAMES["multilingual"], ""
    return f"the model {model_id}", "You chose a model folder."


def text_model_note(metrics: dict[str, Any], settings: dict[str, Any]) -> None:
    """One line on the Segments page: which model read the product texts, and why."""
    words = model_words(metrics, settings)
    if words is None:
        return
    name, why = words
    st.info(
        f"**Product texts were read by {name}.** {why}",
        icon=":material/translate:",
    )

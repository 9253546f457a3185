"""The settings form of the Segments page: every choice of
:class:`~retention.segments.SegmentSettings`, seeded from the segmentation on show, in a
marketer's words (the automatic k's from :func:`~retention.segments.auto_k_rule`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from pages.ui.common import remember
from retention.embeddings import requested_model
from retention.segments import (
    DEFAULT_TEXT_WEIGHT,
    K_MAX,
    Segmenter,
    SegmentSettings,
    auto_k_rule,
)

K_CHOICES: list[int | str] = ["auto", *range(2, 21)]
ALGORITHM_WORDS = {
    "kmeans": "k-means (you choose k, or it is chosen for you)",
    "hdbscan": "HDBSCAN (finds its own number; stray users go to 'Unclustered')",
}
MAP_WORDS = {"pca": "PCA (fast)", "umap": "UMAP (clearer groups, slower)"}
USER_VECTOR_WORDS = {
    "items": "Mean of the user's items (each distinct text embedded once)",
    "document": "The user's whole document (slower)",
}
WEIGHTING_WORDS = {"spend": "by spend", "frequency": "by how often bought"}
#: Session key of the form's current values (the "Download these settings" button reads them).
FORM_KEY = "segments.form"
TEXT_MODEL_WORDS = {
    "auto": "Automatic",
    "english": "English (fastest)",
    "multilingual": "Multilingual (16 languages)",
    "folder": "A model folder on this computer",
}


def _remember(key: str, default: object, options: list | None = None) -> str:
    """:func:`remember` a setting (kept across refreshes in the workspace; ``default`` from the
    segmentation on show when nothing was kept); a kept value no longer among ``options``
    falls back to ``default``."""
    remember(key, default)
    if options is not None and st.session_state[key] not in options:
        st.session_state[key] = default
    return key


def text_model_choice(settings: SegmentSettings, text: bool) -> dict[str, Any]:
    """The text model picker (automatic, English, multilingual or a folder), kept across
    refreshes; ``{"text_model": ..., "model_path": None}`` as the settings take it."""
    asked, folder = requested_model(settings.text_model, settings.model_path)
    choice = st.selectbox(
        "Text model",
        list(TEXT_MODEL_WORDS),
        format_func=TEXT_MODEL_WORDS.__getitem__,
        key=_remember("segments.text_model", asked, list(TEXT_MODEL_WORDS)),
        disabled=not text,
        help="The model that reads what users buy. Automatic uses the multilingual model when "
        "a noticeable share of the product texts is not English (Chinese, Japanese, Russian, "
        "French, ...), so the same product in two languages counts as the same; otherwise the "
        "English model, which is faster. The page says which one ran and why.",
    )
    if choice != "folder":
        return {"text_model": choice, "model_path": None}
    model = st.text_input(
        "Model folder",
        key=_remember("segments.model", folder or ""),
        placeholder="/path/to/a/sentence-transformers/model",
        disabled=not text,
        help="The folder of a sentence-transformers model on this computer.",
    )
    return {"text_model": model.strip(), "model_path": None}


def _k_label(k: int | str) -> str:
    lo, hi = Segmenter().k_range
    return f"Automatic ({lo}–{hi})" if k == "auto" else str(k)


def settings_form(settings: SegmentSettings, text: bool, snapshot: bool) -> dict[str, Any] | None:
    """The settings, as the user last left them (kept across refreshes), else those of the
    segmentation on show; the chosen values when the user presses Find segments, else
    ``None``."""
    chosen: dict[str, Any] = {
        "text_weight": settings.text_weight,
        "user_vector": settings.user_vector,
        "weighting": settings.weighting,
    }
    with st.container(border=True):
        left, mid, right = st.columns(3)
        with left:
            if text:
                chosen["text_weight"] = st.slider(
                    "Weight of what users buy vs how they behave",
                    0.0,
                    1.0,
                    step=0.05,
                    key=_remember("segments.text_weight", float(settings.text_weight)),
                    help=(
                        "1 = only the text of their purchases; 0 = only behaviour (recency, "
                        "frequency, spend, tenure). It is the text's share of the variance; "
                        f"default {DEFAULT_TEXT_WEIGHT}."
                    ),
                )
            else:
                st.info(
                    "This dataset has no text: segments use the snapshot's features."
                    if snapshot
                    else "This dataset has no text: segments use behaviour only (recency, "
                    "frequency, spend, tenure).",
                    icon=":material/info:",
                )
        with mid:
            chosen["algorithm"] = st.selectbox(
                "Method",
                list(ALGORITHM_WORDS),
                format_func=ALGORITHM_WORDS.__getitem__,
                key=_remember("segments.algorithm", settings.algorithm, list(ALGORITHM_WORDS)),
            )
            chosen["k"] = st.selectbox(
                "Number of segments",
                K_CHOICES,
                format_func=_k_label,
                key=_remember(
                    "segments.k", settings.k if settings.k in K_CHOICES else "auto", K_CHOICES
                ),
                disabled=chosen["algorithm"] == "hdbscan",
                help=f"{auto_k_rule()} Up to {K_MAX} by hand.",
            )
        with right:
            chosen["map_method"] = st.radio(
                "Map",
                list(MAP_WORDS),
                format_func=MAP_WORDS.__getitem__,
                key=_remember("segments.map", settings.map_method, list(MAP_WORDS)),
                horizontal=True,
            )
            chosen.update(text_model_choice(settings, text))
        if text:
            with st.expander("Advanced"):
                chosen["user_vector"] = st.radio(
                    "A user's text vector",
                    list(USER_VECTOR_WORDS),
                    format_func=USER_VECTOR_WORDS.__getitem__,
                    key=_remember(
                        "segments.user_vector", settings.user_vector, list(USER_VECTOR_WORDS)
                    ),
                )
                chosen["weighting"] = st.radio(
                    "Weight each item",
                    list(WEIGHTING_WORDS),
                    format_func=WEIGHTING_WORDS.__getitem__,
                    key=_remember("segments.weighting", settings.weighting, list(WEIGHTING_WORDS)),
                    horizontal=True,
                )
        clicked = st.button("Find segments", type="primary", icon=":material/play_arrow:")
    chosen["text_weight"] = float(chosen["text_weight"])
    st.session_state[FORM_KEY] = dict(chosen)  # what the form holds now, pressed or not
    return chosen if clicked else None

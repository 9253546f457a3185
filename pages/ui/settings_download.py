"""The "Download these settings" button of the Segments and Policy pages: the settings on screen
as the command line's settings file (:mod:`retention.settings`), so a product manager tunes in
the browser and the data team schedules the same run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from pages.ui.common import dataset_currency, workspace
from pages.ui.retention_views import shared_settings
from retention.errors import InputError
from retention.policy_runs import PolicyForm, campaign_timing
from retention.settings import page_values, to_toml

FILE_NAME = "retention-settings.toml"
HELP = (
    "A settings file for the command line: `python -m retention run DATA.csv --settings "
    f"{FILE_NAME} --out results/` runs the same analysis on the same data (for example every "
    "night). It holds the period and churn window, the currency, {what}."
)


def policy_values(form: PolicyForm) -> dict[str, Any]:
    """The Policy page's form as :func:`retention.settings.page_values` takes it."""
    fields = ("gamma", "retain_reward", "churn_penalty", "revenue_weight", "algorithm",
              "episodes", "epsilon", "learning_rate", "seed")  # fmt: skip
    table = form.actions.dropna(subset=["action"])
    return {name: getattr(form, name) for name in fields} | {"actions": table.to_dict("records")}


def download_button(
    dataset_id: str,
    source: str,
    segmentation: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
    key: str = "settings.download",
) -> None:
    """A download button for the settings on screen: ``segmentation`` (as
    :class:`~retention.segments.SegmentSettings` stores it) and ``policy``
    (:func:`policy_values`), with the Retention page's period and churn window and the
    dataset's campaign timing and currency."""
    period, churn_after = shared_settings()
    try:
        ws = workspace()
        info = ws.dataset(dataset_id)
        timing = campaign_timing(ws, dataset_id)
        file = f" (file {info.source_name})" if info.source_name else ""
        notes = [f"Made on the dataset '{info.name}'{file}."]
        if timing is not None:
            notes.append("It has a campaign log: give that file with --campaigns FILE.")
        text = to_toml(
            page_values(
                segmentation, policy, period=period, churn_after=churn_after,
                campaign_timing=timing, currency=dataset_currency(dataset_id),
            ),
            source=source,
            notes=notes,
        )  # fmt: skip
    except InputError as exc:  # a value the command line would refuse: say which
        st.caption(f":material/warning: These settings cannot be downloaded: {exc}")
        return
    parts = ["the segmentation's settings"] if segmentation is not None else []
    if policy is not None:
        parts.append("the rewards, the learning settings and the action table")
    st.download_button(
        "Download these settings",
        data=text,
        file_name=FILE_NAME,
        mime="application/toml",
        icon=":material/download:",
        key=key,
        help=HELP.format(what=" and ".join(parts)),
    )

"""The bundled sample datasets, loaded into a new workspace so the app starts with data.

* ``online_retail_sample.csv.gz`` — a cleaned real subset of UCI Online Retail (CC0), with its
  original columns and some of its messy rows (cancellations, missing customer ids).
* ``planted_events.csv.gz`` + ``planted_campaigns.csv.gz`` — synthetic data with planted truth
  (see :mod:`retention.synth`), with a randomised campaign log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from retention.ingest import ingest
from retention.runs import store_dataset
from retention.workspace import Workspace

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
#: Set in a workspace once the samples were loaded into it (they are never loaded again).
LOADED_KEY = "samples.loaded"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Sample:
    name: str
    file: str
    campaigns: str | None = None
    description: str = ""


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "Online Retail (sample)",
        "online_retail_sample.csv.gz",
        description="A UK online gift shop's purchases, 2010–2011 (real data, a subset of "
        "customers).",
    ),
    Sample(
        "Planted demo (with campaign log)",
        "planted_events.csv.gz",
        campaigns="planted_campaigns.csv.gz",
        description="Synthetic shoppers in four planted segments, with a randomised campaign "
        "log: a check that the app finds what was planted.",
    ),
)


def load_sample(ws: Workspace, sample: Sample) -> str:
    """Ingest one bundled sample into ``ws`` (or reuse it when already there); its dataset id."""
    campaigns = SAMPLE_DIR / sample.campaigns if sample.campaigns else None
    prepared = ingest(SAMPLE_DIR / sample.file, campaigns_path=campaigns)
    return store_dataset(ws, prepared, sample.name)


def samples_loaded(ws: Workspace) -> bool:
    """Whether the samples were loaded into ``ws`` once already."""
    return bool(ws.get_meta(LOADED_KEY))


def ensure_samples(ws: Workspace) -> list[str]:
    """Load the samples into a workspace once (never again, even if the user deletes them).

    Sessions arriving together wait for the first one, so the samples are stored once.
    """
    if samples_loaded(ws):
        return []
    with _LOCK:
        if samples_loaded(ws):
            return []
        ids = [load_sample(ws, s) for s in SAMPLES if (SAMPLE_DIR / s.file).exists()]
        ws.set_meta(LOADED_KEY, "1")
    return ids

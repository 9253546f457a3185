"""The vocabulary of ingest: shapes, roles, and the small frozen results every step returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from retention.errors import InputError

if TYPE_CHECKING:
    from retention.ingest.staging import StagedTable

Shape = Literal["events", "snapshot"]

EVENT_ROLES: tuple[str, ...] = ("user", "time", "amount", "text", "event")
SNAPSHOT_ROLES: tuple[str, ...] = ("user", "action", "outcome", "propensity", "recency")
CAMPAIGN_ROLES: tuple[str, ...] = ("user", "time", "action", "propensity")
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "events": ("user", "time"),
    "snapshot": ("action", "outcome"),
    "campaigns": ("user", "time", "action"),
}
ROLE_LABELS = {
    "user": "User",
    "time": "Time",
    "amount": "Amount",
    "text": "Text",
    "event": "Event type",
    "action": "Action",
    "outcome": "Outcome",
    "propensity": "Propensity",
    "recency": "Recency",
}

#: What each role means, in words for users (the Data page's help texts).
ROLE_HELP = {
    "user": "Who did it: a customer or user id.",
    "time": "When it happened: a date or date-time.",
    "amount": "Money spent (optional). Quantity × unit price works too.",
    "text": "What users bought or wrote: product names, reviews, searches (optional).",
    "event": "The kind of event: purchase, visit, review… (optional).",
    "action": "The treatment each user got (e.g. which e-mail).",
    "outcome": "What happened after: visited, converted, spend.",
    "propensity": "The chance the user had of getting that treatment (optional).",
    "recency": "How long since the user's last activity (optional).",
}
#: What each role is used for in the app, in words for users (the dataset's roles table).
ROLE_USES = {
    "user": "Tells customers apart: segments, retention and the policy are per customer.",
    "time": "Cuts activity into days, weeks or months: retention, stages and the policy.",
    "amount": "Revenue: spend per segment, and the revenue part of the policy's reward.",
    "text": "The words segments are found from and named after.",
    "event": "The kind of each event, kept with the data.",
    "action": "The treatments the policy compares.",
    "outcome": "What the policy tries to increase.",
    "propensity": "Corrects for treatments not given at random when judging the policy.",
    "recency": "Puts users in stages (active, lapsing, at risk, churned).",
}
#: Each shape, in words for users.
SHAPE_LABELS = {
    "events": "Event log — one row per purchase, visit, review…",
    "snapshot": "Campaign snapshot — one row per user, with the treatment and the outcome",
}


#: Where each kind of input's role pickers are on the Data page.
_PICKER_PLACE = {
    "events": "under 'Which column is which?' above",
    "snapshot": "under 'Which column is which?' above",
    "campaigns": "under 'Campaign log columns' above",
}


def role_hints(role: str, kind: str = "events", verb: str = "Map") -> dict[str, str]:
    """How a user maps ``role`` to another column, in each front door's words: keyword arguments
    for :class:`~retention.errors.InputError` (``cli_hint``, ``ui_hint``).

    The command line says ``--map time=COLUMN`` (``--map campaign.time=COLUMN`` for the campaign
    log); the browser names the box on the Data page. ``verb`` starts the command line's
    sentence ("Map the right column with ...", "Name it with ...").
    """
    option = f"campaign.{role}" if kind == "campaigns" else role
    label = ROLE_LABELS[role]
    return {
        "cli_hint": f"{verb} the right column with --map {option}=COLUMN.",
        "ui_hint": f"Pick the right column in the '{label}' box {_PICKER_PLACE[kind]}.",
    }


def mapping_hints(kind: str = "events") -> dict[str, str]:
    """ "Check the mapping", in each front door's words (see :func:`role_hints`)."""
    option = "campaign.ROLE" if kind == "campaigns" else "ROLE"
    return {
        "cli_hint": f"Check that the right columns are mapped (--map {option}=COLUMN).",
        "ui_hint": f"Check the columns picked {_PICKER_PLACE[kind]}.",
    }


def check_shape(shape: object) -> None:
    """Refuse a ``shape`` parameter other than 'events' or 'snapshot'."""
    if shape not in ("events", "snapshot"):
        raise InputError(f"The 'shape' parameter must be 'events' or 'snapshot'. Got {shape!r}.")


# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """How a file was read: what :func:`read_table` found out about its bytes."""

    name: str
    format: str  # csv | parquet | xlsx | jsonl | json (with ".gz" appended when gzipped)
    size_bytes: int
    sha256: str
    encoding: str | None = None
    delimiter: str | None = None  # "," ";" "\t" "|" or "whitespace"
    header: bool = True
    skipped_lines: tuple[int, ...] = ()  # malformed lines left out (1-based line numbers)
    skipped_count: int = 0

    def describe(self) -> str:
        """One line for the validation report: 'CSV, delimiter ';', encoding cp1252'."""
        parts = [self.format.upper().replace(".GZ", " (gzip)")]
        if self.delimiter is not None:
            parts.append(f"delimiter {self.delimiter!r}")
        if self.encoding is not None:
            parts.append(f"encoding {self.encoding}")
        if not self.header:
            parts.append("no header row (columns named column0, column1, ...)")
        return ", ".join(parts)


@dataclass(frozen=True)
class Detection:
    """Suggested shape and role → column mapping, with ranked alternatives and reasons.

    ``roles[role]`` is a column name, ``None`` (not found), or for ``amount`` possibly a product
    ``"Quantity*UnitPrice"`` of two numeric columns (derived amount).
    """

    shape: Shape
    roles: dict[str, str | None]
    candidates: dict[str, tuple[str, ...]]
    why: dict[str, str]
    columns: tuple[str, ...]
    time_format: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def mapping(self) -> dict[str, str]:
        """The roles that were found, as ``{role: column}``."""
        return {role: col for role, col in self.roles.items() if col}


@dataclass(frozen=True)
class ValidationReport:
    """What happened to every input row.

    ``reasons`` has one row per rejection reason: ``reason`` (str), ``rows`` (int) and
    ``sample`` (list of up to 5 row numbers; 1-based data rows, so spreadsheet row = row + 1
    when the file has a header). ``samples[reason]`` shows those rows' original values.
    """

    rows: int
    rows_used: int
    rows_rejected: int
    reasons: pd.DataFrame
    samples: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    users: int = 0  # distinct user ids among the rows used

    def reasons_table(self) -> pd.DataFrame:
        """The reasons for people: 'Reason', 'Rows', 'Example row numbers' ("3, 17, 40")."""
        table = self.reasons.copy()
        table["sample"] = table["sample"].map(lambda rows: ", ".join(str(r) for r in rows))
        return table.rename(
            columns={"reason": "Reason", "rows": "Rows", "sample": "Example row numbers"}
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the workspace and summary.json)."""
        return {
            "rows": int(self.rows),
            "rows_used": int(self.rows_used),
            "rows_rejected": int(self.rows_rejected),
            "users": int(self.users),
            "reasons": [
                {"reason": str(r.reason), "rows": int(r.rows), "sample": [int(x) for x in r.sample]}
                for r in self.reasons.itertuples(index=False)
            ],
            "samples": {
                reason: json.loads(frame.astype(str).to_json(orient="records"))
                for reason, frame in self.samples.items()
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Prepared:
    """Canonical frames ready for the workspace, with the mapping used and the validation report.

    ``frames`` holds ``events`` (+ ``campaigns`` when a campaign log was given) for an event log,
    or ``snapshot`` for a campaign snapshot, with the columns of docs/architecture.md.
    """

    shape: Shape
    mapping: dict[str, str]
    frames: dict[str, pd.DataFrame | StagedTable]  # StagedTable: big inputs, on disk
    report: ValidationReport
    source_name: str
    sha256: str | None = None
    campaign_mapping: dict[str, str] | None = None
    campaign_report: ValidationReport | None = None
    campaigns_sha256: str | None = None
    campaign_timing: str | None = None  # the rule crediting sends to periods (retention.periods)
    detection: Detection | None = None
    source: SourceInfo | None = None

    @property
    def events(self) -> pd.DataFrame | None:
        return self.frames.get("events")

    @property
    def campaigns(self) -> pd.DataFrame | None:
        return self.frames.get("campaigns")

    @property
    def snapshot(self) -> pd.DataFrame | None:
        return self.frames.get("snapshot")

    @property
    def users(self) -> int:
        return self.report.users

    def report_dict(self) -> dict[str, Any]:
        """The report as stored with the dataset (the campaign log's under ``campaigns``)."""
        report = self.report.to_dict()
        if self.campaign_report is not None:
            report["campaigns"] = self.campaign_report.to_dict()
        return report

    def summary(self) -> dict[str, Any]:
        """The ``input`` block of summary.json."""
        return {
            "rows": self.report.rows,
            "rows_used": self.report.rows_used,
            "rows_rejected": self.report.rows_rejected,
            "users": self.users,
            "shape": self.shape,
        }

"""Preparing: one path from a source and a role mapping to the canonical frames and the report.

:func:`prepare_source` is the only way rows are validated, whatever read them (a pandas frame or
a file DuckDB reads from disk): resolve the mapping → time format → :func:`validate` → dataset
checks → :class:`Prepared`. :func:`add_campaigns` is the only way a campaign log is validated.
The front doors only choose their inputs:

* :func:`ingest` (the command line): open a path, detect roles, apply ``--map`` overrides;
* :func:`prepare` (a frame and a full mapping, as tests and notebooks have them);
* the Data page: :func:`~retention.ingest.sources.open_source` on the upload, roles picked by the
  user, then :func:`prepare_source`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd

from retention.errors import InputError
from retention.ingest import limits
from retention.ingest.db import duckdb_input_error, new_connection
from retention.ingest.detect import detect_campaign_roles, detect_roles
from retention.ingest.direct import DirectTable, new_alias, validate_direct
from retention.ingest.model import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    SNAPSHOT_ROLES,
    Detection,
    Prepared,
    Shape,
    ValidationReport,
    check_shape,
    mapping_hints,
    role_hints,
)
from retention.ingest.read import read_table
from retention.ingest.sources import FileSource, FrameSource, TableSource, open_source
from retention.ingest.staging import StagedTable, exposed
from retention.ingest.times import check_time_format, family_or_none
from retention.ingest.validate import Stats, resolve_mapping, validate
from retention.periods import DEFAULT_TIMING, check_timing

#: Below this many rows a campaign log whose actions are all different may still be real (a
#: handful of sends); from here on, an action that never repeats is an id, not a treatment.
ID_LIKE_ROWS = 20


def prepare_source(
    source: TableSource,
    mapping: Mapping[str, str | None],
    shape: Shape,
    *,
    time_format: str | None = None,
    detection: Detection | None = None,
    campaigns: FrameSource | None = None,
    campaign_mapping: Mapping[str, str | None] | None = None,
    campaign_timing: str = DEFAULT_TIMING,
    direct: bool = False,
) -> Prepared:
    """Validate ``source`` under ``mapping`` ({role: column}) into a :class:`Prepared`.

    ``time_format`` forces a format family; otherwise, when ``detection`` found the mapped time
    column, its family is used, else the family parsing most of a sample. A campaign log
    (``campaigns``, with an event log only) is validated by :func:`add_campaigns`, its roles
    detected when ``campaign_mapping`` is None, with the timing rule ``campaign_timing``.
    """
    check_shape(shape)
    check_time_format(time_format)
    check_timing(campaign_timing)
    prepared = _prepare_rows(source, mapping, shape, time_format, detection, direct)
    if campaigns is not None:
        if shape != "events":
            raise InputError("A campaign log goes with an event log, not with a campaign snapshot.")
        prepared = add_campaigns(prepared, campaigns, campaign_mapping, timing=campaign_timing)
    return prepared


def _prepare_rows(
    source: TableSource,
    mapping: Mapping[str, str | None],
    shape: Shape,
    time_format: str | None,
    detection: Detection | None,
    direct: bool = False,
) -> Prepared:
    roles = EVENT_ROLES if shape == "events" else SNAPSHOT_ROLES
    frame: pd.DataFrame | StagedTable | DirectTable | None = None
    con = new_connection()
    try:
        direct = direct and _direct_source(source, shape)
        relation = source.open(con, new_alias() if direct else "_src")
        resolved = resolve_mapping(mapping, roles, relation.columns, shape, source.name)
        time_format = _time_format(time_format, detection, resolved)
        try:
            found = None
            if direct:  # issue 19: a big Parquet file is checked, and stored later, by DuckDB
                assert isinstance(source, FileSource)
                found = validate_direct(
                    relation,
                    source.path,
                    shape,
                    resolved,
                    time_format=time_format,
                    read_notes=source.read_notes(),
                )
            frame, report, stats = found or validate(
                relation,
                shape,
                resolved,
                time_format=time_format,
                read_notes=source.read_notes(),
                malformed=lambda: source.malformed(con),
            )
        except duckdb.Error as exc:
            raise duckdb_input_error(exc, source.name) from None
        report = _finish_report(report, stats, shape, source.name, resolved)
    except BaseException:
        if isinstance(frame, StagedTable):
            frame.discard()
        raise
    finally:
        con.close()
    return Prepared(
        shape=shape,
        mapping=dict(resolved),
        frames={shape: frame},
        report=report,
        source_name=source.name,
        sha256=source.sha256,
        detection=detection,
        source=source.info,
    )


def _direct_source(source: TableSource, shape: Shape) -> bool:
    """Whether ``source`` is an event log in a Parquet file whose kept rows would be staged
    on disk (:mod:`retention.ingest.direct` then validates it without a copy)."""
    return (
        shape == "events"
        and isinstance(source, FileSource)
        and source.plan.kind == "parquet"
        and source.rows() > limits.SPILL_ROWS
    )


def _time_format(
    forced: str | None, detection: Detection | None, mapping: Mapping[str, str]
) -> str | None:
    """The forced family, else the detected one when the mapped time column is the detected
    column, else None (the validation then picks the family parsing most of a sample)."""
    if forced is not None or detection is None:
        return forced
    if mapping.get("time") == detection.roles.get("time"):
        return family_or_none(detection.time_format)
    return None


def add_campaigns(
    prepared: Prepared,
    campaigns: FrameSource,
    mapping: Mapping[str, str | None] | None = None,
    *,
    timing: str = DEFAULT_TIMING,
) -> Prepared:
    """``prepared`` (an event log) with its campaign log validated, mapped and hashed, and the
    timing rule that credits its sends to periods (``retention.periods.TIMINGS``).

    Campaign rows naming users without events, or falling outside the events' time span, are
    kept and counted in notes. A log none of whose rows falls inside that span, or whose
    actions never repeat (an id column mapped as the action), is refused.
    """
    check_timing(timing)
    con = new_connection()
    try:
        relation = campaigns.open(con, "_campaigns")
        if mapping is None:
            mapping = detect_campaign_roles(campaigns.detection_frame)
        resolved = resolve_mapping(
            mapping, CAMPAIGN_ROLES, relation.columns, "campaigns", campaigns.name
        )
        cframe, creport, _ = validate(relation, "campaigns", resolved)
    finally:
        con.close()
    if len(cframe) == 0:
        raise _nothing_left_error(campaigns.name, creport, "campaigns")
    assert prepared.events is not None
    notes = _campaign_checks(cframe, prepared.events, campaigns.name, resolved)
    unknown = _unknown_users(cframe, prepared.events)
    if unknown:
        notes.append(f"{unknown:,} campaign rows name users that have no events.")
    creport = replace(creport, notes=(*creport.notes, *notes))
    return replace(
        prepared,
        frames={**prepared.frames, "campaigns": cframe},
        campaign_mapping=resolved,
        campaign_report=creport,
        campaigns_sha256=campaigns.sha256,
        campaign_timing=timing,
    )


def _campaign_checks(
    campaigns: pd.DataFrame | StagedTable,
    events: pd.DataFrame | StagedTable,
    name: str,
    mapping: Mapping[str, str],
) -> list[str]:
    """Refuse a campaign log that cannot serve (no row inside the events' time span; actions
    that never repeat); notes on the rows outside that span."""
    con = new_connection()
    try:
        with exposed(con, "_c", campaigns), exposed(con, "_e", events):
            ((first, last),) = con.execute("SELECT min(ts), max(ts) FROM _e").fetchall()
            inside, c_first, c_last = con.execute(
                "SELECT count(*) FILTER (WHERE ts BETWEEN $a AND $b), min(ts), max(ts) FROM _c",
                {"a": first, "b": last},
            ).fetchall()[0]
            most = con.execute(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM _c GROUP BY action)"
            ).fetchall()[0][0]
            rows = con.execute("SELECT count(*) FROM _c").fetchall()[0][0]
    finally:
        con.close()
    if inside == 0:
        raise InputError(
            f"None of the {rows:,} rows of the campaign log '{name}' falls within the event "
            f"log's time span ({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}); the campaign "
            f"log runs from {c_first:%Y-%m-%d %H:%M} to {c_last:%Y-%m-%d %H:%M}. Check that "
            f"the campaign log belongs to this event log and that its time column "
            f"('{mapping.get('time')}') is the send time."
        )
    if rows >= ID_LIKE_ROWS and most < 2:
        raise InputError(
            f"The action column '{mapping.get('action')}' of the campaign log '{name}' never "
            f"repeats a value ({rows:,} rows, {rows:,} different actions): it looks like an id, "
            f"not the treatment. Use the column that names the action (e.g. 'discount', "
            f"'email').",
            **role_hints("action", "campaigns"),
        )
    if inside < rows:
        return [
            f"{rows - inside:,} campaign rows fall outside the event log's time span and "
            "cannot count for any move between periods."
        ]
    return []


def prepare(
    df: pd.DataFrame,
    mapping: Mapping[str, str | None],
    shape: Shape,
    *,
    campaigns: pd.DataFrame | None = None,
    campaign_mapping: Mapping[str, str | None] | None = None,
    source_name: str | None = None,
    time_format: str | None = None,
    campaign_timing: str = DEFAULT_TIMING,
) -> Prepared:
    """Validate a raw frame into the canonical frames of docs/architecture.md.

    ``mapping`` is ``{role: column}`` (a ``None``/empty column unsets the role; ``amount`` may be
    ``"Quantity*UnitPrice"``). Rows that cannot be used are counted by reason in the report:
    events — no user id, no time, unparseable time, cancellation (invoice number starting with
    C), negative quantity or amount, unparseable amount; snapshot — no action, no/unparseable
    outcome, propensity outside (0, 1], unparseable recency. ``time_format`` forces a format
    family (a key of :data:`TIME_FAMILIES` or 'epoch_s'/'epoch_ms'); by default the family
    that parses most of a sample wins, month-first before day-first on a tie.

    Raises InputError: mapped column missing, required role missing, every time unparseable,
    fewer than two users, a single action (snapshot), or no row left after validation.
    """
    return prepare_source(
        FrameSource(df, source_name),
        mapping,
        shape,
        time_format=time_format,
        campaigns=None
        if campaigns is None
        else FrameSource(campaigns, default_name="the campaign log"),
        campaign_mapping=campaign_mapping,
        campaign_timing=campaign_timing,
    )


def ingest(
    path: str | Path,
    *,
    campaigns_path: str | Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    shape: Shape | None = None,
    max_bytes: int | None = None,
    campaign_timing: str = DEFAULT_TIMING,
) -> Prepared:
    """Read, detect roles, apply ``overrides`` ({role: column}) and prepare, in one call.

    Override keys are roles of the chosen shape; keys ``campaign.<role>`` map the campaign log's
    columns. Large Parquet and plain CSV/CSV.gz files (≥ 32 MB, UTF-8, single-character
    delimiter) are read by DuckDB straight from disk; everything else via :func:`read_table`.
    Both go through :func:`prepare_source`.
    """
    check_timing(campaign_timing)
    limit = limits.max_upload_bytes() if max_bytes is None else max_bytes
    overrides = dict(overrides or {})
    campaign_overrides = {
        k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("campaign.")
    }
    overrides = {k: v for k, v in overrides.items() if not k.startswith("campaign.")}
    if shape is not None:
        check_shape(shape)
    source = open_source(path, max_bytes=limit)
    detection = detect_roles(source.detection_frame, shape=shape)
    roles = {**detection.roles, **overrides}
    # issue 19: without a campaign log (which reads the kept rows), a big Parquet file's rows
    # go straight from the file into the workspace when it stores them.
    prepared = prepare_source(
        source, roles, detection.shape, detection=detection, direct=campaigns_path is None
    )
    if campaigns_path is None:
        return prepared
    if prepared.shape != "events":
        raise InputError("--campaigns goes with an event log; this input is a campaign snapshot.")
    campaigns = FrameSource(read_table(campaigns_path, max_bytes=limit))
    campaign_mapping = {**detect_campaign_roles(campaigns.frame), **campaign_overrides}
    return add_campaigns(prepared, campaigns, campaign_mapping, timing=campaign_timing)


def _nothing_left_error(name: str, report: ValidationReport, kind: str = "events") -> InputError:
    why = "; ".join(f"{r.reason}: {r.rows:,}" for r in report.reasons.itertuples(index=False))
    return InputError(
        f"No usable rows are left in '{name}' after validation ({why or 'no rows'}).",
        **mapping_hints(kind),
    )


def _finish_report(
    report: ValidationReport, stats: Stats, shape: str, name: str, mapping: dict[str, str]
) -> ValidationReport:
    """Dataset-level checks after validation: rows left, two or more users / actions."""
    if report.rows_used == 0:
        raise _nothing_left_error(name, report)
    notes = list(report.notes)
    if shape == "events" or "user" in mapping:
        if stats.users < 2:
            raise InputError(
                f"'{name}' has a single user ('{stats.first_user}' in column "
                f"'{mapping.get('user')}'), and segments and retention need many. If another "
                f"column identifies users, use that one.",
                **role_hints("user", shape),
            )
        if stats.text_ids:
            notes.append(
                f"User ids mix numbers and text (e.g. {list(stats.text_ids)}); all are kept as "
                "text, so '7' and '007' are different users."
            )
    if shape == "snapshot" and stats.actions < 2:
        raise InputError(
            f"The action column '{mapping['action']}' of '{name}' has a single value "
            f"('{stats.first_action}'); a snapshot needs at least two actions to compare.",
            **role_hints("action", shape),
        )
    return replace(report, notes=tuple(notes))


def _unknown_users(
    campaigns: pd.DataFrame | StagedTable, events: pd.DataFrame | StagedTable
) -> int:
    """Campaign rows whose user has no event (either side may be staged on disk)."""
    con = new_connection()
    try:
        with exposed(con, "_c", campaigns), exposed(con, "_e", events):
            sql = "SELECT count(*) FROM _c WHERE user_id NOT IN (SELECT DISTINCT user_id FROM _e)"
            return int(con.execute(sql).fetchall()[0][0])
    finally:
        con.close()

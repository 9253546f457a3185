"""Drill-down: the users behind a number on screen — a cohort cell, a segment, a stage.

Every list has the same columns, one row per user: ``user_id``, ``segment`` (its display name),
``stage`` (the user's stage in the data's last period, SPEC §3), ``last_seen`` (date of their
last event), ``active_periods`` (periods with at least one event) and ``spend`` (sum of the
amounts of all their events; empty without an amount column). The same per-user facts go into
the users CSV for a CRM (:func:`with_activity`).

All of it is one DuckDB aggregation per user over the events (bound parameters only), so a click
on a cohort cell costs one pass over the log, not a panel. A cohort cell holds exactly the users
the Retention page's matrix counts there (:func:`retention.analyses.retention_matrix`, found by
:func:`retention.analyses.cell_users` from the same SQL): the same start and return events,
cohort dates and mode — in that period, in it or later, or within a range of days.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from retention import user_pass
from retention.analyses import MATRIX_MODES, Definition, cell_users
from retention.cohorts import NOT_SEGMENTED
from retention.errors import InputError
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    EventsSource,
    PeriodGrid,
    check_churn_after,
    clean_events_sql,
    events_source,
    period_grid,
    period_index_sql,
    stage_sql,
)
from retention.results import user_stage_table
from retention.sql import quote_ident
from retention.words import segment_name
from retention.workspace import Workspace

#: The columns of every drill-down list, in order.
COLUMNS: tuple[str, ...] = ("user_id", "segment", "stage", "last_seen", "active_periods", "spend")
#: The per-user facts the users CSV for a CRM carries besides segment, stage and action.
ACTIVITY: tuple[str, ...] = ("last_seen", "active_periods", "spend")


@dataclass(frozen=True)
class Selection:
    """What was clicked. Any combination narrows the list: a cohort cell of the Retention
    page's matrix (``cohort``: the start of the cohort's period, ``column``: periods since the
    start, or the index of a day range; counted as the matrix counts it: ``mode`` classic,
    unbounded or brackets, ``definition`` (start and return events, cohort dates) and the day
    ``brackets``), a ``segment`` (its number) and a ``stage`` (``active``, ``lapsing``,
    ``at_risk``, ``churned``). Nothing set: every user."""

    cohort: pd.Timestamp | None = None
    column: int | None = None
    mode: str = "classic"
    definition: Definition = field(default_factory=Definition)
    brackets: tuple[tuple[int, int | None], ...] = ()
    segment: int | None = None
    stage: str | None = None

    def __post_init__(self) -> None:
        if (self.cohort is None) != (self.column is None):
            raise InputError(
                "A cohort cell needs both its cohort and its 'column' (periods or days since)."
            )
        if self.column is not None and int(self.column) < 0:
            raise InputError(f"The 'column' parameter must be an int >= 0. Got {self.column!r}.")
        if self.mode not in MATRIX_MODES:
            raise InputError(
                f"The 'mode' parameter must be one of {', '.join(MATRIX_MODES)}. Got {self.mode!r}."
            )
        if self.mode == "brackets" and self.cohort is not None and not self.brackets:
            raise InputError("A cell of ranges of days needs the ranges ('brackets').")


def _register(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> str:
    name = f"_drill_{uuid.uuid4().hex}"
    con.register(name, frame)
    return name


def _per_user_sql(clean: str, period: str, users_view: str | None) -> str:
    """One row per user: last period, active periods, the last event, spend and stage.
    Bound: ``$origin``, ``$last_t``, ``$churn_after``; with ``users_view`` (a registered view
    with a ``user_id`` column), only those users."""
    index = period_index_sql(period, "ts")
    where = ""
    if users_view is not None:
        where = f"WHERE user_id IN (SELECT user_id FROM {quote_ident(users_view)})"  # noqa: S608
    return f"""
        WITH ev AS (SELECT user_id, ts, amount, {index} AS t FROM ({clean}) {where}),
        u AS (
            SELECT user_id, max(t) AS last_t,
                   count(DISTINCT t) AS active_periods, max(ts) AS last_ts,
                   sum(amount) AS spend
            FROM ev GROUP BY user_id
        )
        SELECT user_id, last_t,
               CAST(last_ts AS DATE) AS last_seen,
               CAST(active_periods AS BIGINT) AS active_periods,
               spend,
               CAST({stage_sql("($last_t - last_t)")} AS VARCHAR) AS stage
        FROM u
    """  # noqa: S608 -- fixed fragments only


def drill_users(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    selection: Selection = Selection(),  # noqa: B008 -- frozen, so a shared default is safe
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
    assignments: pd.DataFrame | None = None,
    names: Mapping[int, str] | None = None,
    user_ids: Iterable[str] | None = None,
    grid: PeriodGrid | None = None,
) -> pd.DataFrame:
    """The users of ``selection`` with :data:`COLUMNS`, biggest spenders first (then by id).

    ``assignments`` (``user_id, segment``) names each user's segment (``names``: segment ->
    display name; users without one are "Not segmented"); a ``selection.segment`` needs them.
    ``user_ids`` keeps only those users (the users of one group). ``grid``: the period
    grid already resolved (else resolved here from ``period``).
    """
    check_churn_after(churn_after)
    if selection.segment is not None and assignments is None:
        raise InputError("Picking the users of a segment needs a segmentation: run one first.")
    grid = grid or period_grid(con, events, period)
    if selection.cohort is not None:  # the cell's users, as the matrix counts them
        cell = cell_users(
            con, events, selection.cohort, int(selection.column or 0), mode=selection.mode,
            definition=selection.definition, brackets=selection.brackets, grid=grid,
        )  # fmt: skip
        keep = None if user_ids is None else {str(u) for u in user_ids}
        user_ids = [u for u in cell if keep is None or u in keep]
    views: list[str] = []
    with events_source(con, events) as ref:
        try:
            users_view = None
            if user_ids is not None:
                ids = pd.DataFrame({"user_id": pd.Series(list(user_ids), dtype=object).astype(str)})
                users_view = _register(con, ids)
                views.append(users_view)
            sql = _per_user_sql(clean_events_sql(con, ref), grid.period, users_view)
            params: dict[str, object] = {
                "origin": grid.origin.to_pydatetime(),
                "last_t": grid.last_t,
                "churn_after": int(churn_after),
            }
            seg_col, join = "CAST(NULL AS BIGINT) AS seg_no", ""
            if assignments is not None:
                seg = pd.DataFrame(
                    {
                        "user_id": assignments["user_id"].astype(str).to_numpy(),
                        "seg_no": assignments["segment"].astype("int64").to_numpy(),
                    }
                )
                views.append(_register(con, seg))
                seg_col, join = "g.seg_no", f"LEFT JOIN {quote_ident(views[-1])} g USING (user_id)"
            where = []
            if selection.segment is not None:
                params["segment"] = int(selection.segment)
                where.append("g.seg_no = $segment")
            if selection.stage is not None:
                params["stage"] = str(selection.stage).replace(" ", "_")
                where.append("p.stage = $stage")
            query = (
                f"SELECT p.user_id, {seg_col}, p.stage, p.last_seen, p.active_periods, p.spend "  # noqa: S608
                f"FROM ({sql}) p {join} "
                + (f"WHERE {' AND '.join(where)} " if where else "")
                + "ORDER BY p.spend DESC NULLS LAST, p.user_id"
            )
            out = con.execute(query, params).df()
        finally:
            for view in views:
                con.unregister(view)
    if assignments is None:
        out["segment"] = ""
    else:
        out["segment"] = [
            NOT_SEGMENTED if pd.isna(s) else segment_name(names, int(s)) for s in out["seg_no"]
        ]
    out["last_seen"] = pd.to_datetime(out["last_seen"]).dt.date
    out["active_periods"] = out["active_periods"].astype("int64")
    out["spend"] = out["spend"].astype(float)
    return out[list(COLUMNS)].reset_index(drop=True)


def user_activity(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    grid: PeriodGrid | None = None,
) -> pd.DataFrame:
    """Each user's ``user_id`` and :data:`ACTIVITY` (last seen date, active periods, spend),
    sorted by ``user_id``: what a CRM wants beside the segment and the stage."""
    grid = grid or period_grid(con, events, period)
    facts = user_pass.kept(con, events)  # the run's shared per-user and per-period passes
    shared = user_pass.kept_periods(con, events, grid) if facts is not None else None
    if facts is not None and shared is not None:
        return pd.DataFrame(
            {
                "user_id": facts.users["user_id"].to_numpy(),
                "last_seen": pd.to_datetime(facts.users["last_ts"]).dt.date.to_numpy(),
                "active_periods": user_pass.active_periods(facts, shared),
                "spend": facts.users["amount"].astype(float).to_numpy(),
            }
        )
    with events_source(con, events) as ref:
        index = period_index_sql(grid.period, "ts")
        sql = f"""
            SELECT user_id, CAST(max(ts) AS DATE) AS last_seen,
                   CAST(count(DISTINCT {index}) AS BIGINT) AS active_periods,
                   sum(amount) AS spend
            FROM ({clean_events_sql(con, ref)}) GROUP BY user_id ORDER BY user_id
        """  # noqa: S608 -- fixed fragments only
        out = con.execute(sql, {"origin": grid.origin.to_pydatetime()}).df()
    out["last_seen"] = pd.to_datetime(out["last_seen"]).dt.date
    out["spend"] = out["spend"].astype(float)
    return out


def with_activity(per_user: pd.DataFrame, activity: pd.DataFrame | None) -> pd.DataFrame:
    """``per_user`` (one row per ``user_id``) with the :data:`ACTIVITY` columns appended, in
    the same row order; unchanged when there is no ``activity`` (a campaign snapshot has no
    event history)."""
    if activity is None:
        return per_user
    keep = per_user.drop(columns=[c for c in ACTIVITY if c in per_user.columns])
    facts = activity[["user_id", *ACTIVITY]].assign(user_id=lambda d: d["user_id"].astype(str))
    out = keep.assign(_key=keep["user_id"].astype(str)).merge(
        facts.rename(columns={"user_id": "_key"}), on="_key", how="left"
    )
    return out.drop(columns="_key")


# --------------------------------------------------------------------------- workspace level


def workspace_users(
    ws: Workspace,
    dataset_id: str,
    selection: Selection = Selection(),  # noqa: B008 -- frozen, so a shared default is safe
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
    segmentation_run: str | None = None,
    names: Mapping[int, str] | None = None,
    user_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """:func:`drill_users` over a stored dataset (segments from the stored
    ``segmentation_run``). A campaign snapshot has no event history: its users come with their
    segment and stage (from the snapshot's recency) and empty activity columns."""
    assignments = None
    if segmentation_run is not None:
        assignments = ws.load_run(segmentation_run).artifacts["assignments"][["user_id", "segment"]]
    if ws.dataset(dataset_id).shape == "events":
        return drill_users(
            ws.cursor(), ws.table(dataset_id, "events"), selection, period=period,
            churn_after=churn_after, assignments=assignments, names=names, user_ids=user_ids,
        )  # fmt: skip
    if selection.cohort is not None:
        raise InputError("A campaign snapshot has no cohorts: it has no event times.")
    users = user_stage_table(ws, dataset_id, period, churn_after)
    if user_ids is not None:
        users = users[users["user_id"].isin({str(u) for u in user_ids})]
    if assignments is not None:
        seg = assignments.assign(user_id=assignments["user_id"].astype(str))
        users = users.merge(seg, on="user_id", how="left")
        if selection.segment is not None:
            users = users[users["segment"] == int(selection.segment)]
        users["segment"] = [
            NOT_SEGMENTED if pd.isna(s) else segment_name(names, int(s)) for s in users["segment"]
        ]
    else:
        users["segment"] = ""
    if selection.stage is not None:
        users = users[users["stage"] == str(selection.stage).replace(" ", "_")]
    users = users.assign(last_seen=None, active_periods=pd.NA, spend=float("nan"))
    return users.sort_values("user_id")[list(COLUMNS)].reset_index(drop=True)


def crm_users(ws: Workspace, dataset_id: str, per_user: pd.DataFrame, period: str) -> pd.DataFrame:
    """The users CSV for a CRM: ``per_user`` (segment, stage, action...) with each user's last
    seen date, active periods (in ``period``) and spend (:func:`with_activity`); unchanged for
    a campaign snapshot."""
    if ws.dataset(dataset_id).shape != "events":
        return per_user
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    return with_activity(per_user, user_activity(con, events, period=period))


__all__ = [
    "crm_users",
    "workspace_users",
    "ACTIVITY",
    "COLUMNS",
    "Selection",
    "drill_users",
    "user_activity",
    "with_activity",
]

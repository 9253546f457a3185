"""Cohort triangle (SQL), Kaplan–Meier survival per group (lifelines) and the log-rank test.

* **Cohort table**: users grouped by their first period (the cohort) × periods since first
  (``k``). *Classic* mode counts users active in period ``k``; *unbounded* mode counts users
  active in period ``k`` or any later period (so it never rises along a row). Cells after the
  data's last period are NaN, which makes the triangle.
* **Survival**: time to churn per group. A user's duration is the number of periods from their
  first period to the period in which they *first* reach the churn window (recency ==
  ``churn_after``); that is an observed event. A user who never reaches it is censored at the
  data's last period (duration ``T - first_t``): a user active in the last period, or lapsing
  there, is censored, not churned. A churned user who later comes back (win-back) keeps their
  first churn: survival is about the first churn only (the panel shows the win-backs).
* **Log-rank**: :func:`lifelines.statistics.multivariate_logrank_test` across the groups, with
  a sentence a marketer can read.

Groups come from a segmentation (``assignments`` frame ``user_id, segment``) or from any
categorical column of the events (each user's most frequent value; the top N values, the rest
as ``Other``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from retention import user_pass
from retention.errors import InputError
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    EventsSource,
    PeriodGrid,
    check_churn_after,
    clean_events_sql,
    columns_of,
    events_source,
    period_grid,
    period_index_sql,
    resolve_period,
)
from retention.sql import quote_ident
from retention.words import segment_display_name

MODES: tuple[str, ...] = ("classic", "unbounded")
MODE_EXPLANATIONS: dict[str, str] = {
    "classic": (
        "Classic: the share of each cohort that was active in that exact period. A user who "
        "skips a period and comes back later counts again when they come back."
    ),
    "unbounded": (
        "Unbounded: the share of each cohort that was active in that period or any later one, "
        "i.e. had not yet left for good. It never goes up along a row."
    ),
}
ALL_USERS = "All users"
OTHER = "Other"
MISSING = "(missing)"
NOT_SEGMENTED = "Not segmented"
DEFAULT_TOP_N = 8
RETENTION_AFTER: tuple[int, ...] = (1, 4)  # the segment profile's "retention after k"
MAX_CATEGORIES = 100  # more distinct values than this are not groups a reader can compare


# -- cohort table --------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortTable:
    """A cohort triangle. ``counts``/``rates`` are indexed by cohort start (``cohort``) with
    one column per period since first (``k``); cells after the data's end are NaN."""

    mode: str
    grid: PeriodGrid
    sizes: pd.Series
    counts: pd.DataFrame
    rates: pd.DataFrame

    @property
    def period(self) -> str:
        return self.grid.period


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"The 'mode' parameter must be one of {', '.join(MODES)}. Got {mode!r}.")
    return mode


def _user_filter_sql(
    con: duckdb.DuckDBPyConnection, user_ids: Iterable[str] | None
) -> tuple[str, str | None]:
    """A semi-join clause restricting to ``user_ids`` (registered as a view), and its name."""
    if user_ids is None:
        return "", None
    name = f"_users_{uuid.uuid4().hex}"
    ids = pd.DataFrame({"user_id": pd.Series(list(user_ids), dtype=object).astype(str)})
    con.register(name, ids)
    return f"WHERE user_id IN (SELECT user_id FROM {quote_ident(name)})", name  # noqa: S608


def _active_periods_sql(clean_events: str, period: str) -> str:
    """Distinct active (user_id, t) on the data's global grid (origin bound as ``$origin``)."""
    return (
        f"SELECT DISTINCT user_id, {period_index_sql(period, 'ts')} AS t "  # noqa: S608
        f"FROM ({clean_events})"
    )


def cohort_table(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    mode: str = "classic",
    user_ids: Iterable[str] | None = None,
) -> CohortTable:
    """The cohort triangle of an event log, in SQL.

    ``user_ids`` restricts the cohorts to those users (e.g. one segment) while keeping the
    data's own period grid and end.
    """
    _check_mode(mode)
    grid = period_grid(con, events, period)
    with events_source(con, events) as ref:
        where, view = _user_filter_sql(con, user_ids)
        try:
            index, clean = period_index_sql(grid.period, "ts"), clean_events_sql(con, ref)
            ev = f"SELECT user_id, {index} AS t FROM ({clean}) {where}"  # noqa: S608
            sql = _cohort_counts_sql(ev, mode)
            long = con.execute(sql, {"origin": grid.origin.to_pydatetime()}).df()
        finally:
            if view:
                con.unregister(view)
    return _triangle(long, grid, mode)


def _cohort_counts_sql(ev: str, mode: str, grouped: bool = False) -> str:
    """Users per (cohort_t, k) of the active periods ``ev`` (``user_id, t``; with ``grouped``,
    also ``segment``, then counted per segment too).

    Classic: each user's distinct active periods, counted by (cohort, k). Unbounded: active in
    k or later <=> the user's last k is >= k (counted here at the last k, summed up later).
    """
    seg = "segment, " if grouped else ""
    if mode == "classic":
        return f"""
            WITH u AS (
                SELECT {seg}list_distinct(list(t)) AS l FROM ({ev}) GROUP BY {seg}user_id
            ),
            c AS (SELECT {seg}list_min(l) AS cohort_t, unnest(l) AS t FROM u)
            SELECT {seg}cohort_t, t - cohort_t AS k, count(*) AS users
            FROM c GROUP BY {seg}cohort_t, k
        """  # noqa: S608 -- fixed fragments and quoted identifiers only
    return f"""
        WITH u AS (
            SELECT {seg}min(t) AS first_t, max(t) AS last_t FROM ({ev}) GROUP BY {seg}user_id
        )
        SELECT {seg}first_t AS cohort_t, last_t - first_t AS k, count(*) AS users
        FROM u GROUP BY {seg}cohort_t, k
    """  # noqa: S608 -- fixed fragments and quoted identifiers only


def retention_by_segment(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    assignments: pd.DataFrame,
    *,
    period: str = "auto",
    after: Sequence[int] = RETENTION_AFTER,
) -> tuple[pd.DataFrame, str]:
    """Each segment's retention after ``k`` periods, one definition for every ``k``: the share
    of the segment's users who were active ``k`` periods after their first period *or later*
    (unbounded retention, the cohort table's unbounded mode), counted over the same users for
    every ``k``: those whose first period is at least ``max(after)`` periods before the data's
    last period (so each of them could be seen that long).

    One group of users and "then or later" make it fall (or stay) as ``k`` grows: retention
    after 4 is never above retention after 1. Users without an assignment are left out.
    Returns a frame ``segment, retention_<k>...`` (NaN where no user of the segment started
    early enough) and the period used.
    """
    ks = sorted({int(k) for k in after})
    if not ks or ks[0] < 1:
        raise InputError(f"The 'after' parameter must be whole periods >= 1. Got {list(after)!r}.")
    grid = period_grid(con, events, period)
    seg = assignments[["user_id", "segment"]].assign(user_id=assignments["user_id"].astype(str))
    view = f"_segments_{uuid.uuid4().hex}"
    facts = user_pass.kept(con, events)
    if facts is not None:  # the run's shared per-user pass: first and last periods per user
        long = _first_last_by_segment(con, facts, seg, grid)
        return _retention_after(long, grid, ks, assignments), grid.period
    with events_source(con, events) as ref:
        con.register(view, seg)
        try:
            index, clean = period_index_sql(grid.period, "ts"), clean_events_sql(con, ref)
            ev = (
                f"SELECT e.user_id, {index} AS t, g.segment FROM ({clean}) e "  # noqa: S608
                f"JOIN {quote_ident(view)} g USING (user_id)"
            )
            sql = _cohort_counts_sql(ev, "unbounded", grouped=True)
            long = con.execute(sql, {"origin": grid.origin.to_pydatetime()}).df()
        finally:
            con.unregister(view)
    return _retention_after(long, grid, ks, assignments), grid.period


def _first_last_by_segment(
    con: duckdb.DuckDBPyConnection, facts: user_pass.UserFacts, seg: pd.DataFrame, grid: PeriodGrid
) -> pd.DataFrame:
    """What :func:`_cohort_counts_sql` counts in unbounded mode per segment (``segment,
    cohort_t, k, users``), from the per-user facts: a user's first and last active periods are
    the periods of their first and last events (a period index never falls as time goes on)."""
    view = f"_segments_{uuid.uuid4().hex}"
    first, last = (
        period_index_sql(grid.period, "u.first_ts"),
        period_index_sql(grid.period, "u.last_ts"),
    )
    with user_pass.registered(con, facts) as f:
        con.register(view, seg)
        try:
            sql = f"""
                SELECT g.segment, {first} AS cohort_t, {last} - {first} AS k, count(*) AS users
                FROM {f} AS u JOIN {quote_ident(view)} AS g USING (user_id)
                GROUP BY ALL
            """  # noqa: S608 -- fixed fragments and quoted identifiers only
            return con.execute(sql, {"origin": grid.origin.to_pydatetime()}).df()
        finally:
            con.unregister(view)


def _retention_after(
    long: pd.DataFrame, grid: PeriodGrid, ks: list[int], assignments: pd.DataFrame
) -> pd.DataFrame:
    """:func:`retention_by_segment`'s frame from the unbounded counts per segment ``long``."""
    # One group of users for every k: those observed for the longest k asked.
    eligible_rows = long[long["cohort_t"] + ks[-1] <= grid.last_t]
    eligible = eligible_rows.groupby("segment")["users"].sum()
    eligible = eligible[eligible > 0]
    out = pd.DataFrame({"segment": sorted(assignments["segment"].unique().tolist())})
    for k in ks:
        kept = eligible_rows[eligible_rows["k"] >= k].groupby("segment")["users"].sum()
        share = kept.reindex(eligible.index, fill_value=0) / eligible
        out[f"retention_{k}"] = out["segment"].map(share).astype(float)
    return out


def _triangle(long: pd.DataFrame, grid: PeriodGrid, mode: str) -> CohortTable:
    """Pivot long (cohort_t, k, users) counts into the triangle."""
    ks = pd.RangeIndex(grid.n_periods, name="k")
    if long.empty:
        empty = pd.DataFrame(index=pd.DatetimeIndex([], name="cohort"), columns=ks, dtype=float)
        sizes = pd.Series(index=empty.index, dtype="int64", name="users")
        return CohortTable(mode, grid, sizes, empty, empty.copy())
    wide = (
        long.pivot_table(index="cohort_t", columns="k", values="users", aggfunc="sum")
        .reindex(columns=ks)
        .fillna(0.0)
    )
    if mode == "unbounded":  # active in k or later = users whose last k is >= k
        wide = wide.iloc[:, ::-1].cumsum(axis=1).iloc[:, ::-1]
    cohort_t = wide.index.to_numpy()
    sizes = wide[0].astype("int64")  # everyone is active in their first period
    outside = ks.to_numpy()[None, :] > (grid.last_t - cohort_t)[:, None]
    wide = wide.mask(outside)
    index = pd.DatetimeIndex([grid.start_of(int(t)) for t in cohort_t], name="cohort")
    wide.index = index
    wide.columns = ks
    sizes = pd.Series(sizes.to_numpy(), index=index, name="users")
    rates = wide.div(sizes, axis=0)
    return CohortTable(mode=mode, grid=grid, sizes=sizes, counts=wide, rates=rates)


# -- groups ----------------------------------------------------------------------------------


def categorical_columns(con: duckdb.DuckDBPyConnection, events: EventsSource) -> list[str]:
    """Columns of the events that make sense as groups to compare: text, yes/no or category
    columns with 2 to :data:`MAX_CATEGORIES` distinct values, and clearly fewer values than
    users (a value per user, such as an e-mail address, is an id, not a group).

    Left out: ``user_id``, ``ts``, ``amount`` and ``text``; numbers, and text columns whose
    values are all numbers (quantities, prices, codes read as text from a CSV), which are
    measured per row, not shared by a group; dates and times.
    """
    with events_source(con, events) as ref:
        cols = columns_of(con, ref)
        candidates = [
            c
            for c, kind in cols.items()
            if c not in {"user_id", "ts", "amount", "text"}
            and (kind.startswith("VARCHAR") or kind in {"BOOLEAN"} or kind.startswith("ENUM"))
        ]
        if not candidates:
            return []
        stats = []
        for c in candidates:
            col = quote_ident(c)
            stats.append(f"approx_count_distinct({col})")
            # Text whose every value reads as a number (an empty column does not count).
            stats.append(
                f"count({col}) > 0 AND count({col}) = "
                f"count(TRY_CAST(CAST({col} AS VARCHAR) AS DOUBLE))"
            )
        row = con.execute(
            f"SELECT approx_count_distinct(user_id), {', '.join(stats)} FROM {ref}"  # noqa: S608
        ).fetchall()[0]
    users, values = int(row[0] or 0), row[1:]
    return [
        c
        for c, n, numeric in zip(candidates, values[0::2], values[1::2], strict=True)
        if 2 <= n <= MAX_CATEGORIES and n < 0.9 * users and not numeric
    ]


def user_groups(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    by: str | pd.DataFrame | None = None,
    *,
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> pd.DataFrame:
    """Each user's group, as ``user_id, group`` (``group`` an ordered categorical).

    ``by`` is ``None`` (one group, "All users"), a segmentation's assignments frame
    (``user_id, segment``; ``names`` maps segment -> display name, else
    :func:`~retention.words.segment_display_name`; users without an assignment are
    "Not segmented"), or the name of a categorical events column (each user's
    most frequent value, ties to the alphabetically first; the ``top_n`` values with most users,
    the rest "Other", users with only missing values "(missing)").
    """
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InputError(f"The 'top_n' parameter must be an int >= 1. Got {top_n!r}.")
    facts = user_pass.kept(con, events) if not isinstance(by, str) else None
    with events_source(con, events) as ref:
        if facts is not None:  # the run's shared per-user pass has every user, sorted
            users = facts.users[["user_id"]].reset_index(drop=True)
        else:
            users = con.execute(
                f"SELECT DISTINCT CAST(user_id AS VARCHAR) AS user_id FROM {ref} "  # noqa: S608
                "WHERE user_id IS NOT NULL AND ts IS NOT NULL ORDER BY user_id"
            ).df()
        if by is None:
            groups = pd.Series(ALL_USERS, index=users.index)
            return _ordered(users.assign(group=groups), [ALL_USERS])
        if isinstance(by, pd.DataFrame):
            return _segment_groups(users, by, names or {})
        if not isinstance(by, str):
            raise InputError(
                "The 'by' parameter must be None, a segmentation's assignments frame or the name "
                f"of a column. Got {type(by).__name__}."
            )
        return _column_groups(con, ref, users, by, top_n)


def groups_word(by: str | pd.DataFrame | None) -> str:
    """What the groups of :func:`user_groups` ``by`` are called in a sentence: "segments",
    "values of country" or "groups"."""
    if isinstance(by, pd.DataFrame):
        return "segments"
    return f"values of {by}" if by else "groups"


def _ordered(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    have = set(frame["group"])
    present = [g for g in order if g in have]
    frame = frame.copy()
    frame["group"] = pd.Categorical(frame["group"], categories=present, ordered=True)
    return frame.reset_index(drop=True)


def _segment_groups(
    users: pd.DataFrame, assignments: pd.DataFrame, names: Mapping[int, str]
) -> pd.DataFrame:
    missing = [c for c in ("user_id", "segment") if c not in assignments.columns]
    if missing:
        raise InputError(
            "The segment assignments need the columns user_id and segment; missing "
            f"{', '.join(missing)}. Columns present: {', '.join(map(str, assignments.columns))}."
        )
    seg = assignments.assign(user_id=assignments["user_id"].astype(str)).drop_duplicates("user_id")
    seg_ids = sorted({int(s) for s in seg["segment"]}, key=lambda s: (s < 0, s))

    labels = {s: str(names[s]) if s in names else segment_display_name(s) for s in seg_ids}
    if len(set(labels.values())) < len(labels):  # duplicate names: keep them apart
        labels = {s: f"{name} ({s})" for s, name in labels.items()}
    merged = users.merge(seg[["user_id", "segment"]], on="user_id", how="left")
    # Issue 19: labelled through the segment ids' dictionary, not a Python call per user.
    segment = merged["segment"]
    known = segment.notna().to_numpy()
    group = pd.Series(NOT_SEGMENTED, index=merged.index, dtype=object)
    group[known] = segment[known].astype("int64").map(labels).to_numpy(dtype=object)
    order = [labels[s] for s in seg_ids] + [NOT_SEGMENTED]
    return _ordered(pd.DataFrame({"user_id": merged["user_id"], "group": group}), order)


def _column_groups(
    con: duckdb.DuckDBPyConnection, ref: str, users: pd.DataFrame, column: str, top_n: int
) -> pd.DataFrame:
    cols = columns_of(con, ref)
    if column not in cols or column in {"user_id", "ts"}:
        allowed = [c for c in cols if c not in {"user_id", "ts"}]
        raise InputError(
            f"Cannot break down by {column!r}: it is not a column of the events. "
            f"Columns you can use: {', '.join(allowed) or 'none'}."
        )
    col = quote_ident(column)
    modes = con.execute(
        f"""
        WITH v AS (
            SELECT CAST(user_id AS VARCHAR) AS user_id, CAST({col} AS VARCHAR) AS value,
                   count(*) AS n
            FROM {ref}
            WHERE user_id IS NOT NULL AND ts IS NOT NULL AND {col} IS NOT NULL
            GROUP BY 1, 2
        )
        SELECT user_id, value FROM v
        QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY n DESC, value) = 1
        """  # noqa: S608 -- quoted identifiers only
    ).df()
    merged = users.merge(modes, on="user_id", how="left")
    value = merged["value"].fillna(MISSING)
    counts = value[value != MISSING].value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    top = list(counts.index[:top_n])
    group = value.where(value.isin(top) | (value == MISSING), OTHER)
    order = top + [OTHER, MISSING]
    return _ordered(pd.DataFrame({"user_id": merged["user_id"], "group": group}), order)


# -- survival --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRank:
    """Log-rank test across groups (are their survival curves the same?)."""

    statistic: float
    p_value: float
    dof: int
    sentence: str


@dataclass(frozen=True)
class Survival:
    """Kaplan–Meier time-to-churn curves per group.

    ``curves`` is indexed by ``(group, k)`` (periods since first) with columns ``survival``,
    ``lower``, ``upper`` (the ``ci`` confidence band), ``at_risk`` (users still observed and not
    churned at the start of ``k``), ``churned`` and ``censored`` (users whose duration ends at
    ``k``). ``at_risk`` repeats the at-risk counts as a group × k table.
    """

    period: str
    churn_after: int
    ci: float
    curves: pd.DataFrame
    at_risk: pd.DataFrame
    sizes: pd.Series
    logrank: LogRank | None

    @property
    def groups(self) -> list[str]:
        return list(self.sizes.index)

    def curve(self, group: str) -> pd.DataFrame:
        """One group's curve, indexed by ``k``."""
        return self.curves.xs(group, level="group")


def churn_durations(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
) -> pd.DataFrame:
    """Time to first churn per user: ``user_id, first_t, duration, churned``.

    A gap of more than ``churn_after`` periods after an active period ``t`` (or no return with
    ``t + churn_after <= T``) means the user churned at ``t + churn_after``; the first such
    moment counts. ``duration`` is in periods since the user's first period; users who never
    churn are censored at ``T`` (``churned`` False).
    """
    check_churn_after(churn_after)
    grid = period_grid(con, events, period)
    facts = user_pass.kept(con, events)  # the run's shared per-user and per-period passes
    shared = user_pass.kept_periods(con, events, grid) if facts is not None else None
    if facts is not None and shared is not None:
        return user_pass.churn_durations(facts, shared, churn_after, grid.last_t)
    with events_source(con, events) as ref:
        act = _active_periods_sql(clean_events_sql(con, ref), grid.period)
        sql = f"""
            WITH act AS ({act}),
            spans AS (
                SELECT user_id, t, first_value(t) OVER w AS first_t, lead(t) OVER w AS next_t
                FROM act WINDOW w AS (PARTITION BY user_id ORDER BY t)
            ),
            firsts AS (
                SELECT user_id, min(first_t) AS first_t,
                       min(CASE WHEN t + $w < coalesce(next_t, $last_t + 1 + $w)
                                 AND t + $w <= $last_t THEN t + $w END) AS churn_t
                FROM spans GROUP BY user_id
            )
            SELECT user_id, CAST(first_t AS INTEGER) AS first_t,
                   CAST(coalesce(churn_t, $last_t) - first_t AS INTEGER) AS duration,
                   churn_t IS NOT NULL AS churned
            FROM firsts ORDER BY user_id
        """  # noqa: S608 -- fixed fragments and quoted identifiers only
        params = {"origin": grid.origin.to_pydatetime(), "w": churn_after, "last_t": grid.last_t}
        out = con.execute(sql, params).df()
    out["churned"] = out["churned"].astype(bool)
    return out


def p_value_text(p_value: float) -> str:
    """A p-value as it is shown: "p < 0.001" below 0.001 (never "p = 0" or "p = 5e-53"), else
    "p = 0.034" (two significant figures)."""
    if not np.isfinite(p_value):
        return "p not available"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def logrank_sentence(p_value: float, what: str = "segments") -> str:
    """The log-rank p-value in words a marketer can act on."""
    if not np.isfinite(p_value):
        return f"There is not enough data to compare the {what}."
    shown = p_value_text(p_value)
    if p_value < 0.01:
        return (
            f"The difference in retention between {what} is very unlikely to be chance ({shown})."
        )
    if p_value < 0.05:
        return (
            f"The difference in retention between {what} is unlikely to be chance ({shown}), "
            "though not certain."
        )
    if p_value < 0.2:
        return (
            f"The difference in retention between {what} could be chance ({shown}): treat it as "
            "a hint, not a finding."
        )
    return (
        f"The difference in retention between {what} could well be chance ({shown}): don't read "
        "much into it."
    )


def survival(
    durations: pd.DataFrame,
    groups: pd.DataFrame | None = None,
    *,
    period: str = "",
    churn_after: int = DEFAULT_CHURN_AFTER,
    alpha: float = 0.05,
    what: str = "segments",
) -> Survival:
    """Kaplan–Meier curves (lifelines) per group and a log-rank test across groups.

    ``durations`` is :func:`churn_durations`' frame; ``groups`` is :func:`user_groups`' frame
    (all users in one group when ``None``). Curves are evaluated at every whole period
    ``k = 0 .. max duration`` of the group. ``what`` names the groups in the log-rank sentence.
    """
    if not 0 < alpha < 1:
        raise InputError(f"The 'alpha' parameter must be a number in (0, 1). Got {alpha!r}.")
    data = durations[["user_id", "duration", "churned"]]
    if groups is None:
        data = data.assign(group=pd.Categorical([ALL_USERS] * len(data)))
    else:
        data = data.merge(groups[["user_id", "group"]], on="user_id", how="inner")
    if data.empty:
        raise InputError("No users to compute retention curves for: the data or group is empty.")
    order = (
        list(data["group"].cat.categories)
        if isinstance(data["group"].dtype, pd.CategoricalDtype)
        else sorted(data["group"].unique())
    )
    sizes = data["group"].value_counts().reindex(order).fillna(0).astype("int64")
    sizes = sizes[sizes > 0].rename("users")
    sizes.index = pd.Index([str(g) for g in sizes.index], name="group")

    frames = []
    group_of = data["group"].astype(str).to_numpy()  # issue 19: once, not once per group
    for group in sizes.index:
        part = data[group_of == group]
        frames.append(_km_curve(part["duration"].to_numpy(), part["churned"].to_numpy(), alpha))
    curves = pd.concat(frames, keys=list(sizes.index), names=["group", "k"])
    at_risk = curves["at_risk"].unstack("k").reindex(sizes.index)

    logrank = None
    if len(sizes) >= 2:
        from lifelines.statistics import multivariate_logrank_test

        test = multivariate_logrank_test(
            data["duration"].to_numpy(),
            group_of,
            data["churned"].to_numpy(),
        )
        p = float(test.p_value)
        logrank = LogRank(
            statistic=float(test.test_statistic),
            p_value=p,
            dof=int(test.degrees_of_freedom),
            sentence=logrank_sentence(p, what),
        )
    return Survival(
        period=period,
        churn_after=churn_after,
        ci=1 - alpha,
        curves=curves,
        at_risk=at_risk,
        sizes=sizes,
        logrank=logrank,
    )


def _km_curve(duration: np.ndarray, churned: np.ndarray, alpha: float) -> pd.DataFrame:
    """One Kaplan–Meier curve at whole periods, with its band and the at-risk counts.

    lifelines is imported here, not with the module (0.9 s with the parts of SciPy it loads, on
    2 Zen 4 cores): a segmentation imports this module for its SQL retention table only, and its
    worker process started that much later (issue 19, the Segments page's cold first run)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter(alpha=alpha).fit(duration, event_observed=churned)
    ks = pd.RangeIndex(int(duration.max()) + 1, name="k")
    band = kmf.confidence_interval_survival_function_.reindex(ks, method="ffill").fillna(1.0)
    churned_at = np.bincount(duration[churned.astype(bool)], minlength=len(ks))
    ended_at = np.bincount(duration, minlength=len(ks))
    at_risk = len(duration) - np.concatenate([[0], np.cumsum(ended_at)[:-1]])
    return pd.DataFrame(
        {
            "survival": kmf.survival_function_at_times(ks).to_numpy(),
            "lower": band.iloc[:, 0].to_numpy(),
            "upper": band.iloc[:, 1].to_numpy(),
            "at_risk": at_risk.astype("int64"),
            "churned": churned_at.astype("int64"),
            "censored": (ended_at - churned_at).astype("int64"),
        },
        index=ks,
    )


def retention_curves(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
    by: str | pd.DataFrame | None = None,
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
    alpha: float = 0.05,
    durations: pd.DataFrame | None = None,
) -> Survival:
    """Durations, groups and Kaplan–Meier curves in one call (see :func:`survival`).

    ``durations``: :func:`churn_durations` of the same events, period and ``churn_after`` when
    the caller already has them (the command line shares them with :func:`retention_summary`).
    """
    period = resolve_period(con, events, period)
    if durations is None:
        durations = churn_durations(con, events, period=period, churn_after=churn_after)
    groups = user_groups(con, events, by, names=names, top_n=top_n)
    return survival(
        durations,
        groups,
        period=period,
        churn_after=churn_after,
        alpha=alpha,
        what=groups_word(by),
    )


def retention_summary(
    con: duckdb.DuckDBPyConnection,
    events: EventsSource,
    *,
    period: str = "auto",
    churn_after: int = DEFAULT_CHURN_AFTER,
    assignments: pd.DataFrame | None = None,
    names: Mapping[int, str] | None = None,
    durations: pd.DataFrame | None = None,
) -> dict[str, object]:
    """The ``retention`` block of the command line's ``summary.json`` (SPEC §8).

    ``curves`` maps each segment id (as a string; ``"all"`` without a segmentation) to the
    Kaplan–Meier survival at periods 0, 1, 2, ...; ``logrank_p`` is the log-rank p-value across
    segments (``None`` with fewer than two). Users without an assignment are left out.
    ``durations``: as in :func:`retention_curves`.
    """
    period = resolve_period(con, events, period)
    if durations is None:
        durations = churn_durations(con, events, period=period, churn_after=churn_after)
    if assignments is None:
        groups = None
        keys = {ALL_USERS: "all"}
    else:
        seg = assignments.assign(user_id=assignments["user_id"].astype(str))
        seg = seg.drop_duplicates("user_id")
        ids = sorted({int(s) for s in seg["segment"]}, key=lambda s: (s < 0, s))
        groups = pd.DataFrame(
            {
                "user_id": seg["user_id"],
                "group": pd.Categorical(
                    seg["segment"].astype(int).astype(str), categories=[str(s) for s in ids]
                ),
            }
        )
        keys = {str(s): str(s) for s in ids}
    surv = survival(durations, groups, period=period, churn_after=churn_after)
    return _summary_block(surv, keys, period, churn_after, assignments is not None, names)


def _summary_block(
    surv: Survival,
    keys: Mapping[str, str],
    period: str,
    churn_after: int,
    segmented: bool,
    names: Mapping[int, str] | None,
) -> dict[str, object]:
    """:func:`retention_summary`'s block from its curves (``keys``: group → key)."""
    return {
        "period": period,
        "churn_after": churn_after,
        "curves": {
            keys[g]: [round(float(v), 6) for v in surv.curve(g)["survival"]] for g in surv.groups
        },
        "users": {keys[g]: int(n) for g, n in surv.sizes.items()},
        "logrank_p": None if surv.logrank is None else surv.logrank.p_value,
        "logrank_sentence": None if surv.logrank is None else surv.logrank.sentence,
        "labels": (
            {}
            if not segmented
            else {
                k: (names or {}).get(int(k), segment_display_name(int(k)))
                for k in keys.values()
                if k != ALL_USERS
            }
        ),
    }


def summary_from_curves(
    curves: Survival,
    durations: pd.DataFrame,
    assignments: pd.DataFrame,
    names: Mapping[int, str] | None = None,
) -> dict[str, object] | None:
    """:func:`retention_summary`'s block from :func:`retention_curves`' Kaplan–Meier curves of
    the same durations by the same ``assignments`` and ``names`` (issue 19: the command line fits
    the curves once). The two group the same users when every user with a duration has a
    segment and every segmented user a duration; then only the groups' names differ (segment
    names there, segment ids here) and the curves, sizes and log-rank test are the same.
    ``None`` when the groups differ (then call :func:`retention_summary`)."""
    seg = assignments.assign(user_id=assignments["user_id"].astype(str)).drop_duplicates("user_id")
    if NOT_SEGMENTED in curves.groups or len(seg) != len(durations):
        return None
    if int(curves.sizes.sum()) != len(durations):
        return None
    seg_ids = sorted({int(s) for s in seg["segment"]}, key=lambda s: (s < 0, s))
    labels = {
        s: str(names[s]) if names and s in names else segment_display_name(s) for s in seg_ids
    }
    if len(set(labels.values())) < len(labels):  # as user_groups keeps duplicate names apart
        labels = {s: f"{name} ({s})" for s, name in labels.items()}
    key_of = {label: str(s) for s, label in labels.items()}
    if not set(curves.groups) <= set(key_of):
        return None
    keys = {g: key_of[g] for g in curves.groups}
    all_keys = {label: str(s) for s, label in labels.items()}  # every segment, as before
    return _summary_block(curves, {**all_keys, **keys}, curves.period, curves.churn_after,
                          True, names)  # fmt: skip

"""Time formats: one family of formats per column, chosen by DuckDB on a sample of its values.

A family is a list of ``strptime`` formats tried in order per value (DuckDB's ``try_strptime``
takes the list), or ``iso`` (a cast that also reads time zones) or epoch seconds/milliseconds.
Choosing per column, not per value, is what keeps ``01/02/2011`` from meaning two dates in one
file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import duckdb
import pandas as pd

from retention.errors import InputError

_HMS = ("%H:%M:%S", "%H:%M", "%H:%M:%S.%f", "%I:%M:%S %p", "%I:%M %p")


def _family(dates: Iterable[str]) -> list[str]:
    return [f"{d} {t}" for d in dates for t in _HMS] + list(dates)


#: name -> list of strptime formats (tried in order per value); "iso" is a cast that also reads
#: time zones (converted to UTC). Order breaks ties: month-first before day-first.
TIME_FAMILIES: dict[str, list[str]] = {
    "iso": [],
    "Y/m/d": _family(["%Y/%m/%d", "%Y.%m.%d"]),
    "m/d/Y": _family(["%m/%d/%Y", "%m/%d/%y", "%m-%d-%Y"]),
    "d/m/Y": _family(["%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d.%m.%y", "%d-%m-%Y"]),
    "YYYYMMDD": ["%Y%m%d", "%Y%m%d%H%M%S", "%Y%m%d %H%M%S", "%Y%m%d %H:%M:%S"],
    "d Mon Y": _family(["%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%b-%y", "%b %d %Y", "%B %d %Y"])
    + _family(["%b %d, %Y", "%B %d, %Y", "%a, %d %b %Y"]),
}
EPOCH_FAMILIES = ("epoch_s", "epoch_ms")
TIME_NAME_RE = re.compile(
    r"(date|time|timestamp|datetime|^ts$|_at$|^at$|created|occurred|when)", re.I
)


def ts_from_text(expr: str, family: str) -> str:
    """SQL turning VARCHAR ``expr`` into a naive-UTC TIMESTAMP (NULL when it does not parse)."""
    if family == "iso":
        # 'YYYY-MM-DD HH:MM:SS' is 19 characters; longer values may carry a time zone and take
        # the (3x slower) time-zone cast, which also reads values without one as UTC.
        parsed = (
            f"(CASE WHEN length({expr}) <= 19 THEN TRY_CAST({expr} AS TIMESTAMP) "
            f"ELSE timezone('UTC', TRY_CAST({expr} AS TIMESTAMPTZ)) END)"
        )
    elif family == "epoch_s":
        parsed = f"make_timestamp(TRY_CAST(TRY_CAST({expr} AS DOUBLE) * 1000000 AS BIGINT))"
    elif family == "epoch_ms":
        parsed = f"make_timestamp(TRY_CAST(TRY_CAST({expr} AS DOUBLE) * 1000 AS BIGINT))"
    else:  # our own fixed format strings (no user text goes into the SQL)
        formats = ", ".join("'" + f + "'" for f in TIME_FAMILIES[family])
        parsed = f"try_strptime({expr}, [{formats}])"
    return parsed


def best_time_family(
    con: duckdb.DuckDBPyConnection, values: pd.Series, *, allow_epoch: bool
) -> tuple[str | None, float]:
    """The format family parsing most of the sample values, and the fraction it parses."""
    return best_time_families(con, {"v": (values, allow_epoch)})["v"]


def best_time_families(
    con: duckdb.DuckDBPyConnection, columns: Mapping[str, tuple[pd.Series, bool]]
) -> dict[str, tuple[str | None, float]]:
    """Per column (values, allow_epoch): the best family and the fraction it parses.

    One query for all columns: each family is tried on up to 500 distinct values per column.
    Epoch seconds/milliseconds are only considered for time-like names and plausible numbers.
    """
    samples: dict[str, pd.Series] = {}
    for key, (values, _) in columns.items():
        sample = values.dropna().astype(str).str.strip()
        samples[key] = sample[sample != ""].drop_duplicates().head(500)
    families = list(TIME_FAMILIES) + list(EPOCH_FAMILIES)
    counts = count_parsed_many(con, {k: v for k, v in samples.items() if len(v)}, families)
    result: dict[str, tuple[str | None, float]] = {}
    for key, (_, allow_epoch) in columns.items():
        sample = samples[key]
        if key not in counts:
            result[key] = (None, 0.0)
            continue
        allowed = list(TIME_FAMILIES)
        if allow_epoch:
            numeric = to_numeric_text(sample)
            if numeric.notna().mean() >= 0.9 and numeric.between(1e8, 1e13).all():
                allowed += list(EPOCH_FAMILIES)
        scores = [(counts[key][families.index(f)], -i, f) for i, f in enumerate(allowed)]
        n, _, best = max(scores)
        if n == 0:
            result[key] = (None, 0.0)
        elif best in EPOCH_FAMILIES:
            ms = to_numeric_text(sample).median() > 1e11
            result[key] = ("epoch_ms" if ms else "epoch_s", n / len(sample))
        else:
            result[key] = (best, n / len(sample))
    return result


def ambiguous_day_month(con: duckdb.DuckDBPyConnection, values: pd.Series, family: str) -> bool:
    """True when the sample parses equally well month-first and day-first."""
    if family not in ("m/d/Y", "d/m/Y"):
        return False
    sample = values.dropna().astype(str).str.strip().drop_duplicates().head(500)
    month_first, day_first = count_parsed_many(con, {"v": sample}, ["m/d/Y", "d/m/Y"])["v"]
    return month_first == day_first


def count_parsed_many(
    con: duckdb.DuckDBPyConnection, columns: Mapping[str, pd.Series], families: list[str]
) -> dict[str, list[int]]:
    """For each column of values: how many each family parses to a time in 1900..2100."""
    if not columns:
        return {}
    keys = list(columns)
    length = max(len(v) for v in columns.values())
    probe = pd.DataFrame(
        {
            f"c{j}": pd.Series(columns[k].to_numpy(dtype=object)).reindex(range(length))
            for j, k in enumerate(keys)
        },
        dtype=object,
    )
    con.register("_time_probe", probe)
    try:
        cells = [(j, i) for j in range(len(keys)) for i in range(len(families))]
        parsed = ", ".join(f"{ts_from_text(f'c{j}', families[i])} AS f{j}_{i}" for j, i in cells)
        counts = ", ".join(
            f"count(CASE WHEN year(f{j}_{i}) BETWEEN 1900 AND 2100 THEN 1 END)" for j, i in cells
        )
        # Only our own format constants are in this text; the values are a registered frame.
        sql = f"SELECT {counts} FROM (SELECT {parsed} FROM _time_probe)"  # noqa: S608
        row = con.execute(sql).fetchall()[0]
    finally:
        con.unregister("_time_probe")
    n = len(families)
    return {k: [int(x) for x in row[j * n : (j + 1) * n]] for j, k in enumerate(keys)}


def to_numeric_text(series: pd.Series) -> pd.Series:
    """Text to float (NaN where it is not a number), one value at a time in Python.

    Used on detection samples (at most 20,000 values). ``pd.to_numeric(errors="coerce")`` is
    not used here: pandas 2.3 crashed the interpreter (segmentation fault) on some generated
    hostile files, with string and with object input alike.
    """

    def convert(value: object) -> float:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return float("nan")
        try:
            return float(str(value))
        except (ValueError, OverflowError):
            return float("nan")

    return pd.Series([convert(v) for v in series.tolist()], index=series.index, dtype=float)


def family_or_none(family: str | None) -> str | None:
    """``family`` when it is a format family (not 'native' or None), else None."""
    return family if family in TIME_FAMILIES or family in EPOCH_FAMILIES else None


def check_time_format(time_format: str | None) -> None:
    """Refuse a ``time_format`` parameter that is not a format family."""
    if time_format is not None and time_format not in (*TIME_FAMILIES, *EPOCH_FAMILIES):
        raise InputError(
            f"The 'time_format' parameter must be one of {', '.join([*TIME_FAMILIES, *EPOCH_FAMILIES])}. "
            f"Got {time_format!r}."
        )

"""Role detection: which column plays which role, and which shape the table has.

Each column gets a profile from a sample (numbers, dates, distinct values, name tokens); each role
scores every profile; the best (role, column) pairs are taken greedily, one column per role.
Hand-written because it is about this product's roles and vocabularies, which no library knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd

from retention.ingest.db import new_connection
from retention.ingest.model import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    SNAPSHOT_ROLES,
    Detection,
    Shape,
    check_shape,
)
from retention.ingest.times import (
    TIME_NAME_RE,
    ambiguous_day_month,
    best_time_families,
    to_numeric_text,
)

#: Placeholders that mean "missing" in any column ("none" can be a real action name).
NULL_TEXT = ["", "nan", "null", "na", "n/a", "#n/a"]


@dataclass(frozen=True)
class _Profile:
    name: str
    tokens: tuple[str, ...]
    key: str  # lower-case name with only letters and digits
    is_datetime: bool
    numeric_frac: float
    integer_frac: float
    time_frac: float
    time_family: str | None
    mean_len: float
    distinct: int
    distinct_ratio: float
    non_null: int
    min: float
    max: float
    has_spaces: float
    decimal_frac: float  # share of values written with decimals (12.00) or fractional
    has_digits: bool


def name_tokens(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return tuple(t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t)


def sample_rows(frame: pd.DataFrame, n: int = 20_000) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    step = len(frame) // n
    return frame.iloc[::step].head(n)


def _numeric(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return pd.to_numeric(series, errors="coerce").astype(float)
    plain = to_numeric_text(series)
    if plain.notna().mean() >= 0.99:
        return plain.astype(float)
    return to_numeric_text(_numeric_cleaned(series)).astype(float)


def _numeric_cleaned(series: pd.Series) -> pd.Series:
    """Text with booleans as 1/0 and currency signs, spaces and thousands commas removed."""
    text = series.astype("string").str.strip().str.lower()
    text = text.replace({"true": "1", "false": "0", "yes": "1", "no": "0"})
    return text.str.replace(r"[\s$€£¥]", "", regex=True).str.replace(",", "", regex=False)


def _profiles(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> list[_Profile]:
    """Profiles of every column; the time-format probe runs once for all columns."""
    profiles = [_profile(str(c), frame[c]) for c in frame.columns]
    probe = {}
    for p, col in zip(profiles, frame.columns, strict=True):
        series = frame[col].dropna()
        integer = pd.api.types.is_integer_dtype(series)
        textual = not pd.api.types.is_numeric_dtype(series) and not p.is_datetime
        if p.non_null and (integer or (textual and p.has_digits)):
            probe[p.name] = (series, bool(TIME_NAME_RE.search(p.name)))
    found = best_time_families(con, probe)
    return [
        replace(p, time_family=found[p.name][0], time_frac=found[p.name][1])
        if p.name in found
        else p
        for p in profiles
    ]


def _profile(name: str, series: pd.Series) -> _Profile:
    non_null = series.dropna()
    if len(non_null) and _all_text(non_null):
        return _text_profile(name, non_null)
    if not pd.api.types.is_numeric_dtype(non_null) and not pd.api.types.is_datetime64_any_dtype(
        non_null
    ):
        as_text = non_null.astype("string").str.strip()
        non_null = non_null[(as_text != "") & ~as_text.str.lower().isin(NULL_TEXT)]
    n = len(non_null)
    is_dt = pd.api.types.is_datetime64_any_dtype(series)
    numbers = _numeric(non_null) if n and not is_dt else pd.Series(dtype=float)
    num_ok = numbers.dropna()
    numeric_frac = len(num_ok) / n if n else 0.0
    integer_frac = float((num_ok == num_ok.round()).mean()) if len(num_ok) else 0.0
    text = non_null.astype("string") if n else pd.Series(dtype="string")
    time_family, time_frac = ("native", 1.0) if is_dt else (None, 0.0)
    if pd.api.types.is_float_dtype(non_null):
        decimal_frac = 1.0 - integer_frac
    elif n and not pd.api.types.is_numeric_dtype(non_null):
        decimal_frac = float(text.str.contains(_DECIMAL_RE, regex=True).mean())
    else:
        decimal_frac = 0.0
    distinct = int(non_null.nunique()) if n else 0
    return _Profile(
        name=name,
        tokens=name_tokens(name),
        key=re.sub(r"[^a-z0-9]", "", str(name).lower()),
        is_datetime=is_dt,
        numeric_frac=numeric_frac,
        integer_frac=integer_frac,
        time_frac=time_frac,
        time_family=time_family,
        mean_len=float(text.str.len().mean()) if n else 0.0,
        distinct=distinct,
        distinct_ratio=distinct / n if n else 0.0,
        non_null=n,
        min=float(num_ok.min()) if len(num_ok) else np.nan,
        max=float(num_ok.max()) if len(num_ok) else np.nan,
        has_spaces=float(text.str.contains(" ", regex=False).mean()) if n else 0.0,
        decimal_frac=decimal_frac,
        has_digits=bool(text.str.contains(r"\d").any()) if n else False,
    )


_DECIMAL_RE = r"\d\.\d|\d,\d{1,2}$"


def _all_text(values: pd.Series) -> bool:
    """Every value is a Python ``str`` (a CSV column read as text): then equal values are equal
    strings, and each per-value step may run once per distinct value."""
    if pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
        return False  # a pandas "string" column: the general path (rare in uploads)
    return (
        pd.api.types.is_object_dtype(values)
        and pd.api.types.infer_dtype(values, skipna=False) == "string"
    )


def _text_profile(name: str, values: pd.Series) -> _Profile:
    """:func:`_profile` of a column of ``str`` values, with every per-value step (the null
    filter, the number conversions, the text tests) done once per distinct value and spread
    back to the rows (issue 22: an upload's detection held the server's interpreter for most of
    a second, in Python loops over 5,000 sampled values per column). The same arrays reach the
    same aggregations, so the profile is identical (``tests/unit/test_detect_profile.py``)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    distinct_values = pd.Series(uniques, dtype=object)
    as_text = distinct_values.astype("string").str.strip()
    kept_distinct = ((as_text != "") & ~as_text.str.lower().isin(NULL_TEXT)).to_numpy(dtype=bool)
    keep = kept_distinct[codes]
    codes = codes[keep]
    index = values.index[keep]
    n = len(codes)

    def spread(per_distinct: pd.Series) -> pd.Series:
        return pd.Series(per_distinct.to_numpy()[codes], index=index, dtype=per_distinct.dtype)

    if n:
        plain = spread(to_numeric_text(distinct_values))
        if plain.notna().mean() >= 0.99:
            numbers = plain.astype(float)
        else:
            numbers = spread(to_numeric_text(_numeric_cleaned(distinct_values))).astype(float)
    else:
        numbers = pd.Series(dtype=float)
    num_ok = numbers.dropna()
    numeric_frac = len(num_ok) / n if n else 0.0
    integer_frac = float((num_ok == num_ok.round()).mean()) if len(num_ok) else 0.0
    text = distinct_values.astype("string")
    decimal_frac = (
        float(spread(text.str.contains(_DECIMAL_RE, regex=True).astype(bool)).mean()) if n else 0.0
    )
    distinct = int(len(np.unique(codes))) if n else 0
    return _Profile(
        name=name,
        tokens=name_tokens(name),
        key=re.sub(r"[^a-z0-9]", "", str(name).lower()),
        is_datetime=False,
        numeric_frac=numeric_frac,
        integer_frac=integer_frac,
        time_frac=0.0,
        time_family=None,
        mean_len=float(spread(text.str.len()).mean()) if n else 0.0,
        distinct=distinct,
        distinct_ratio=distinct / n if n else 0.0,
        non_null=n,
        min=float(num_ok.min()) if len(num_ok) else np.nan,
        max=float(num_ok.max()) if len(num_ok) else np.nan,
        has_spaces=(
            float(spread(text.str.contains(" ", regex=False).astype(bool)).mean()) if n else 0.0
        ),
        decimal_frac=decimal_frac,
        has_digits=bool(spread(text.str.contains(r"\d").astype(bool)).any()) if n else False,
    )


# Name vocabularies: exact keys (letters+digits only, lower case) score high, tokens lower.
_USER_KEYS = {
    "customerid", "customer", "userid", "user", "uid", "clientid", "client", "memberid", "accountid",
    "visitorid", "shopperid", "buyerid", "custid", "cid", "personid", "householdid", "contactid",
    "customerno", "customernumber", "customerkey", "userkey", "subscriberid", "playerid", "email",
}  # fmt: skip
_USER_TOKENS = {
    "customer", "user", "client", "member", "account", "visitor", "shopper", "buyer", "cust",
    "subscriber", "player", "household", "uid", "kunde", "kunden", "cliente", "klant",
}  # fmt: skip
_TIME_TOKENS = {"date", "time", "timestamp", "datetime", "ts", "at", "created", "occurred", "when",
                "day", "datum", "fecha", "zeit"}  # fmt: skip
_AMOUNT_KEYS = {
    "amount", "revenue", "sales", "spend", "total", "value", "totalprice", "totalamount",
    "ordervalue", "gmv", "payment", "dollarvalue", "monetary", "subtotal", "linetotal", "turnover",
    "sum", "net", "gross", "amountspent", "totalspend",
}  # fmt: skip
_AMOUNT_TOKENS = {"amount", "revenue", "sales", "spend", "spent", "total", "value", "dollar", "dollars",
                  "usd", "eur", "gbp", "gmv", "payment", "paid", "monetary", "turnover", "betrag",
                  "umsatz", "importe", "montant", "bedrag"}  # fmt: skip
_QUANTITY_TOKENS = {"quantity", "qty", "units", "count", "number", "cds", "items", "pieces"}
_PRICE_TOKENS = {"price", "unitprice", "cost", "rate"}
_TEXT_TOKENS = {
    "description", "desc", "text", "review", "comment", "comments", "query", "search", "title",
    "product", "productname", "item", "itemname", "message", "body", "content", "keywords",
    "note", "notes", "summary", "name", "beschreibung", "descripcion", "produkt", "producto",
}  # fmt: skip
_EVENT_KEYS = {"event", "eventtype", "eventname", "type", "action", "activity", "eventcategory",
               "kind", "interaction", "behavior", "behaviour", "eventaction"}  # fmt: skip
_ACTION_KEYS = {"treatment", "action", "segment", "campaign", "offer", "arm", "variant", "group",
                "treat", "assignment", "intervention", "promotion", "strategy", "mailing"}  # fmt: skip
#: Outcome names by preference: retention-like binary outcomes first (Hillstrom: visit).
_OUTCOME_KEYS = ["visit", "visited", "retained", "retention", "active", "returned", "converted",
                 "conversion", "response", "responded", "outcome", "target", "label", "reward",
                 "purchase", "purchased", "bought", "clicked", "click", "opened", "open", "y",
                 "spend", "revenue", "sales", "amount"]  # fmt: skip
_PROPENSITY_KEYS = {"propensity", "pscore", "ps", "prob", "probability", "propensityscore",
                    "ptreat", "ptreatment", "pi", "treatmentprobability"}  # fmt: skip
_RECENCY_TOKENS = {"recency", "since", "inactive", "lastpurchase", "last"}


def _name_score(p: _Profile, keys: Iterable[str], tokens: Iterable[str]) -> float:
    if p.key in set(keys):
        return 1.0
    if set(p.tokens) & set(tokens):
        return 0.6
    return 0.0


def _score_user(p: _Profile, shape: str) -> float:
    if p.is_datetime or p.non_null == 0:
        return 0.0
    if p.numeric_frac > 0.9 and p.integer_frac < 0.99:
        return 0.0  # fractional numbers are not ids
    if p.time_frac > 0.9 and p.numeric_frac < 0.9:
        return 0.0
    name = _name_score(p, _USER_KEYS, _USER_TOKENS)
    if name and ("id" in p.tokens or p.key.endswith("id") or p.key in _USER_KEYS):
        name += 0.2
    repeats = p.distinct_ratio < 0.95
    if name:
        return name + (0.1 if repeats or shape == "snapshot" else 0.0)
    # Content only: short codes (ints or words without spaces) that repeat, e.g. CDNOW column0.
    short_codes = repeats and p.distinct >= 2 and p.mean_len <= 24 and p.has_spaces < 0.05
    if shape == "events" and short_codes and p.numeric_frac > 0.99 and p.integer_frac > 0.99:
        return 0.3 if p.time_frac < 0.5 else 0.0
    return 0.0


def _score_time(p: _Profile) -> float:
    if p.time_frac < 0.8 and not p.is_datetime:
        return 0.0
    name = 0.4 if (set(p.tokens) & _TIME_TOKENS or TIME_NAME_RE.search(p.name)) else 0.0
    return 0.5 + name + 0.1 * p.time_frac


def _score_amount(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or p.is_datetime or (p.time_frac > 0.9 and p.integer_frac > 0.99):
        return 0.0
    name = _name_score(p, _AMOUNT_KEYS, _AMOUNT_TOKENS)
    if name:
        return name
    if p.decimal_frac > 0.5 and (np.isnan(p.min) or p.min >= 0) and p.distinct > 10:
        return 0.3  # money-like: written with decimals, not negative
    return 0.0


def _score_text(p: _Profile) -> float:
    if p.numeric_frac > 0.5 or p.is_datetime or p.time_frac > 0.5 or p.non_null == 0:
        return 0.0
    length_bonus = min(p.mean_len, 60) / 600  # breaks ties toward longer text
    name = _name_score(p, _TEXT_TOKENS, _TEXT_TOKENS)
    if name and p.distinct >= 2:
        return name + length_bonus
    if p.mean_len >= 10 and p.distinct >= 50 and p.has_spaces > 0.3:
        return 0.3 + length_bonus
    return 0.0


def _score_event(p: _Profile) -> float:
    if p.numeric_frac > 0.5 or p.is_datetime or not (1 <= p.distinct <= 50):
        return 0.0
    return _name_score(p, _EVENT_KEYS, {"event", "activity", "interaction"})


def _score_action(p: _Profile) -> float:
    if p.is_datetime or not (2 <= p.distinct <= 20):
        return 0.0
    if p.key in _ACTION_KEYS:
        return 1.0
    if set(p.tokens) & (_ACTION_KEYS - {"segment", "group"}):
        return 0.6
    return 0.0


def _score_outcome(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or p.is_datetime:
        return 0.0
    for rank, key in enumerate(_OUTCOME_KEYS):
        if p.key == key or key in p.tokens:
            return 1.0 - rank * 0.01 - (0.0 if p.key == key else 0.3)
    return 0.0


def _score_propensity(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or np.isnan(p.min) or p.min <= 0 or p.max > 1:
        return 0.0
    return _name_score(p, _PROPENSITY_KEYS, {"propensity", "pscore", "probability"})


def _score_recency(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or (not np.isnan(p.min) and p.min < 0):
        return 0.0
    if p.key == "recency" or "recency" in p.tokens:
        return 1.0
    if set(p.tokens) & _RECENCY_TOKENS and ("days" in p.tokens or "months" in p.tokens):
        return 0.6
    return 0.0


_SCORERS = {
    "time": lambda p, shape: _score_time(p),
    "user": _score_user,
    "amount": lambda p, shape: _score_amount(p),
    "text": lambda p, shape: _score_text(p),
    "event": lambda p, shape: _score_event(p),
    "action": lambda p, shape: _score_action(p),
    "outcome": lambda p, shape: _score_outcome(p),
    "propensity": lambda p, shape: _score_propensity(p),
    "recency": lambda p, shape: _score_recency(p),
}


def _assign(
    profiles: list[_Profile], roles: tuple[str, ...], shape: str
) -> tuple[dict[str, str | None], dict[str, tuple[str, ...]], dict[tuple[str, str], float]]:
    """Greedy assignment: the best (role, column) score first, each column used once."""
    scores = {(role, p.name): _SCORERS[role](p, shape) for role in roles for p in profiles}
    candidates = {
        role: tuple(
            name
            for name, s in sorted(
                ((p.name, scores[(role, p.name)]) for p in profiles), key=lambda x: -x[1]
            )
            if s > 0
        )
        for role in roles
    }
    order = {role: i for i, role in enumerate(roles)}
    chosen: dict[str, str | None] = {role: None for role in roles}
    used: set[str] = set()
    for (role, name), score in sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0][0]])):
        if score <= 0 or chosen[role] is not None or name in used:
            continue
        chosen[role] = name
        used.add(name)
    return chosen, candidates, scores


def _derived_amount(profiles: list[_Profile], used: set[str]) -> str | None:
    """'Quantity*UnitPrice' when a quantity and a price column exist (and no amount column)."""
    numeric = [
        p for p in profiles if p.numeric_frac >= 0.9 and p.name not in used and not p.is_datetime
    ]
    quantity = next(
        (p for p in numeric if set(p.tokens) & _QUANTITY_TOKENS and p.integer_frac > 0.9), None
    )
    price = next(
        (p for p in numeric if set(p.tokens) & _PRICE_TOKENS or p.key in _PRICE_TOKENS), None
    )
    if quantity and price and quantity.name != price.name:
        return f"{quantity.name}*{price.name}"
    if price:
        return price.name
    return None


def detect_roles(df: pd.DataFrame, shape: Shape | None = None) -> Detection:
    """Suggest the shape and the role → column mapping from names and contents.

    Shape: ``snapshot`` when there is no time column but an action-like and an outcome-like
    column (Hillstrom), or when ids are unique per row with action and outcome present;
    otherwise ``events``. Pass ``shape`` to force one. For snapshots the default outcome is the
    first of visit / retained / active / converted / conversion / ... / spend / revenue found, so
    a retention-like binary outcome wins over spend; the others are listed in ``candidates``.
    """
    if shape is not None:
        check_shape(shape)
    con = new_connection()
    sample = sample_rows(df, 5000)
    profiles = _profiles(con, sample)
    ev_roles, ev_cands, ev_scores = _assign(profiles, EVENT_ROLES, "events")
    sn_roles, sn_cands, _ = _assign(profiles, SNAPSHOT_ROLES, "snapshot")
    if shape is None:
        has_time = ev_roles["time"] is not None
        has_treatment = sn_roles["action"] is not None and sn_roles["outcome"] is not None
        user = next((p for p in profiles if p.name == ev_roles.get("user")), None)
        unique_users = user is not None and user.distinct_ratio > 0.95
        shape = "snapshot" if has_treatment and (not has_time or unique_users) else "events"
    roles, cands = (ev_roles, ev_cands) if shape == "events" else (sn_roles, sn_cands)
    notes: list[str] = []
    why: dict[str, str] = {}
    by_name = {p.name: p for p in profiles}
    amount = roles.get("amount")
    if shape == "events" and (amount is None or ev_scores[("amount", amount)] < 0.6):
        # No amount-named column: quantity × price beats a column picked by content alone.
        used = {c for r, c in roles.items() if c and r != "amount"}
        derived = _derived_amount(profiles, used)
        if derived and derived != amount:
            roles["amount"] = derived
            cands["amount"] = (derived, *(c for c in cands["amount"] if c != derived))
            why["amount"] = (
                f"no amount column; amount = {derived.replace('*', ' × ')} (derived)"
                if "*" in derived
                else f"price column '{derived}'"
            )
    for role, col in roles.items():
        if col and role not in why:
            p = by_name[col]
            why[role] = _why(role, p)
    time_format = None
    if shape == "events" and roles["time"]:
        p = by_name[roles["time"]]
        time_format = p.time_family
        if time_format in ("m/d/Y", "d/m/Y") and ambiguous_day_month(
            con, sample[roles["time"]], time_format
        ):
            notes.append(
                f"Dates in '{roles['time']}' read month-first (e.g. 01/02/2011 = 2 January); none "
                "of the sampled dates has a day above 12, so day-first would also fit."
            )
    con.close()
    return Detection(
        shape=shape,
        roles=roles,
        candidates=cands,
        why=why,
        columns=tuple(str(c) for c in df.columns),
        time_format=time_format,
        notes=tuple(notes),
    )


def _why(role: str, p: _Profile) -> str:
    facts = []
    if role == "time":
        facts.append(f"{p.time_frac:.0%} of sampled values are dates ({p.time_family})")
    elif role in ("amount", "outcome", "propensity", "recency"):
        facts.append(f"numeric, {p.min:g} to {p.max:g}")
    elif role == "user":
        facts.append(f"{p.distinct:,} distinct values in the sample")
    elif role == "text":
        facts.append(f"text, {p.mean_len:.0f} characters on average, {p.distinct:,} distinct")
    else:
        facts.append(f"{p.distinct} distinct values")
    return f"column '{p.name}': " + ", ".join(facts)


def detect_campaign_roles(df: pd.DataFrame) -> dict[str, str]:
    """Role → column for a campaign log (user, time, action, propensity)."""
    con = new_connection()
    try:
        profiles = _profiles(con, sample_rows(df, 5000))
    finally:
        con.close()
    chosen, _, _ = _assign(profiles, CAMPAIGN_ROLES, "events")
    if chosen["action"] is None:
        fallback = [p for p in profiles if p.name not in chosen.values() and 2 <= p.distinct <= 20
                    and p.numeric_frac < 0.5 and not p.is_datetime]  # fmt: skip
        if fallback:
            chosen["action"] = fallback[0].name
    return {role: col for role, col in chosen.items() if col}


# --------------------------------------------------------------------------------------------
# The convenience front door used by the command line
# --------------------------------------------------------------------------------------------

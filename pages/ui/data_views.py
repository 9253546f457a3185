"""The Data page's parts: the validation report, the role pickers, the file chooser and the
"Your datasets" tab (forms and rendering only; the library reads, detects and validates)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui.common import (
    OVERVIEW_HIDDEN,
    SPARK_MARK,
    current_dataset_id,
    dataset_currency,
    page_link,
    remember,
    set_dataset_currency,
    short_name,
    stop_with_error,
)
from retention.engine.routing import spark_dataset
from retention.errors import InputError
from retention.ingest import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    REQUIRED_ROLES,
    ROLE_HELP,
    ROLE_LABELS,
    ROLE_USES,
    SNAPSHOT_ROLES,
    Detection,
    ValidationReport,
)
from retention.periods import TIMING_HELP
from retention.samples import SAMPLE_DIR, SAMPLES
from retention.words import CURRENCY_SYMBOLS
from retention.workspace import DatasetInfo, Workspace

NONE = "— not in this file —"
#: The currencies offered for a dataset's revenue ("" = not set), most common first.
CURRENCIES: dict[str, str] = {
    "": "Not set",
    "GBP": "British pound",
    "EUR": "Euro",
    "USD": "US dollar",
    "JPY": "Japanese yen",
    "CNY": "Chinese yuan",
    "INR": "Indian rupee",
    "AUD": "Australian dollar",
    "CAD": "Canadian dollar",
    "CHF": "Swiss franc",
    "SEK": "Swedish krona",
    "NOK": "Norwegian krone",
    "DKK": "Danish krone",
    "PLN": "Polish złoty",
    "BRL": "Brazilian real",
    "KRW": "South Korean won",
}
CURRENCY_LABEL = "Currency of the revenue column"
CURRENCY_HELP = (
    "The currency your amounts are in, so every page writes money as £1,234.50 instead of a "
    "bare number. Leave it 'Not set' if you are not sure: amounts then say '(currency of your "
    "data)'."
)
#: The five steps of the app, in order: page, what the user gets there.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("data", "Data", "bring your customer data (or use a sample) and check which column is which."),
    ("segments", "Segments", "groups of customers found from what they buy and write, with names."),
    ("retention", "Retention", "how many of each group come back month after month, and when "
     "they drift away."),
    ("policy", "Policy", "which action — a recommendation, an engagement message, a discount — "
     "keeps each group best, learned from your data."),
    ("strategies", "Strategies", "a plan per segment to act on, with the customer list and a "
     "report to download."),
)  # fmt: skip


def currency_format(code: str) -> str:
    """ "GBP — British pound (£)" for the currency picker; "Not set" for ""."""
    if not code:
        return CURRENCIES[""]
    symbol = CURRENCY_SYMBOLS.get(code, "").strip()
    name = CURRENCIES.get(code, code)
    return f"{code} — {name}" + (f" ({symbol})" if symbol and symbol != code else "")


def currency_picker(key: str, current: str | None = None, **kwargs) -> str:
    """The "Currency of the revenue column" box; its ISO code ("" when not set)."""
    codes = list(CURRENCIES)
    if current and current not in codes:
        codes.append(current)  # a code set elsewhere (e.g. the command line) stays choosable
    return st.selectbox(
        CURRENCY_LABEL, codes, format_func=currency_format, help=CURRENCY_HELP, key=key, **kwargs
    )


def first_steps_overview(datasets: pd.DataFrame) -> None:
    """What the app does in five steps and where to start, until the user hides it (the choice
    is kept in the workspace; About / settings in the sidebar brings it back). A workspace that
    already holds data of the user's own when first seen starts with it hidden."""
    sample_files = {s.file for s in SAMPLES}
    own = any(f not in sample_files for f in datasets.get("source_name", []))
    key = remember(OVERVIEW_HIDDEN, own)
    if st.session_state[key]:
        return
    with st.container(border=True):
        st.markdown("#### :material/route: How Retention Studio works — five steps")
        for i, (page, title, what) in enumerate(STEPS, start=1):
            c1, c2 = st.columns([1, 6], vertical_alignment="center")
            with c1:
                if page == "data":
                    st.markdown(f"**{i}. {title}**")
                else:
                    page_link(page, f"**{i}. {title}**")
            c2.markdown(what[0].upper() + what[1:])
        sample = next((n for n in datasets.get("name", []) if n == SAMPLES[0].name), None)
        st.markdown(
            f"**Where to start:** pick *{sample}* in the sidebar and open **Segments**, or add "
            "your own file below."
            if sample
            else "**Where to start:** add your file below, then open **Segments**."
        )
        st.checkbox(
            "Hide this overview", key=key, help="About / settings in the sidebar brings it back."
        )


def show_report(report: ValidationReport, title: str, users: bool = True) -> None:
    """One file's validation report, under the file's own heading (the event log and the
    campaign log each get one)."""
    used, rejected = report.rows_used, report.rows_rejected
    st.markdown(f"**{title}**")
    cols = st.columns(4 if users else 3)
    cols[0].metric("Rows in the file", f"{report.rows:,}")
    cols[1].metric("Rows used", f"{used:,}")
    cols[2].metric(
        "Rows left out",
        f"{rejected:,}",
        help="Rows that cannot serve (no user id, a time that does not read as a date, a "
        "cancelled order...): counted here with the reason, and not used.",
    )
    if users:
        cols[3].metric("Users", f"{report.users:,}", help="Different user ids in the rows used.")
    if rejected:
        st.markdown(f"**{title}: why rows were left out**")
        st.dataframe(
            report.reasons_table(),
            hide_index=True,
            width="stretch",
            column_config={"Rows": st.column_config.NumberColumn(format="localized")},
        )
        for reason, sample in report.samples.items():
            with st.expander(f"Examples: {reason}"):
                st.dataframe(sample, hide_index=True, width="stretch")
    for note in report.notes:
        st.caption(f"ℹ️ {note}")


def column_words(column: str | None) -> str:
    """A mapped column as users read it: "Quantity × UnitPrice" for a derived amount."""
    if not column:
        return NONE
    return " × ".join(column.split("*")) if "*" in column else column


def role_pickers(
    columns: list[str], guess: dict[str, str | None], roles: tuple[str, ...], key: str,
    detection: Detection | None = None,
) -> dict[str, str | None]:  # fmt: skip
    """One select box per role, preset to the guess; {role: column or None}."""
    options = [NONE, *columns]
    derived = guess.get("amount")
    amount_options = options + ([derived] if derived and derived not in columns else [])
    chosen: dict[str, str | None] = {}
    cols = st.columns(min(len(roles), 5 if detection else 4))
    for i, role in enumerate(roles):
        here = amount_options if role == "amount" else options
        label, help = ROLE_LABELS[role], None
        if detection is not None:
            label += " *" if role in REQUIRED_ROLES[detection.shape] else ""
            help = ROLE_HELP[role] + (f" Detected: {detection.why[role]}" if role in detection.why else "")  # fmt: skip
        index = here.index(guess[role]) if guess.get(role) in here else 0
        pick = cols[i % len(cols)].selectbox(
            label, here, index=index, help=help, key=f"{key}.{role}", format_func=column_words
        )
        chosen[role] = None if pick == NONE else pick
    return chosen


def chosen_files() -> tuple[tuple[str, bytes] | None, tuple[str, bytes] | None]:
    """(name, bytes) of the file and of the campaign log, uploaded or a bundled sample."""
    source = st.radio(
        "Source",
        ["Upload a file", "A bundled sample"],
        horizontal=True,
        label_visibility="collapsed",
        key="data.source",
    )
    if source == "Upload a file":
        upload = st.file_uploader(
            "Your file",
            help="The data never leaves this computer: it is stored in the workspace folder.",
            key="upload",
        )
        campaign_upload = None
        if upload is not None:
            # Offered once the file is chosen (a campaign log goes with an event log): until
            # then the page has one uploader, so a file chosen while the page is still being
            # drawn, on a busy server, cannot land in the hidden campaign-log box (issue 22).
            with st.expander("Campaign log (optional, with an event log)"):
                st.caption(
                    "One row per treatment a user received: user, time, action (and, if you "
                    "have it, the propensity). Users without a row in a period got no action."
                )
                campaign_upload = st.file_uploader("Campaign log", key="campaign_upload")
        file = None if upload is None else (upload.name, upload.getvalue())
        campaigns = (
            None if campaign_upload is None else (campaign_upload.name, campaign_upload.getvalue())
        )
        return file, campaigns
    available = [s for s in SAMPLES if (SAMPLE_DIR / s.file).exists()]
    sample = st.selectbox("Sample", available, format_func=lambda s: s.name, key="data.sample")
    st.caption(sample.description)
    file = (sample.file, (SAMPLE_DIR / sample.file).read_bytes())
    if sample.campaigns:
        return file, (sample.campaigns, (SAMPLE_DIR / sample.campaigns).read_bytes())
    return file, None


#: What each column of a campaign log is used for (the dataset's roles table).
CAMPAIGN_USES = {
    "user": "Whom each campaign was sent to.",
    "time": "When it was sent: the period it counts for.",
    "action": "The treatment sent: the actions the policy learns about.",
    "propensity": "The chance of getting that treatment, to judge the policy fairly.",
}


def roles_table(info: DatasetInfo) -> pd.DataFrame:
    """A dataset's column roles for people: role, column, what the app uses it for (the
    campaign log's roles and timing rule after the file's own)."""
    mapping = info.mapping
    roles = EVENT_ROLES if info.shape == "events" else SNAPSHOT_ROLES
    rows = [
        (ROLE_LABELS[r], column_words(mapping.get(r)), ROLE_USES[r])
        for r in roles
        if mapping.get(r) or r not in REQUIRED_ROLES[info.shape]
    ]
    if any(k.startswith("campaign.") for k in mapping):
        rows += [
            (f"Campaign log: {ROLE_LABELS[r].lower()}", column_words(mapping[f"campaign.{r}"]),
             CAMPAIGN_USES[r])
            for r in CAMPAIGN_ROLES
            if mapping.get(f"campaign.{r}")
        ]  # fmt: skip
        timing = mapping.get("campaign.timing")
        if timing:
            rows.append(
                ("Campaign timing", timing, TIMING_HELP[timing][0].upper() + TIMING_HELP[timing][1:] + ".")
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["Role", "Column", "What it is used for"])


def dataset_summary(info: DatasetInfo) -> str:
    """One line about a dataset: rows, kind, users, currency."""
    kind = "event log" if info.shape == "events" else "campaign snapshot"
    rep = info.report
    parts = [f"{rep.get('rows_used', info.rows):,} rows used", kind]
    if rep.get("users"):
        parts.insert(1, f"{rep['users']:,} users")
    currency = dataset_currency(info.id)
    symbol = CURRENCY_SYMBOLS.get(currency or "", "").strip()
    unit = f"{currency} ({symbol})" if symbol and symbol != currency else currency
    parts.append(f"revenue in {unit}" if currency else "currency not set")
    if spark_dataset(rep):
        parts.append("events kept in Spark, not here")
    return ", ".join(parts)


def _follow_current(ids: list[str]) -> None:
    """Open the dataset picker on the current dataset, and again whenever the current changes."""
    current = current_dataset_id()
    if (
        st.session_state.get("manage.follows") != current
        or st.session_state.get("manage.target") not in ids
    ):
        st.session_state["manage.follows"] = current
        st.session_state["manage.target"] = current if current in ids else ids[0]


def manage_datasets(ws: Workspace) -> None:
    """The 'Your datasets' tab: the list, each dataset's roles, report and currency, rename,
    delete."""
    datasets = ws.datasets()
    if datasets.empty:
        st.info("No datasets yet.")
        return
    table = datasets.assign(
        created=datasets["created"].dt.strftime("%Y-%m-%d %H:%M"),
        name=datasets["name"].map(lambda n: short_name(n, 60)),
        shape=datasets["shape"].map({"events": "event log", "snapshot": "campaign snapshot"}),
    )
    st.dataframe(
        table[["name", "shape", "rows", "source_name", "created"]].rename(
            columns={
                "name": "Name",
                "shape": "Kind",
                "rows": "Rows",
                "source_name": "File",
                "created": "Added",
            }
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "Name": st.column_config.TextColumn(width="large"),
            "Rows": st.column_config.NumberColumn(format="localized"),
        },
    )
    ids = list(datasets["id"])
    names = dict(zip(datasets["id"], datasets["name"], strict=True))
    in_spark = set(datasets["id"][datasets["engine"] == "spark"])
    _follow_current(ids)
    target = st.selectbox(
        "Dataset to see, rename or delete",
        ids,
        format_func=lambda i: short_name(names[i], 80) + (SPARK_MARK if i in in_spark else ""),
        key="manage.target",
        help="Opens on the dataset you are working on; pick another to see, rename or delete it.",
    )
    info = ws.dataset(target)
    st.markdown(f"**{info.name}**")
    st.caption(dataset_summary(info) + (f" · from {info.source_name}" if info.source_name else ""))
    st.table(roles_table(info).set_index("Role"))  # a table, not a grid: long text wraps
    key = f"currency.{target}"
    saved = dataset_currency(target) or ""
    st.session_state[key] = saved  # the workspace's value (the box saves into it on change)
    currency_picker(
        key, saved, on_change=lambda: set_dataset_currency(target, st.session_state[key])
    )
    rep = info.report
    if rep.get("reasons"):
        with st.expander(f"Rows left out: {rep.get('rows_rejected', 0):,}"):
            reasons = pd.DataFrame(rep["reasons"]).rename(
                columns={"reason": "Reason", "rows": "Rows", "sample": "Example row numbers"}
            )
            reasons["Example row numbers"] = reasons["Example row numbers"].map(
                lambda rows: ", ".join(str(r) for r in rows)
            )
            st.dataframe(
                reasons,
                hide_index=True,
                width="stretch",
                column_config={"Rows": st.column_config.NumberColumn(format="localized")},
            )
    c1, c2 = st.columns(2)
    with c1:
        new_name = st.text_input("New name", value=names[target], key=f"rename.{target}")
        if st.button("Rename", key="rename"):
            try:
                ws.rename_dataset(target, new_name)
            except InputError as exc:
                stop_with_error(exc)
            st.rerun()
    with c2:
        sure = st.checkbox(
            "Yes, delete this dataset and everything computed on it",
            key="delete.sure",
            help=f"Deletes “{names[target]}”, its segments and its policies from the workspace.",
        )
        if st.button("Delete", disabled=not sure, key="delete", icon=":material/delete:"):
            ws.delete_dataset(target)
            st.session_state.pop("dataset_id", None)
            st.query_params.pop("dataset", None)
            st.rerun()

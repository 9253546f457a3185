"""Segments: groups of users who buy or write alike and behave alike, labelled by their most
distinctive words, on a 2-D map; rename a segment and the name is kept."""

from __future__ import annotations

import re

import streamlit as st

from pages.common import (
    current_segmentation,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from retention.charts.segments import (
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.embeddings import DEFAULT_MODEL_ID, SentenceTransformerEmbedder
from retention.errors import InputError
from retention.periods import columns_of
from retention.runs import run_segmentation
from retention.segments import (
    DEFAULT_TEXT_WEIGHT,
    K_MAX,
    SegmentSettings,
)
from retention.workspace import Run

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


# ----------------------------------------------------------------------------- cached helpers


@st.cache_data(max_entries=32, show_spinner=False)
def has_text(folder: str, dataset_id: str) -> bool:
    """Whether the dataset's events have any text to embed."""
    ws = workspace()
    ref = ws.table(dataset_id, "events")
    if "text" not in columns_of(ws.cursor(), ref):
        return False
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {ref} WHERE trim(CAST(text AS VARCHAR)) <> '' LIMIT 1)"  # noqa: S608
    return bool(ws.cursor().execute(sql).fetchall()[0][0])


@st.cache_data(max_entries=16, show_spinner=False)
def load_run(folder: str, run_id: str) -> Run:
    """A finished run (immutable, so cached by id)."""
    return workspace().load_run(run_id)


@st.cache_resource(show_spinner=False)
def embedder_for(model_path: str | None) -> SentenceTransformerEmbedder:
    """The embedder (its model loads on first use and stays loaded)."""
    return SentenceTransformerEmbedder(model_path)


def _plain(text: str) -> str:
    """User text for st.markdown: markdown and Streamlit's :directives: escaped (no links,
    images or formatting from the data)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$])", r"\\\1", text)


def _default(key: str, value: object) -> None:
    """Seed a widget's value once (from the segmentation on show), then leave it to the user."""
    if key not in st.session_state:
        st.session_state[key] = value


# ----------------------------------------------------------------------------- page
ws = workspace()
folder = str(ws.folder)
st.title("Segments")
st.caption(
    "Groups of users who buy (or write) similar things and behave alike. Each segment is named "
    "by its most distinctive words; rename it to something your team will recognise."
)
info = require_dataset()
snapshot = info.shape == "snapshot"
try:
    text = False if snapshot else has_text(folder, info.id)
except InputError as exc:
    stop_with_error(exc)

runs = ws.runs("segmentation", info.id)
done = runs[runs["status"] == "done"]
shown = current_segmentation(info.id)
try:
    settings = SegmentSettings.coerce(shown.settings) if shown is not None else SegmentSettings()
except InputError:  # a run stored with settings this version does not know: start from defaults
    settings = SegmentSettings()

# ----------------------------------------------------------------------------- controls
_default("segments.text_weight", float(settings.text_weight))
_default("segments.k", settings.k if settings.k in K_CHOICES else "auto")
_default("segments.algorithm", settings.algorithm)
_default("segments.map", settings.map_method)
_default("segments.model", settings.model_path or "")
_default("segments.user_vector", settings.user_vector)
_default("segments.weighting", settings.weighting)

with st.container(border=True):
    left, mid, right = st.columns(3)
    with left:
        if text:
            text_weight = st.slider(
                "Weight of what users buy vs how they behave",
                0.0,
                1.0,
                step=0.05,
                key="segments.text_weight",
                help=(
                    "1 = only the text of their purchases; 0 = only behaviour (recency, "
                    "frequency, spend, tenure). It is the text's share of the variance; "
                    f"default {DEFAULT_TEXT_WEIGHT}."
                ),
            )
        else:
            text_weight = settings.text_weight
            st.info(
                "This dataset has no text: segments use the snapshot's features."
                if snapshot
                else "This dataset has no text: segments use behaviour only (recency, "
                "frequency, spend, tenure).",
                icon=":material/info:",
            )
    with mid:
        algorithm = st.selectbox(
            "Method",
            list(ALGORITHM_WORDS),
            format_func=ALGORITHM_WORDS.__getitem__,
            key="segments.algorithm",
        )
        k = st.selectbox(
            "Number of segments",
            K_CHOICES,
            format_func=lambda v: "Automatic (best silhouette, 2–12)" if v == "auto" else str(v),
            key="segments.k",
            disabled=algorithm == "hdbscan",
            help=f"Automatic tries 2 to 12 segments and keeps the best separated. Up to {K_MAX}.",
        )
    with right:
        map_method = st.radio(
            "Map",
            list(MAP_WORDS),
            format_func=MAP_WORDS.__getitem__,
            key="segments.map",
            horizontal=True,
        )
        model_path = st.text_input(
            "Embedding model folder",
            key="segments.model",
            placeholder=f"bundled {DEFAULT_MODEL_ID.split('/')[-1]}",
            disabled=not text,
            help="Leave empty for the bundled model, or give a local sentence-transformers folder.",
        )
    if text:
        with st.expander("Advanced"):
            user_vector = st.radio(
                "A user's text vector",
                list(USER_VECTOR_WORDS),
                format_func=USER_VECTOR_WORDS.__getitem__,
                key="segments.user_vector",
            )
            weighting = st.radio(
                "Weight each item",
                list(WEIGHTING_WORDS),
                format_func=WEIGHTING_WORDS.__getitem__,
                key="segments.weighting",
                horizontal=True,
            )
    else:
        user_vector, weighting = settings.user_vector, settings.weighting
    run_clicked = st.button("Find segments", type="primary", icon=":material/play_arrow:")

if run_clicked:
    try:
        chosen = SegmentSettings(
            k=k,
            algorithm=algorithm,
            text_weight=float(text_weight),
            user_vector=user_vector,
            weighting=weighting,
            model_path=model_path.strip() or None,
            map_method=map_method,
            period=st.session_state.get("period", "auto"),
        )
        embedder = embedder_for(chosen.model_path) if text and text_weight > 0 else None
        bar = st.progress(0.0, text="Starting…")
        run_id = run_segmentation(
            ws,
            info.id,
            settings=chosen,
            embedder=embedder,
            progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg),
        )
    except InputError as exc:
        stop_with_error(exc)
    bar.empty()
    st.session_state["segmentation_run"] = run_id
    shown = load_run(folder, run_id)
    runs = ws.runs("segmentation", info.id)
    done = runs[runs["status"] == "done"]

if shown is None:
    st.info("No segmentation yet for this dataset. Choose the settings and press Find segments.")
    st.stop()

# ----------------------------------------------------------------------------- which run
if len(done) > 1:
    ids = done["id"].tolist()

    def describe(run_id: str) -> str:
        row = done.set_index("id").loc[run_id]
        s, m = row["settings"], row["metrics"]
        how = "HDBSCAN" if s.get("algorithm") == "hdbscan" else f"k = {s.get('k')}"
        return f"{row['created']:%Y-%m-%d %H:%M} · {m.get('k', '?')} segments ({how})"

    picked = st.selectbox(
        "Segmentation shown (used by the other pages)",
        ids,
        index=ids.index(shown.id) if shown.id in ids else 0,
        format_func=describe,
        key=f"segments.shown.{shown.id}",
    )
    if picked != shown.id:
        st.session_state["segmentation_run"] = picked
        st.rerun()

run = load_run(folder, shown.id)
art, metrics = run.artifacts, run.metrics
missing = {"assignments", "labels", "map2d", "profile"} - set(art)
if missing:
    st.warning(
        f"The segmentation shown was stored without its {', '.join(sorted(missing))}. "
        "Press Find segments to compute a complete one.",
        icon=":material/warning:",
    )
    st.stop()
names = segment_names(run)
profile = art["profile"]

# ----------------------------------------------------------------------------- overview
c1, c2, c3, c4 = st.columns([1, 1, 2, 1])  # "text + behaviour" needs the room
c1.metric("Users", f"{metrics.get('users', len(art['assignments'])):,}")
c2.metric("Segments", metrics.get("k", len(profile)))
c3.metric(
    "Based on",
    "text + behaviour"
    if metrics.get("text_used") and run.settings.get("text_weight", 0) < 1
    else ("text" if metrics.get("text_used") else ("features" if snapshot else "behaviour")),
)
if metrics.get("noise_users"):
    c4.metric("Unclustered users", f"{metrics['noise_users']:,}")
elif metrics.get("silhouette_by_k"):
    c4.metric("Silhouette", f"{metrics['silhouette_by_k'].get(str(metrics['k']), 0):.2f}")

st.plotly_chart(segment_map(art["map2d"], names), key="segments.map_chart")
mapped, users_total = len(art["map2d"]), int(metrics.get("users", len(art["assignments"])))
st.caption(
    "Each dot is a user, placed so that users with similar purchases and behaviour are close. "
    "Hover to see a user's top items."
    + (
        f" The map shows a sample of {mapped:,} of the {users_total:,} users, drawn within each "
        "segment in proportion to its size."
        if mapped < users_total
        else ""
    )
)
left, right = st.columns(2)
with left:
    st.plotly_chart(segment_sizes(profile, names), key="segments.sizes")
with right:
    if any(c.startswith("retention_") for c in profile.columns):
        st.plotly_chart(segment_retention(profile, names), key="segments.retention")

# ----------------------------------------------------------------------------- profile
st.subheader("Profile")
table = profile.copy()
table.insert(1, "name", table["segment"].map(lambda s: names.get(int(s), str(s))))
table = table.drop(columns=["label"], errors="ignore")
pretty = {
    "name": "Segment",
    "users": "Users",
    "share": "Share",
    "recency_days": "Days since last",
    "frequency": "Active days",
    "monetary": "Spend per user",
    "revenue": "Revenue",
    "retention_1": "Retention after 1",
    "retention_4": "Retention after 4",
}
st.dataframe(
    table.drop(columns=["segment"]).rename(columns=pretty),
    hide_index=True,
    column_config={
        "Share": st.column_config.NumberColumn(format="percent"),
        "Retention after 1": st.column_config.NumberColumn(format="percent"),
        "Retention after 4": st.column_config.NumberColumn(format="percent"),
        "Spend per user": st.column_config.NumberColumn(format="%.2f"),
        "Revenue": st.column_config.NumberColumn(format="%.0f"),
        "Days since last": st.column_config.NumberColumn(format="%.0f"),
        "Active days": st.column_config.NumberColumn(format="%.1f"),
    },
    key="segments.profile",
)
if "retention_1" in profile.columns:
    unit = metrics.get("period", "period")
    st.caption(
        f"Retention after k: the share of the segment's users active k {unit}s after their "
        f"first {unit}, among the users observed that long."
    )

# ----------------------------------------------------------------------------- names
st.subheader("Names and keywords")
st.caption(
    "Keywords are the words most distinctive of each segment (class-based TF-IDF); the "
    "representative users are those closest to the segment's centre. Names are kept."
)
labels = art["labels"]
with st.form(f"segments.names.{run.id}"):
    for row in labels.itertuples(index=False):
        seg = int(row.segment)
        a, b = st.columns([1, 2])
        a.text_input(
            f"Segment {seg + 1}" if seg >= 0 else "Unclustered",
            value=names.get(seg, row.label),
            key=f"segments.name.{run.id}.{seg}",
        )
        # Keywords and user ids come from the data: shown as plain text, never as HTML.
        b.markdown(f"**{row.users:,} users** · {_plain(str(row.keywords or '—'))}")
        b.caption(f"Representative users: {_plain(str(row.representatives))}")
    saved = st.form_submit_button("Save names")
if saved:
    try:
        for row in labels.itertuples(index=False):
            seg = int(row.segment)
            new = st.session_state[f"segments.name.{run.id}.{seg}"].strip()
            if new != names.get(seg, row.label):
                ws.rename_segment(run.id, seg, new)
    except InputError as exc:
        stop_with_error(exc)
    st.rerun()

curve = silhouette_curve(metrics)
if curve is not None:
    with st.expander("How the number of segments was chosen"):
        st.plotly_chart(curve, key="segments.silhouette")
        st.caption(
            "Silhouette: how much closer users are to their own segment than to the next one "
            "(on a sample of at most 5,000 users). The smallest k within 0.02 of the best wins."
        )

download = art["assignments"].assign(
    name=lambda d: d["segment"].map(lambda s: names.get(int(s), str(s)))
)
st.download_button(
    "Download user → segment (CSV)",
    download.to_csv(index=False).encode(),
    file_name="user_segments.csv",
    mime="text/csv",
    icon=":material/download:",
)

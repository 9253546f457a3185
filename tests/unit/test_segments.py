"""Segments: planted truth recovered, c-TF-IDF by hand, HDBSCAN noise, behaviour-only, runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from retention.charts.segments import (
    sample_map,
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.embeddings import SentenceTransformerEmbedder
from retention.errors import InputError
from retention.segments import (
    NOISE,
    Segmenter,
    SegmentSettings,
    combine,
    ctfidf,
    ctfidf_scores,
    load_segmentation,
    retention_by_segment,
    run_segmentation,
    segment_snapshot,
    segment_users,
    top_terms,
    user_documents,
)
from retention.synth import make_planted
from tests.fakes import CountingEmbedder


class RefusingEmbedder:
    model_id = "fake/refuse"

    def embed(self, texts: Sequence[str], progress=None) -> np.ndarray:
        raise AssertionError("no text should be embedded")


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def _ari(result, truth: pd.DataFrame) -> float:
    merged = result.assignments.merge(truth, on="user_id", suffixes=("", "_true"))
    assert len(merged) == len(truth)
    return adjusted_rand_score(merged["segment_true"], merged["segment"])


# -- planted truth ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n_segments", "seed"), [(4, 1), (3, 2), (6, 3)])
def test_planted_segments_are_recovered_with_the_real_model(model, n_segments, seed):
    planted = make_planted(n_users=360, n_periods=16, seed=seed, n_segments=n_segments)
    fixed = segment_users(planted.events, settings={"k": n_segments}, embedder=model)
    assert _ari(fixed, planted.truth) >= 0.9
    auto = segment_users(planted.events, settings={"k": "auto"}, embedder=model)
    assert auto.metrics["k"] == n_segments
    assert _ari(auto, planted.truth) >= 0.9
    assert set(auto.metrics["silhouette_by_k"]) == {str(k) for k in range(2, 13)}


def test_planted_keywords_come_from_each_segments_vocabulary(model):
    planted = make_planted(n_users=360, n_periods=16, seed=1, n_segments=4)
    result = segment_users(planted.events, settings={"k": 4}, embedder=model)
    merged = result.assignments.merge(planted.truth, on="user_id", suffixes=("", "_true"))
    for row in result.labels.itertuples():
        true = merged.loc[merged["segment"] == row.segment, "segment_true"].mode()[0]
        vocabulary = " ".join(planted.specs[true].vocabulary).lower().split()
        top = row.keywords.split(", ")[:3]
        assert all(word in vocabulary for word in top), (row.label, planted.specs[true].name)
    # Every label differs, and representatives are members of their segment.
    assert result.labels["label"].is_unique
    for row in result.labels.itertuples():
        reps = row.representatives.split(", ")
        assert len(reps) == 3
        members = set(result.assignments.loc[result.assignments.segment == row.segment, "user_id"])
        assert set(reps) <= members


def test_document_option_also_recovers_planted_segments(model):
    planted = make_planted(n_users=200, n_periods=12, seed=4, n_segments=3)
    result = segment_users(
        planted.events, settings={"k": 3, "user_vector": "document"}, embedder=model
    )
    assert _ari(result, planted.truth) >= 0.9
    assert result.metrics["texts_needed"] == 200  # one document per user


# -- c-TF-IDF --------------------------------------------------------------------------------


def test_ctfidf_matches_a_hand_computation():
    # Class 0: "apple apple banana" + "apple cherry"; class 1: "banana date" + "date date".
    docs = ["apple apple banana", "apple cherry", "banana date", "date date"]
    result = ctfidf(docs, [0, 0, 1, 1], top_n=5)
    # counts: class 0 apple 3, banana 1, cherry 1 (5 words); class 1 banana 1, date 3 (4 words)
    # A = 9 / 2 = 4.5; f: apple 3, banana 2, cherry 1, date 3.
    # banana: 1/5 of class 0's words, 1/4 of class 1's, 2/9 overall -> describes class 1 only.
    expected0 = {
        "apple": 3 / 5 * math.log(1 + 4.5 / 3),
        "cherry": 1 / 5 * math.log(1 + 4.5 / 1),
    }
    expected1 = {"date": 3 / 4 * math.log(1 + 4.5 / 3), "banana": 1 / 4 * math.log(1 + 4.5 / 2)}
    assert [t for t, _ in result[0]] == ["apple", "cherry"]
    assert [t for t, _ in result[1]] == ["date", "banana"]
    for term, score in result[0]:
        assert score == pytest.approx(expected0[term])
    for term, score in result[1]:
        assert score == pytest.approx(expected1[term])


def test_a_term_describes_at_most_one_class():
    # "red" is over-represented in classes 0 and 1 (3/4 and 2/4 of their words vs 5/12), most
    # in class 0; "blue" only in class 2.
    counts = np.array([[3, 1, 0], [2, 1, 1], [0, 1, 3]])
    ranked = top_terms(counts, ["red", "mug", "blue"])
    terms = [[t for t, _ in r] for r in ranked]
    assert terms[0] == ["red"]
    assert "red" not in terms[1]
    assert terms[2] == ["blue"]
    flat = [t for r in terms for t in r]
    assert len(flat) == len(set(flat))


def test_ctfidf_ignores_stop_words_and_numbers():
    result = ctfidf(["the 12 red mugs", "of the blue 3 mugs"], [0, 1])
    assert [t for t, _ in result[0]] == ["red"]
    assert [t for t, _ in result[1]] == ["blue"]


def test_ctfidf_scores_formula_on_a_matrix():
    counts = np.array([[2, 0], [1, 1]])
    # A = 4 / 2 = 2; f = [3, 1]; tf rows [1, 0], [0.5, 0.5]
    expected = np.array([[math.log(1 + 2 / 3), 0], [0.5 * math.log(1 + 2 / 3), 0.5 * math.log(3)]])
    np.testing.assert_allclose(ctfidf_scores(counts), expected)
    ranked = top_terms(counts, ["a", "b"])
    # shares: class 0 a 1.0, b 0; class 1 a 0.5, b 0.5; overall a 0.75, b 0.25
    assert [t for t, _ in ranked[0]] == ["a"]
    assert [t for t, _ in ranked[1]] == ["b"]


# -- clustering ------------------------------------------------------------------------------


def _blobs(seed: int = 0, n: int = 60, centres: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(centres), n)
    X = rng.normal(scale=0.3, size=(len(truth), 2)) + np.array([[0, 0], [5, 0], [0, 5]])[truth]
    return X, truth


def test_hdbscan_marks_far_points_as_noise():
    X, truth = _blobs(n=50)
    outliers = np.array([[20.0, 20.0], [-20.0, 15.0], [15.0, -20.0]])
    seg = Segmenter(algorithm="hdbscan", min_cluster_size=10).fit(np.vstack([X, outliers]))
    assert (seg.labels_[-3:] == NOISE).all()
    assert seg.k_ == 3
    assert adjusted_rand_score(truth, seg.labels_[:-3]) >= 0.95
    assert seg.cluster_centers_.shape == (3, 2)


def test_segments_are_numbered_by_size_and_minibatch_agrees():
    rng = np.random.default_rng(1)
    X = np.vstack(
        [rng.normal(c, 0.2, size=(n, 2)) for c, n in (((0, 0), 30), ((4, 0), 80), ((0, 4), 50))]
    )
    full = Segmenter(k=3).fit(X)
    assert np.bincount(full.labels_).tolist() == [80, 50, 30]
    mini = Segmenter(k=3, minibatch_above=10).fit(X)
    assert adjusted_rand_score(full.labels_, mini.labels_) == 1.0
    auto = Segmenter(k="auto").fit(X)
    assert auto.k_ == 3 and max(auto.silhouette_, key=auto.silhouette_.get) == 3


def test_bad_k_raises_input_errors():
    with pytest.raises(InputError, match=r"'k' parameter must be 'auto' or an int in \[2, 50\]"):
        Segmenter(k=1).fit(np.zeros((5, 2)))
    with pytest.raises(InputError, match="larger than the number of users"):
        Segmenter(k=8).fit(np.arange(10.0).reshape(5, 2))
    with pytest.raises(InputError, match="'algorithm'"):
        SegmentSettings(algorithm="dbscan")
    with pytest.raises(InputError, match="'text_weight'"):
        SegmentSettings(text_weight=1.5)
    with pytest.raises(InputError, match="Unknown segmentation setting"):
        SegmentSettings.coerce({"kk": 3})


def test_combine_gives_the_text_block_its_share_of_variance():
    rng = np.random.default_rng(0)
    text, behaviour = rng.normal(size=(100, 8)), rng.normal(size=(100, 3)) * 7
    for weight in (0.2, 0.75):
        X = combine(text, behaviour, weight)
        share = X[:, :8].var(axis=0).sum() / X.var(axis=0).sum()
        assert share == pytest.approx(weight)
    assert combine(text, behaviour, 1.0).shape == (100, 8)
    assert combine(None, behaviour, 0.75).shape == (100, 3)


# -- behaviour only, documents, retention ----------------------------------------------------


def _tiny_events(with_text: bool = True) -> pd.DataFrame:
    """Two kinds of users: four loyal big spenders and four one-off small buyers."""
    rows = []
    for i in range(4):
        for week in range(8):
            rows.append((f"L{i}", pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=week), 90.0))
    for i in range(4):
        rows.append((f"O{i}", pd.Timestamp("2024-01-02") + pd.Timedelta(days=i), 4.0))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    events["text"] = "red mug" if with_text else None
    events["event"] = None
    return events


def test_behaviour_only_when_there_is_no_text():
    result = segment_users(_tiny_events(False), settings={"k": 2}, embedder=RefusingEmbedder())
    assert result.metrics["text_used"] is False
    groups = result.assignments.set_index("user_id")["segment"]
    assert groups[[f"L{i}" for i in range(4)]].nunique() == 1
    assert groups["L0"] != groups["O0"]
    words = dict(zip(result.labels["segment"], result.labels["keywords"], strict=True))
    assert "frequent" in words[groups["L0"]] and "high spend" in words[groups["L0"]]
    assert "occasional" in words[groups["O0"]]
    # A dataset without a text column at all works the same way.
    no_column = _tiny_events(False).drop(columns=["text"])
    again = segment_users(no_column, settings={"k": 2}, embedder=RefusingEmbedder())
    assert adjusted_rand_score(result.assignments["segment"], again.assignments["segment"]) == 1


def test_text_weight_zero_embeds_nothing():
    result = segment_users(
        _tiny_events(True), settings={"k": 2, "text_weight": 0.0}, embedder=RefusingEmbedder()
    )
    assert result.metrics["text_used"] is False


def test_user_documents_list_distinct_texts_most_frequent_first():
    items = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "text": ["mug", "plate", "kettle"], "n": [5, 2, 1]}
    )
    docs = user_documents(items, ["a", "b", "c"])
    assert docs.tolist() == ["mug; plate", "kettle", ""]


def test_retention_after_k_periods_by_hand():
    import duckdb

    # Weekly. u1 active weeks 0,1,4; u2 weeks 0,2,4; u3 week 0,1 ; u4 first in week 3 (only
    # observable for k=1 since the last week is 4).
    weeks = {"u1": [0, 1, 4], "u2": [0, 2, 4], "u3": [0, 1], "u4": [3, 4]}
    rows = [
        (u, pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=w, hours=1))
        for u, ws in weeks.items()
        for w in ws
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts"])
    assignments = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "segment": [0, 0, 1, 1]})
    con = duckdb.connect()
    con.register("ev", events)
    frame, period = retention_by_segment(con, '"ev"', assignments, "week")
    assert period == "week"
    frame = frame.set_index("segment")
    assert frame.loc[0, "retention_1"] == pytest.approx(0.5)  # u1 yes, u2 no
    assert frame.loc[0, "retention_4"] == pytest.approx(1.0)  # both in week 4
    assert frame.loc[1, "retention_1"] == pytest.approx(1.0)  # u3 week 1, u4 week 4
    assert frame.loc[1, "retention_4"] == pytest.approx(0.0)  # u3 only (u4 not observable)


# -- workspace runs --------------------------------------------------------------------------


def _save_planted(ws, planted) -> str:
    return ws.save_dataset(
        name="planted",
        source_name="planted.csv",
        sha256=None,
        shape="events",
        frames={"events": planted.events},
        mapping={},
        report={},
    )


def test_run_is_stored_and_reused_without_embedding_again(workspace):
    planted = make_planted(n_users=120, n_periods=12, seed=5, n_segments=3)
    dataset_id = _save_planted(workspace, planted)
    fake = CountingEmbedder()
    seen: list[float] = []
    run_id = run_segmentation(
        workspace,
        dataset_id,
        settings={"k": 3},
        embedder=fake,
        progress=lambda f, m: seen.append(f),
    )
    assert fake.embedded == len(planted.events["text"].unique())
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    run = workspace.load_run(run_id)
    assert run.status == "done" and run.kind == "segmentation"
    assert run.settings["model"] == "fake/bag-of-words" and run.settings["k"] == 3
    art = run.artifacts
    assert list(art["assignments"].columns) == ["user_id", "segment"]
    assert list(art["labels"].columns) == [
        "segment",
        "label",
        "keywords",
        "users",
        "representatives",
    ]
    assert list(art["map2d"].columns) == ["user_id", "x", "y", "segment", "hover"]
    assert len(art["assignments"]) == planted.truth.shape[0]
    assert art["profile"]["users"].sum() == planted.truth.shape[0]
    assert {"retention_1", "retention_4", "revenue", "share"} <= set(art["profile"].columns)

    # Same settings: the stored run, nothing embedded, nothing recomputed.
    calls = len(fake.calls)
    assert run_segmentation(workspace, dataset_id, settings={"k": 3}, embedder=fake) == run_id
    assert len(fake.calls) == calls
    # New settings: a new run, but every text comes from the cache.
    other = run_segmentation(
        workspace, dataset_id, settings={"k": 2, "text_weight": 0.5}, embedder=fake
    )
    assert other != run_id and len(fake.calls) == calls
    assert workspace.load_run(other).metrics["texts_embedded"] == 0

    workspace.rename_segment(run_id, 0, "Gardeners")
    assert workspace.segment_names(run_id) == {0: "Gardeners"}
    assert load_segmentation(workspace, run_id).labels.equals(art["labels"])


def test_a_failing_run_is_marked_failed(workspace):
    planted = make_planted(n_users=30, n_periods=10, seed=5, n_segments=2)
    dataset_id = _save_planted(workspace, planted)
    with pytest.raises(AssertionError):
        run_segmentation(workspace, dataset_id, embedder=RefusingEmbedder())
    runs = workspace.runs("segmentation", dataset_id)
    assert runs["status"].tolist() == ["failed"]
    with pytest.raises(InputError, match="larger than the number of users"):
        run_segmentation(workspace, dataset_id, settings={"k": 50}, embedder=CountingEmbedder())


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_segments_follow_planted_features():
    rng = np.random.default_rng(0)
    n = 300
    group = rng.integers(0, 3, size=n)
    snapshot = pd.DataFrame(
        {
            "user_id": [f"S{i}" for i in range(n)],
            "action": rng.choice(["none", "mail"], size=n),
            "outcome": rng.random(n),
            "propensity": 0.5,
            "recency": np.array([2.0, 10.0, 6.0])[group] + rng.normal(0, 0.5, n),
            "history": np.array([500.0, 50.0, 80.0])[group] * rng.lognormal(0, 0.1, n),
            "channel": np.array(["Web", "Phone", "Multichannel"], dtype=object)[group],
        }
    )
    result = segment_snapshot(snapshot, k=3)
    merged = result.assignments.assign(truth=group)
    assert adjusted_rand_score(merged["truth"], merged["segment"]) >= 0.95
    assert "outcome" in result.profile.columns and "history" in result.profile.columns
    web = result.assignments.loc[group == 0, "segment"].iloc[0]
    keywords = result.labels.set_index("segment").loc[web, "keywords"]
    assert "high history" in keywords and "channel=Web" in keywords
    with pytest.raises(InputError, match="'feature_columns'"):
        segment_snapshot(snapshot, ["nope"])
    auto = segment_snapshot(snapshot, ["recency", "history", "channel"], k="auto")
    assert auto.metrics["k"] == 3


# -- map and charts --------------------------------------------------------------------------


def test_pca_map_and_figures():
    planted = make_planted(n_users=80, n_periods=10, seed=6, n_segments=3)
    result = segment_users(planted.events, settings={"k": 3}, embedder=CountingEmbedder())
    names = {0: "Renamed"}
    fig = segment_map(result.map2d, names)
    assert {t.type for t in fig.data} == {"scattergl"}
    assert fig.data[0].name == "Renamed"
    assert sum(len(t.x) for t in fig.data) == 80
    assert "<br>" in result.map2d["hover"].iloc[0]  # the user's top items
    small = segment_map(result.map2d, max_points=30)
    assert sum(len(t.x) for t in small.data) <= 33 and "sample" in small.layout.title.text
    assert len(sample_map(result.map2d, 30)["segment"].unique()) == 3
    assert segment_sizes(result.profile, names).data[0].type == "bar"
    assert len(segment_retention(result.profile).data) == 2
    assert silhouette_curve(result.metrics) is None  # k set by hand

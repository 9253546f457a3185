"""Segments: planted truth recovered, c-TF-IDF by hand, HDBSCAN noise, behaviour-only, runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from sklearn.metrics import adjusted_rand_score

from retention import segments
from retention.charts.segments import (
    sample_map,
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.embeddings import SentenceTransformerEmbedder
from retention.errors import InputError
from retention.runs import load_segmentation, run_segmentation
from retention.segments import (
    NOISE,
    Segmenter,
    SegmentSettings,
    UserData,
    aggregate_users,
    behaviour_matrix,
    combine,
    ctfidf,
    ctfidf_scores,
    embed_user_text,
    map_rows,
    reduce_dimensions,
    reduce_in_chunks,
    retention_by_segment,
    segment_snapshot,
    segment_users,
    text_vectors,
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


# -- scale: integer-coded items, vectors in chunks, sampled reduction and map ----------------


def _shop_events() -> pd.DataFrame:
    """Users b, a and c: a padded duplicate of a text, a refund, an empty text, no text."""
    t = pd.Timestamp("2024-01-01")
    rows = [
        ("b", t, 10.0, "mug"),
        ("b", t + pd.Timedelta(days=1), 5.0, " mug "),
        ("b", t + pd.Timedelta(days=2), 0.0, "red plate"),
        ("a", t, 2.0, "red plate"),
        ("a", t + pd.Timedelta(days=3), -4.0, "blue bowl"),
        ("a", t + pd.Timedelta(days=3), 1.0, ""),
        ("c", t + pd.Timedelta(days=4), 3.0, None),
    ]
    return pd.DataFrame(rows, columns=["user_id", "ts", "amount", "text"])


def _aggregate(events: pd.DataFrame) -> UserData:
    con = duckdb.connect()
    con.register("ev", events)
    return aggregate_users(con, '"ev"')


def test_items_are_integer_codes_into_users_and_texts():
    data = _aggregate(_shop_events())
    assert data.users["user_id"].tolist() == ["a", "b", "c"]
    assert data.texts.tolist() == ["blue bowl", "mug", "red plate"]
    assert data.items["user"].is_monotonic_increasing
    decoded = {
        (data.users["user_id"].iat[u], data.texts[t]): (n, spend)
        for u, t, n, spend in data.items[["user", "text", "n", "spend"]].itertuples(index=False)
    }
    assert decoded == {
        ("a", "red plate"): (1, 2.0),
        ("a", "blue bowl"): (1, 0.0),  # a refund adds no spend
        ("b", "mug"): (2, 15.0),  # " mug " is "mug"
        ("b", "red plate"): (1, 0.0),
    }
    assert data.has_amount


def test_coded_items_give_the_same_user_vectors_as_the_string_path():
    data = _aggregate(_shop_events())
    fake = CountingEmbedder()
    vec = dict(zip(data.texts, fake.embed(data.texts.tolist()), strict=True))

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    # By hand: spend weights (a user who spent nothing would fall back to counts), else counts;
    # c has no text and gets the mean of the others.
    by_hand = {
        "spend": [unit(vec["red plate"]), unit(vec["mug"])],  # a: 2 vs 0; b: 15 vs 0
        "frequency": [
            unit((vec["red plate"] + vec["blue bowl"]) / 2),
            unit((2 * vec["mug"] + vec["red plate"]) / 3),
        ],
    }
    strings = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "text": ["blue bowl", "red plate", "mug", "red plate"],
            "n": [1, 1, 2, 1],
            "spend": [0.0, 2.0, 15.0, 0.0],
        }
    )
    string_data = UserData(users=data.users, items=strings, has_amount=True)
    for weighting, (a, b) in by_hand.items():
        U, info = text_vectors(data, fake, weighting=weighting)
        np.testing.assert_allclose(U, np.vstack([a, b, (a + b) / 2]), atol=1e-6)
        assert info["texts_needed"] == 3 and info["users_with_text"] == 2
        from_strings, _ = text_vectors(string_data, fake, weighting=weighting)
        np.testing.assert_array_equal(from_strings, U)


def test_user_vectors_do_not_depend_on_the_chunk():
    planted = make_planted(n_users=120, n_periods=12, seed=5, n_segments=3)
    data = _aggregate(planted.events)
    text = embed_user_text(data, CountingEmbedder())
    n = len(data.users)
    full, has = text.rows(slice(0, n))
    assert has.all() and full.dtype == np.float32
    parts = [text.rows(slice(lo, min(lo + 17, n)))[0] for lo in range(0, n, 17)]
    np.testing.assert_array_equal(np.vstack(parts), full)
    some = np.array([3, 4, 50, n - 1])
    np.testing.assert_array_equal(text.rows(some)[0], full[some])


def test_sampled_reduction_keeps_every_distance_when_the_sample_is_everyone():
    planted = make_planted(n_users=120, n_periods=12, seed=5, n_segments=3)
    data = _aggregate(planted.events)
    fake = CountingEmbedder()  # 32 dimensions + 4 behaviour columns: all components are kept
    B, _ = behaviour_matrix(data.users, data.has_amount)
    exact = reduce_dimensions(combine(text_vectors(data, fake)[0], B, 0.75))
    text = embed_user_text(data, fake)
    chunked, info = reduce_in_chunks(text, B, 0.75, sample_size=1_000, chunk_users=17)
    assert info == {"users_with_text": 120, "pca_fitted_on": 120}
    assert chunked.shape == exact.shape
    # The same points up to a rotation: every pairwise distance is kept.
    np.testing.assert_allclose(pdist(chunked), pdist(exact), rtol=1e-3, atol=1e-4)
    again, _ = reduce_in_chunks(text, B, 0.75, sample_size=1_000, chunk_users=1_000)
    np.testing.assert_allclose(again, chunked, atol=1e-5)


@pytest.mark.parametrize(("n_segments", "seed"), [(4, 1), (6, 3)])
def test_chunked_path_above_the_threshold_recovers_planted_segments(
    model, monkeypatch, n_segments, seed
):
    monkeypatch.setattr(segments, "REDUCE_SAMPLE", 150)
    monkeypatch.setattr(segments, "CHUNK_USERS", 64)
    planted = make_planted(n_users=360, n_periods=16, seed=seed, n_segments=n_segments)
    fixed = segment_users(planted.events, settings={"k": n_segments}, embedder=model)
    assert fixed.metrics["pca_fitted_on"] == 150  # the sampled, chunked path ran
    assert fixed.metrics["users_with_text"] == 360
    assert _ari(fixed, planted.truth) >= 0.9
    auto = segment_users(planted.events, settings={"k": "auto"}, embedder=model)
    assert auto.metrics["k"] == n_segments
    assert _ari(auto, planted.truth) >= 0.9


def test_map_rows_are_a_bounded_stratified_sample():
    labels = np.repeat([0, 1, 2], [45_000, 4_998, 2])
    rows = map_rows(labels, 20_000, seed=0)
    assert len(rows) <= 20_000
    assert (np.diff(rows) > 0).all()  # sorted, no user twice
    counts = np.bincount(labels[rows], minlength=3)
    assert counts[2] >= 1  # a tiny segment still shows
    assert counts[0] / len(rows) == pytest.approx(0.9, abs=0.01)
    np.testing.assert_array_equal(rows, map_rows(labels, 20_000, seed=0))
    np.testing.assert_array_equal(map_rows(labels[:100], 20_000), np.arange(100))


def test_pca_map_holds_at_most_the_sample(monkeypatch):
    monkeypatch.setattr(segments, "MAP_SAMPLE", 50)
    planted = make_planted(n_users=200, n_periods=12, seed=6, n_segments=3)
    result = segment_users(planted.events, settings={"k": 3}, embedder=CountingEmbedder())
    shown = result.map2d
    assert 45 <= len(shown) <= 50 and shown["user_id"].is_unique
    assert set(shown["segment"]) == set(result.assignments["segment"])
    merged = shown.merge(result.assignments, on="user_id", suffixes=("", "_all"))
    assert len(merged) == len(shown) and (merged["segment"] == merged["segment_all"]).all()
    assert shown["hover"].str.contains("<br>").all()  # top items of the sampled users
    assert len(result.assignments) == 200


def test_map_hover_lists_top_items_most_frequent_first():
    t = pd.Timestamp("2024-01-01")
    bought = {
        "a": [("mug", 1.0)] * 3 + [("plate", 10.0)] * 2 + [("cup", 4.0)] * 2 + [("bowl", 9.0)],
        "b": [("zebra mug", 5.0), ("apple", 5.0), ("kettle", 1.0), ("kettle", 1.0)],
        "c": [("teapot", 3.0)],
    }
    rows = [
        (user, t + pd.Timedelta(days=i), amount, text)
        for user, items in bought.items()
        for i, (text, amount) in enumerate(items)
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "amount", "text"])
    result = segment_users(events, settings={"k": 2}, embedder=CountingEmbedder())
    hover = result.map2d.set_index("user_id")["hover"]
    assert hover["a"].endswith("<br>mug, plate, cup")  # count, then spend
    assert hover["b"].endswith("<br>kettle, apple, zebra mug")  # ties: alphabetical
    assert hover["c"].endswith("<br>teapot")

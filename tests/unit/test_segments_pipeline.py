"""The segmentation pipeline end to end: planted truth recovered with the real model,
behaviour only, workspace runs, the sampled and chunked path, the map's sample and hover."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from retention.embeddings import SentenceTransformerEmbedder
from retention.errors import InputError
from retention.runs import load_segmentation, run_segmentation
from retention.segments import layout, reduce, segment_users, segmentation_basis
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
    # Named by behaviour against the whole base (no words without text): L* were active on 8
    # days (1.8× the mean of 4.5), last seen at the end, spent 720 (2× the mean); O* once, about
    # 46 days before the end (2× the mean), 4 each.
    names = dict(zip(result.labels["segment"], result.labels["label"], strict=True))
    assert names[groups["L0"]] == "loyal, big spenders"
    assert names[groups["O0"]] == "lapsed, one-off buyers"
    # A dataset without a text column at all works the same way.
    no_column = _tiny_events(False).drop(columns=["text"])
    again = segment_users(no_column, settings={"k": 2}, embedder=RefusingEmbedder())
    assert adjusted_rand_score(result.assignments["segment"], again.assignments["segment"]) == 1


def test_text_weight_zero_embeds_nothing():
    result = segment_users(
        _tiny_events(True), settings={"k": 2, "text_weight": 0.0}, embedder=RefusingEmbedder()
    )
    assert result.metrics["text_used"] is False


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
        "behaviour",
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


def test_another_k_reuses_the_datasets_user_vectors(workspace, monkeypatch):
    # Issue 19: a re-run with another k redoes only the clustering onwards; its segments are
    # those of the same settings computed from scratch (segment_users, no workspace).
    planted = make_planted(n_users=150, n_periods=12, seed=6, n_segments=3)
    dataset_id = _save_planted(workspace, planted)
    fake = CountingEmbedder()
    first = run_segmentation(workspace, dataset_id, settings={"k": 3}, embedder=fake)
    assert workspace.load_run(first).metrics.get("vectors_reused") is None
    calls = len(fake.calls)

    def no_reduction(*args, **kwargs):
        raise AssertionError("the kept vectors should have been reused")

    from retention.segments import pipeline

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "reduce_users", no_reduction)
        patched.setattr(pipeline, "reduce_dimensions", no_reduction)
        heard: list[str] = []
        second = run_segmentation(
            workspace,
            dataset_id,
            settings={"k": 2},
            embedder=fake,
            progress=lambda f, m: heard.append(m),
        )
    assert len(fake.calls) == calls and "Reusing this dataset's user vectors" in heard
    metrics = workspace.load_run(second).metrics
    assert metrics["vectors_reused"] is True and metrics["texts_embedded"] == 0
    fresh = segment_users(planted.events, settings={"k": 2}, embedder=CountingEmbedder())
    reused = load_segmentation(workspace, second).assignments
    assert (
        reused.sort_values("user_id")
        .reset_index(drop=True)
        .equals(fresh.assignments.sort_values("user_id").reset_index(drop=True))
    )
    # Other vector settings: computed, not reused.
    third = run_segmentation(
        workspace, dataset_id, settings={"k": 2, "text_weight": 0.4}, embedder=fake
    )
    assert workspace.load_run(third).metrics.get("vectors_reused") is None
    kept = workspace.folder / "segment_vectors"
    assert len(list(kept.glob(f"{dataset_id}.*.npz"))) == 2
    workspace.delete_dataset(dataset_id)  # the dataset's kept vectors go with it
    assert not list(kept.glob(f"{dataset_id}.*.npz"))


def test_a_failing_run_is_marked_failed(workspace):
    planted = make_planted(n_users=30, n_periods=10, seed=5, n_segments=2)
    dataset_id = _save_planted(workspace, planted)
    with pytest.raises(AssertionError):
        run_segmentation(workspace, dataset_id, embedder=RefusingEmbedder())
    runs = workspace.runs("segmentation", dataset_id)
    assert runs["status"].tolist() == ["failed"]
    with pytest.raises(InputError, match="larger than the number of users"):
        run_segmentation(workspace, dataset_id, settings={"k": 50}, embedder=CountingEmbedder())


@pytest.mark.parametrize(("n_segments", "seed"), [(4, 1), (6, 3)])
def test_chunked_path_above_the_threshold_recovers_planted_segments(
    model, monkeypatch, n_segments, seed
):
    monkeypatch.setattr(reduce, "REDUCE_SAMPLE", 150)
    monkeypatch.setattr(reduce, "CHUNK_USERS", 64)
    planted = make_planted(n_users=360, n_periods=16, seed=seed, n_segments=n_segments)
    fixed = segment_users(planted.events, settings={"k": n_segments}, embedder=model)
    assert fixed.metrics["pca_fitted_on"] == 150  # the sampled, chunked path ran
    assert fixed.metrics["users_with_text"] == 360
    assert _ari(fixed, planted.truth) >= 0.9
    auto = segment_users(planted.events, settings={"k": "auto"}, embedder=model)
    assert auto.metrics["k"] == n_segments
    assert _ari(auto, planted.truth) >= 0.9


def test_pca_map_holds_at_most_the_sample(monkeypatch):
    monkeypatch.setattr(layout, "MAP_SAMPLE", 50)
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


def test_segmentation_basis_in_words():
    assert segmentation_basis({"text_used": True}, {"text_weight": 0.75}, False) == (
        "text + behaviour"
    )
    assert segmentation_basis({"text_used": True}, {"text_weight": 1.0}, False) == "text"
    assert segmentation_basis({"text_used": False}, {}, False) == "behaviour"
    assert segmentation_basis({}, {}, True) == "features"

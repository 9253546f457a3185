"""Issue 14, shoppers in any language: the multilingual text model (offline, its own cache
entries), the automatic choice and its reasons, Chinese and Japanese keywords that are words,
and the bilingual store segmented by what people buy, not by language."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import adjusted_rand_score

from retention import embeddings
from retention.config import PipelineConfig
from retention.embeddings import (
    DEFAULT_MODEL_ID,
    MULTILINGUAL_MODEL_ID,
    CachedEmbedder,
    MultilingualEmbedder,
    SentenceTransformerEmbedder,
    choose_text_model,
    script_mix,
)
from retention.errors import InputError
from retention.segments import SegmentSettings, segment_users
from retention.segments.label import text_keywords
from retention.segments.tokens import TOKEN_PATTERN, words
from retention.synth import CHINESE_NAMES, make_bilingual, make_planted

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "sample_data" / "zh_en_product_pairs.csv"


def _pairs() -> pd.DataFrame:
    return pd.read_csv(PAIRS, comment="#")


def _ari(assignments: pd.DataFrame, truth: pd.DataFrame, column: str = "segment") -> float:
    merged = assignments.merge(truth, on="user_id", suffixes=("", "_true"))
    assert len(merged) == len(truth)
    true = merged[f"{column}_true"] if column == "segment" else merged[column]
    return adjusted_rand_score(true, merged["segment"])


@pytest.fixture(scope="module")
def multilingual() -> MultilingualEmbedder:
    return MultilingualEmbedder()


# -- the retrieval set and the model ------------------------------------------------------------


def test_the_retrieval_set_is_big_enough_and_says_where_it_comes_from():
    head = PAIRS.read_text(encoding="utf-8").splitlines()[:4]
    assert any("hand-written" in line for line in head)
    pairs = _pairs()
    assert len(pairs) >= 200 and pairs["category"].nunique() >= 8
    assert pairs["en"].is_unique and pairs["zh"].is_unique
    assert script_mix(pairs["zh"].tolist()).non_latin_share == 1.0
    assert script_mix(pairs["en"].tolist()).non_latin_share == 0.0


def test_the_multilingual_model_runs_with_the_network_unreachable(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(embeddings, "_use_models", {})  # load it afresh, offline
    vectors = MultilingualEmbedder().embed(["ceramic coffee mug", "陶瓷咖啡杯", "dog food"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # same product, two languages


def test_the_multilingual_model_finds_each_products_translation(multilingual):
    pairs = _pairs()
    en = multilingual.embed(pairs["en"].tolist())
    zh = multilingual.embed(pairs["zh"].tolist())
    similarity = en @ zh.T
    truth = np.arange(len(pairs))
    assert (similarity.argmax(axis=1) == truth).mean() >= 0.8  # en -> zh recall@1
    assert (similarity.argmax(axis=0) == truth).mean() >= 0.8  # zh -> en recall@1


def test_the_cache_is_keyed_by_model_so_switching_never_returns_the_other_models_vectors(
    workspace,
):
    class Constant:
        def __init__(self, model_id: str, value: float) -> None:
            self.model_id, self.value, self.embedded = model_id, value, 0

        def embed(self, texts: Sequence[str], progress=None) -> np.ndarray:
            self.embedded += len(texts)
            out = np.zeros((len(texts), 4), dtype=np.float32)
            out[:, 0 if self.value > 0 else 1] = 1.0
            return out

    texts = ["ceramic coffee mug", "陶瓷咖啡杯"]
    english, multi = Constant("fake/english", 1.0), Constant("fake/multilingual", -1.0)
    first = CachedEmbedder(english, workspace).embed(texts)
    second = CachedEmbedder(multi, workspace).embed(texts)
    assert multi.embedded == 2  # nothing taken from the English model's cache
    assert not np.allclose(first, second)
    again = CachedEmbedder(english, workspace).embed(texts)
    assert english.embedded == 2 and np.array_equal(again, first)  # its own entries, reused


# -- the automatic choice -----------------------------------------------------------------------


def test_auto_chooses_the_multilingual_model_for_mixed_chinese_and_english():
    pairs = _pairs()
    choice = choose_text_model(pairs["en"].tolist() + pairs["zh"].tolist())
    assert choice.model == "multilingual" and choice.model_id == MULTILINGUAL_MODEL_ID
    assert "50%" in choice.reason and "Chinese" in choice.reason
    assert isinstance(choice.embedder(), MultilingualEmbedder)


def test_auto_keeps_the_english_model_for_english_and_for_a_few_stray_texts():
    pairs = _pairs()
    english = choose_text_model(pairs["en"].tolist())
    assert english.model == "english" and english.model_id == DEFAULT_MODEL_ID
    assert "English" in english.reason
    few = pairs["en"].tolist() + pairs["zh"].tolist()[:5]  # about 2% Chinese: not noticeable
    assert choose_text_model(few).model == "english"
    japanese = choose_text_model(pairs["en"].tolist() + ["ステンレスのフライパン"] * 30)
    assert japanese.model == "multilingual" and "Japanese" in japanese.reason


def test_auto_chooses_the_multilingual_model_for_another_latin_language():
    french = ["tasse à café en céramique", "théière en fonte", "écharpe en laine", "pull tricoté"]
    choice = choose_text_model(french * 10 + ["ceramic mug"] * 40)
    assert choice.model == "multilingual" and "letters English does not" in choice.reason


def test_asking_for_a_model_is_obeyed_and_a_mismatch_is_said():
    zh = _pairs()["zh"].tolist()
    forced = choose_text_model(zh, "english")
    assert forced.model == "english" and "You chose the English model" in forced.reason
    assert "does not understand them" in forced.reason
    assert choose_text_model(["mug"], "multilingual").model == "multilingual"


def test_a_bad_text_model_is_one_line_naming_the_choices(tmp_path):
    with pytest.raises(InputError, match="auto, english, multilingual"):
        PipelineConfig(input=tmp_path / "x.csv", text_model=str(tmp_path / "no-such-model"))
    with pytest.raises(InputError, match="auto, english, multilingual"):
        SegmentSettings(text_model="")
    assert PipelineConfig(input=tmp_path / "x.csv", text_model="multilingual").text_model


# -- keywords that are words ----------------------------------------------------------------------


def test_chinese_is_cut_into_words_and_japanese_into_character_pairs():
    assert words("不锈钢煎锅") == ["不锈钢", "煎锅"]
    assert words("陶瓷咖啡杯 350ml") == ["陶瓷", "咖啡杯"]
    assert words("iphone保护壳") == ["iphone", "保护"]
    assert words("フライパン") == ["フラ", "ライ", "イパ", "パン"]


def test_text_without_chinese_or_japanese_gives_the_words_it_gave_before():
    """Oracle: scikit-learn's own token pattern, as the keywords used before the change."""
    planted = make_planted(n_users=60, n_periods=10, seed=3)
    texts = [*planted.events["text"].unique(), "WHITE HANGING HEART T-LIGHT HOLDER", "café 28cm"]
    old = CountVectorizer(token_pattern=TOKEN_PATTERN).build_analyzer()
    for text in texts:
        assert words(text.lower()) == old(text), text


# -- the bilingual store ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bilingual():
    return make_bilingual(n_users=400, n_periods=20, seed=5)


@pytest.fixture(scope="module")
def bilingual_run(bilingual):
    return segment_users(bilingual.events)  # the defaults: automatic text model, automatic k


def test_the_bilingual_store_has_one_language_per_shopper(bilingual):
    truth = bilingual.truth
    assert set(truth["language"]) == {"en", "zh"}
    assert abs((truth["language"] == "zh").mean() - 0.5) < 0.01
    events = bilingual.events.merge(truth, on="user_id")
    chinese = script_mix(events.loc[events["language"] == "zh", "text"].unique())
    english = script_mix(events.loc[events["language"] == "en", "text"].unique())
    assert chinese.non_latin_share == 1.0 and english.non_latin_share == 0.0
    assert truth["segment"].nunique() >= 4


def test_the_default_run_segments_the_bilingual_store_by_category(bilingual, bilingual_run):
    info = bilingual_run.metrics["text_model"]
    assert info["asked"] == "auto" and info["model"] == "multilingual"
    assert bilingual_run.metrics["embedder"]["model_id"] == MULTILINGUAL_MODEL_ID
    assert _ari(bilingual_run.assignments, bilingual.truth) >= 0.8
    assert abs(_ari(bilingual_run.assignments, bilingual.truth, "language")) < 0.1


def test_chinese_keywords_are_words_not_whole_product_names(bilingual, bilingual_run):
    chinese_names = set(CHINESE_NAMES.values())
    keywords = [k for row in bilingual_run.labels["keywords"] for k in row.split(", ") if k.strip()]
    chinese = [k for k in keywords if script_mix([k]).non_latin_share == 1.0]
    assert chinese, keywords
    whole = [k for k in chinese if k in chinese_names]
    assert len(whole) <= len(chinese) // 4, whole  # a few names are one word (修枝剪, 贺卡)
    # Each segment's Chinese keywords are parts of the Chinese names of its category's products.
    merged = bilingual_run.assignments.merge(bilingual.truth, on="user_id", suffixes=("", "_t"))
    for row in bilingual_run.labels.itertuples():
        true = merged.loc[merged["segment"] == row.segment, "segment_t"].mode()[0]
        names = [CHINESE_NAMES[item] for item in bilingual.specs[true].vocabulary]
        for keyword in row.keywords.split(", "):
            if script_mix([keyword]).non_latin_share == 1.0:
                assert any(keyword in name for name in names), (keyword, names)


def test_text_keywords_of_chinese_texts_use_the_words(bilingual):
    from retention.segments.features import UserData, coded

    items = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "text": ["不锈钢煎锅", "不锈钢汤锅", "毛绒泰迪熊", "木制积木"],
            "n": [1, 1, 1, 1],
            "spend": [1.0, 1.0, 1.0, 1.0],
        }
    )
    data = coded(UserData(pd.DataFrame({"user_id": ["a", "b"]}), items, True))
    keywords = text_keywords(data, np.array([0, 1]))
    assert keywords[0][0] == "不锈钢"


# -- English data: the same segments as before ----------------------------------------------------


def test_english_data_gives_the_same_segments_as_the_english_model_did(planted):
    """The old path: the bundled English model given explicitly (what every run did before)."""
    new = segment_users(planted.events)
    old = segment_users(planted.events, embedder=SentenceTransformerEmbedder())
    assert new.metrics["text_model"]["model"] == "english"
    assert adjusted_rand_score(old.assignments["segment"], new.assignments["segment"]) >= 0.99
    pd.testing.assert_frame_equal(old.labels, new.labels)


def test_a_segmentation_job_exports_the_cache_of_the_model_the_run_will_choose(workspace):
    """The job copies the chosen model's cached vectors to its worker: the same choice the run
    makes from the same texts."""
    from retention.jobs import _segment_model_id

    mapping = {"user": "user_id", "time": "ts", "amount": "amount", "text": "text"}

    def save(events: pd.DataFrame, name: str) -> str:
        return workspace.save_dataset(
            name=name, source_name=f"{name}.csv", sha256=None, shape="events",
            frames={"events": events}, mapping=mapping, report={},
        )  # fmt: skip

    mixed = save(make_bilingual(n_users=40, n_periods=10, seed=1).events, "mixed")
    english = save(make_planted(n_users=40, n_periods=10, seed=1).events, "english")
    auto = SegmentSettings()
    assert _segment_model_id(workspace, mixed, auto) == MULTILINGUAL_MODEL_ID
    assert _segment_model_id(workspace, english, auto) == DEFAULT_MODEL_ID
    forced = SegmentSettings(text_model="english")
    assert _segment_model_id(workspace, mixed, forced) == DEFAULT_MODEL_ID
    assert _segment_model_id(workspace, mixed, SegmentSettings(text_weight=0.0)) is None
    # the run stores the model that runs, not "auto"
    from retention.runs import run_segmentation

    run_id = run_segmentation(workspace, mixed, settings={"k": 2})
    run = workspace.load_run(run_id, artifacts=False)
    assert run.settings["model"] == MULTILINGUAL_MODEL_ID and run.settings["text_model"] == "auto"
    assert run.metrics["text_model"]["model_id"] == MULTILINGUAL_MODEL_ID

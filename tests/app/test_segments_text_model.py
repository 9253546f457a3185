"""The Segments page on a store whose shoppers buy in English and in Chinese (issue 14): the
automatic text model is the multilingual one and the page says so and why; the user's pick is
kept; an English store says it used the English model."""

from __future__ import annotations

import pytest

from retention.synth import make_bilingual, make_planted
from tests.app.conftest import finish_jobs, make_app

PAGE = "pages/2_segments.py"
MAPPING = {"user": "user_id", "time": "ts", "amount": "amount", "text": "text"}


def _save(ws, events, name: str) -> str:
    return ws.save_dataset(
        name=name, source_name=f"{name}.csv", sha256=None, shape="events",
        frames={"events": events}, mapping=MAPPING, report={},
    )  # fmt: skip


def _find_segments(at):
    next(b for b in at.button if b.label == "Find segments").click().run()
    finish_jobs(at)
    assert not at.exception, at.exception
    return at


def _note(at) -> str:
    notes = [i.value for i in at.info if "Product texts were read by" in i.value]
    assert len(notes) == 1, [i.value for i in at.info]
    return notes[0]


@pytest.fixture(scope="module")
def bilingual():
    return make_bilingual(n_users=160, n_periods=12, seed=2)


def test_bilingual_store_runs_the_multilingual_model_and_says_why(app_workspace, bilingual):
    dataset_id = _save(app_workspace, bilingual.events, "Bilingual")
    at = make_app(PAGE)
    assert at.selectbox(key="segments.text_model").value == "auto"
    at.selectbox(key="segments.k").set_value(4).run()
    _find_segments(at)
    note = _note(at)
    assert "multilingual model" in note and "Chinese" in note and "% of the product texts" in note
    run = app_workspace.runs("segmentation", dataset_id).iloc[0]
    assert run["settings"]["text_model"] == "auto"
    stored = app_workspace.load_run(run["id"], artifacts=False)
    assert stored.metrics["text_model"]["model"] == "multilingual"


def test_the_users_pick_is_kept_and_obeyed(app_workspace, bilingual):
    _save(app_workspace, bilingual.events, "Bilingual")
    at = make_app(PAGE)
    at.selectbox(key="segments.text_model").set_value("english").run()
    at.selectbox(key="segments.k").set_value(4).run()
    _find_segments(at)
    note = _note(at)
    assert "English model" in note and "You chose the English model" in note
    assert "does not understand them" in note  # the mismatch is said
    fresh = make_app(PAGE)  # a refresh keeps the pick
    assert fresh.selectbox(key="segments.text_model").value == "english"


def test_english_store_says_the_english_model_ran(app_workspace):
    planted = make_planted(n_users=120, n_periods=10, seed=4, n_segments=3)
    _save(app_workspace, planted.events, "English")
    at = make_app(PAGE)
    at.selectbox(key="segments.k").set_value(3).run()
    _find_segments(at)
    note = _note(at)
    assert "English model" in note and "Chosen automatically" in note

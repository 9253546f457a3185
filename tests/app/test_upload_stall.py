"""The Data page offers one uploader until a file is chosen (issue 22's stalled upload).

A file chosen as soon as an uploader shows must go to the main one: with the campaign log's
uploader (in a collapsed expander) on the page from the start, a busy browser sometimes mounted
it first and a file chosen in the first uploader went there (tests/e2e/test_upload_race.py)."""

from __future__ import annotations

from tests.app.conftest import make_app


def test_one_uploader_and_no_campaign_log_box_before_a_file(app_workspace, planted_dataset):
    at = make_app()
    assert not at.exception
    uploaders = at.get("file_uploader")
    assert len(uploaders) == 1
    assert uploaders[0].proto.label == "Your file"
    assert not [e for e in at.expander if e.label.startswith("Campaign log")]

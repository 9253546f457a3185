"""The upload answer survives a rerun's clear of the browser queue (issue 22's stalled upload).

Streamlit's own queue and messages are the oracle: an answer queued for the browser, then the
clear a starting script run makes (``AppSession._clear_queue``: ``retain_lifecycle_msgs=True``).
Without the fix the answer is gone (the uploader would wait for it forever).
"""

from __future__ import annotations

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

from pages.ui import upload_fix


def _answer(request_id: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.file_urls_response.response_id = request_id
    msg.file_urls_response.file_urls.add(file_id="f1", upload_url="/u/f1", delete_url="/d/f1")
    return msg


def _delta(text: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.metadata.delta_path[:] = [0, 0]
    msg.delta.new_element.markdown.body = text
    return msg


def _queue_with_answer() -> ForwardMsgQueue:
    queue = ForwardMsgQueue()
    queue.enqueue(_delta("the page so far"))
    queue.enqueue(_answer("req-1"))
    return queue


def _types(messages: list[ForwardMsg]) -> list[str]:
    return [m.WhichOneof("type") for m in messages]


@pytest.fixture
def unpatched(monkeypatch):
    monkeypatch.setattr(ForwardMsgQueue, "clear", upload_fix._original_clear)


def test_streamlit_alone_drops_the_answer_when_a_run_starts(unpatched):
    """The defect, shown on Streamlit's code: the reason the uploader stayed empty."""
    queue = _queue_with_answer()
    queue.clear(retain_lifecycle_msgs=True)  # what a starting script run does
    assert "file_urls_response" not in _types(queue.flush())


def test_the_app_keeps_the_answer_through_a_rerun():
    import pages.ui.common  # noqa: F401 - importing the app's UI applies the fix

    assert upload_fix.applied()
    queue = _queue_with_answer()
    queue.clear(retain_lifecycle_msgs=True)
    sent = queue.flush()
    assert _types(sent) == ["file_urls_response"]  # the page's old deltas still go
    assert sent[0].file_urls_response.response_id == "req-1"
    assert queue.flush() == []  # sent once, not again


def test_fragment_run_and_reset_clears():
    upload_fix.keep_upload_answers()
    upload_fix.keep_upload_answers()  # idempotent: wrapped once
    assert ForwardMsgQueue.clear is upload_fix._clear_keeping_answers
    queue = _queue_with_answer()
    queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=["frag"])
    assert _types(queue.flush()).count("file_urls_response") == 1  # not twice
    queue = _queue_with_answer()
    queue.clear()  # a full reset (the session ends): nothing kept
    assert queue.flush() == []

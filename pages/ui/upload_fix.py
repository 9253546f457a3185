"""Keep a file upload's answer when the page reruns (the cause of issue 22's stalled upload).

How Streamlit's uploader works: choosing a file makes the browser ask the server where to send
it (a ``file_urls_request``); the server's answer (``file_urls_response``) is queued for the
browser with the page's other messages; the uploader shows the file and sends it only when the
answer arrives, and it waits for it without a time limit.

The defect (Streamlit 1.67, ``ForwardMsgQueue.clear``): when a script run starts, the session's
queue of messages not yet sent is cleared, keeping only the lifecycle messages (new session,
script finished, status, page info, toasts). An upload answer queued but not yet sent is
dropped, so a file chosen just as the page reruns (another widget changed, a job's progress
refresh, a rerun after a reconnect) is lost: the uploader stays empty for good, with no error
and no validation report. The busier the server, the longer an answer waits in the queue (the
flush loop sends every session's messages in turn), so ten people at once made it likely.

The fix: answers to the browser's requests are kept through that clear (they belong to no
script run, and the browser waits for them). :func:`keep_upload_answers` applies it once per
process; the app calls it when its shared UI module is imported, before any page is drawn.
``tests/unit/test_upload_fix.py`` shows the clear dropping the answer without it, and
``tests/e2e/test_upload_race.py`` provokes the race in a browser.
"""

from __future__ import annotations

import logging
from typing import Any

from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

log = logging.getLogger("retention")

#: The messages that answer a browser's request: never dropped by a rerun's clear.
ANSWERS = frozenset({"file_urls_response"})

_original_clear = ForwardMsgQueue.clear


def _clear_keeping_answers(
    self: ForwardMsgQueue,
    retain_lifecycle_msgs: bool = False,
    fragment_ids_this_run: list[str] | None = None,
) -> None:
    answers = (
        [msg for msg in self._queue if msg.WhichOneof("type") in ANSWERS]
        if retain_lifecycle_msgs
        else []  # a flush (the messages are being sent) or a full reset: nothing to keep
    )
    _original_clear(self, retain_lifecycle_msgs, fragment_ids_this_run)
    if answers:
        kept = {id(msg) for msg in self._queue}
        missing = [msg for msg in answers if id(msg) not in kept]
        if missing:
            self._queue.extend(missing)  # not deltas: the delta index needs no entry
            log.warning(
                "A file was chosen just as the page reran: its upload answer was kept "
                "(%d message(s) Streamlit would have dropped).",
                len(missing),
            )


def keep_upload_answers() -> None:
    """Make Streamlit keep upload answers when a rerun clears a session's queue (idempotent)."""
    if getattr(ForwardMsgQueue.clear, "_keeps_answers", False):
        return
    _clear_keeping_answers._keeps_answers = True  # type: ignore[attr-defined]
    ForwardMsgQueue.clear = _clear_keeping_answers  # type: ignore[method-assign]


def applied() -> bool:
    """Whether :func:`keep_upload_answers` is in force in this process."""
    clear: Any = ForwardMsgQueue.clear
    return bool(getattr(clear, "_keeps_answers", False))

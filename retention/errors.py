"""User-facing errors.

Every bad-input path in the library raises :class:`InputError` with a message a marketer can act
on: what is wrong (naming the file, column or row) and how to fix it. The app shows the message
with ``st.error``; the command line prints ``error: <message>`` and exits with status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot serve, with a message that says what is wrong and how to fix it."""

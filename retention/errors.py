"""User-facing errors.

Every bad-input path in the library raises :class:`InputError` with a message a marketer can act
on: what is wrong (naming the file, column or row) and how to fix it. The app shows the message
with ``st.error``; the command line prints ``error: <message>`` and exits with status 2.

The fix is sometimes said differently at each front door: the command line says
``--map time=COLUMN``, the browser says which box to pick the column in. Such an error carries
both endings: ``str(exc)`` is the command line's wording, :attr:`InputError.in_app` the app's.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot serve, with a message that says what is wrong and how to fix it.

    ``cli_hint`` and ``ui_hint`` end the message with the fix in each front door's words (one
    sentence each); without them both front doors read the same message.
    """

    def __init__(self, message: str, *, cli_hint: str = "", ui_hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.cli_hint = cli_hint
        self.ui_hint = ui_hint

    def __str__(self) -> str:
        return _join(self.message, self.cli_hint)

    @property
    def in_app(self) -> str:
        """The message as the browser shows it: the fix says where to click, not which option."""
        return _join(self.message, self.ui_hint)


def _join(message: str, hint: str) -> str:
    return f"{message} {hint}" if hint else message

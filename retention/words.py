"""The words every front door uses for the same things: period names, segment names, progress.

One home, so the Policy page, the Strategies page, the report and the command line never say
the same thing three ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Progress = Callable[[float, str], None]

#: The plural word for a period, as a user reads it ("retained for 3 months").
PERIOD_WORDS: dict[str, str] = {"day": "days", "week": "weeks", "month": "months"}
#: Engagement stages in lifecycle order, as people read them (SPEC §3 names, then a snapshot's
#: stage for users without a recency, then a snapshot without recencies).
STAGE_ORDER: tuple[str, ...] = ("new", "active", "lapsing", "at_risk", "churned", "unknown", "all")
#: The segment of users HDBSCAN left unclustered.
NOISE_SEGMENT = -1
NOISE_NAME = "Unclustered"


def period_word(period: str | None) -> str:
    """ "days" / "weeks" / "months" for a period, "periods" when it is not known."""
    return PERIOD_WORDS.get(period or "", "periods")


def period_word_singular(period: str | None) -> str:
    """ "day" / "week" / "month" for a period, "period" when it is not known."""
    return period if period in PERIOD_WORDS else "period"


def stage_word(stage: object) -> str:
    """A stage as people read it: ``at_risk`` -> "at risk"."""
    return str(stage).replace("_", " ")


def stage_rank(stage: object) -> int:
    """A stage's place in the lifecycle (:data:`STAGE_ORDER`; unknown names last)."""
    text = str(stage).replace(" ", "_")
    return STAGE_ORDER.index(text) if text in STAGE_ORDER else len(STAGE_ORDER)


def segment_display_name(segment: int) -> str:
    """The default name of a segment (1-based, as every page shows it): "Segment 1", ...;
    the noise segment of HDBSCAN is "Unclustered"."""
    segment = int(segment)
    return NOISE_NAME if segment == NOISE_SEGMENT else f"Segment {segment + 1}"


def segment_name(names: Mapping[int, str] | None, segment: int) -> str:
    """A segment's name as every page, chart and export shows it: the user's or the keyword
    name when there is one, else :func:`segment_display_name`."""
    name = (names or {}).get(int(segment))
    return str(name) if name else segment_display_name(segment)


def scaled(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A progress callback for one step that fills ``[lo, hi]`` of the overall bar."""
    if progress is None:
        return None

    def report(fraction: float, message: str) -> None:
        progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)

    return report


#: Symbols of the currencies the app names; any other ISO code is written after the amount.
CURRENCY_SYMBOLS: dict[str, str] = {
    "GBP": "£", "USD": "$", "EUR": "€", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩",
    "AUD": "A$", "CAD": "C$", "CHF": "CHF ", "BRL": "R$",
}  # fmt: skip


def money(amount: float, currency: str | None, decimals: int = 2) -> str:
    """An amount as a user reads it: "£1,234.50", "1,234.50 SEK", or "1,234.50 (currency of
    your data)" when the currency is not known."""
    number = f"{abs(float(amount)):,.{decimals}f}"
    sign = "−" if float(amount) < 0 and round(abs(float(amount)), decimals) > 0 else ""
    code = (currency or "").strip().upper()
    if not code:
        return f"{sign}{number} (currency of your data)"
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def currency_unit(currency: str | None) -> str:
    """The unit to put in a column header: "£", "SEK", or "your data's currency"."""
    code = (currency or "").strip().upper()
    if not code:
        return "your data's currency"
    return CURRENCY_SYMBOLS.get(code, code).strip()


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """A count with its noun, singular for one: "1 user", "2,000 users", "3 degrees"."""
    n = int(n)
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"

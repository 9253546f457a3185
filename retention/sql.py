"""Small helpers for the SQL the library writes (DuckDB)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """A column or table name as a quoted SQL identifier (inner quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'

"""The DuckDB plumbing every ingest step shares: a private connection, quoting, Arrow → pandas."""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from retention.errors import InputError
from retention.ingest import limits

_DATABASE: duckdb.DuckDBPyConnection | None = None
_DATABASE_LOCK = threading.Lock()


def new_connection() -> duckdb.DuckDBPyConnection:
    """A private connection (a cursor on one in-memory database: opening is instant)."""
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None:
            from retention.workspace import duckdb_config

            _DATABASE = duckdb.connect(config=duckdb_config())
        con = _DATABASE.cursor()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET arrow_large_buffer_size = true")  # large_string: what pandas keeps
    return con


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with strings as string[pyarrow] (cheap for millions of rows), ts in ns."""

    def mapper(t: pa.DataType) -> Any:
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pd.StringDtype("pyarrow")
        return None

    frame = table.to_pandas(types_mapper=mapper)
    if "ts" in frame.columns and pd.api.types.is_datetime64_any_dtype(frame["ts"]):
        frame["ts"] = frame["ts"].astype("datetime64[ns]")
    return frame


def duckdb_input_error(exc: duckdb.Error, name: str) -> InputError:
    """A DuckDB error while reading ``name``, as a message for the user."""
    message = str(exc).splitlines()[0]
    if "Maximum line size" in str(exc):
        return InputError(
            f"'{name}' has a line longer than {limits.mb(limits.MAX_LINE_BYTES)}; cells are "
            f"limited to {limits.MAX_CELL_CHARS:,} characters. Check the delimiter and quotes, "
            "or shorten that cell."
        )
    if "unicode" in str(exc).lower() or "utf" in str(exc).lower():
        return InputError(f"'{name}' is not valid UTF-8 text ({message}). Save it as 'CSV UTF-8'.")
    return InputError(f"'{name}' could not be read ({message}).")

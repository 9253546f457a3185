"""Every size limit and batch size of ingest, in one place.

The app (``.streamlit/config.toml`` ``maxUploadSize``), the command line and the library read
their limits from here. Code reads them as ``limits.NAME`` at call time, so a test can
monkeypatch this module (patching a re-export elsewhere would change nothing).
"""

from __future__ import annotations

import csv
import os

from retention.errors import InputError

#: Largest accepted input, in bytes (uncompressed for gzip and xlsx). Override per call with
#: ``max_bytes=`` or for the whole process with the environment variable RETENTION_MAX_UPLOAD_MB.
#: ``.streamlit/config.toml`` sets the browser's ``maxUploadSize`` to the same 500 MB.
DEFAULT_MAX_BYTES = 500 * 1024**2
#: The largest local file the command line reads: a file on disk is not an upload.
LOCAL_FILE_BYTES = 1 << 40
#: Largest accepted single cell, in characters.
MAX_CELL_CHARS = 1_000_000
#: Longest accepted line of a text file; longer lines are refused before parsing.
MAX_LINE_BYTES = 8 * 1024**2
#: Plain CSV and Parquet files at least this large are read by DuckDB from disk, not by pandas.
FAST_PATH_BYTES = 32 * 1024**2
#: Zip entries that expand more than this many times are treated as a zip bomb.
MAX_ZIP_RATIO = 100
#: Longest accepted column name, in characters.
MAX_COLUMN_NAME_CHARS = 1_000
#: Rows fetched from DuckDB per batch while validating.
BATCH_ROWS = 1_000_000
#: Validated rows held in memory at most; beyond, they are written to a Parquet file on disk
#: (a :class:`~retention.ingest.staging.StagedTable`) and the workspace reads them from there.
SPILL_ROWS = 2_000_000

# The csv module refuses fields over 128 KiB by default; cells up to MAX_CELL_CHARS are allowed
# (longer ones get a clear message later), so sniffing must not trip over them first.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))


def max_upload_bytes() -> int:
    """The upload size limit: RETENTION_MAX_UPLOAD_MB (megabytes) or 500 MB."""
    value = os.environ.get("RETENTION_MAX_UPLOAD_MB")
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return int(float(value) * 1024**2)
    except ValueError:
        raise InputError(
            f"RETENTION_MAX_UPLOAD_MB must be a number of megabytes. Got {value!r}."
        ) from None


def mb(n: int) -> str:
    """A size for messages: '12 MB', or bytes below one megabyte."""
    return f"{n / 1024**2:,.0f} MB" if n >= 1024**2 else f"{n:,} bytes"

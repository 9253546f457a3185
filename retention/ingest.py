"""Data in (SPEC §1): read any supported file, detect column roles, validate into canonical frames.

Three steps, each usable on its own (the Data page calls them one by one, the command line calls
:func:`ingest`):

1. :func:`read_table` reads bytes or a file into a raw DataFrame. The format is sniffed from the
   content (magic bytes), never from the file name: Parquet, Excel ``.xlsx``, gzip (a CSV or
   JSON Lines file inside), JSON Lines, and CSV with delimiter, header and encoding sniffing.
   Text columns are read as strings so ids like ``00123`` and ``17850.0`` are handled on purpose
   later. Sizes are bounded (upload size, uncompressed size, cell size).
2. :func:`detect_roles` suggests the shape (``"events"`` or ``"snapshot"``) and which column plays
   which role, from column names and contents.
3. :func:`prepare` turns the raw frame and a role mapping into the canonical frames of
   ``docs/architecture.md`` plus a :class:`ValidationReport`. Parsing and validation run as one
   DuckDB query, so rows that cannot be used are counted by reason (never silently dropped)
   and the same code stays fast at tens of millions of rows.

Every problem a user can cause raises :class:`retention.errors.InputError` with a message that
names the file or column and says how to fix it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import warnings
import weakref
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retention.errors import InputError

Shape = Literal["events", "snapshot"]

EVENT_ROLES: tuple[str, ...] = ("user", "time", "amount", "text", "event")
SNAPSHOT_ROLES: tuple[str, ...] = ("user", "action", "outcome", "propensity", "recency")
CAMPAIGN_ROLES: tuple[str, ...] = ("user", "time", "action", "propensity")
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "events": ("user", "time"),
    "snapshot": ("action", "outcome"),
    "campaigns": ("user", "time", "action"),
}

#: Largest accepted input, in bytes (uncompressed for gzip and xlsx). Override per call with
#: ``max_bytes=`` or for the whole process with the environment variable RETENTION_MAX_UPLOAD_MB.
DEFAULT_MAX_BYTES = 500 * 1024**2
#: Largest accepted single cell, in characters.
MAX_CELL_CHARS = 1_000_000
#: Longest accepted line of a text file; longer lines are refused before parsing.
MAX_LINE_BYTES = 8 * 1024**2
#: Plain CSV files at least this large are read by DuckDB instead of pandas (in :func:`ingest`).
FAST_PATH_BYTES = 32 * 1024**2
#: Zip entries that expand more than this many times are treated as a zip bomb.
MAX_ZIP_RATIO = 100
#: Longest accepted column name, in characters.
MAX_COLUMN_NAME_CHARS = 1_000
# The csv module refuses fields over 128 KiB by default; cells up to MAX_CELL_CHARS are allowed
# (longer ones get a clear message later), so sniffing must not trip over them first.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))

#: Placeholders that mean "no user id" in an id column.
_MISSING_TOKENS = ["", "nan", "null", "none", "na", "n/a", "#n/a", "-", "?", "unknown"]
#: Placeholders that mean "missing" in any column ("none" can be a real action name).
_NULL_TEXT = ["", "nan", "null", "na", "n/a", "#n/a"]
_FIX_HINT = (
    "--map {role}=COLUMN on the command line, or pick the column under '{label}' on the Data page"
)
_ROLE_LABELS = {
    "user": "User",
    "time": "Time",
    "amount": "Amount",
    "text": "Text",
    "event": "Event type",
    "action": "Action",
    "outcome": "Outcome",
    "propensity": "Propensity",
    "recency": "Recency",
}
_EXTRA_RESERVED = {"user_id", "ts", "amount", "text", "event", "action", "outcome", "propensity"}
_EXTRA_RESERVED |= {"recency"}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """How a file was read: what :func:`read_table` found out about its bytes."""

    name: str
    format: str  # csv | parquet | xlsx | jsonl | json (with ".gz" appended when gzipped)
    size_bytes: int
    sha256: str
    encoding: str | None = None
    delimiter: str | None = None  # "," ";" "\t" "|" or "whitespace"
    header: bool = True
    skipped_lines: tuple[int, ...] = ()  # malformed lines left out (1-based line numbers)
    skipped_count: int = 0

    def describe(self) -> str:
        """One line for the validation report: 'CSV, delimiter ';', encoding cp1252'."""
        parts = [self.format.upper().replace(".GZ", " (gzip)")]
        if self.delimiter is not None:
            parts.append(f"delimiter {self.delimiter!r}")
        if self.encoding is not None:
            parts.append(f"encoding {self.encoding}")
        if not self.header:
            parts.append("no header row (columns named column0, column1, ...)")
        return ", ".join(parts)


@dataclass(frozen=True)
class Detection:
    """Suggested shape and role → column mapping, with ranked alternatives and reasons.

    ``roles[role]`` is a column name, ``None`` (not found), or for ``amount`` possibly a product
    ``"Quantity*UnitPrice"`` of two numeric columns (derived amount).
    """

    shape: Shape
    roles: dict[str, str | None]
    candidates: dict[str, tuple[str, ...]]
    why: dict[str, str]
    columns: tuple[str, ...]
    time_format: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def mapping(self) -> dict[str, str]:
        """The roles that were found, as ``{role: column}``."""
        return {role: col for role, col in self.roles.items() if col}


@dataclass(frozen=True)
class ValidationReport:
    """What happened to every input row.

    ``reasons`` has one row per rejection reason: ``reason`` (str), ``rows`` (int) and
    ``sample`` (list of up to 5 row numbers; 1-based data rows, so spreadsheet row = row + 1
    when the file has a header). ``samples[reason]`` shows those rows' original values.
    """

    rows: int
    rows_used: int
    rows_rejected: int
    reasons: pd.DataFrame
    samples: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    users: int = 0  # distinct user ids among the rows used

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the workspace and summary.json)."""
        return {
            "rows": int(self.rows),
            "rows_used": int(self.rows_used),
            "rows_rejected": int(self.rows_rejected),
            "users": int(self.users),
            "reasons": [
                {"reason": str(r.reason), "rows": int(r.rows), "sample": [int(x) for x in r.sample]}
                for r in self.reasons.itertuples(index=False)
            ],
            "samples": {
                reason: json.loads(frame.astype(str).to_json(orient="records"))
                for reason, frame in self.samples.items()
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Prepared:
    """Canonical frames ready for the workspace, with the mapping used and the validation report.

    ``frames`` holds ``events`` (+ ``campaigns`` when a campaign log was given) for an event log,
    or ``snapshot`` for a campaign snapshot, with the columns of docs/architecture.md.
    """

    shape: Shape
    mapping: dict[str, str]
    frames: dict[str, pd.DataFrame | StagedTable]  # StagedTable: big inputs, on disk
    report: ValidationReport
    source_name: str
    sha256: str | None = None
    campaign_mapping: dict[str, str] | None = None
    campaign_report: ValidationReport | None = None
    campaigns_sha256: str | None = None
    detection: Detection | None = None
    source: SourceInfo | None = None

    @property
    def events(self) -> pd.DataFrame | None:
        return self.frames.get("events")

    @property
    def campaigns(self) -> pd.DataFrame | None:
        return self.frames.get("campaigns")

    @property
    def snapshot(self) -> pd.DataFrame | None:
        return self.frames.get("snapshot")

    @property
    def users(self) -> int:
        return self.report.users

    def summary(self) -> dict[str, Any]:
        """The ``input`` block of summary.json."""
        return {
            "rows": self.report.rows,
            "rows_used": self.report.rows_used,
            "rows_rejected": self.report.rows_rejected,
            "users": self.users,
            "shape": self.shape,
        }


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


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


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.0f} MB" if n >= 1024**2 else f"{n:,} bytes"


_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows program"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls (or other Office 97) file; save it as .xlsx or CSV"),
    (b"BZh", "a bzip2 archive; unpack it first"),
    (b"\xfd7zXZ", "an xz archive; unpack it first"),
    (b"7z\xbc\xaf", "a 7-Zip archive; unpack it first"),
    (b"Rar!", "a RAR archive; unpack it first"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive; unpack it first"),
    (b"ARROW1", "an Arrow/Feather file; save it as Parquet"),
    (b"Obj\x01", "an Avro file; save it as Parquet"),
)

_SUPPORTED = "CSV, CSV.gz, Parquet, Excel .xlsx or JSON Lines"


def _sniff_kind(head: bytes) -> str:
    """Content type from the first bytes: parquet | zip | gzip | pickle | binary | text."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "text"
    for magic, _ in _BINARY_MAGIC:
        if head.startswith(magic):
            return "binary"
    if b"\x00" in head and _utf16_without_bom(head) is None:
        return "binary"
    return "text"


def _binary_message(head: bytes, name: str) -> str:
    what = next((w for magic, w in _BINARY_MAGIC if head.startswith(magic)), "a binary file")
    return f"'{name}' is {what}, not a table. Upload a {_SUPPORTED} file."


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when text looks like BOM-less UTF-16 (NUL every other byte)."""
    sample = head[: len(head) // 2 * 2][:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 * 1024**2):
            digest.update(block)
    return digest.hexdigest()


def _load_source(
    source: str | Path | bytes, filename: str | None, max_bytes: int
) -> tuple[bytes, str, Path | None]:
    """The source's bytes (bounded by max_bytes), its display name and its path if any."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = filename or "the uploaded file"
        if len(data) > max_bytes:
            raise InputError(
                f"'{name}' is {_mb(len(data))}; the limit is {_mb(max_bytes)}. Upload a smaller "
                "file, or raise the limit with RETENTION_MAX_UPLOAD_MB."
            )
        return data, name, None
    path = Path(source)
    name = filename or path.name
    if not path.is_file():
        raise InputError(f"File '{path}' does not exist (or is not a file). Check the path.")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(
            f"'{name}' is {_mb(size)}; the limit is {_mb(max_bytes)}. Use a smaller file, or "
            "raise the limit with RETENTION_MAX_UPLOAD_MB."
        )
    _check_line_lengths(_file_blocks(path), name)
    return path.read_bytes(), name, path


def _file_blocks(path: Path, size: int = 8 * 1024**2) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(size):
            yield block


def _memory_blocks(data: bytes, size: int = 8 * 1024**2) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield view[start : start + size]


def _check_line_lengths(blocks: Iterable[bytes | memoryview], name: str) -> None:
    """Refuse text whose lines exceed MAX_LINE_BYTES, stopping at the first one found.

    Binary content (Parquet, zip, gzip) is skipped: its 'lines' mean nothing.
    """
    since_newline = 0
    line = 1
    first = True
    for block in blocks:
        if first:
            if _sniff_kind(bytes(block[:4096])) != "text":
                return
            first = False
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        if newlines.size == 0:
            since_newline += len(block)
            if since_newline > MAX_LINE_BYTES:
                _raise_long_line(name, line)
            continue
        gaps = np.diff(newlines, prepend=-1)
        gaps[0] += since_newline
        long = np.flatnonzero(gaps > MAX_LINE_BYTES)
        if long.size:
            _raise_long_line(name, line + int(long[0]))
        line += newlines.size
        since_newline = len(block) - int(newlines[-1]) - 1
        if since_newline > MAX_LINE_BYTES:
            _raise_long_line(name, line)


def _raise_long_line(name: str, line: int) -> None:
    raise InputError(
        f"'{name}': line {line:,} is longer than {_mb(MAX_LINE_BYTES)}; cells are limited to "
        f"{MAX_CELL_CHARS:,} characters. Is this really a table? Check the delimiter and quotes, "
        "or shorten that cell."
    )


def read_table(
    source: str | Path | bytes,
    filename: str | None = None,
    *,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Read a table from a file path or bytes, sniffing the format from its content.

    Supported: CSV (delimiter ``,`` ``;`` tab ``|`` or whitespace; UTF-8, UTF-8 with BOM,
    UTF-16 with or without BOM, cp1252), gzip of CSV or JSON Lines, Parquet, Excel ``.xlsx``
    (first sheet), JSON Lines (or a JSON array of objects). Text formats come back as string
    columns (missing cells as NA); Parquet keeps its types. A headerless CSV gets columns
    ``column0, column1, ...``. How the file was read is attached as ``df.attrs["source"]``
    (a :class:`SourceInfo`).

    Raises InputError for: empty or header-only files, binaries (pickles, programs, images...),
    zip bombs, undecodable bytes, blank or duplicated column names, cells over 1 MB, files over
    ``max_bytes`` (default :func:`max_upload_bytes`).
    """
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    data, name, path = _load_source(source, filename, limit)
    frame, info = _read_bytes(data, name, limit, lines_checked=path is not None)
    _check_columns(list(frame.columns), name)
    if len(frame) == 0:
        raise InputError(
            f"'{name}' has a header row ({', '.join(map(str, frame.columns[:8]))}) but no data "
            "rows. Export the data again with its rows."
        )
    _check_cells(frame, name)
    frame.attrs["source"] = info
    return frame


def _read_bytes(
    data: bytes, name: str, limit: int, *, nested: bool = False, lines_checked: bool = False
) -> tuple[pd.DataFrame, SourceInfo]:
    if not data or not data.strip():
        raise InputError(
            f"'{name}' is empty. Upload a {_SUPPORTED} file with a header row and data."
        )
    sha = hashlib.sha256(data).hexdigest()
    kind = _sniff_kind(data[:4096])
    if kind == "parquet":
        return _read_parquet(data, name), SourceInfo(name, "parquet", len(data), sha)
    if kind == "zip":
        return _read_xlsx(data, name, limit), SourceInfo(name, "xlsx", len(data), sha)
    if kind == "gzip":
        if nested:
            raise InputError(f"'{name}' is gzip inside gzip. Unpack it once and upload again.")
        inner = _gunzip(data, name, limit)
        frame, info = _read_bytes(inner, name, limit, nested=True)
        return frame, replace(info, format=info.format + ".gz", size_bytes=len(data), sha256=sha)
    if kind == "pickle":
        raise InputError(
            f"'{name}' is a Python pickle. Pickles can run code when opened, so they are refused. "
            f"Save the data as {_SUPPORTED}."
        )
    if kind == "binary":
        raise InputError(_binary_message(data[:64], name))
    if not lines_checked:
        _check_line_lengths(_memory_blocks(data), name)
    encoding = _detect_encoding(data, name)
    text_head = _decode_head(data, encoding)
    if text_head.lstrip().startswith(("{", "[")):
        frame = _read_json(data.decode(encoding), name)
        fmt = "jsonl" if text_head.lstrip().startswith("{") else "json"
        return frame, SourceInfo(name, fmt, len(data), sha, encoding=encoding)
    frame, delimiter, header, skipped, skipped_count = _read_csv(data, text_head, encoding, name)
    info = SourceInfo(
        name,
        "csv",
        len(data),
        sha,
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        skipped_lines=tuple(skipped[:20]),
        skipped_count=skipped_count,
    )
    return frame, info


def _gunzip(data: bytes, name: str, limit: int) -> bytes:
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            while block := fh.read(8 * 1024**2):
                out.write(block)
                if out.tell() > limit:
                    raise InputError(
                        f"'{name}' unpacks to more than {_mb(limit)}; the limit is {_mb(limit)}. "
                        "Use a smaller file, or raise the limit with RETENTION_MAX_UPLOAD_MB."
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"'{name}' is a damaged gzip file ({exc}). Compress it again.") from None
    return out.getvalue()


def _detect_encoding(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM or NUL pattern) or cp1252; else InputError."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bomless = _utf16_without_bom(data[:4096])
    if bomless:
        return bomless
    first_error: UnicodeDecodeError | None = None
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            for start in range(0, len(data), 16 * 1024**2):
                chunk = data[start : start + 16 * 1024**2]
                decoder.decode(chunk, final=start + len(chunk) >= len(data))
        except UnicodeDecodeError as exc:
            if first_error is None:
                first_error = exc
                first_error.start += start
            continue
        return encoding
    assert first_error is not None
    bad = data[first_error.start : first_error.start + 1]
    line = data.count(b"\n", 0, first_error.start) + 1
    raise InputError(
        f"'{name}' has bytes that are not text in UTF-8, UTF-16 or Windows-1252 (cp1252): byte "
        f"0x{bad.hex()} on line {line:,}. Save the file as 'CSV UTF-8' and upload it again."
    )


def _decode_head(data: bytes, encoding: str, size: int = 256 * 1024) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(data[:size], final=len(data) <= size)


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"'{name}' looks like Parquet but cannot be read ({exc}).") from None
    _check_columns(table.column_names, name)
    return _to_pandas(table)  # strings stay Arrow-backed: cheap here and for DuckDB later


def _read_xlsx(data: bytes, name: str, limit: int) -> pd.DataFrame:
    """First worksheet of an .xlsx, checked for zip bombs first, parsed with defused XML."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"'{name}' is a damaged zip/xlsx file ({exc}).") from None
    if not any(e.filename.startswith("xl/") for e in entries):
        raise InputError(f"'{name}' is a zip archive but not an Excel workbook. Unzip it first.")
    total = sum(e.file_size for e in entries)
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > 1024**2 and ratio > MAX_ZIP_RATIO:
            raise InputError(
                f"'{name}' looks like a zip bomb: '{entry.filename}' expands {ratio:,.0f} times "
                f"(to {_mb(entry.file_size)}). Refused. Save the sheet as CSV instead."
            )
    if total > limit:
        raise InputError(
            f"'{name}' expands to {_mb(total)}; the limit is {_mb(limit)}. Save the sheet as "
            "CSV.gz, or raise the limit with RETENTION_MAX_UPLOAD_MB."
        )
    import openpyxl
    from openpyxl.xml import DEFUSEDXML

    if not DEFUSEDXML:
        raise InputError("Reading .xlsx needs the 'defusedxml' package. Install it, or use CSV.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for broken files
        raise InputError(f"'{name}' cannot be read as an Excel workbook ({exc}).") from None
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise InputError(f"'{name}' (sheet '{sheet.title}') is empty.")
        header_cells = list(header)
        while header_cells and header_cells[-1] is None:
            header_cells.pop()
        width = len(header_cells)
        records: list[list[Any]] = []
        for number, row in enumerate(rows, start=2):
            cells = list(row[:width]) + [None] * max(0, width - len(row))
            if all(c is None for c in cells):
                continue
            values = [_excel_cell(c) for c in cells]
            for col, value in enumerate(values):
                if value is not None and len(value) > MAX_CELL_CHARS:
                    raise InputError(
                        f"'{name}': cell {openpyxl.utils.get_column_letter(col + 1)}{number} has "
                        f"{len(value):,} characters; the limit is {MAX_CELL_CHARS:,}. Shorten it."
                    )
            records.append(values)
    finally:
        book.close()
    columns = ["" if c is None else str(c).strip() for c in header_cells]
    _check_columns(columns, name)
    return pd.DataFrame(records, columns=columns, dtype=object)


def _excel_cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return (
            value.isoformat(sep=" ")
            if hasattr(value, "hour") and hasattr(value, "day")
            else value.isoformat()
        )
    text = str(value)
    return text if text.strip() else None


def _read_json(text: str, name: str) -> pd.DataFrame:
    """JSON Lines (one object per line) or a JSON array of objects, values as strings."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise InputError(
                f"'{name}' has duplicated keys {dupes} in one object. Give each field its own name."
            )
        return dict(pairs)

    objects: list[tuple[int, Any]]
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            parsed = json.loads(text, object_pairs_hook=no_duplicates)
            if not isinstance(parsed, list):
                raise InputError(f"'{name}' is JSON but not a list of objects.")
            objects = list(enumerate(parsed, start=1))
        else:
            objects = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    objects.append((number, json.loads(line, object_pairs_hook=no_duplicates)))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"'{name}' looks like JSON but is not valid JSON Lines ({exc.msg}, line "
            f"{exc.lineno if stripped.startswith('[') else number}). Each line must be one object."
        ) from None
    except RecursionError:
        raise _too_deep(name) from None
    try:
        return _json_frame(objects, name)
    except RecursionError:
        raise _too_deep(name) from None


def _too_deep(name: str) -> InputError:
    return InputError(
        f"'{name}' has JSON nested too deeply to be a table. Give one object per line whose "
        "values are plain text or numbers (JSON Lines)."
    )


def _json_frame(objects: list[tuple[int, Any]], name: str) -> pd.DataFrame:
    columns: dict[str, None] = {}
    rows: list[dict[str, str | None]] = []
    for number, obj in objects:
        if not isinstance(obj, dict):
            raise InputError(
                f"'{name}': record {number} is not a JSON object ({type(obj).__name__})."
            )
        row = {}
        for key, value in obj.items():
            columns.setdefault(key, None)
            row[key] = _json_cell(value)
        rows.append(row)
    _check_columns(list(columns), name)
    return pd.DataFrame.from_records(rows, columns=list(columns)).astype(object)


def _json_cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_NUMBER_RE = re.compile(r"^[-+]?[$€£¥]?\s*(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_DATEISH_RE = re.compile(r"^(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{8})([ T].*)?$")


def _sniff_delimiter(text: str) -> tuple[str, list[list[str]]]:
    """Pick the delimiter whose field count is the same on (almost) every sampled line.

    Candidates: comma, tab, semicolon, pipe; else runs of whitespace (CDNOW's format). The most
    fields wins among consistent candidates; ties go in that order.
    """
    cut = text.rfind("\n")
    sample = text[: cut if cut > 0 else len(text)]
    best: tuple[int, str, list[list[str]]] | None = None
    for delimiter in (",", "\t", ";", "|"):
        try:
            rows = [r for r in csv.reader(_lines(sample), delimiter=delimiter) if r][:200]
        except csv.Error:
            continue
        width = _consistent_width(rows)
        if width >= 2 and (best is None or width > best[0]):
            best = (width, delimiter, rows)
    if best is not None:
        return best[1], best[2]
    rows = [line.split() for line in sample.splitlines() if line.strip()][:200]
    if _consistent_width(rows) >= 2:
        return "whitespace", rows
    try:
        rows = [r for r in csv.reader(_lines(sample)) if r][:200]
    except csv.Error:  # not CSV-like at all: one column per line, pandas has the last word
        rows = [[line] for line in sample.splitlines() if line][:200]
    return ",", rows


def _lines(text: str) -> io.StringIO:
    """Text for ``csv.reader`` with universal newlines (old Mac files end lines with CR)."""
    return io.StringIO(text, newline=None)


def _consistent_width(rows: list[list[str]]) -> int:
    """The field count shared by the first row and at least 90% of rows, else 0."""
    if not rows:
        return 0
    widths = [len(r) for r in rows]
    first = widths[0]
    if widths.count(first) < 0.9 * len(widths):
        return 0
    return first


def _has_header(rows: list[list[str]]) -> bool:
    """False when the first row looks like data (numbers/dates where later rows have them too)."""
    if len(rows) < 2:
        return True
    votes_header = votes_data = 0
    width = len(rows[0])
    for col in range(width):
        rest = [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
        if not rest:
            continue
        first = rows[0][col].strip()
        for pattern in (_NUMBER_RE, _DATEISH_RE):
            if sum(bool(pattern.match(v)) for v in rest) >= 0.9 * len(rest):
                if pattern.match(first):
                    votes_data += 1
                else:
                    votes_header += 1
                break
    return not (votes_data > 0 and votes_data > votes_header)


def _read_csv(
    data: bytes, text_head: str, encoding: str, name: str
) -> tuple[pd.DataFrame, str, bool, list[int], int]:
    delimiter, rows = _sniff_delimiter(text_head)
    header = _has_header(rows)
    width = max((len(r) for r in rows[:1]), default=1)
    if header and rows:
        _check_columns([c.strip() for c in rows[0]], name)
    sep = r"\s+" if delimiter == "whitespace" else delimiter
    options: dict[str, Any] = dict(
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        encoding=encoding,
        on_bad_lines="warn",
        header=0 if header else None,
        engine="c",
        low_memory=False,
    )
    if not header:
        options["names"] = [f"column{i}" for i in range(width)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(io.BytesIO(data), **options)
        except pd.errors.EmptyDataError:
            raise InputError(
                f"'{name}' is empty. Upload a file with a header row and data."
            ) from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise InputError(f"'{name}' cannot be read as CSV ({str(exc).strip()}).") from None
    skipped = [int(m) for w in caught for m in re.findall(r"line (\d+)", str(w.message))]
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, delimiter, header, sorted(skipped), len(skipped)


def _check_columns(columns: list[Any], name: str) -> None:
    """Blank or duplicated (ignoring case and surrounding spaces) column names are refused."""
    names = [str(c).strip() if c is not None else "" for c in columns]
    blank = [i + 1 for i, c in enumerate(names) if not c or c.lower().startswith("unnamed:")]
    if blank:
        raise InputError(
            f"'{name}' has a blank column name at position {', '.join(map(str, blank[:10]))} of "
            "the header row. Give every column a name in the first row (a blank first name is "
            "often a saved row index: delete that column)."
        )
    long = [i + 1 for i, c in enumerate(names) if len(c) > MAX_COLUMN_NAME_CHARS]
    if long:
        raise InputError(
            f"'{name}': the column name at position {long[0]} of the header row is "
            f"{len(names[long[0] - 1]):,} characters long; names are limited to "
            f"{MAX_COLUMN_NAME_CHARS:,}. Is the first row really a header? Check the delimiter."
        )
    seen: dict[str, str] = {}
    dupes: list[str] = []
    for c in names:
        key = c.lower()
        if key in seen:
            dupes.append(c if c == seen[key] else f"{seen[key]}/{c}")
        seen.setdefault(key, c)
    if dupes:
        raise InputError(
            f"'{name}' has duplicated column names: {', '.join(repr(d) for d in dupes[:10])} "
            "(upper/lower case does not count as different). Rename them so each is unique."
        )


def _check_cells(frame: pd.DataFrame, name: str) -> None:
    for col in frame.columns:
        series = frame[col]
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            text = series if isinstance(series.dtype, pd.StringDtype) else series.astype("string")
            lengths = text.str.len()
            longest = lengths.max()
            if pd.notna(longest) and longest > MAX_CELL_CHARS:
                row = int(np.argmax(lengths.fillna(0).to_numpy())) + 1
                raise InputError(
                    f"'{name}': column '{col}', row {row:,} has a cell of {int(longest):,} "
                    f"characters; the limit is {MAX_CELL_CHARS:,}. Shorten or remove that cell."
                )


# --------------------------------------------------------------------------------------------
# Time formats (one family of formats per column, chosen on a sample)
# --------------------------------------------------------------------------------------------

_HMS = ("%H:%M:%S", "%H:%M", "%H:%M:%S.%f", "%I:%M:%S %p", "%I:%M %p")


def _family(dates: Iterable[str]) -> list[str]:
    return [f"{d} {t}" for d in dates for t in _HMS] + list(dates)


#: name -> list of strptime formats (tried in order per value); "iso" is a cast that also reads
#: time zones (converted to UTC). Order breaks ties: month-first before day-first.
TIME_FAMILIES: dict[str, list[str]] = {
    "iso": [],
    "Y/m/d": _family(["%Y/%m/%d", "%Y.%m.%d"]),
    "m/d/Y": _family(["%m/%d/%Y", "%m/%d/%y", "%m-%d-%Y"]),
    "d/m/Y": _family(["%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d.%m.%y", "%d-%m-%Y"]),
    "YYYYMMDD": ["%Y%m%d", "%Y%m%d%H%M%S", "%Y%m%d %H%M%S", "%Y%m%d %H:%M:%S"],
    "d Mon Y": _family(["%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%b-%y", "%b %d %Y", "%B %d %Y"])
    + _family(["%b %d, %Y", "%B %d, %Y", "%a, %d %b %Y"]),
}
_EPOCH_FAMILIES = ("epoch_s", "epoch_ms")
_TIME_NAME_RE = re.compile(
    r"(date|time|timestamp|datetime|^ts$|_at$|^at$|created|occurred|when)", re.I
)


def _ts_from_text(expr: str, family: str) -> str:
    """SQL turning VARCHAR ``expr`` into a naive-UTC TIMESTAMP (NULL when it does not parse)."""
    if family == "iso":
        # 'YYYY-MM-DD HH:MM:SS' is 19 characters; longer values may carry a time zone and take
        # the (3x slower) time-zone cast, which also reads values without one as UTC.
        parsed = (
            f"(CASE WHEN length({expr}) <= 19 THEN TRY_CAST({expr} AS TIMESTAMP) "
            f"ELSE timezone('UTC', TRY_CAST({expr} AS TIMESTAMPTZ)) END)"
        )
    elif family == "epoch_s":
        parsed = f"make_timestamp(TRY_CAST(TRY_CAST({expr} AS DOUBLE) * 1000000 AS BIGINT))"
    elif family == "epoch_ms":
        parsed = f"make_timestamp(TRY_CAST(TRY_CAST({expr} AS DOUBLE) * 1000 AS BIGINT))"
    else:  # our own fixed format strings (no user text goes into the SQL)
        formats = ", ".join("'" + f + "'" for f in TIME_FAMILIES[family])
        parsed = f"try_strptime({expr}, [{formats}])"
    return parsed


_DATABASE: duckdb.DuckDBPyConnection | None = None
_DATABASE_LOCK = threading.Lock()


def _new_connection() -> duckdb.DuckDBPyConnection:
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


def _best_time_family(
    con: duckdb.DuckDBPyConnection, values: pd.Series, *, allow_epoch: bool
) -> tuple[str | None, float]:
    """The format family parsing most of the sample values, and the fraction it parses."""
    return _best_time_families(con, {"v": (values, allow_epoch)})["v"]


def _best_time_families(
    con: duckdb.DuckDBPyConnection, columns: Mapping[str, tuple[pd.Series, bool]]
) -> dict[str, tuple[str | None, float]]:
    """Per column (values, allow_epoch): the best family and the fraction it parses.

    One query for all columns: each family is tried on up to 500 distinct values per column.
    Epoch seconds/milliseconds are only considered for time-like names and plausible numbers.
    """
    samples: dict[str, pd.Series] = {}
    for key, (values, _) in columns.items():
        sample = values.dropna().astype(str).str.strip()
        samples[key] = sample[sample != ""].drop_duplicates().head(500)
    families = list(TIME_FAMILIES) + list(_EPOCH_FAMILIES)
    counts = _count_parsed_many(con, {k: v for k, v in samples.items() if len(v)}, families)
    result: dict[str, tuple[str | None, float]] = {}
    for key, (_, allow_epoch) in columns.items():
        sample = samples[key]
        if key not in counts:
            result[key] = (None, 0.0)
            continue
        allowed = list(TIME_FAMILIES)
        if allow_epoch:
            numeric = _to_numeric_text(sample)
            if numeric.notna().mean() >= 0.9 and numeric.between(1e8, 1e13).all():
                allowed += list(_EPOCH_FAMILIES)
        scores = [(counts[key][families.index(f)], -i, f) for i, f in enumerate(allowed)]
        n, _, best = max(scores)
        if n == 0:
            result[key] = (None, 0.0)
        elif best in _EPOCH_FAMILIES:
            ms = _to_numeric_text(sample).median() > 1e11
            result[key] = ("epoch_ms" if ms else "epoch_s", n / len(sample))
        else:
            result[key] = (best, n / len(sample))
    return result


def _ambiguous_day_month(con: duckdb.DuckDBPyConnection, values: pd.Series, family: str) -> bool:
    """True when the sample parses equally well month-first and day-first."""
    if family not in ("m/d/Y", "d/m/Y"):
        return False
    sample = values.dropna().astype(str).str.strip().drop_duplicates().head(500)
    month_first, day_first = _count_parsed_many(con, {"v": sample}, ["m/d/Y", "d/m/Y"])["v"]
    return month_first == day_first


def _count_parsed_many(
    con: duckdb.DuckDBPyConnection, columns: Mapping[str, pd.Series], families: list[str]
) -> dict[str, list[int]]:
    """For each column of values: how many each family parses to a time in 1900..2100."""
    if not columns:
        return {}
    keys = list(columns)
    length = max(len(v) for v in columns.values())
    probe = pd.DataFrame(
        {
            f"c{j}": pd.Series(columns[k].to_numpy(dtype=object)).reindex(range(length))
            for j, k in enumerate(keys)
        },
        dtype=object,
    )
    con.register("_time_probe", probe)
    try:
        cells = [(j, i) for j in range(len(keys)) for i in range(len(families))]
        parsed = ", ".join(f"{_ts_from_text(f'c{j}', families[i])} AS f{j}_{i}" for j, i in cells)
        counts = ", ".join(
            f"count(CASE WHEN year(f{j}_{i}) BETWEEN 1900 AND 2100 THEN 1 END)" for j, i in cells
        )
        # Only our own format constants are in this text; the values are a registered frame.
        sql = f"SELECT {counts} FROM (SELECT {parsed} FROM _time_probe)"  # noqa: S608
        row = con.execute(sql).fetchall()[0]
    finally:
        con.unregister("_time_probe")
    n = len(families)
    return {k: [int(x) for x in row[j * n : (j + 1) * n]] for j, k in enumerate(keys)}


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    name: str
    tokens: tuple[str, ...]
    key: str  # lower-case name with only letters and digits
    is_datetime: bool
    numeric_frac: float
    integer_frac: float
    time_frac: float
    time_family: str | None
    mean_len: float
    distinct: int
    distinct_ratio: float
    non_null: int
    min: float
    max: float
    has_spaces: float
    decimal_frac: float  # share of values written with decimals (12.00) or fractional
    has_digits: bool


def _tokens(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return tuple(t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t)


def _sample(frame: pd.DataFrame, n: int = 20_000) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    step = len(frame) // n
    return frame.iloc[::step].head(n)


def _numeric(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return pd.to_numeric(series, errors="coerce").astype(float)
    plain = _to_numeric_text(series)
    if plain.notna().mean() >= 0.99:
        return plain.astype(float)
    text = series.astype("string").str.strip().str.lower()
    text = text.replace({"true": "1", "false": "0", "yes": "1", "no": "0"})
    cleaned = text.str.replace(r"[\s$€£¥]", "", regex=True).str.replace(",", "", regex=False)
    return _to_numeric_text(cleaned).astype(float)


def _to_numeric_text(series: pd.Series) -> pd.Series:
    """Text to float (NaN where it is not a number), one value at a time in Python.

    Used on detection samples (at most 20,000 values). ``pd.to_numeric(errors="coerce")`` is
    not used here: pandas 2.3 crashed the interpreter (segmentation fault) on some generated
    hostile files, with string and with object input alike.
    """

    def convert(value: object) -> float:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return float("nan")
        try:
            return float(str(value))
        except (ValueError, OverflowError):
            return float("nan")

    return pd.Series([convert(v) for v in series.tolist()], index=series.index, dtype=float)


def _profiles(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> list[_Profile]:
    """Profiles of every column; the time-format probe runs once for all columns."""
    profiles = [_profile(str(c), frame[c]) for c in frame.columns]
    probe = {}
    for p, col in zip(profiles, frame.columns, strict=True):
        series = frame[col].dropna()
        integer = pd.api.types.is_integer_dtype(series)
        textual = not pd.api.types.is_numeric_dtype(series) and not p.is_datetime
        if p.non_null and (integer or (textual and p.has_digits)):
            probe[p.name] = (series, bool(_TIME_NAME_RE.search(p.name)))
    found = _best_time_families(con, probe)
    return [
        replace(p, time_family=found[p.name][0], time_frac=found[p.name][1])
        if p.name in found
        else p
        for p in profiles
    ]


def _profile(name: str, series: pd.Series) -> _Profile:
    non_null = series.dropna()
    if not pd.api.types.is_numeric_dtype(non_null) and not pd.api.types.is_datetime64_any_dtype(
        non_null
    ):
        as_text = non_null.astype("string").str.strip()
        non_null = non_null[(as_text != "") & ~as_text.str.lower().isin(_NULL_TEXT)]
    n = len(non_null)
    is_dt = pd.api.types.is_datetime64_any_dtype(series)
    numbers = _numeric(non_null) if n and not is_dt else pd.Series(dtype=float)
    num_ok = numbers.dropna()
    numeric_frac = len(num_ok) / n if n else 0.0
    integer_frac = float((num_ok == num_ok.round()).mean()) if len(num_ok) else 0.0
    text = non_null.astype("string") if n else pd.Series(dtype="string")
    time_family, time_frac = ("native", 1.0) if is_dt else (None, 0.0)
    if pd.api.types.is_float_dtype(non_null):
        decimal_frac = 1.0 - integer_frac
    elif n and not pd.api.types.is_numeric_dtype(non_null):
        decimal_frac = float(text.str.contains(r"\d\.\d|\d,\d{1,2}$", regex=True).mean())
    else:
        decimal_frac = 0.0
    distinct = int(non_null.nunique()) if n else 0
    return _Profile(
        name=name,
        tokens=_tokens(name),
        key=re.sub(r"[^a-z0-9]", "", str(name).lower()),
        is_datetime=is_dt,
        numeric_frac=numeric_frac,
        integer_frac=integer_frac,
        time_frac=time_frac,
        time_family=time_family,
        mean_len=float(text.str.len().mean()) if n else 0.0,
        distinct=distinct,
        distinct_ratio=distinct / n if n else 0.0,
        non_null=n,
        min=float(num_ok.min()) if len(num_ok) else np.nan,
        max=float(num_ok.max()) if len(num_ok) else np.nan,
        has_spaces=float(text.str.contains(" ", regex=False).mean()) if n else 0.0,
        decimal_frac=decimal_frac,
        has_digits=bool(text.str.contains(r"\d").any()) if n else False,
    )


# Name vocabularies: exact keys (letters+digits only, lower case) score high, tokens lower.
_USER_KEYS = {
    "customerid", "customer", "userid", "user", "uid", "clientid", "client", "memberid", "accountid",
    "visitorid", "shopperid", "buyerid", "custid", "cid", "personid", "householdid", "contactid",
    "customerno", "customernumber", "customerkey", "userkey", "subscriberid", "playerid", "email",
}  # fmt: skip
_USER_TOKENS = {
    "customer", "user", "client", "member", "account", "visitor", "shopper", "buyer", "cust",
    "subscriber", "player", "household", "uid", "kunde", "kunden", "cliente", "klant",
}  # fmt: skip
_TIME_TOKENS = {"date", "time", "timestamp", "datetime", "ts", "at", "created", "occurred", "when",
                "day", "datum", "fecha", "zeit"}  # fmt: skip
_AMOUNT_KEYS = {
    "amount", "revenue", "sales", "spend", "total", "value", "totalprice", "totalamount",
    "ordervalue", "gmv", "payment", "dollarvalue", "monetary", "subtotal", "linetotal", "turnover",
    "sum", "net", "gross", "amountspent", "totalspend",
}  # fmt: skip
_AMOUNT_TOKENS = {"amount", "revenue", "sales", "spend", "spent", "total", "value", "dollar", "dollars",
                  "usd", "eur", "gbp", "gmv", "payment", "paid", "monetary", "turnover", "betrag",
                  "umsatz", "importe", "montant", "bedrag"}  # fmt: skip
_QUANTITY_TOKENS = {"quantity", "qty", "units", "count", "number", "cds", "items", "pieces"}
_PRICE_TOKENS = {"price", "unitprice", "cost", "rate"}
_TEXT_TOKENS = {
    "description", "desc", "text", "review", "comment", "comments", "query", "search", "title",
    "product", "productname", "item", "itemname", "message", "body", "content", "keywords",
    "note", "notes", "summary", "name", "beschreibung", "descripcion", "produkt", "producto",
}  # fmt: skip
_EVENT_KEYS = {"event", "eventtype", "eventname", "type", "action", "activity", "eventcategory",
               "kind", "interaction", "behavior", "behaviour", "eventaction"}  # fmt: skip
_ACTION_KEYS = {"treatment", "action", "segment", "campaign", "offer", "arm", "variant", "group",
                "treat", "assignment", "intervention", "promotion", "strategy", "mailing"}  # fmt: skip
#: Outcome names by preference: retention-like binary outcomes first (Hillstrom: visit).
_OUTCOME_KEYS = ["visit", "visited", "retained", "retention", "active", "returned", "converted",
                 "conversion", "response", "responded", "outcome", "target", "label", "reward",
                 "purchase", "purchased", "bought", "clicked", "click", "opened", "open", "y",
                 "spend", "revenue", "sales", "amount"]  # fmt: skip
_PROPENSITY_KEYS = {"propensity", "pscore", "ps", "prob", "probability", "propensityscore",
                    "ptreat", "ptreatment", "pi", "treatmentprobability"}  # fmt: skip
_RECENCY_TOKENS = {"recency", "since", "inactive", "lastpurchase", "last"}


def _name_score(p: _Profile, keys: Iterable[str], tokens: Iterable[str]) -> float:
    if p.key in set(keys):
        return 1.0
    if set(p.tokens) & set(tokens):
        return 0.6
    return 0.0


def _score_user(p: _Profile, shape: str) -> float:
    if p.is_datetime or p.non_null == 0:
        return 0.0
    if p.numeric_frac > 0.9 and p.integer_frac < 0.99:
        return 0.0  # fractional numbers are not ids
    if p.time_frac > 0.9 and p.numeric_frac < 0.9:
        return 0.0
    name = _name_score(p, _USER_KEYS, _USER_TOKENS)
    if name and ("id" in p.tokens or p.key.endswith("id") or p.key in _USER_KEYS):
        name += 0.2
    repeats = p.distinct_ratio < 0.95
    if name:
        return name + (0.1 if repeats or shape == "snapshot" else 0.0)
    # Content only: short codes (ints or words without spaces) that repeat, e.g. CDNOW column0.
    short_codes = repeats and p.distinct >= 2 and p.mean_len <= 24 and p.has_spaces < 0.05
    if shape == "events" and short_codes and p.numeric_frac > 0.99 and p.integer_frac > 0.99:
        return 0.3 if p.time_frac < 0.5 else 0.0
    return 0.0


def _score_time(p: _Profile) -> float:
    if p.time_frac < 0.8 and not p.is_datetime:
        return 0.0
    name = 0.4 if (set(p.tokens) & _TIME_TOKENS or _TIME_NAME_RE.search(p.name)) else 0.0
    return 0.5 + name + 0.1 * p.time_frac


def _score_amount(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or p.is_datetime or (p.time_frac > 0.9 and p.integer_frac > 0.99):
        return 0.0
    name = _name_score(p, _AMOUNT_KEYS, _AMOUNT_TOKENS)
    if name:
        return name
    if p.decimal_frac > 0.5 and (np.isnan(p.min) or p.min >= 0) and p.distinct > 10:
        return 0.3  # money-like: written with decimals, not negative
    return 0.0


def _score_text(p: _Profile) -> float:
    if p.numeric_frac > 0.5 or p.is_datetime or p.time_frac > 0.5 or p.non_null == 0:
        return 0.0
    length_bonus = min(p.mean_len, 60) / 600  # breaks ties toward longer text
    name = _name_score(p, _TEXT_TOKENS, _TEXT_TOKENS)
    if name and p.distinct >= 2:
        return name + length_bonus
    if p.mean_len >= 10 and p.distinct >= 50 and p.has_spaces > 0.3:
        return 0.3 + length_bonus
    return 0.0


def _score_event(p: _Profile) -> float:
    if p.numeric_frac > 0.5 or p.is_datetime or not (1 <= p.distinct <= 50):
        return 0.0
    return _name_score(p, _EVENT_KEYS, {"event", "activity", "interaction"})


def _score_action(p: _Profile) -> float:
    if p.is_datetime or not (2 <= p.distinct <= 20):
        return 0.0
    if p.key in _ACTION_KEYS:
        return 1.0
    if set(p.tokens) & (_ACTION_KEYS - {"segment", "group"}):
        return 0.6
    return 0.0


def _score_outcome(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or p.is_datetime:
        return 0.0
    for rank, key in enumerate(_OUTCOME_KEYS):
        if p.key == key or key in p.tokens:
            return 1.0 - rank * 0.01 - (0.0 if p.key == key else 0.3)
    return 0.0


def _score_propensity(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or np.isnan(p.min) or p.min <= 0 or p.max > 1:
        return 0.0
    return _name_score(p, _PROPENSITY_KEYS, {"propensity", "pscore", "probability"})


def _score_recency(p: _Profile) -> float:
    if p.numeric_frac < 0.9 or (not np.isnan(p.min) and p.min < 0):
        return 0.0
    if p.key == "recency" or "recency" in p.tokens:
        return 1.0
    if set(p.tokens) & _RECENCY_TOKENS and ("days" in p.tokens or "months" in p.tokens):
        return 0.6
    return 0.0


_SCORERS = {
    "time": lambda p, shape: _score_time(p),
    "user": _score_user,
    "amount": lambda p, shape: _score_amount(p),
    "text": lambda p, shape: _score_text(p),
    "event": lambda p, shape: _score_event(p),
    "action": lambda p, shape: _score_action(p),
    "outcome": lambda p, shape: _score_outcome(p),
    "propensity": lambda p, shape: _score_propensity(p),
    "recency": lambda p, shape: _score_recency(p),
}


def _assign(
    profiles: list[_Profile], roles: tuple[str, ...], shape: str
) -> tuple[dict[str, str | None], dict[str, tuple[str, ...]], dict[tuple[str, str], float]]:
    """Greedy assignment: the best (role, column) score first, each column used once."""
    scores = {(role, p.name): _SCORERS[role](p, shape) for role in roles for p in profiles}
    candidates = {
        role: tuple(
            name
            for name, s in sorted(
                ((p.name, scores[(role, p.name)]) for p in profiles), key=lambda x: -x[1]
            )
            if s > 0
        )
        for role in roles
    }
    order = {role: i for i, role in enumerate(roles)}
    chosen: dict[str, str | None] = {role: None for role in roles}
    used: set[str] = set()
    for (role, name), score in sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0][0]])):
        if score <= 0 or chosen[role] is not None or name in used:
            continue
        chosen[role] = name
        used.add(name)
    return chosen, candidates, scores


def _derived_amount(profiles: list[_Profile], used: set[str]) -> str | None:
    """'Quantity*UnitPrice' when a quantity and a price column exist (and no amount column)."""
    numeric = [
        p for p in profiles if p.numeric_frac >= 0.9 and p.name not in used and not p.is_datetime
    ]
    quantity = next(
        (p for p in numeric if set(p.tokens) & _QUANTITY_TOKENS and p.integer_frac > 0.9), None
    )
    price = next(
        (p for p in numeric if set(p.tokens) & _PRICE_TOKENS or p.key in _PRICE_TOKENS), None
    )
    if quantity and price and quantity.name != price.name:
        return f"{quantity.name}*{price.name}"
    if price:
        return price.name
    return None


def detect_roles(df: pd.DataFrame, shape: Shape | None = None) -> Detection:
    """Suggest the shape and the role → column mapping from names and contents.

    Shape: ``snapshot`` when there is no time column but an action-like and an outcome-like
    column (Hillstrom), or when ids are unique per row with action and outcome present;
    otherwise ``events``. Pass ``shape`` to force one. For snapshots the default outcome is the
    first of visit / retained / active / converted / conversion / ... / spend / revenue found, so
    a retention-like binary outcome wins over spend; the others are listed in ``candidates``.
    """
    if shape is not None and shape not in ("events", "snapshot"):
        raise InputError(f"The 'shape' parameter must be 'events' or 'snapshot'. Got {shape!r}.")
    con = _new_connection()
    sample = _sample(df, 5000)
    profiles = _profiles(con, sample)
    ev_roles, ev_cands, ev_scores = _assign(profiles, EVENT_ROLES, "events")
    sn_roles, sn_cands, _ = _assign(profiles, SNAPSHOT_ROLES, "snapshot")
    if shape is None:
        has_time = ev_roles["time"] is not None
        has_treatment = sn_roles["action"] is not None and sn_roles["outcome"] is not None
        user = next((p for p in profiles if p.name == ev_roles.get("user")), None)
        unique_users = user is not None and user.distinct_ratio > 0.95
        shape = "snapshot" if has_treatment and (not has_time or unique_users) else "events"
    roles, cands = (ev_roles, ev_cands) if shape == "events" else (sn_roles, sn_cands)
    notes: list[str] = []
    why: dict[str, str] = {}
    by_name = {p.name: p for p in profiles}
    amount = roles.get("amount")
    if shape == "events" and (amount is None or ev_scores[("amount", amount)] < 0.6):
        # No amount-named column: quantity × price beats a column picked by content alone.
        used = {c for r, c in roles.items() if c and r != "amount"}
        derived = _derived_amount(profiles, used)
        if derived and derived != amount:
            roles["amount"] = derived
            cands["amount"] = (derived, *(c for c in cands["amount"] if c != derived))
            why["amount"] = (
                f"no amount column; amount = {derived.replace('*', ' × ')} (derived)"
                if "*" in derived
                else f"price column '{derived}'"
            )
    for role, col in roles.items():
        if col and role not in why:
            p = by_name[col]
            why[role] = _why(role, p)
    time_format = None
    if shape == "events" and roles["time"]:
        p = by_name[roles["time"]]
        time_format = p.time_family
        if time_format in ("m/d/Y", "d/m/Y") and _ambiguous_day_month(
            con, sample[roles["time"]], time_format
        ):
            notes.append(
                f"Dates in '{roles['time']}' read month-first (e.g. 01/02/2011 = 2 January); none "
                "of the sampled dates has a day above 12, so day-first would also fit."
            )
    con.close()
    return Detection(
        shape=shape,
        roles=roles,
        candidates=cands,
        why=why,
        columns=tuple(str(c) for c in df.columns),
        time_format=time_format,
        notes=tuple(notes),
    )


def _why(role: str, p: _Profile) -> str:
    facts = []
    if role == "time":
        facts.append(f"{p.time_frac:.0%} of sampled values are dates ({p.time_family})")
    elif role in ("amount", "outcome", "propensity", "recency"):
        facts.append(f"numeric, {p.min:g} to {p.max:g}")
    elif role == "user":
        facts.append(f"{p.distinct:,} distinct values in the sample")
    elif role == "text":
        facts.append(f"text, {p.mean_len:.0f} characters on average, {p.distinct:,} distinct")
    else:
        facts.append(f"{p.distinct} distinct values")
    return f"column '{p.name}': " + ", ".join(facts)


# --------------------------------------------------------------------------------------------
# Preparing (validation in SQL)
# --------------------------------------------------------------------------------------------


def _quote(identifier: str) -> str:
    """A safely quoted SQL identifier (any text, including quotes, is just a name)."""
    return '"' + str(identifier).replace('"', '""') + '"'


def _safe_name(name: str, taken: set[str]) -> str:
    """Letters, digits and underscores only; unique (case-insensitively) among ``taken``."""
    base = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "column"
    if base[0].isdigit():
        base = "c_" + base
    candidate, n = base, 2
    while candidate.lower() in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate.lower())
    return candidate


def _resolve_mapping(
    mapping: Mapping[str, str | None],
    roles: tuple[str, ...],
    columns: list[str],
    kind: str,
    name: str,
) -> dict[str, str]:
    """Check the mapping: known roles, existing columns, required roles present."""
    resolved: dict[str, str] = {}
    for role, col in mapping.items():
        if role not in roles:
            raise InputError(
                f"Unknown role '{role}' for {'a ' + kind if kind != 'events' else 'an event log'}. "
                f"Allowed roles: {', '.join(roles)}."
            )
        if col is None or str(col).strip() == "":
            continue
        col = str(col)
        parts = [col] if col in columns or role != "amount" or "*" not in col else col.split("*")
        missing = [c for c in parts if c not in columns]
        if missing:
            shown = ", ".join(repr(c) for c in columns[:30]) + (" ..." if len(columns) > 30 else "")
            raise InputError(
                f"Column '{missing[0]}' (mapped to {role}) is not in '{name}'. Its columns are: "
                f"{shown}. Fix it with {_FIX_HINT.format(role=role, label=_ROLE_LABELS[role])}."
            )
        resolved[role] = col
    for role in REQUIRED_ROLES[kind]:
        if role not in resolved:
            raise InputError(_missing_role_message(role, kind, name, columns))
    return resolved


def _missing_role_message(role: str, kind: str, name: str, columns: list[str]) -> str:
    what = {
        "user": "that identifies the user (customer id, user id, ...)",
        "time": "with the date/time of each event",
        "action": "with the treatment each user got (e.g. 'segment', 'treatment')",
        "outcome": "with the outcome (e.g. 'visit', 'conversion', 'spend')",
    }[role]
    shape_name = {
        "events": "an event log",
        "snapshot": "a campaign snapshot",
        "campaigns": "a campaign log",
    }[kind]
    shown = ", ".join(repr(c) for c in columns[:30]) + (" ..." if len(columns) > 30 else "")
    return (
        f"No column {what} was found in '{name}', which {shape_name} needs. Columns: {shown}. "
        f"Name it with {_FIX_HINT.format(role=role, label=_ROLE_LABELS[role])}."
    )


def _is_number_type(t: duckdb.typing.DuckDBPyType | str) -> bool:
    return str(t).split("(")[0] in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
    }  # fmt: skip


def _is_float_type(t: Any) -> bool:
    return str(t).split("(")[0] in {"FLOAT", "DOUBLE", "DECIMAL"}


# The expression builders below take ``v``: the name of a value prepared by _validate's first
# layer — the source column itself for typed columns (numbers, timestamps), or the column
# trimmed and cast to VARCHAR for text. Trimming once there keeps the per-row work small.


def _is_text_type(t: Any) -> bool:
    return not (_is_number_type(t) or str(t).startswith(("TIMESTAMP", "DATE", "BOOLEAN")))


def _prepared_value(col: str, t: Any) -> str:
    """SQL for the first layer: the column, trimmed to VARCHAR when it holds text."""
    if not _is_text_type(t):
        return _quote(col)
    text = f"CAST({_quote(col)} AS VARCHAR)"
    # trim() only where needed: the LIKE tests are twice as fast as trimming every value.
    return f"(CASE WHEN {text} LIKE ' %' OR {text} LIKE '% ' THEN trim({text}) ELSE {text} END)"


def _text_expr(v: str, t: Any) -> str:
    """VARCHAR, NULL when blank."""
    return f"NULLIF({v}, '')" if _is_text_type(t) else f"CAST({v} AS VARCHAR)"


def _id_expr(v: str, t: Any) -> str:
    """String ids: 17850.0 → '17850'; '00123' kept; blank and placeholder tokens → NULL."""
    if _is_float_type(t):
        return (
            f"(CASE WHEN isfinite(CAST({v} AS DOUBLE)) AND {v} = round({v}) AND abs({v}) < 1e15 "
            f"THEN CAST(CAST({v} AS BIGINT) AS VARCHAR) ELSE CAST({v} AS VARCHAR) END)"
        )
    if not _is_text_type(t):
        return f"CAST({v} AS VARCHAR)"
    return (
        f"(CASE WHEN length({v}) <= 7 AND list_contains($missing, lower({v})) THEN NULL "
        f"WHEN contains({v}, '.') THEN regexp_replace({v}, '^([0-9]+)\\.0+$', '\\1') "
        f"ELSE {v} END)"
    )


def _decimal_comma(values: pd.Series) -> bool:
    text = values.dropna().astype(str).str.strip().head(2000)
    comma = text.str.match(r"^[-+]?[$€£¥]?\d{1,3}(\.\d{3})*,\d+$|^[-+]?\d+,\d{1,2}$").sum()
    dot = text.str.match(r"^[-+]?[$€£¥]?\d+\.\d+$|^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$").sum()
    return bool(comma > dot)


def _number_expr(v: str, t: Any, sample: pd.Series | None) -> str:
    """DOUBLE from a numeric or text value (currency signs, thousands separators, booleans)."""
    if not _is_text_type(t):
        return f"CAST({v} AS DOUBLE)"
    text = f"lower({v})"
    decimal_comma = sample is not None and _decimal_comma(sample)
    if decimal_comma:
        cleaned = f"replace(regexp_replace({text}, '[\\s$€£¥.]', '', 'g'), ',', '.')"
    else:
        cleaned = f"regexp_replace({text}, '[\\s$€£¥,]', '', 'g')"
    slow = (
        f"(CASE WHEN {text} IN ('true', 'yes', 'y', 't') THEN 1.0 "
        f"WHEN {text} IN ('false', 'no', 'n', 'f') THEN 0.0 "
        f"ELSE TRY_CAST({cleaned} AS DOUBLE) END)"
    )
    if decimal_comma:  # "1.234" means 1234 here, so no plain cast first
        return slow
    return f"coalesce(TRY_CAST({v} AS DOUBLE), {slow})"  # plain numbers skip the regex


def _blank_expr(v: str, t: Any) -> str:
    """TRUE when a cell is missing (NULL, blank or a placeholder like 'NA')."""
    if not _is_text_type(t):
        return f"({v} IS NULL)"
    return f"({v} IS NULL OR list_contains($missing, lower({v})))"


def _time_expr(v: str, t: Any, family: str | None) -> str:
    kind = str(t)
    if kind.startswith("TIMESTAMP WITH TIME ZONE") or kind == "TIMESTAMPTZ":
        return f"timezone('UTC', {v})"
    if kind.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({v} AS TIMESTAMP)"
    if family in (None, "native"):
        return "CAST(NULL AS TIMESTAMP)"
    if _is_number_type(t) and family not in _EPOCH_FAMILIES:
        text = f"CAST(TRY_CAST({v} AS BIGINT) AS VARCHAR)"
    else:
        text = f"CAST({v} AS VARCHAR)"
    return f"CAST({_ts_from_text(text, family)} AS TIMESTAMP)"


class _Source:
    """A relation in a private DuckDB connection, with its column types and a pandas sample."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, relation: str, name: str, sample: pd.DataFrame
    ):
        self.con = con
        self.relation = relation
        self.name = name
        self.sample = sample
        described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()  # noqa: S608
        self.types = {str(row[0]): row[1] for row in described}
        self.columns = list(self.types)


def _register_frame(
    con: duckdb.DuckDBPyConnection, df: pd.DataFrame, name: str, alias: str
) -> _Source:
    """Register a pandas frame, making mixed-type object columns plain strings first."""
    _check_columns(list(df.columns), name)
    frame = df.copy(deep=False)
    frame.columns = [str(c) for c in frame.columns]
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in (
            "string",
            "empty",
        ):
            frame[col] = s.where(s.isna(), s.astype(str))  # mixed types (e.g. JSON ids) → text
    con.register(alias, frame)
    return _Source(con, alias, name, _sample(frame, 5000))


def _time_family_for(source: _Source, col: str) -> str | None:
    """The format family that parses most of the column's sample (None when none parses)."""
    family, _ = _best_time_family(
        source.con, source.sample[col].astype("string"), allow_epoch=bool(_TIME_NAME_RE.search(col))
    )
    return family


def _validate(
    source: _Source,
    kind: str,
    mapping: dict[str, str],
    time_format: str | None = None,
    read_notes: Iterable[str] = (),
    skipped: tuple[int, ...] = (),
    skipped_count: int = 0,
) -> tuple[pd.DataFrame | StagedTable, ValidationReport, _Stats]:
    """One SQL pass: parse the mapped columns, tag each row with its first rejection reason.

    Three layers: ``parsed`` (expressions over the source columns), ``derived`` (expressions
    over parsed values), then the reason — the first failed check, in the order of ``checks``.
    """
    con, types = source.con, source.types
    notes = list(read_notes)
    parsed: list[tuple[str, str]] = []  # (SQL over source columns, alias)
    derived: list[tuple[str, str]] = []  # (SQL over parsed aliases, alias)
    checks: list[tuple[str, str]] = []  # (reason, SQL condition over derived aliases)
    output: list[str] = []  # canonical columns, in order
    values: dict[str, str] = {}  # source column -> alias of its prepared value (first layer)
    passed: list[tuple[str, str]] = []  # other first-layer columns (flags over source columns)

    def v(col: str) -> str:
        if col not in values:
            values[col] = f"_v{len(values)}"
        return values[col]

    def number(col: str) -> str:
        return _number_expr(v(col), types[col], source.sample.get(col))

    user = mapping.get("user")
    if user:
        parsed.append((_id_expr(v(user), types[user]), "user_id"))
        checks.append(("no user id", "user_id IS NULL"))
    else:
        parsed.append(("CAST(_row AS VARCHAR)", "user_id"))
        notes.append("No user column: each row is its own user (user_id = row number).")
    output.append("user_id")

    if kind in ("events", "campaigns"):
        tcol = mapping["time"]
        ttype = types[tcol]
        if str(ttype).startswith(("TIMESTAMP", "DATE")):
            family: str | None = "native"
        else:
            family = time_format or _time_family_for(source, tcol)
        if family is None:
            examples = source.sample[tcol].dropna().astype(str).head(3).tolist()
            raise InputError(
                f"No value in the time column '{tcol}' of '{source.name}' reads as a date/time "
                f"(e.g. {examples}). Use dates like 2011-12-09 14:30, 12/9/2011 14:30 or "
                f"20111209, or map another column with "
                f"{_FIX_HINT.format(role='time', label=_ROLE_LABELS['time'])}."
            )
        parsed.append((_time_expr(v(tcol), ttype, family), "_ts"))
        derived.append(("CASE WHEN year(_ts) BETWEEN 1900 AND 2100 THEN _ts END", "ts"))
        # Blank checks sit inside the reason's CASE, so they only run on rows that failed.
        checks.append(("no time", f"ts IS NULL AND {_blank_expr(v(tcol), ttype)}"))
        checks.append(("unparseable time", "ts IS NULL"))
        output.append("ts")
        if family not in ("native", "iso"):
            notes.append(f"Times in '{tcol}' were read as {family}.")

    if kind == "events":
        amount = mapping.get("amount")
        if amount:
            parts = [amount] if amount in types else amount.split("*")
            for i, part in enumerate(parts):
                parsed.append((number(part), f"_n{i}"))
            product = " * ".join(f"_n{i}" for i in range(len(parts)))
            derived.append((product, "amount"))
            cancel = _cancel_column(source, set(mapping.values()))
            if cancel:
                flag = f"coalesce(upper(trim(CAST({_quote(cancel)} AS VARCHAR))) LIKE 'C%', false)"
                passed.append((flag, "_cancel"))
                checks.append((f"cancellation ({cancel} starts with C)", "_cancel"))
            negative = " OR ".join(f"_n{i} < 0" for i in range(len(parts)))
            checks.append(("negative quantity or amount", f"({negative} OR amount < 0)"))
            blank = " OR ".join(_blank_expr(v(p), types[p]) for p in parts)
            checks.append(("unparseable amount", f"amount IS NULL AND NOT ({blank})"))
        else:
            derived.append(("CAST(NULL AS DOUBLE)", "amount"))
        output.append("amount")
        for role in ("text", "event"):
            col = mapping.get(role)
            expr = _text_expr(v(col), types[col]) if col else "CAST(NULL AS VARCHAR)"
            parsed.append((expr, role))
            output.append(role)

    if kind in ("snapshot", "campaigns"):
        acol = mapping["action"]
        parsed.append((_text_expr(v(acol), types[acol]), "action"))
        checks.append(("no action", "action IS NULL"))
        output.append("action")
    if kind == "snapshot":
        ocol = mapping["outcome"]
        parsed.append((number(ocol), "outcome"))
        checks.append(("no outcome", f"outcome IS NULL AND {_blank_expr(v(ocol), types[ocol])}"))
        checks.append(("unparseable outcome", "outcome IS NULL"))
        output.append("outcome")
    if kind in ("snapshot", "campaigns"):
        pcol = mapping.get("propensity")
        parsed.append((number(pcol) if pcol else "CAST(NULL AS DOUBLE)", "propensity"))
        if pcol:
            checks.append(
                (
                    "propensity missing or outside (0, 1]",
                    "propensity IS NULL OR propensity <= 0 OR propensity > 1",
                )
            )
        output.append("propensity")
    if kind == "snapshot":
        rcol = mapping.get("recency")
        if rcol:
            parsed.append((number(rcol), "recency"))
            blank = _blank_expr(v(rcol), types[rcol])
            checks.append(
                (
                    "unparseable or negative recency",
                    f"(recency IS NULL AND NOT {blank}) OR recency < 0",
                )
            )
        else:
            parsed.append(("CAST(NULL AS DOUBLE)", "recency"))
        output.append("recency")

    # Original values of the mapped columns, shown next to rejected rows.
    raw_cols: list[str] = []
    for col in mapping.values():
        for part in [col] if col in types else col.split("*"):
            if part not in raw_cols:
                raw_cols.append(part)
    raw = [(f"CAST({_quote(c)} AS VARCHAR)", f"_raw{i}") for i, c in enumerate(raw_cols)]

    extras: list[tuple[str, str]] = []
    if kind != "campaigns":
        direct = {c for c in mapping.values() if c in types}
        taken = {c.lower() for c in output} | _EXTRA_RESERVED
        for col in source.columns:
            if col in direct:
                continue
            safe = _safe_name(col, taken)
            if safe != col:
                notes.append(f"Column {col!r} is kept as '{safe}'.")
            extras.append((_quote(col), safe))

    def columns(items: list[tuple[str, str]]) -> str:
        return ", ".join(f"{expr} AS {alias}" for expr, alias in items)

    reason = "CAST(NULL AS INTEGER)"
    if checks:  # the reason is stored as its index in ``checks``: no text goes into the SQL
        whens = " ".join(f"WHEN {cond} THEN {i}" for i, (_, cond) in enumerate(checks))
        reason = f"CASE {whens} END"
    prepared = [(_prepared_value(col, types[col]), alias) for col, alias in values.items()]
    first = columns(prepared + passed + raw + [(col, _quote(safe)) for col, safe in extras])
    middle = f", {columns(derived)}" if derived else ""
    # SQL text holds only identifiers quoted by _quote and our own constants; user values are
    # data in the registered frame and bound parameters ($missing, ?).
    # Row numbers: the table's rowid (DuckDB keeps insertion order, so rowid + 1 is the data
    # row). Only a snapshot without a user column needs them inside the query (as user ids).
    if user:
        first_rows = f"SELECT {first} FROM {source.relation}"  # noqa: S608
    else:
        numbered = f"SELECT row_number() OVER () AS _row, * FROM {source.relation}"  # noqa: S608
        first_rows = f"SELECT _row, {first} FROM ({numbered})"  # noqa: S608
    parsed_rows = f"SELECT *, {columns(parsed)} FROM ({first_rows})"  # noqa: S608
    derived_rows = f"SELECT *{middle} FROM ({parsed_rows})"  # noqa: S608
    checked = f"SELECT *, {reason} AS _reason FROM ({derived_rows})"  # noqa: S608
    # Keep only what is read afterwards; raw values only for rejected rows (samples).
    kept = ["_reason", *output, *(_quote(safe) for _, safe in extras)]
    kept += [f"CASE WHEN _reason IS NOT NULL THEN {alias} END AS {alias}" for _, alias in raw]
    slim = f"SELECT {', '.join(kept)} FROM ({checked})"  # noqa: S608
    kept_columns = output + [safe for _, safe in extras]
    raw_aliases = [alias for _, alias in raw]
    per_code = np.zeros(len(checks) + 1, dtype=np.int64)  # [ok, check 0, check 1, ...]
    firsts: dict[int, list[np.ndarray]] = {code: [] for code in range(len(checks))}
    shown: dict[int, list[pa.Table]] = {code: [] for code in range(len(checks))}
    sink = _Sink(kept_columns)
    try:
        # One streaming pass in batches (DuckDB keeps the input order, so position = row): the
        # reasons are counted and sampled per batch and the rows kept go to the sink, which
        # moves them to a Parquet file on disk once they outgrow memory (SPILL_ROWS).
        params = {"missing": _MISSING_TOKENS} if "$missing" in slim else None
        reader = con.sql(slim, params=params).fetch_record_batch(BATCH_ROWS)
        sink.schema = pa.schema([reader.schema.field(c) for c in kept_columns])
        offset = 0
        for batch in reader:
            codes = pc.fill_null(batch.column("_reason"), -1).to_numpy(zero_copy_only=False)
            per_code += np.bincount(codes + 1, minlength=len(checks) + 1)
            for code in range(len(checks)):
                have = sum(len(f) for f in firsts[code])
                if have < 5 and per_code[code + 1]:
                    found = np.flatnonzero(codes == code)[: 5 - have]
                    if len(found):
                        firsts[code].append(found + offset)
                        part = pa.Table.from_batches([batch]).select(raw_aliases)
                        shown[code].append(part.take(pa.array(found)))
            ok = codes == -1
            kept = batch if ok.all() else batch.filter(pa.array(ok))
            sink.add(pa.Table.from_batches([kept]).select(kept_columns))
            offset += len(codes)
    except duckdb.Error as exc:
        sink.discard()
        raise _duckdb_input_error(exc, source.name) from None

    rows_used = int(per_code[0])
    samples: dict[str, pd.DataFrame] = {}
    reason_rows: list[dict[str, Any]] = []
    if skipped_count:
        reason_rows.append(
            {
                "reason": "malformed line (wrong number of fields)",
                "rows": skipped_count,
                "sample": list(skipped[:5]),
            }
        )
        notes.append("Malformed lines are numbered by file line, other samples by data row.")
    for code, (reason_text, _) in enumerate(checks):
        count = int(per_code[code + 1])
        if not count:
            continue
        first = np.concatenate(firsts[code])
        frame = pa.concat_tables(shown[code]).rename_columns(raw_cols).to_pandas()
        frame.insert(0, "row", first + 1)
        samples[reason_text] = frame
        reason_rows.append(
            {"reason": reason_text, "rows": count, "sample": [int(x) for x in first + 1]}
        )
    rows = offset + skipped_count
    report = ValidationReport(
        rows=int(rows),
        rows_used=rows_used,
        rows_rejected=int(rows - rows_used),
        reasons=pd.DataFrame(reason_rows, columns=["reason", "rows", "sample"]),
        samples=samples,
        notes=tuple(notes),
    )
    result = sink.finish()
    try:
        stats = _stats(con, result, "action" in output)
    except BaseException:
        if isinstance(result, StagedTable):
            result.discard()
        raise
    report = replace(report, users=stats.users)
    return (result if isinstance(result, StagedTable) else _to_pandas(result)), report, stats


#: Rows fetched from DuckDB per batch while validating.
BATCH_ROWS = 1_000_000
#: Validated rows held in memory at most; beyond, they are written to a Parquet file on disk
#: (a :class:`StagedTable`) and the workspace reads them from there.
SPILL_ROWS = 2_000_000


class StagedTable:
    """Validated rows in a Parquet file on disk: what an input too big for memory becomes.

    The workspace stores it like a DataFrame (``len`` and :meth:`arrow` are all it needs); the
    file and its temporary folder are deleted with the object (or by :meth:`discard`).
    """

    def __init__(self, folder: Path, rows: int, columns: list[str]) -> None:
        self.folder = folder
        self.path = folder / "rows.parquet"
        self.rows = rows
        self.columns = list(columns)
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(folder), True)

    def __len__(self) -> int:
        return self.rows

    def arrow(self) -> Any:
        """A pyarrow dataset over the file (streamed, never loaded whole)."""
        import pyarrow.dataset as ds

        return ds.dataset(self.path, format="parquet")

    def to_pandas(self) -> pd.DataFrame:
        return _to_pandas(self.arrow().to_table())

    def discard(self) -> None:
        self._finalizer()


class _Sink:
    """Collects validated batches in memory; past SPILL_ROWS, writes them to a Parquet file."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.folder: Path | None = None
        self.writer: Any = None
        self.schema: pa.Schema | None = None

    def add(self, table: pa.Table) -> None:
        table = _nanosecond_times(table)
        self.rows += table.num_rows
        if self.writer is None:
            self.parts.append(table)
            if self.rows > SPILL_ROWS:
                self._spill()
        else:
            self.writer.write_table(table)

    def _spill(self) -> None:
        import pyarrow.parquet as pq

        self.folder = Path(tempfile.mkdtemp(prefix="retention-ingest-"))
        schema = pa.unify_schemas([p.schema for p in self.parts])
        self.writer = pq.ParquetWriter(self.folder / "rows.parquet", schema, compression="zstd")
        for part in self.parts:
            self.writer.write_table(part.cast(schema))
        self.parts = []

    def finish(self) -> pa.Table | StagedTable:
        if self.writer is None:
            if not self.parts:
                assert self.schema is not None
                return _nanosecond_times(self.schema.empty_table())
            return pa.concat_tables(self.parts, promote_options="default")
        self.writer.close()
        assert self.folder is not None
        return StagedTable(self.folder, self.rows, self.columns)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _nanosecond_times(table: pa.Table) -> pa.Table:
    """Timestamps as nanoseconds, as pandas keeps them (so both paths store the same type)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != "ns":
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("ns", f.type.tz)))
    return table


@dataclass(frozen=True)
class _Stats:
    users: int
    first_user: str | None
    text_ids: tuple[str, ...]  # up to 3 non-numeric ids, when ids mix numbers and text
    actions: int
    first_action: str | None


@contextmanager
def _exposed(
    con: duckdb.DuckDBPyConnection, name: str, frame: pa.Table | pd.DataFrame | StagedTable
) -> Iterator[None]:
    """``frame`` as the relation ``name`` on ``con``: registered from memory, or read by DuckDB
    from disk when it is a :class:`StagedTable`."""
    staged = isinstance(frame, StagedTable)
    if staged:
        con.read_parquet(str(frame.path)).create_view(name, replace=True)
    else:
        con.register(name, frame)
    try:
        yield
    finally:
        if staged:
            con.execute(f"DROP VIEW IF EXISTS {_quote(name)}")
        else:
            con.unregister(name)


def _stats(
    con: duckdb.DuckDBPyConnection, table: pa.Table | StagedTable, has_action: bool
) -> _Stats:
    """Distinct users/actions and mixed id kinds, by DuckDB over the result (parallel)."""
    with _exposed(con, "_result", table):
        action = "count(DISTINCT action), min(action)" if has_action else "0, NULL"
        text = "count(*) FILTER (WHERE TRY_CAST(user_id AS HUGEINT) IS NULL)"
        sql = f"SELECT count(DISTINCT user_id), min(user_id), {text}, {action} FROM _result"  # noqa: S608
        users, first_user, text_ids, actions, first_action = con.execute(sql).fetchall()[0]
        examples: tuple[str, ...] = ()
        if 0 < text_ids < len(table):
            found = con.execute(
                "SELECT DISTINCT user_id FROM _result "
                "WHERE TRY_CAST(user_id AS HUGEINT) IS NULL ORDER BY 1 LIMIT 3"
            ).fetchall()
            examples = tuple(row[0] for row in found)
    return _Stats(int(users), first_user, examples, int(actions), first_action)


def _cancel_column(source: _Source, mapped: set[str]) -> str | None:
    """An invoice/order number column whose values starting with 'C' mark cancellations."""
    for col in source.columns:
        tokens = _tokens(col)
        if col in mapped or not ({"invoice", "order", "invoiceno", "transaction"} & set(tokens)):
            continue
        values = source.sample[col].dropna().astype(str).str.strip()
        if (
            len(values)
            and values.str.match(r"^[Cc]\d").any()
            and values.str.match(r"^\d").mean() > 0.5
        ):
            return col
    return None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with strings as string[pyarrow] (cheap for millions of rows), ts in ns."""

    def mapper(t: pa.DataType) -> Any:
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pd.StringDtype("pyarrow")
        return None

    frame = table.to_pandas(types_mapper=mapper)
    if "ts" in frame.columns and pd.api.types.is_datetime64_any_dtype(frame["ts"]):
        frame["ts"] = frame["ts"].astype("datetime64[ns]")
    return frame


def _duckdb_input_error(exc: duckdb.Error, name: str) -> InputError:
    message = str(exc).splitlines()[0]
    if "Maximum line size" in str(exc):
        return InputError(
            f"'{name}' has a line longer than {_mb(MAX_LINE_BYTES)}; cells are limited to "
            f"{MAX_CELL_CHARS:,} characters. Check the delimiter and quotes, or shorten that cell."
        )
    if "unicode" in str(exc).lower() or "utf" in str(exc).lower():
        return InputError(f"'{name}' is not valid UTF-8 text ({message}). Save it as 'CSV UTF-8'.")
    return InputError(f"'{name}' could not be read ({message}).")


def prepare(
    df: pd.DataFrame,
    mapping: Mapping[str, str | None],
    shape: Shape,
    *,
    campaigns: pd.DataFrame | None = None,
    campaign_mapping: Mapping[str, str | None] | None = None,
    source_name: str | None = None,
    time_format: str | None = None,
) -> Prepared:
    """Validate a raw frame into the canonical frames of docs/architecture.md.

    ``mapping`` is ``{role: column}`` (a ``None``/empty column unsets the role; ``amount`` may be
    ``"Quantity*UnitPrice"``). Rows that cannot be used are counted by reason in the report:
    events — no user id, no time, unparseable time, cancellation (invoice number starting with
    C), negative quantity or amount, unparseable amount; snapshot — no action, no/unparseable
    outcome, propensity outside (0, 1], unparseable recency. ``time_format`` forces a format
    family (a key of :data:`TIME_FAMILIES` or 'epoch_s'/'epoch_ms'); by default the family
    that parses most of a sample wins, month-first before day-first on a tie.

    Raises InputError: mapped column missing, required role missing, every time unparseable,
    fewer than two users, a single action (snapshot), or no row left after validation.
    """
    if shape not in ("events", "snapshot"):
        raise InputError(f"The 'shape' parameter must be 'events' or 'snapshot'. Got {shape!r}.")
    if time_format is not None and time_format not in (*TIME_FAMILIES, *_EPOCH_FAMILIES):
        raise InputError(
            f"The 'time_format' parameter must be one of {', '.join([*TIME_FAMILIES, *_EPOCH_FAMILIES])}. "
            f"Got {time_format!r}."
        )
    info = df.attrs.get("source")
    name = source_name or (info.name if isinstance(info, SourceInfo) else "the data")
    con = _new_connection()
    try:
        source = _register_frame(con, df, name, "_src")
        roles = EVENT_ROLES if shape == "events" else SNAPSHOT_ROLES
        resolved = _resolve_mapping(mapping, roles, source.columns, shape, name)
        read_notes = [f"Read as {info.describe()}."] if isinstance(info, SourceInfo) else []
        frame, report, stats = _validate(
            source,
            shape,
            resolved,
            time_format=time_format,
            read_notes=read_notes,
            skipped=info.skipped_lines if isinstance(info, SourceInfo) else (),
            skipped_count=info.skipped_count if isinstance(info, SourceInfo) else 0,
        )
        report = _finish_report(report, stats, shape, name, resolved)
        frames = {shape: frame}
        campaign_mapping_used = campaign_report = None
        if campaigns is not None:
            if shape != "events":
                raise InputError(
                    "A campaign log goes with an event log, not with a campaign snapshot."
                )
            cinfo = campaigns.attrs.get("source")
            cname = cinfo.name if isinstance(cinfo, SourceInfo) else "the campaign log"
            csource = _register_frame(con, campaigns, cname, "_campaigns")
            if campaign_mapping is None:
                campaign_mapping = detect_campaign_roles(campaigns)
            campaign_mapping_used = _resolve_mapping(
                campaign_mapping, CAMPAIGN_ROLES, csource.columns, "campaigns", cname
            )
            cframe, campaign_report, _ = _validate(csource, "campaigns", campaign_mapping_used)
            if len(cframe) == 0:
                raise InputError(_nothing_left_message(cname, campaign_report))
            unknown = _unknown_users(cframe, frame)
            if unknown:
                campaign_report = replace(
                    campaign_report,
                    notes=(
                        *campaign_report.notes,
                        f"{unknown:,} campaign rows name users that have no events.",
                    ),
                )
            frames["campaigns"] = cframe
    finally:
        con.close()
    return Prepared(
        shape=shape,
        mapping=dict(resolved),
        frames=frames,
        report=report,
        source_name=name,
        sha256=info.sha256 if isinstance(info, SourceInfo) else None,
        campaign_mapping=campaign_mapping_used,
        campaign_report=campaign_report,
        source=info if isinstance(info, SourceInfo) else None,
    )


def _nothing_left_message(name: str, report: ValidationReport) -> str:
    why = "; ".join(f"{r.reason}: {r.rows:,}" for r in report.reasons.itertuples(index=False))
    return (
        f"No usable rows are left in '{name}' after validation ({why or 'no rows'}). Check that the "
        "right columns are mapped (--map ROLE=COLUMN, or the Data page) and look at the sample rows."
    )


def _finish_report(
    report: ValidationReport, stats: _Stats, shape: str, name: str, mapping: dict[str, str]
) -> ValidationReport:
    """Dataset-level checks after validation: rows left, two or more users / actions."""
    if report.rows_used == 0:
        raise InputError(_nothing_left_message(name, report))
    notes = list(report.notes)
    if shape == "events" or "user" in mapping:
        if stats.users < 2:
            raise InputError(
                f"'{name}' has a single user ('{stats.first_user}' in column "
                f"'{mapping.get('user')}'), and segments and retention need many. If another "
                "column identifies users, map it with "
                f"{_FIX_HINT.format(role='user', label=_ROLE_LABELS['user'])}."
            )
        if stats.text_ids:
            notes.append(
                f"User ids mix numbers and text (e.g. {list(stats.text_ids)}); all are kept as "
                "text, so '7' and '007' are different users."
            )
    if shape == "snapshot" and stats.actions < 2:
        raise InputError(
            f"The action column '{mapping['action']}' of '{name}' has a single value "
            f"('{stats.first_action}'); a snapshot needs at least two actions to compare. "
            f"Map another column with {_FIX_HINT.format(role='action', label='Action')}."
        )
    return replace(report, notes=tuple(notes))


def detect_campaign_roles(df: pd.DataFrame) -> dict[str, str]:
    """Role → column for a campaign log (user, time, action, propensity)."""
    con = _new_connection()
    try:
        profiles = _profiles(con, _sample(df, 5000))
    finally:
        con.close()
    chosen, _, _ = _assign(profiles, CAMPAIGN_ROLES, "events")
    if chosen["action"] is None:
        fallback = [p for p in profiles if p.name not in chosen.values() and 2 <= p.distinct <= 20
                    and p.numeric_frac < 0.5 and not p.is_datetime]  # fmt: skip
        if fallback:
            chosen["action"] = fallback[0].name
    return {role: col for role, col in chosen.items() if col}


# --------------------------------------------------------------------------------------------
# The convenience front door used by the command line
# --------------------------------------------------------------------------------------------


def ingest(
    path: str | Path,
    *,
    campaigns_path: str | Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    shape: Shape | None = None,
    max_bytes: int | None = None,
) -> Prepared:
    """Read, detect roles, apply ``overrides`` ({role: column}) and prepare, in one call.

    Override keys are roles of the chosen shape; keys ``campaign.<role>`` map the campaign log's
    columns. Large plain CSV/CSV.gz files (≥ 32 MB, UTF-8, single-character delimiter) are read
    by DuckDB straight from disk; everything else via :func:`read_table`. Both end in the same
    SQL validation.
    """
    path = Path(path)
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    overrides = dict(overrides or {})
    campaign_overrides = {
        k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("campaign.")
    }
    overrides = {k: v for k, v in overrides.items() if not k.startswith("campaign.")}
    if shape is not None and shape not in ("events", "snapshot"):
        raise InputError(f"The 'shape' parameter must be 'events' or 'snapshot'. Got {shape!r}.")

    fast = _fast_parquet_plan(path, limit) or _fast_csv_plan(path, limit)
    if fast is not None:
        prepared = _ingest_fast(path, fast, overrides, shape)
    else:
        raw = read_table(path, max_bytes=limit)
        detection = detect_roles(raw, shape=shape)
        chosen_shape: Shape = detection.shape
        roles: dict[str, str | None] = {**detection.roles, **overrides}
        time_format = (
            detection.time_format if roles.get("time") == detection.roles.get("time") else None
        )
        prepared = prepare(raw, roles, chosen_shape, time_format=_family_or_none(time_format))
        prepared = replace(prepared, detection=detection)
    if campaigns_path is not None:
        if prepared.shape != "events":
            raise InputError(
                "--campaigns goes with an event log; this input is a campaign snapshot."
            )
        craw = read_table(campaigns_path, max_bytes=limit)
        cmap = detect_campaign_roles(craw)
        cmap.update(campaign_overrides)
        with_campaigns = _prepare_campaigns_only(prepared, craw, cmap)
        prepared = with_campaigns
    return prepared


def _unknown_users(
    campaigns: pd.DataFrame | StagedTable, events: pd.DataFrame | StagedTable
) -> int:
    """Campaign rows whose user has no event (either side may be staged on disk)."""
    con = _new_connection()
    try:
        with _exposed(con, "_c", campaigns), _exposed(con, "_e", events):
            sql = "SELECT count(*) FROM _c WHERE user_id NOT IN (SELECT DISTINCT user_id FROM _e)"
            return int(con.execute(sql).fetchall()[0][0])
    finally:
        con.close()


def _family_or_none(family: str | None) -> str | None:
    return family if family in TIME_FAMILIES or family in _EPOCH_FAMILIES else None


def _prepare_campaigns_only(
    prepared: Prepared, craw: pd.DataFrame, cmap: dict[str, str]
) -> Prepared:
    cinfo = craw.attrs.get("source")
    cname = cinfo.name if isinstance(cinfo, SourceInfo) else "the campaign log"
    con = _new_connection()
    try:
        csource = _register_frame(con, craw, cname, "_campaigns")
        resolved = _resolve_mapping(cmap, CAMPAIGN_ROLES, csource.columns, "campaigns", cname)
        cframe, creport, _ = _validate(csource, "campaigns", resolved)
    finally:
        con.close()
    if len(cframe) == 0:
        raise InputError(_nothing_left_message(cname, creport))
    assert prepared.events is not None
    unknown = _unknown_users(cframe, prepared.events)
    if unknown:
        creport = replace(
            creport,
            notes=(*creport.notes, f"{unknown:,} campaign rows name users that have no events."),
        )
    frames = {**prepared.frames, "campaigns": cframe}
    return replace(
        prepared,
        frames=frames,
        campaign_mapping=resolved,
        campaign_report=creport,
        campaigns_sha256=cinfo.sha256 if isinstance(cinfo, SourceInfo) else None,
    )


@dataclass(frozen=True)
class _FastPlan:
    compressed: bool
    delimiter: str
    header: bool
    columns: list[str]
    sha256: str
    size: int
    kind: str = "csv"


def _fast_parquet_plan(path: Path, limit: int) -> _FastPlan | None:
    """A plan for DuckDB's Parquet reader when the file is a big Parquet file; else None."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size < FAST_PATH_BYTES or size > limit:
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        return None
    return _FastPlan(False, "", True, [], _file_sha256(path), size, kind="parquet")


def _fast_csv_plan(path: Path, limit: int) -> _FastPlan | None:
    """A plan for DuckDB's CSV reader when the file is big, plain UTF-8 CSV; else None."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size < FAST_PATH_BYTES:
        return None
    if size > limit:
        return None  # read_table raises the size error
    with path.open("rb") as fh:
        head = fh.read(256 * 1024)
    compressed = head.startswith(b"\x1f\x8b")
    if compressed:
        with path.open("rb") as fh:
            fh.seek(-4, os.SEEK_END)
            (unpacked,) = struct.unpack("<I", fh.read(4))
        if unpacked > limit or unpacked < size:  # ISIZE is mod 2**32: small means unknown
            return None
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(256 * 1024)
        except OSError:
            return None
    if _sniff_kind(head) != "text" or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(("{", "[")):
        return None
    delimiter, rows = _sniff_delimiter(text)
    if delimiter == "whitespace" or not rows:
        return None
    header = _has_header(rows)
    name = path.name
    if header:
        columns = [c.strip() for c in rows[0]]
        _check_columns(columns, name)
    else:
        columns = [f"column{i}" for i in range(len(rows[0]))]
    return _FastPlan(compressed, delimiter, header, columns, _file_sha256(path), size)


def _ingest_fast(
    path: Path, plan: _FastPlan, overrides: dict[str, str | None], shape: Shape | None
) -> Prepared:
    name = path.name
    con = _new_connection()
    try:
        try:
            if plan.kind == "parquet":
                relation = con.read_parquet(str(path))
                _check_columns(list(relation.columns), name)
            else:
                relation = con.read_csv(
                    str(path),
                    sep=plan.delimiter,
                    header=plan.header,
                    names=plan.columns,
                    all_varchar=True,
                    quotechar='"',
                    escapechar='"',
                    compression="gzip" if plan.compressed else "none",
                    max_line_size=MAX_LINE_BYTES,
                    ignore_errors=True,
                    store_rejects=True,
                    encoding="utf-8",
                )
            relation.create_view("_src", replace=True)
        except duckdb.Error as exc:
            raise _duckdb_input_error(exc, name) from None
        head = con.sql("SELECT * FROM _src LIMIT 20000")
        sample = _to_pandas(head.to_arrow_table()) if plan.kind == "parquet" else head.df()
        if len(sample) == 0:
            raise InputError(
                f"'{name}' has a header row but no data rows. Export the data again with its rows."
            )
        if plan.kind == "csv":
            for col in sample.columns:
                sample[col] = sample[col].astype(object).where(sample[col].notna(), None)
        detection = detect_roles(sample, shape=shape)
        chosen: Shape = detection.shape
        roles: dict[str, str | None] = {**detection.roles, **overrides}
        source = _Source(con, "_src", name, sample)
        resolved = _resolve_mapping(
            roles,
            EVENT_ROLES if chosen == "events" else SNAPSHOT_ROLES,
            source.columns,
            chosen,
            name,
        )
        time_format = (
            detection.time_format if resolved.get("time") == detection.roles.get("time") else None
        )
        if plan.kind == "parquet":
            read_note = "Read by DuckDB as Parquet, straight from disk."
        else:
            read_note = (f"Read by DuckDB as CSV{' (gzip)' if plan.compressed else ''}, "
                         f"delimiter {plan.delimiter!r}, encoding utf-8.")  # fmt: skip
        try:
            frame, report, stats = _validate(source, chosen, resolved, time_format=_family_or_none(time_format),
                                             read_notes=[read_note])  # fmt: skip
            rejects = None
            if plan.kind == "csv":
                rejects = con.execute(
                    "SELECT count(DISTINCT line), list(DISTINCT line ORDER BY line)[1:5] "
                    "FROM reject_errors"
                ).fetchall()[0]
        except duckdb.Error as exc:
            raise _duckdb_input_error(exc, name) from None
        if rejects and rejects[0]:
            rows = report.reasons.to_dict("records")
            rows.insert(
                0,
                {
                    "reason": "malformed line (wrong number of fields)",
                    "rows": int(rejects[0]),
                    "sample": [int(x) for x in rejects[1]],
                },
            )
            report = replace(
                report,
                rows=report.rows + int(rejects[0]),
                rows_rejected=report.rows_rejected + int(rejects[0]),
                reasons=pd.DataFrame(rows, columns=["reason", "rows", "sample"]),
            )
        report = _finish_report(report, stats, chosen, name, resolved)
    except BaseException:
        if "frame" in locals() and isinstance(frame, StagedTable):
            frame.discard()
        raise
    finally:
        con.close()
    if plan.kind == "parquet":
        info = SourceInfo(name, "parquet", plan.size, plan.sha256)
    else:
        info = SourceInfo(name, "csv.gz" if plan.compressed else "csv", plan.size, plan.sha256,
                          "utf-8", plan.delimiter, plan.header)  # fmt: skip
    return Prepared(
        shape=chosen,
        mapping=resolved,
        frames={chosen: frame},
        report=report,
        source_name=name,
        sha256=plan.sha256,
        detection=detection,
        source=info,
    )

"""Reading (SPEC §1): any supported file or bytes → a raw DataFrame, the format sniffed from content.

The format comes from the bytes (magic numbers), never from the file name: Parquet, Excel
``.xlsx``, gzip (a CSV or JSON Lines file inside), JSON Lines, and CSV with delimiter, header and
encoding sniffing. Text columns are read as strings so ids like ``00123`` and ``17850.0`` are
handled on purpose later. Sizes are bounded (upload size, uncompressed size, line and cell size).

Why hand-written sniffing beside DuckDB's ``sniff_csv``: results must stay identical to what
stored datasets and tests pin, and DuckDB's sniffer does not do all of it (runs of whitespace as
the delimiter, as in CDNOW; a cp1252 fallback and BOM-less UTF-16; malformed lines reported by
file line). DuckDB does read big plain files (:mod:`retention.ingest.sources`), after this
sniffing has named their delimiter and header.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from retention.errors import InputError
from retention.ingest import limits
from retention.ingest.db import to_pandas
from retention.ingest.limits import mb
from retention.ingest.model import SourceInfo

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


def sniff_kind(head: bytes) -> str:
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


def _load_source(
    source: str | Path | bytes, filename: str | None, max_bytes: int
) -> tuple[bytes, str, Path | None]:
    """The source's bytes (bounded by max_bytes), its display name and its path if any."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = filename or "the uploaded file"
        if len(data) > max_bytes:
            raise InputError(
                f"'{name}' is {mb(len(data))}; the limit is {mb(max_bytes)}. Upload a smaller "
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
            f"'{name}' is {mb(size)}; the limit is {mb(max_bytes)}. Use a smaller file, or "
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
            if sniff_kind(bytes(block[:4096])) != "text":
                return
            first = False
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        if newlines.size == 0:
            since_newline += len(block)
            if since_newline > limits.MAX_LINE_BYTES:
                _raise_long_line(name, line)
            continue
        gaps = np.diff(newlines, prepend=-1)
        gaps[0] += since_newline
        long = np.flatnonzero(gaps > limits.MAX_LINE_BYTES)
        if long.size:
            _raise_long_line(name, line + int(long[0]))
        line += newlines.size
        since_newline = len(block) - int(newlines[-1]) - 1
        if since_newline > limits.MAX_LINE_BYTES:
            _raise_long_line(name, line)


def _raise_long_line(name: str, line: int) -> None:
    raise InputError(
        f"'{name}': line {line:,} is longer than {mb(limits.MAX_LINE_BYTES)}; cells are limited to "
        f"{limits.MAX_CELL_CHARS:,} characters. Is this really a table? Check the delimiter and quotes, "
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
    limit = limits.max_upload_bytes() if max_bytes is None else max_bytes
    data, name, path = _load_source(source, filename, limit)
    frame, info = _read_bytes(data, name, limit, lines_checked=path is not None)
    check_columns(list(frame.columns), name)
    if len(frame) == 0:
        raise InputError(
            f"'{name}' has a header row ({', '.join(map(str, frame.columns[:8]))}) but no data "
            "rows. Export the data again with its rows."
        )
    check_cells(frame, name)
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
    kind = sniff_kind(data[:4096])
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
                        f"'{name}' unpacks to more than {mb(limit)}; the limit is {mb(limit)}. "
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
    check_columns(table.column_names, name)
    return to_pandas(table)  # strings stay Arrow-backed: cheap here and for DuckDB later


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
        if entry.file_size > 1024**2 and ratio > limits.MAX_ZIP_RATIO:
            raise InputError(
                f"'{name}' looks like a zip bomb: '{entry.filename}' expands {ratio:,.0f} times "
                f"(to {mb(entry.file_size)}). Refused. Save the sheet as CSV instead."
            )
    if total > limit:
        raise InputError(
            f"'{name}' expands to {mb(total)}; the limit is {mb(limit)}. Save the sheet as "
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
                if value is not None and len(value) > limits.MAX_CELL_CHARS:
                    raise InputError(
                        f"'{name}': cell {openpyxl.utils.get_column_letter(col + 1)}{number} has "
                        f"{len(value):,} characters; the limit is {limits.MAX_CELL_CHARS:,}. Shorten it."
                    )
            records.append(values)
    finally:
        book.close()
    columns = ["" if c is None else str(c).strip() for c in header_cells]
    check_columns(columns, name)
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
    check_columns(list(columns), name)
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


def sniff_delimiter(text: str) -> tuple[str, list[list[str]]]:
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


def has_header(rows: list[list[str]]) -> bool:
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
    delimiter, rows = sniff_delimiter(text_head)
    header = has_header(rows)
    width = max((len(r) for r in rows[:1]), default=1)
    if header and rows:
        check_columns([c.strip() for c in rows[0]], name)
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


def check_columns(columns: list[Any], name: str) -> None:
    """Blank or duplicated (ignoring case and surrounding spaces) column names are refused."""
    names = [str(c).strip() if c is not None else "" for c in columns]
    blank = [i + 1 for i, c in enumerate(names) if not c or c.lower().startswith("unnamed:")]
    if blank:
        raise InputError(
            f"'{name}' has a blank column name at position {', '.join(map(str, blank[:10]))} of "
            "the header row. Give every column a name in the first row (a blank first name is "
            "often a saved row index: delete that column)."
        )
    long = [i + 1 for i, c in enumerate(names) if len(c) > limits.MAX_COLUMN_NAME_CHARS]
    if long:
        raise InputError(
            f"'{name}': the column name at position {long[0]} of the header row is "
            f"{len(names[long[0] - 1]):,} characters long; names are limited to "
            f"{limits.MAX_COLUMN_NAME_CHARS:,}. Is the first row really a header? Check the delimiter."
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


def check_cells(frame: pd.DataFrame, name: str) -> None:
    for col in frame.columns:
        series = frame[col]
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            text = series if isinstance(series.dtype, pd.StringDtype) else series.astype("string")
            lengths = text.str.len()
            longest = lengths.max()
            if pd.notna(longest) and longest > limits.MAX_CELL_CHARS:
                row = int(np.argmax(lengths.fillna(0).to_numpy())) + 1
                raise InputError(
                    f"'{name}': column '{col}', row {row:,} has a cell of {int(longest):,} "
                    f"characters; the limit is {limits.MAX_CELL_CHARS:,}. Shorten or remove that cell."
                )

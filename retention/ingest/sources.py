"""Where rows come from: a pandas frame in memory, or a big file DuckDB reads from disk.

Both kinds of source offer the same few things to :func:`retention.ingest.prepare.prepare_source`
— a name, a hash, a frame to detect roles on, a relation on a DuckDB connection, the lines a
reader skipped — so events take one path from detection to the report whichever read them.

* :class:`FrameSource` — a raw frame from :func:`~retention.ingest.read.read_table` (every
  format, sniffed), or a frame handed to :func:`~retention.ingest.prepare.prepare`.
* :class:`FileSource` — Parquet, or plain UTF-8 CSV/CSV.gz with a one-character delimiter, of
  ``limits.FAST_PATH_BYTES`` or more: DuckDB reads it straight from disk, never whole into
  memory. The delimiter and header come from the same sniffing as :mod:`~retention.ingest.read`.

:func:`open_source` picks one for a path or for uploaded bytes (which it spools to a temporary
file first when they are big enough for DuckDB), so the app and the command line read alike.
"""

from __future__ import annotations

import codecs
import gzip
import os
import shutil
import struct
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from retention.errors import InputError
from retention.hashing import file_sha256
from retention.ingest import limits
from retention.ingest.db import duckdb_input_error, new_connection, to_pandas
from retention.ingest.detect import sample_rows
from retention.ingest.model import SourceInfo
from retention.ingest.read import (
    check_columns,
    has_header,
    read_table,
    sniff_delimiter,
    sniff_kind,
)
from retention.ingest.validate import Malformed, Relation
from retention.private import PRIVATE_FILE


class FrameSource:
    """A table in memory: what :func:`read_table` returned, or any pandas frame."""

    def __init__(
        self, frame: pd.DataFrame, name: str | None = None, *, default_name: str = "the data"
    ) -> None:
        info = frame.attrs.get("source")
        self.frame = frame
        self.info: SourceInfo | None = info if isinstance(info, SourceInfo) else None
        self.name = name or (self.info.name if self.info is not None else default_name)

    @property
    def sha256(self) -> str | None:
        return self.info.sha256 if self.info is not None else None

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    @property
    def detection_frame(self) -> pd.DataFrame:
        """What role detection looks at: the whole frame (it samples it itself)."""
        return self.frame

    def rows(self) -> int:
        return len(self.frame)

    def preview(self, n: int = 50) -> pd.DataFrame:
        head = self.frame.head(n).copy()
        head.attrs = {}
        return head

    def describe(self) -> str:
        return self.info.describe() if self.info is not None else ""

    def read_notes(self) -> list[str]:
        return [f"Read as {self.info.describe()}."] if self.info is not None else []

    def open(self, con: duckdb.DuckDBPyConnection, alias: str) -> Relation:
        """Register the frame, making mixed-type object columns plain strings first."""
        check_columns(list(self.frame.columns), self.name)
        frame = self.frame.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        for col in frame.columns:
            s = frame[col]
            if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in (
                "string",
                "empty",
            ):
                frame[col] = s.where(s.isna(), s.astype(str))  # mixed types (e.g. JSON ids) → text
        con.register(alias, frame)
        return Relation(con, alias, self.name, sample_rows(frame, 5000))

    def malformed(self, con: duckdb.DuckDBPyConnection) -> Malformed:
        """Lines the CSV reader skipped (wrong number of fields), counted when it read them."""
        if self.info is None:
            return 0, ()
        return self.info.skipped_count, self.info.skipped_lines


@dataclass(frozen=True)
class FilePlan:
    """How DuckDB reads a big file: its kind, and for CSV the sniffed dialect."""

    compressed: bool
    delimiter: str
    header: bool
    columns: list[str]
    sha256: str
    size: int
    kind: str = "csv"


class FileSource:
    """A big Parquet or plain CSV file that DuckDB reads from disk (see the module docstring).

    ``keep`` is held for as long as the source lives (a spooled upload's temporary file).
    """

    #: Rows read up front for role detection and the validation's value samples.
    SAMPLE_ROWS = 20_000

    def __init__(
        self, path: Path, plan: FilePlan, name: str | None = None, keep: object = None
    ) -> None:
        self.path = path
        self.plan = plan
        self.name = name or path.name
        self._keep = keep
        self._rows: int | None = None
        if plan.kind == "parquet":
            self.info = SourceInfo(self.name, "parquet", plan.size, plan.sha256)
        else:
            fmt = "csv.gz" if plan.compressed else "csv"
            self.info = SourceInfo(
                self.name, fmt, plan.size, plan.sha256, "utf-8", plan.delimiter, plan.header
            )
        con = new_connection()
        try:
            self._view(con, "_src")
            self.sample = self._read_sample(con)
        except duckdb.Error as exc:
            raise duckdb_input_error(exc, self.name) from None
        finally:
            con.close()
        if len(self.sample) == 0:
            raise InputError(
                f"'{self.name}' has a header row but no data rows. Export the data again with "
                "its rows."
            )

    def _read_sample(self, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        head = con.sql(f"SELECT * FROM _src LIMIT {self.SAMPLE_ROWS:d}")  # noqa: S608
        if self.plan.kind == "parquet":
            return to_pandas(head.to_arrow_table())
        sample = head.df()
        for col in sample.columns:
            sample[col] = sample[col].astype(object).where(sample[col].notna(), None)
        return sample

    @property
    def sha256(self) -> str:
        return self.plan.sha256

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.sample.columns]

    @property
    def detection_frame(self) -> pd.DataFrame:
        """What role detection looks at: the first SAMPLE_ROWS rows."""
        return self.sample

    def rows(self) -> int:
        """Rows DuckDB reads from the file (counted once, on first call: a full scan)."""
        if self._rows is None:
            con = new_connection()
            try:
                self._view(con, "_src")
                self._rows = int(con.execute("SELECT count(*) FROM _src").fetchall()[0][0])
            except duckdb.Error as exc:
                raise duckdb_input_error(exc, self.name) from None
            finally:
                con.close()
        return self._rows

    def preview(self, n: int = 50) -> pd.DataFrame:
        return self.sample.head(n).copy()

    def describe(self) -> str:
        return self.info.describe()

    def read_notes(self) -> list[str]:
        if self.plan.kind == "parquet":
            return ["Read by DuckDB as Parquet, straight from disk."]
        gz = " (gzip)" if self.plan.compressed else ""
        return [f"Read by DuckDB as CSV{gz}, delimiter {self.plan.delimiter!r}, encoding utf-8."]

    def open(self, con: duckdb.DuckDBPyConnection, alias: str) -> Relation:
        """The file as the relation ``alias`` on ``con`` (nothing is read yet)."""
        self._view(con, alias)
        return Relation(con, alias, self.name, self.sample)

    def _view(self, con: duckdb.DuckDBPyConnection, alias: str) -> None:
        plan = self.plan
        try:
            if plan.kind == "parquet":
                relation = con.read_parquet(str(self.path))
                check_columns(list(relation.columns), self.name)
            else:
                relation = con.read_csv(
                    str(self.path),
                    sep=plan.delimiter,
                    header=plan.header,
                    names=plan.columns,
                    all_varchar=True,
                    quotechar='"',
                    escapechar='"',
                    compression="gzip" if plan.compressed else "none",
                    max_line_size=limits.MAX_LINE_BYTES,
                    ignore_errors=True,
                    store_rejects=True,
                    encoding="utf-8",
                )
            relation.create_view(alias, replace=True)
        except duckdb.Error as exc:
            raise duckdb_input_error(exc, self.name) from None

    def malformed(self, con: duckdb.DuckDBPyConnection) -> Malformed:
        """Lines DuckDB's CSV reader rejected on ``con``, once the rows have been read."""
        if self.plan.kind != "csv":
            return 0, ()
        try:
            count, first = con.execute(
                "SELECT count(DISTINCT line), list(DISTINCT line ORDER BY line)[1:5] "
                "FROM reject_errors"
            ).fetchall()[0]
        except duckdb.Error as exc:
            raise duckdb_input_error(exc, self.name) from None
        return (int(count), tuple(int(x) for x in first)) if count else (0, ())


TableSource = FrameSource | FileSource


def open_source(
    source: str | Path | bytes, filename: str | None = None, *, max_bytes: int | None = None
) -> TableSource:
    """A file path or uploaded bytes as a source: a :class:`FileSource` when DuckDB can read it
    from disk (big Parquet or plain CSV), else a :class:`FrameSource` from :func:`read_table`.

    Raises InputError as :func:`read_table` does.
    """
    limit = limits.max_upload_bytes() if max_bytes is None else max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(source), filename, limit)
    path = Path(source)
    name = filename or path.name
    plan = parquet_plan(path, limit, name) or csv_plan(path, limit, name)
    if plan is not None:
        return FileSource(path, plan, name)
    return FrameSource(read_table(path, filename, max_bytes=limit))


def _open_bytes(data: bytes, filename: str | None, limit: int) -> TableSource:
    """Big uploads are spooled to a temporary file, so DuckDB can read them as on the CLI."""
    if limits.FAST_PATH_BYTES <= len(data) <= limit:
        name = filename or "the uploaded file"
        spool = _Spool(data)
        plan = parquet_plan(spool.path, limit, name) or csv_plan(spool.path, limit, name)
        if plan is not None:
            return FileSource(spool.path, plan, name, keep=spool)
        spool.discard()
    return FrameSource(read_table(data, filename, max_bytes=limit))


class _Spool:
    """Bytes in a file in a private temporary folder, deleted with the object."""

    def __init__(self, data: bytes) -> None:
        folder = tempfile.mkdtemp(prefix="retention-upload-")  # 700: this account only
        self.path = Path(folder) / "upload"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, True)

    def discard(self) -> None:
        self._finalizer()


def parquet_plan(path: Path, limit: int, name: str | None = None) -> FilePlan | None:
    """A plan for DuckDB's Parquet reader when the file is a big Parquet file; else None."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size < limits.FAST_PATH_BYTES or size > limit:
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        return None
    return FilePlan(False, "", True, [], file_sha256(path), size, kind="parquet")


def csv_plan(path: Path, limit: int, name: str | None = None) -> FilePlan | None:
    """A plan for DuckDB's CSV reader when the file is big, plain UTF-8 CSV; else None."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size < limits.FAST_PATH_BYTES:
        return None
    if size > limit:
        return None  # read_table raises the size error
    text = _utf8_head(path, limit, size)
    if text is None or text.lstrip().startswith(("{", "[")):
        return None
    delimiter, rows = sniff_delimiter(text)
    if delimiter == "whitespace" or not rows:
        return None
    header = has_header(rows)
    if header:
        columns = [c.strip() for c in rows[0]]
        check_columns(columns, name or path.name)
    else:
        columns = [f"column{i}" for i in range(len(rows[0]))]
    compressed = _is_gzip(path)
    return FilePlan(compressed, delimiter, header, columns, file_sha256(path), size)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _utf8_head(path: Path, limit: int, size: int) -> str | None:
    """The first 256 KiB of (possibly gzipped) UTF-8 text, or None when it is anything else."""
    with path.open("rb") as fh:
        head = fh.read(256 * 1024)
    if head.startswith(b"\x1f\x8b"):
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
    if sniff_kind(head) != "text" or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None

"""Validated rows that outgrow memory: batches go to a Parquet file on disk (a StagedTable)."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from retention.ingest import limits
from retention.ingest.db import to_pandas
from retention.sql import quote_ident


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
        return to_pandas(self.arrow().to_table())

    def discard(self) -> None:
        self._finalizer()


class Sink:
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
            if self.rows > limits.SPILL_ROWS:
                self._spill()
        else:
            self.writer.write_table(table)

    def _spill(self) -> None:
        import pyarrow.parquet as pq

        self.folder = Path(tempfile.mkdtemp(prefix="retention-ingest-"))  # 700: this account only
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


@contextmanager
def exposed(
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
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(name)}")
        else:
            con.unregister(name)

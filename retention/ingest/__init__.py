"""Data in (SPEC §1): read any supported file, detect column roles, validate into canonical frames.

Three steps, each usable on its own (the Data page calls them one by one, the command line calls
:func:`ingest`), one module each:

1. :mod:`~retention.ingest.read` — :func:`read_table` reads bytes or a file into a raw DataFrame,
   sniffing the format from the content; :mod:`~retention.ingest.sources` wraps it, or DuckDB
   reading a big file from disk, as a source (:func:`open_source`).
2. :mod:`~retention.ingest.detect` — :func:`detect_roles` suggests the shape (``"events"`` or
   ``"snapshot"``) and which column plays which role; :mod:`~retention.ingest.times` picks
   each time column's format family.
3. :mod:`~retention.ingest.prepare` — :func:`prepare_source` turns a source and a role mapping
   into the canonical frames of ``docs/architecture.md`` plus a :class:`ValidationReport`, by
   one DuckDB query (:mod:`~retention.ingest.validate`) that counts unusable rows by reason
   (never silently dropped); rows beyond memory go to disk (:mod:`~retention.ingest.staging`).

Every problem a user can cause raises :class:`retention.errors.InputError` with a message that
names the file or column and says how to fix it. Limits live in :mod:`~retention.ingest.limits`.
"""

from retention.errors import InputError
from retention.ingest.detect import detect_campaign_roles, detect_roles
from retention.ingest.limits import (
    BATCH_ROWS,
    DEFAULT_MAX_BYTES,
    FAST_PATH_BYTES,
    LOCAL_FILE_BYTES,
    MAX_CELL_CHARS,
    MAX_COLUMN_NAME_CHARS,
    MAX_LINE_BYTES,
    MAX_ZIP_RATIO,
    SPILL_ROWS,
    max_upload_bytes,
)
from retention.ingest.model import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    REQUIRED_ROLES,
    ROLE_HELP,
    ROLE_LABELS,
    ROLE_USES,
    SHAPE_LABELS,
    SNAPSHOT_ROLES,
    Detection,
    Prepared,
    Shape,
    SourceInfo,
    ValidationReport,
)
from retention.ingest.prepare import add_campaigns, ingest, prepare, prepare_source
from retention.ingest.read import read_table
from retention.ingest.sources import FileSource, FrameSource, TableSource, open_source
from retention.ingest.staging import StagedTable
from retention.ingest.times import TIME_FAMILIES

__all__ = [
    "BATCH_ROWS",
    "CAMPAIGN_ROLES",
    "DEFAULT_MAX_BYTES",
    "EVENT_ROLES",
    "FAST_PATH_BYTES",
    "LOCAL_FILE_BYTES",
    "MAX_CELL_CHARS",
    "MAX_COLUMN_NAME_CHARS",
    "MAX_LINE_BYTES",
    "MAX_ZIP_RATIO",
    "REQUIRED_ROLES",
    "ROLE_HELP",
    "ROLE_LABELS",
    "ROLE_USES",
    "SHAPE_LABELS",
    "SNAPSHOT_ROLES",
    "SPILL_ROWS",
    "TIME_FAMILIES",
    "Detection",
    "FileSource",
    "FrameSource",
    "InputError",
    "Prepared",
    "Shape",
    "SourceInfo",
    "StagedTable",
    "TableSource",
    "ValidationReport",
    "add_campaigns",
    "detect_campaign_roles",
    "detect_roles",
    "ingest",
    "max_upload_bytes",
    "open_source",
    "prepare",
    "prepare_source",
    "read_table",
]

"""A generated corpus of hostile files through the whole ingest path.

Every example goes ``read_table`` → ``detect_roles`` → ``prepare`` (and some through the command
line's ``ingest`` from disk): it either comes out as canonical frames or is answered by one
:class:`~retention.errors.InputError` with a message. Any other exception fails the test. More
than 1,000 examples in all: random bytes, random CSV dialects and encodings, huge fields, deeply
nested JSON, zip and gzip bombs, wrong file names, pickles, truncated Parquet and Excel files.
Formats are told by content, never by the file name.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import string
import zipfile

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from retention.errors import InputError
from retention.ingest import Prepared, detect_roles, ingest, prepare, read_table

SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXTENSIONS = ("csv", "csv.gz", "parquet", "xlsx", "jsonl", "json", "txt", "pkl", "", "exe")
SMALL_LIMIT = 256 * 1024  # a small upload limit keeps bombs cheap to build


def through_ingest(data: bytes, name: str, max_bytes: int | None = None) -> Prepared | InputError:
    """The ingest path on ``data``: canonical frames, or the InputError that refused it."""
    step = "read_table"
    try:
        frame = read_table(data, name, max_bytes=max_bytes)
        step = "detect_roles"
        detection = detect_roles(frame)
        step = "prepare"
        prepared = prepare(frame, detection.roles, detection.shape)
    except InputError as exc:
        message = str(exc)
        assert message.strip(), "an InputError without a message"
        assert "Traceback" not in message
        event(f"refused by {step}")
        return exc
    assert prepared.report.rows_used > 0
    event("prepared")
    return prepared


def through_cli_ingest(data: bytes, path) -> Prepared | InputError:
    """The command line's ``ingest`` on the same bytes, from a file on disk."""
    path.write_bytes(data)
    try:
        return ingest(path, max_bytes=SMALL_LIMIT * 8)
    except InputError as exc:
        assert str(exc).strip()
        return exc


# -- strategies ------------------------------------------------------------------------------------

names = st.builds(lambda stem, ext: f"{stem}.{ext}" if ext else stem,
                  st.text(string.ascii_letters + "_-<>'\" ;", min_size=1, max_size=12),
                  st.sampled_from(EXTENSIONS))  # fmt: skip

cell_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "NULL", "nan", "-", "2024-01-03", "2024-13-45", "17850.0", "1e309",
                     "=cmd|' /C calc'!A0", '"', '""', "\r", "\n", ";", "\t", "\x00", "0x1F",
                     "<script>alert(1)</script>", "'; DROP TABLE datasets;--", "💥", "١٢٣"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
)  # fmt: skip
header_names = st.one_of(
    st.sampled_from(["user_id", "Customer ID", "uid", "ts", "InvoiceDate", "time", "amount",
                     "Description", "event", "segment", "visit", "spend", "propensity", "recency",
                     "", " ", "Unnamed: 0", "user_id", "<b>x</b>", '"; DROP TABLE x;--']),
    st.text(min_size=0, max_size=10),
)  # fmt: skip


@st.composite
def csv_files(draw) -> bytes:
    """Random tables in random CSV dialects and encodings, sometimes with a usable event log."""
    n_cols = draw(st.integers(1, 6))
    n_rows = draw(st.integers(0, 25))
    header = draw(st.lists(header_names, min_size=n_cols, max_size=n_cols))
    rows = draw(st.lists(st.lists(cell_text, min_size=0, max_size=n_cols + 2), max_size=n_rows))
    if draw(st.integers(0, 3)) > 0:  # mostly a plausible event log, so prepare gets to work
        header = ["user_id", "ts", *(f"{h}_{i}" for i, h in enumerate(header[2:]))]
        users = draw(st.lists(st.sampled_from(["u1", "u2", "u3", "17850.0", "=1+1"]), min_size=1))
        rows = [
            [users[i % len(users)], f"2024-0{1 + i % 9}-1{i % 10} 10:00", *row[2:]]
            for i, row in enumerate(rows)
        ]
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    try:
        writer.writerow(header)
        writer.writerows(rows)
    except csv.Error:
        buf.write(delimiter.join(header) + terminator)
    text = buf.getvalue()
    if draw(st.booleans()):  # and sometimes break it by hand
        cut = draw(st.integers(0, len(text)))
        text = (
            text[:cut] + draw(st.sampled_from(['"', "\x00", "\ufeff", "\n\n", ",,,"])) + text[cut:]
        )
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                     "cp1252", "latin-1"]))  # fmt: skip
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = gzip.compress(data)
    return data


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# -- the corpus ------------------------------------------------------------------------------------


@settings(max_examples=300, **SETTINGS)
@given(data=st.binary(max_size=3000), name=names)
def test_random_bytes(data, name):
    through_ingest(data, name)


@settings(max_examples=80, **SETTINGS)
@given(
    prefix=st.sampled_from([b"PAR1", b"PK\x03\x04", b"\x1f\x8b\x08\x00", b"\x80\x04", b"\xef\xbb\xbf",
                            b"\xff\xfe", b"\xfe\xff", b"{", b"[", b"\x7fELF", b"MZ", b"%PDF"]),
    data=st.binary(max_size=2000),
    name=names,
)  # fmt: skip
def test_random_bytes_behind_magic_numbers(prefix, data, name):
    through_ingest(prefix + data, name)


@settings(max_examples=320, **SETTINGS)
@given(data=csv_files(), name=names)
def test_random_csv_dialects_and_encodings(data, name):
    result = through_ingest(data, name)
    if isinstance(result, Prepared):
        events = result.frames["events" if result.shape == "events" else "snapshot"]
        assert events["user_id"].notna().all()


@settings(max_examples=30, **SETTINGS)
@given(data=csv_files())
def test_random_csv_from_disk_through_the_command_line_ingest(tmp_path_factory, data):
    through_cli_ingest(data, tmp_path_factory.mktemp("hostile") / "input.bin")


@settings(max_examples=100, **SETTINGS)
@given(
    depth=st.integers(1, 200_000),
    kind=st.sampled_from(["array", "object"]),
    lines=st.booleans(),
    name=names,
)
def test_deeply_nested_json(depth, kind, lines, name):
    inner = _nested(depth, kind)
    if lines:
        text = '{"user_id": "u1", "ts": "2024-01-01", "x": ' + inner + "}\n"
        text += '{"user_id": "u2", "ts": "2024-01-02", "x": 1}\n'
    else:
        text = "[" + inner + "]" if kind == "object" else inner
    result = through_ingest(text.encode(), name)
    if depth > 100_000:
        assert isinstance(result, InputError)


@settings(max_examples=50, **SETTINGS)
@given(
    size=st.integers(SMALL_LIMIT + 1, 40 * SMALL_LIMIT),
    byte=st.sampled_from([b"\x00", b"a", b"a,b\n", b"1;2;3\r\n"]),
    container=st.sampled_from(["gzip", "gzip-in-gzip", "xlsx", "zip"]),
    name=names,
)
def test_zip_and_gzip_bombs(size, byte, container, name):
    payload = (byte * (size // len(byte) + 1))[:size]
    if container == "gzip":
        data = gzip.compress(payload, compresslevel=9)
    elif container == "gzip-in-gzip":
        data = gzip.compress(gzip.compress(payload, compresslevel=9))
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            entry = "xl/worksheets/sheet1.xml" if container == "xlsx" else "data.csv"
            zf.writestr(entry, payload)
            if container == "xlsx":
                zf.writestr("[Content_Types].xml", "<Types/>")
        data = buf.getvalue()
    assert len(data) < SMALL_LIMIT
    result = through_ingest(data, name, max_bytes=SMALL_LIMIT)
    assert isinstance(result, InputError)


@settings(max_examples=50, **SETTINGS)
@given(
    obj=st.recursive(
        st.one_of(st.none(), st.integers(), st.text(max_size=8), st.binary(max_size=8)),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
        max_leaves=20,
    ),
    protocol=st.integers(2, pickle.HIGHEST_PROTOCOL),
    name=names,
)  # fmt: skip
def test_pickles_are_refused(obj, protocol, name):
    result = through_ingest(pickle.dumps(obj, protocol=protocol), name)
    assert isinstance(result, InputError) and "pickle" in str(result).lower()


def _planted_frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 7}" for i in range(n)],
            "ts": pd.date_range("2024-01-01", periods=n, freq="37h").astype(str),
            "amount": [f"{(i * 3.7) % 50:.2f}" for i in range(n)],
            "text": [f"item {i % 5}" for i in range(n)],
        }
    )


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    _planted_frame().to_parquet(buf, index=False)
    return buf.getvalue()


def _xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    _planted_frame().to_excel(buf, index=False)
    return buf.getvalue()


GOOD = {"parquet": _parquet_bytes(), "xlsx": _xlsx_bytes()}


@settings(max_examples=150, **SETTINGS)
@given(
    kind=st.sampled_from(["parquet", "xlsx"]),
    cut=st.floats(0.0, 1.0, exclude_max=True),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=3),
    name=names,
)  # fmt: skip
def test_truncated_and_damaged_parquet_and_excel(kind, cut, flips, name):
    data = bytearray(GOOD[kind][: max(1, int(len(GOOD[kind]) * cut))])
    for where, value in flips:
        data[int(where * len(data))] = value
    through_ingest(bytes(data), name)


@settings(max_examples=40, **SETTINGS)
@given(
    kind=st.sampled_from(["csv", "csv.gz", "parquet", "xlsx", "jsonl"]),
    name=names,
)
def test_formats_are_told_by_content_not_by_name(kind, name):
    frame = _planted_frame()
    if kind == "csv":
        data = frame.to_csv(index=False).encode()
    elif kind == "csv.gz":
        data = gzip.compress(frame.to_csv(index=False).encode())
    elif kind == "jsonl":
        data = frame.to_json(orient="records", lines=True).encode()
    else:
        data = GOOD[kind]
    result = through_ingest(data, name)
    assert isinstance(result, Prepared), result
    assert result.report.rows_used == len(frame) and result.users == 7


@settings(max_examples=8, **SETTINGS)
@given(
    length=st.integers(1_000_001, 3_000_000),
    where=st.sampled_from(["cell", "header", "json", "line"]),
)
def test_huge_fields(length, where):
    big = "x" * length
    if where == "cell":
        data = f'user_id,ts,text\nu1,2024-01-01,"{big}"\nu2,2024-01-02,a\n'.encode()
    elif where == "header":
        data = f"user_id,ts,{big}\nu1,2024-01-01,a\nu2,2024-01-02,b\n".encode()
    elif where == "json":
        data = (json.dumps({"user_id": "u1", "ts": "2024-01-01", "t": big}) + "\n").encode()
    else:
        data = ("user_id,ts\n" + "u1," * (length // 3 + 3_000_000) + "\n").encode()
    result = through_ingest(data, "big.csv")
    assert isinstance(result, InputError)


@pytest.mark.parametrize("route", ["bytes", "file"])
def test_the_upload_size_limit_has_a_clear_message(tmp_path, monkeypatch, route):
    monkeypatch.setenv("RETENTION_MAX_UPLOAD_MB", "0.01")
    data = _planted_frame(2000).to_csv(index=False).encode()
    assert len(data) > 0.01 * 1024**2
    with pytest.raises(InputError) as info:
        if route == "bytes":
            read_table(data, "orders.csv")
        else:
            path = tmp_path / "orders.csv"
            path.write_bytes(data)
            ingest(path)
    message = str(info.value)
    assert "orders.csv" in message and "limit" in message
    assert "RETENTION_MAX_UPLOAD_MB" in message

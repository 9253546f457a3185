"""Ingestion: every format and encoding, role detection, time/id parsing, messy rows by reason."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention import ingest as ing
from retention.ingest import (
    Prepared,
    SourceInfo,
    detect_roles,
    ingest,
    limits,
    prepare,
    read_table,
    sources,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

HEADER = ["CustomerID", "InvoiceDate", "Description", "Quantity", "UnitPrice", "Country"]
ROWS = [
    ["17850", "2010-12-01 08:26:00", "Café crème mug", "6", "2.55", "United Kingdom"],
    ["17850", "2010-12-02 09:00:00", "Noël garland", "2", "1.25", "United Kingdom"],
    ["13047", "2010-12-03 10:15:00", "Crème brûlée set", "1", "4.95", "France"],
]


def _csv(delimiter: str = ",", rows: list[list[str]] = ROWS, header: list[str] = HEADER) -> str:
    lines = [delimiter.join(header)] + [delimiter.join(r) for r in rows]
    return "\n".join(lines) + "\n"


def _frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=HEADER)


def _assert_table(df: pd.DataFrame) -> None:
    assert list(df.columns) == HEADER
    assert df["Description"].tolist() == [r[2] for r in ROWS]
    assert df["CustomerID"].tolist() == ["17850", "17850", "13047"]


# --- formats and encodings -------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "name"), [(",", ","), (";", ";"), ("\t", "\t"), ("|", "|")])
def test_csv_delimiters(tmp_path, delimiter, name):
    path = tmp_path / "data.csv"
    path.write_text(_csv(delimiter), encoding="utf-8")
    df = read_table(path)
    _assert_table(df)
    info = df.attrs["source"]
    assert info.delimiter == name and info.encoding == "utf-8" and info.format == "csv"


def test_whitespace_delimited_like_cdnow(tmp_path):
    text = (
        " 00001 19970101  1   11.77\r\n 00002 19970112  1   12.00\r\n 00002 19970112  5   77.00\r\n"
    )
    path = tmp_path / "cdnow.txt"
    path.write_bytes(text.encode())
    df = read_table(path)
    assert list(df.columns) == ["column0", "column1", "column2", "column3"]
    assert df["column0"].tolist() == ["00001", "00002", "00002"]
    assert df.attrs["source"].delimiter == "whitespace" and not df.attrs["source"].header


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),  # with BOM
        ("utf-16-le", "utf-16-le"),  # without BOM
        ("cp1252", "cp1252"),
    ],
)
def test_encodings(tmp_path, encoding, expected):
    path = tmp_path / "data.csv"
    path.write_bytes(_csv(",").encode(encoding))
    df = read_table(path)
    _assert_table(df)  # accents survive: "Café", "Noël", "brûlée"
    assert df.attrs["source"].encoding == expected


def test_bytes_source_and_filename():
    df = read_table(_csv(",").encode(), filename="upload.csv")
    _assert_table(df)
    assert df.attrs["source"].name == "upload.csv"


def test_csv_gz(tmp_path):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(_csv(";").encode("cp1252")))
    df = read_table(path)
    _assert_table(df)
    assert df.attrs["source"].format == "csv.gz"


def test_parquet_keeps_types(tmp_path):
    path = tmp_path / "data.parquet"
    frame = _frame().assign(Quantity=lambda d: d.Quantity.astype(int))
    frame.to_parquet(path)
    df = read_table(path)
    assert df.attrs["source"].format == "parquet"
    assert df["Quantity"].tolist() == [6, 2, 1]
    assert df["Description"].tolist() == [r[2] for r in ROWS]


def test_xlsx(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for r in ROWS:
        sheet.append(
            [int(r[0]), pd.Timestamp(r[1]).to_pydatetime(), r[2], int(r[3]), float(r[4]), r[5]]
        )
    path = tmp_path / "data.xlsx"
    book.save(path)
    df = read_table(path)
    _assert_table(df)
    assert df["InvoiceDate"].iloc[0] == "2010-12-01 08:26:00"
    prepared = prepare(df, {"user": "CustomerID", "time": "InvoiceDate"}, "events")
    assert prepared.events["ts"].iloc[0] == pd.Timestamp("2010-12-01 08:26")


def test_jsonl_and_json_array(tmp_path):
    records = [dict(zip(HEADER, r, strict=True)) for r in ROWS]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    df = read_table(path)
    _assert_table(df)
    assert df.attrs["source"].format == "jsonl"
    path2 = tmp_path / "data.json"
    path2.write_text(json.dumps(records))
    _assert_table(read_table(path2))


def test_format_is_sniffed_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_parquet.csv"
    _frame().to_parquet(path)
    assert read_table(path).attrs["source"].format == "parquet"


def test_headerless_csv_gets_column_names():
    df = read_table(b"17850,2010-12-01,3.5\n13047,2010-12-02,4.0\n", filename="x.csv")
    assert list(df.columns) == ["column0", "column1", "column2"]
    assert len(df) == 2


def test_malformed_lines_are_counted_not_dropped_silently():
    text = "user,time\n1,2011-01-01\n2,2011-01-02,extra\n3,2011-01-03\n1,2011-01-04\n"
    df = read_table(text.encode(), filename="x.csv")
    assert len(df) == 3
    p = prepare(df, {"user": "user", "time": "time"}, "events")
    reasons = dict(zip(p.report.reasons.reason, p.report.reasons.rows, strict=True))
    assert reasons == {"malformed line (wrong number of fields)": 1}
    assert p.report.rows == 4 and p.report.rows_used == 3


# --- ids and times ---------------------------------------------------------------------------


def test_ids_become_strings_deliberately():
    df = pd.DataFrame(
        {
            "user_id": ["17850.0", "00123", "17850", " 00123 ", "A-7"],
            "ts": ["2011-01-01"] * 5,
        }
    )
    p = prepare(df, {"user": "user_id", "time": "ts"}, "events")
    assert p.events["user_id"].tolist() == ["17850", "00123", "17850", "00123", "A-7"]


def test_float_ids_from_parquet_lose_the_dot_zero():
    df = pd.DataFrame(
        {"CustomerID": [17850.0, np.nan, 13047.0], "d": pd.to_datetime(["2011-01-01"] * 3)}
    )
    p = prepare(df, {"user": "CustomerID", "time": "d"}, "events")
    assert p.events["user_id"].tolist() == ["17850", "13047"]
    assert p.report.reasons.set_index("reason")["rows"].to_dict() == {"no user id": 1}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2010-12-01 08:26:00", "2011-01-13T10:00:00"], ["2010-12-01 08:26", "2011-01-13 10:00"]),
        (["12/1/2010 8:26", "1/13/2011 17:05"], ["2010-12-01 08:26", "2011-01-13 17:05"]),
        (["20100112", "19970101"], ["2010-01-12", "1997-01-01"]),
        (["13/01/2011", "01/02/2011"], ["2011-01-13", "2011-02-01"]),  # day-first: 13 > 12
        (["13.01.2011 10:00", "01.02.2011 11:30"], ["2011-01-13 10:00", "2011-02-01 11:30"]),
        (["1 Feb 2011", "13 Mar 2011"], ["2011-02-01", "2011-03-13"]),
        # time zones → naive UTC
        (
            ["2011-01-01T10:00:00+02:00", "2011-01-01T08:00:00Z"],
            ["2011-01-01 08:00", "2011-01-01 08:00"],
        ),
    ],
)
def test_time_formats(values, expected):
    df = pd.DataFrame({"user": ["a", "b"], "when": values})
    p = prepare(df, {"user": "user", "time": "when"}, "events")
    assert p.events["ts"].tolist() == [pd.Timestamp(e) for e in expected]
    assert str(p.events["ts"].dtype) == "datetime64[ns]"


def test_day_first_is_chosen_consistently_for_the_whole_column():
    # 13/01 only parses day-first, so 01/02 must read 1 February too (not 2 January).
    df = pd.DataFrame({"user": ["a", "b", "a"], "when": ["01/02/2011", "13/01/2011", "05/06/2011"]})
    p = prepare(df, {"user": "user", "time": "when"}, "events")
    assert p.events["ts"].tolist() == [
        pd.Timestamp(x) for x in ("2011-02-01", "2011-01-13", "2011-06-05")
    ]


def test_ambiguous_dates_read_month_first_with_a_note():
    df = pd.DataFrame({"user": ["a", "b"], "when": ["01/02/2011", "03/04/2011"]})
    d = detect_roles(df)
    assert d.time_format == "m/d/Y"
    assert any("month-first" in n for n in d.notes)


def test_integer_yyyymmdd_and_timezone_aware_native_columns():
    df = pd.DataFrame(
        {
            "uid": [1, 2],
            "day": [20100112, 19970101],
            "at": pd.to_datetime(["2011-01-01T10:00:00+02:00", "2011-01-01T12:00:00+02:00"]),
        }
    )
    p = prepare(df, {"user": "uid", "time": "day"}, "events")
    assert p.events["ts"].tolist() == [pd.Timestamp("2010-01-12"), pd.Timestamp("1997-01-01")]
    p2 = prepare(df, {"user": "uid", "time": "at"}, "events")
    assert p2.events["ts"].tolist() == [
        pd.Timestamp("2011-01-01 08:00"),
        pd.Timestamp("2011-01-01 10:00"),
    ]


# --- messy rows ------------------------------------------------------------------------------


def _messy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536366", "C536379", "536367", "536368", "536369", "536370", "536371"],
            "CustomerID": ["17850.0", None, "14527.0", "13047", "13047", "12346", "", "12583"],
            "InvoiceDate": [
                "12/1/2010 8:26", "12/1/2010 8:28", "12/1/2010 9:41", "not a date",
                "12/2/2010 10:00", "12/3/2010 11:00", "12/3/2010 12:00", None,
            ],
            "Description": ["MUG", "BAG", "Discount", "LAMP", "RETURNED LAMP", "MUG", "BAG", "CUP"],
            "Quantity": ["6", "2", "-1", "1", "-3", "4", "1", "2"],
            "UnitPrice": ["2.55", "1.00", "27.50", "3.00", "3.00", "2.50", "1.00", "1.25"],
            "Country": ["UK"] * 8,
        }
    )  # fmt: skip


def test_messy_rows_are_counted_by_reason_with_samples():
    df = _messy()
    d = detect_roles(df)
    assert d.mapping == {
        "user": "CustomerID",
        "time": "InvoiceDate",
        "amount": "Quantity*UnitPrice",
        "text": "Description",
    }
    p = prepare(df, d.mapping, d.shape)
    reasons = p.report.reasons.set_index("reason")
    assert reasons["rows"].to_dict() == {
        "no user id": 2,  # None and ""
        "no time": 1,
        "unparseable time": 1,
        "cancellation (InvoiceNo starts with C)": 1,
        "negative quantity or amount": 1,
    }
    assert reasons.loc["no user id", "sample"] == [2, 7]
    assert reasons.loc["unparseable time", "sample"] == [4]
    assert p.report.rows == 8 and p.report.rows_used == 2 and p.report.rows_rejected == 6
    sample = p.report.samples["unparseable time"]
    assert sample["InvoiceDate"].tolist() == ["not a date"] and sample["row"].tolist() == [4]
    assert p.events["user_id"].tolist() == ["17850", "12346"]
    assert p.events["amount"].tolist() == pytest.approx([6 * 2.55, 4 * 2.50])
    json.dumps(p.report.to_dict())  # serialisable for the workspace


def test_amount_parsing_currency_thousands_and_decimal_comma():
    df = pd.DataFrame(
        {"u": ["a", "b", "a"], "t": ["2011-01-01"] * 3, "amount": ["$1,234.50", "12", "€3"]}
    )
    assert prepare(df, {"user": "u", "time": "t", "amount": "amount"}, "events").events[
        "amount"
    ].tolist() == [1234.5, 12.0, 3.0]
    df2 = pd.DataFrame(
        {"u": ["a", "b", "a"], "t": ["2011-01-01"] * 3, "betrag": ["1.234,50", "12,00", "3,5"]}
    )
    assert prepare(df2, {"user": "u", "time": "t", "amount": "betrag"}, "events").events[
        "amount"
    ].tolist() == [1234.5, 12.0, 3.5]


def test_unparseable_amount_is_a_reason_blank_amount_is_kept():
    df = pd.DataFrame({"u": ["a", "b", "c"], "t": ["2011-01-01"] * 3, "amount": ["abc", "", "5"]})
    p = prepare(df, {"user": "u", "time": "t", "amount": "amount"}, "events")
    assert p.report.reasons.set_index("reason")["rows"].to_dict() == {"unparseable amount": 1}
    assert p.events["amount"].isna().tolist() == [True, False]


# --- detection on the real column sets (synthetic frames always run) ------------------------


def test_detect_online_retail_columns():
    df = pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "536366", "C536379"] * 10,
            "StockCode": ["85123A", "71053", "84406B", "D"] * 10,
            "Description": [f"WHITE HANGING HEART T-LIGHT HOLDER {i}" for i in range(40)],
            "Quantity": ["6", "6", "8", "-1"] * 10,
            "InvoiceDate": [f"12/{1 + i % 9}/2010 8:{10 + i}" for i in range(40)],
            "UnitPrice": ["2.55", "3.39", "2.75", "27.50"] * 10,
            "CustomerID": ["17850.0", "17850.0", "13047.0", "14527.0"] * 10,
            "Country": ["United Kingdom", "United Kingdom", "France", "Germany"] * 10,
        }
    )
    d = detect_roles(df)
    assert d.shape == "events"
    assert d.roles["user"] == "CustomerID" and d.roles["time"] == "InvoiceDate"
    assert d.roles["text"] == "Description" and d.roles["amount"] == "Quantity*UnitPrice"
    assert d.roles["event"] is None and d.time_format == "m/d/Y"


def test_detect_hillstrom_columns():
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {
            "recency": rng.integers(1, 13, n).astype(str),
            "history_segment": rng.choice(["1) $0 - $100", "2) $100 - $200", "3) $200 - $350"], n),
            "history": rng.uniform(29, 3000, n).round(2).astype(str),
            "mens": rng.integers(0, 2, n).astype(str),
            "womens": rng.integers(0, 2, n).astype(str),
            "zip_code": rng.choice(["Surburban", "Rural", "Urban"], n),
            "newbie": rng.integers(0, 2, n).astype(str),
            "channel": rng.choice(["Phone", "Web", "Multichannel"], n),
            "segment": rng.choice(["Mens E-Mail", "Womens E-Mail", "No E-Mail"], n),
            "visit": rng.integers(0, 2, n).astype(str),
            "conversion": rng.integers(0, 2, n).astype(str),
            "spend": rng.uniform(0, 100, n).round(2).astype(str),
        }
    )
    d = detect_roles(df)
    assert d.shape == "snapshot"
    assert d.roles["action"] == "segment" and d.roles["outcome"] == "visit"
    assert d.roles["recency"] == "recency" and d.roles["user"] is None
    assert d.candidates["outcome"][:3] == ("visit", "conversion", "spend")
    p = prepare(df, d.mapping, "snapshot")
    assert list(p.snapshot.columns[:5]) == ["user_id", "action", "outcome", "propensity", "recency"]
    assert p.snapshot["user_id"].tolist()[:3] == ["1", "2", "3"]


def test_detect_cdnow_headerless_columns():
    text = "".join(
        f" {u:05d} 1997{m:02d}{d:02d}  {q}   {v:.2f}\r\n"
        for u, m, d, q, v in [
            (1, 1, 1, 1, 11.77), (2, 1, 12, 1, 12.0), (2, 1, 12, 5, 77.0), (3, 1, 2, 2, 20.76),
            (3, 3, 30, 2, 20.76), (3, 4, 2, 2, 19.54), (3, 11, 15, 5, 57.45), (4, 1, 1, 2, 29.33),
            (4, 1, 18, 2, 29.73), (4, 8, 2, 1, 14.96), (5, 1, 1, 2, 29.33), (5, 1, 14, 1, 13.97),
            (5, 2, 4, 3, 38.9), (5, 4, 11, 3, 45.55), (6, 1, 1, 1, 20.99), (7, 1, 1, 2, 28.74),
        ]
    )  # fmt: skip
    df = read_table(text.encode(), filename="cdnow_master.txt")
    d = detect_roles(df)
    assert d.shape == "events"
    assert d.roles["user"] == "column0" and d.roles["time"] == "column1"
    assert d.roles["amount"] == "column3"
    p = prepare(df, d.mapping, d.shape)
    assert p.events["user_id"].iloc[0] == "00001"
    assert p.events["ts"].iloc[1] == pd.Timestamp("1997-01-12")


@pytest.mark.parametrize("name", ["Customer ID", "CustomerID", "user_id", "uid", "customer_id"])
def test_user_column_names(name):
    df = pd.DataFrame(
        {"misc": ["x", "y", "z", "x"], name: ["1", "2", "1", "3"], "t": ["2011-01-01"] * 4}
    )
    assert detect_roles(df).roles["user"] == name


def test_real_online_retail(shared_data):
    p = ingest(shared_data / "online_retail_2010_2011.parquet")
    assert p.mapping == {
        "user": "CustomerID",
        "time": "InvoiceDate",
        "amount": "Quantity*UnitPrice",
        "text": "Description",
    }
    # Published facts (../shared/data/README.md): 541,909 rows, 135,080 without CustomerID.
    assert p.report.rows == 541_909
    reasons = p.report.reasons.set_index("reason")["rows"]
    assert reasons["no user id"] == 135_080
    assert p.users == 4339  # customers with at least one non-cancelled purchase
    assert (p.events["amount"] >= 0).all() and p.events["user_id"].str.fullmatch(r"\d+").all()
    assert len(p.sha256 or "") == 64


def test_real_hillstrom(shared_data):
    p = ingest(shared_data / "hillstrom.csv.gz")
    assert p.shape == "snapshot"
    assert p.mapping == {"action": "segment", "outcome": "visit", "recency": "recency"}
    assert p.report.rows_used == 64_000
    assert p.snapshot["outcome"].mean() == pytest.approx(0.14678, abs=1e-5)  # published mean


def test_real_cdnow(shared_data):
    p = ingest(shared_data / "cdnow_master.txt.gz")
    assert p.mapping == {"user": "customer_id", "time": "date", "amount": "dollar_value"}
    assert p.report.rows_used == 69_659 and p.users == 23_570


# --- prepare / ingest API ---------------------------------------------------------------------


def test_ingest_overrides_and_derived_amount_mapping(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(_csv(","))
    p = ingest(path, overrides={"amount": "UnitPrice", "text": None})
    assert p.mapping == {"user": "CustomerID", "time": "InvoiceDate", "amount": "UnitPrice"}
    assert p.events["amount"].tolist() == [2.55, 1.25, 4.95]
    assert p.events["text"].isna().all()
    p2 = ingest(path, overrides={"amount": "Quantity*UnitPrice"})
    assert p2.events["amount"].tolist() == pytest.approx([15.3, 2.5, 4.95])
    assert isinstance(p2, Prepared) and p2.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert p2.summary() == {
        "rows": 3,
        "rows_used": 3,
        "rows_rejected": 0,
        "users": 2,
        "shape": "events",
    }


def test_canonical_event_columns_and_extras():
    p = prepare(
        _frame(), {"user": "CustomerID", "time": "InvoiceDate", "text": "Description"}, "events"
    )
    assert list(p.events.columns) == [
        "user_id", "ts", "amount", "text", "event", "Quantity", "UnitPrice", "Country",
    ]  # fmt: skip
    assert p.events["amount"].isna().all() and p.events["event"].isna().all()


def test_campaign_log_is_validated_too():
    campaigns = pd.DataFrame(
        {
            "customer": ["17850", "13047", "99999", None],
            "sent_at": ["2010-12-01", "2010-12-02", "2010-12-03", "2010-12-04"],
            "treatment": ["discount", "engagement", "discount", "discount"],
            "propensity": ["0.25", "0.25", "0.25", "0.25"],
        }
    )
    p = prepare(
        _frame(),
        {"user": "CustomerID", "time": "InvoiceDate"},
        "events",
        campaigns=campaigns,
    )
    assert p.campaign_mapping == {
        "user": "customer",
        "time": "sent_at",
        "action": "treatment",
        "propensity": "propensity",
    }
    assert list(p.campaigns.columns) == ["user_id", "ts", "action", "propensity"]
    assert p.campaigns["action"].tolist() == ["discount", "engagement", "discount"]
    assert p.campaign_report.reasons.set_index("reason")["rows"].to_dict() == {"no user id": 1}
    assert any("no events" in n for n in p.campaign_report.notes)


def test_ingest_with_campaigns_file(tmp_path):
    events, campaigns = tmp_path / "events.csv", tmp_path / "campaigns.csv"
    events.write_text(_csv(","))
    campaigns.write_text("user_id,ts,action\n17850,2010-12-02,discount\n13047,2010-12-03,none\n")
    p = ingest(events, campaigns_path=campaigns)
    assert p.campaigns["action"].tolist() == ["discount", "none"]
    assert p.campaigns_sha256 is not None


def test_planted_synthetic_frames_are_detected(planted):
    d = detect_roles(planted.events)
    assert d.shape == "events"
    assert {d.roles[r] for r in ("user", "time", "amount", "text", "event")} == {
        "user_id", "ts", "amount", "text", "event",
    }  # fmt: skip
    p = prepare(planted.events, d.mapping, "events", campaigns=planted.campaigns)
    assert p.report.rows_rejected == 0 and len(p.campaigns) == len(planted.campaigns)


def test_fast_duckdb_path_matches_pandas_path(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 200, n).astype(str),
            "event_time": pd.Timestamp("2011-01-01")
            + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
            "product": rng.choice(["red mug", "blue bag", "green lamp"], n),
            "amount": rng.normal(20, 10, n).round(2),
        }
    )
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.loc[::50, "customer_id"] = ""
    frame.loc[::77, "event_time"] = "garbage"
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[5::91, "amount"] = "abc"  # a strict cast pushed into DuckDB's reader would fail
    path = tmp_path / "events.csv.gz"
    path.write_bytes(
        gzip.compress(frame.to_csv(index=False).encode() + b"1,2011-01-01,x,1,EXTRA\n")
    )
    slow = ingest(path)
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    assert sources.csv_plan(path, 10**9) is not None
    fast = ingest(path)
    assert fast.mapping == slow.mapping
    pd.testing.assert_frame_equal(fast.events, slow.events)
    pd.testing.assert_frame_equal(fast.report.reasons, slow.report.reasons)
    assert fast.report.rows == slow.report.rows == n + 1
    assert fast.sha256 == slow.sha256
    assert "unparseable amount" in set(fast.report.reasons.reason)
    for reason, sample in slow.report.samples.items():
        pd.testing.assert_frame_equal(fast.report.samples[reason], sample)


def test_hostile_column_name_is_only_data():
    hostile = '"; DROP TABLE x;--'
    df = pd.DataFrame(
        {hostile: ["a", "b", "a"], "ts": ["2011-01-01"] * 3, "x'); --": ["1", "2", "3"]}
    )
    raw = read_table(df.to_csv(index=False).encode(), filename="evil.csv")
    assert list(raw.columns) == [hostile, "ts", "x'); --"]
    p = prepare(raw, {"user": hostile, "time": "ts"}, "events")
    assert p.events["user_id"].tolist() == ["a", "b", "a"]
    assert "x" in p.events.columns  # the other hostile name, kept under a safe name
    assert any("kept as 'x'" in n for n in p.report.notes)


def test_source_info_describe():
    info = SourceInfo("x.csv", "csv.gz", 10, "0" * 64, "cp1252", ";", header=False)
    assert "delimiter ';'" in info.describe() and "cp1252" in info.describe()


def test_validation_report_round_trips_to_json():
    p = prepare(_messy(), detect_roles(_messy()).mapping, "events")
    data = json.loads(json.dumps(p.report.to_dict()))
    assert data["rows"] == 8 and {r["reason"] for r in data["reasons"]} >= {"no user id"}
    assert isinstance(io.StringIO(json.dumps(data)).read(), str)


def _messy_events(n: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "CustomerID": rng.integers(1, 300, n).astype(float),
            "InvoiceNo": rng.integers(500000, 600000, n).astype(str),
            "InvoiceDate": pd.Timestamp("2011-01-01")
            + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
            "Description": rng.choice(["red mug", "blue bag", "green lamp", None], n),
            "Quantity": rng.integers(-2, 12, n),
            "UnitPrice": rng.normal(5, 2, n).round(2),
        }
    )
    frame.loc[::40, "CustomerID"] = np.nan
    frame["CustomerID"] = frame["CustomerID"].map(
        lambda v: None if pd.isna(v) else ("guest-7" if v == 7 else f"{v:.1f}")
    )
    frame.loc[3::61, "InvoiceNo"] = "C" + frame.loc[3::61, "InvoiceNo"]
    return frame


def test_big_parquet_is_read_from_disk_and_staged_the_same(tmp_path, monkeypatch):
    """A big Parquet file goes through DuckDB from disk, in batches, staged to a Parquet file
    on disk past SPILL_ROWS; what is stored equals the in-memory path, row for row."""
    from retention.workspace import Workspace

    n = 5000
    path = tmp_path / "retail.parquet"
    _messy_events(n).to_parquet(path, index=False, row_group_size=700)
    slow = ingest(path)
    assert isinstance(slow.events, pd.DataFrame)

    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    monkeypatch.setattr(limits, "BATCH_ROWS", 512)
    monkeypatch.setattr(limits, "SPILL_ROWS", 1000)
    # The staged way (the Data page's); ingest() itself checks such a file without staging it
    # (retention.ingest.direct, tests/unit/test_ingest_direct.py compares the two ways).
    import importlib

    prepare_module = importlib.import_module("retention.ingest.prepare")
    monkeypatch.setattr(prepare_module, "_direct_source", lambda source, shape: False)
    assert sources.parquet_plan(path, 10**9) is not None
    fast = ingest(path)
    staged = fast.events
    assert isinstance(staged, ing.StagedTable) and staged.path.exists()
    assert fast.mapping == slow.mapping
    assert fast.mapping["amount"] == "Quantity*UnitPrice"
    assert len(staged) == slow.report.rows_used == len(slow.events)
    pd.testing.assert_frame_equal(fast.report.reasons, slow.report.reasons)
    for reason, sample in slow.report.samples.items():
        pd.testing.assert_frame_equal(fast.report.samples[reason], sample)
    assert fast.report.users == slow.report.users
    assert any("mix numbers and text" in n for n in fast.report.notes)
    assert [n for n in fast.report.notes if "Read" not in n] == [
        n for n in slow.report.notes if "Read" not in n
    ]
    pd.testing.assert_frame_equal(staged.to_pandas(), slow.events)

    ws = Workspace(tmp_path / "ws")
    try:
        ids = []
        for p in (slow, fast):
            ids.append(ws.save_dataset(name="x", source_name=p.source_name, sha256=p.sha256,
                                       shape=p.shape, frames=p.frames, mapping=p.mapping,
                                       report={}))  # fmt: skip
        a, b = (ws.load(i, "events") for i in ids)
        pd.testing.assert_frame_equal(a, b)
        assert ws.dataset(ids[1]).rows == len(slow.events)
    finally:
        ws.close()
    folder = staged.folder
    del fast, staged, p
    import gc

    gc.collect()
    assert not folder.exists(), "the staged rows outlive their Prepared"


def test_spilled_ingest_failure_leaves_no_staged_file(tmp_path, monkeypatch):
    """A big input that fails validation at the end (a single user) leaves no file behind."""
    import tempfile

    frame = _messy_events(3000)
    frame["CustomerID"] = 17850.0
    path = tmp_path / "one_user.parquet"
    frame.to_parquet(path, index=False)
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    monkeypatch.setattr(limits, "BATCH_ROWS", 256)
    monkeypatch.setattr(limits, "SPILL_ROWS", 500)
    before = set(Path(tempfile.gettempdir()).glob("retention-ingest-*"))
    with pytest.raises(ing.InputError, match="single user"):
        ingest(path)
    import gc

    gc.collect()
    assert set(Path(tempfile.gettempdir()).glob("retention-ingest-*")) == before


def test_big_event_and_campaign_logs_both_staged(tmp_path, monkeypatch):
    """A big event log with a big campaign log: both staged on disk, the campaign rows of
    unknown users still counted, and both stored as the in-memory path stores them."""
    from retention.synth import make_planted
    from retention.workspace import Workspace

    planted = make_planted(n_users=300, n_periods=12, seed=5)
    events, campaigns = tmp_path / "events.parquet", tmp_path / "campaigns.parquet"
    planted.events.to_parquet(events, index=False)
    extra = planted.campaigns.head(7).assign(user_id="ghost")
    pd.concat([planted.campaigns, extra]).to_parquet(campaigns, index=False)
    slow = ingest(events, campaigns_path=campaigns)
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    monkeypatch.setattr(limits, "BATCH_ROWS", 300)
    monkeypatch.setattr(limits, "SPILL_ROWS", 400)
    fast = ingest(events, campaigns_path=campaigns)
    assert isinstance(fast.events, ing.StagedTable)
    assert isinstance(fast.campaigns, ing.StagedTable)
    assert any("7 campaign rows name users that have no events" in n
               for n in fast.campaign_report.notes)  # fmt: skip
    assert fast.campaign_report.notes == slow.campaign_report.notes
    ws = Workspace(tmp_path / "ws")
    try:
        ids = [ws.save_dataset(name="x", source_name="e", sha256=p.sha256, shape=p.shape,
                               frames=p.frames, mapping=p.mapping, report={})
               for p in (slow, fast)]  # fmt: skip
        for kind in ("events", "campaigns"):
            a, b = (ws.load(i, kind) for i in ids)
            pd.testing.assert_frame_equal(a, b)
    finally:
        ws.close()


# --- one path, two sources: these fail when the pandas and DuckDB paths drift apart -----------


def _drift_file(tmp_path: Path, kind: str) -> Path:
    frame = _messy_events(1500, seed=4)
    if kind == "parquet":
        path = tmp_path / "events.parquet"
        frame.to_parquet(path, index=False)
        return path
    text = frame.to_csv(index=False) + "1,2,2011-01-01,x,1,2,EXTRA\n"  # one malformed line
    path = tmp_path / f"events.{kind}"
    path.write_bytes(gzip.compress(text.encode()) if kind == "csv.gz" else text.encode())
    return path


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet"])
def test_frame_and_file_sources_prepare_identically(tmp_path, monkeypatch, kind):
    """The same file as a pandas-backed and as a DuckDB-backed source: same detection, frames,
    report (reasons, samples, counts, notes but the 'Read ...' one) and hash."""
    path = _drift_file(tmp_path, kind)
    in_memory = sources.FrameSource(read_table(path))
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    on_disk = sources.open_source(path)
    assert isinstance(on_disk, sources.FileSource)
    assert on_disk.columns == in_memory.columns and on_disk.sha256 == in_memory.sha256

    detections = [detect_roles(s.detection_frame) for s in (in_memory, on_disk)]
    assert detections[0].roles == detections[1].roles
    assert detections[0].time_format == detections[1].time_format
    a, b = (
        ing.prepare_source(s, d.roles, d.shape, detection=d)
        for s, d in zip((in_memory, on_disk), detections, strict=True)
    )
    assert a.mapping == b.mapping and a.shape == b.shape and a.sha256 == b.sha256
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.report.reasons, b.report.reasons)
    assert a.report.samples.keys() == b.report.samples.keys()
    for reason, sample in a.report.samples.items():
        pd.testing.assert_frame_equal(sample, b.report.samples[reason])
    assert (a.report.rows, a.report.rows_used, a.report.users) == (
        b.report.rows,
        b.report.rows_used,
        b.report.users,
    )
    assert a.report.notes[0].startswith("Read as") and b.report.notes[0].startswith("Read by")
    assert a.report.notes[1:] == b.report.notes[1:]
    if kind != "parquet":
        assert "malformed line (wrong number of fields)" in set(a.report.reasons.reason)


def test_a_big_upload_takes_the_duckdb_path_and_its_spool_goes_with_it(tmp_path, monkeypatch):
    """Uploaded bytes big enough for DuckDB are spooled to a temporary file and read from disk,
    as the command line reads a path; the file is deleted with the source."""
    import gc

    data = _drift_file(tmp_path, "csv").read_bytes()
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    source = sources.open_source(data, "upload.csv")
    assert isinstance(source, sources.FileSource) and source.name == "upload.csv"
    assert source.rows() == 1500
    spool = source.path
    assert spool.exists()
    slow = prepare(read_table(data, "upload.csv"), detect_roles(source.sample).roles, "events")
    fast = ing.prepare_source(source, detect_roles(source.sample).roles, "events")
    pd.testing.assert_frame_equal(fast.events, slow.events)
    del source
    gc.collect()
    assert not spool.exists()


def test_campaign_sha_is_set_on_every_path(tmp_path, monkeypatch):
    """Whichever door a campaign log comes in by, the stored dataset can name its bytes."""
    from retention.synth import make_planted

    planted = make_planted(n_users=120, n_periods=8, seed=3)
    events, campaigns = tmp_path / "events.csv", tmp_path / "campaigns.csv"
    planted.events.to_csv(events, index=False)
    planted.campaigns.to_csv(campaigns, index=False)
    sha = hashlib.sha256(campaigns.read_bytes()).hexdigest()
    raw_campaigns = read_table(campaigns)
    cmap = ing.detect_campaign_roles(raw_campaigns)
    raw = read_table(events)
    roles = detect_roles(raw).roles

    found = {
        "ingest (pandas)": ingest(events, campaigns_path=campaigns),
        "prepare": prepare(raw, roles, "events", campaigns=raw_campaigns),
        "prepare, mapped": prepare(
            raw, roles, "events", campaigns=raw_campaigns, campaign_mapping=cmap
        ),  # fmt: skip
        "Data page": ing.prepare_source(
            sources.open_source(events.read_bytes(), "events.csv"),
            roles,
            "events",
            campaigns=sources.FrameSource(read_table(campaigns.read_bytes(), "campaigns.csv")),
            campaign_mapping=cmap,
        ),  # fmt: skip
    }
    monkeypatch.setattr(limits, "FAST_PATH_BYTES", 0)
    found["ingest (DuckDB)"] = ingest(events, campaigns_path=campaigns)
    assert isinstance(found["Data page"].events, pd.DataFrame)
    for door, p in found.items():
        assert p.campaigns_sha256 == sha, door
        assert p.campaigns is not None and len(p.campaigns) == len(planted.campaigns), door


def test_the_app_upload_limit_is_the_ingest_limit():
    """.streamlit/config.toml cannot import Python: this keeps its number in step."""
    import tomllib

    config = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"
    with config.open("rb") as fh:
        max_upload_mb = tomllib.load(fh)["server"]["maxUploadSize"]
    assert max_upload_mb * 1024**2 == limits.DEFAULT_MAX_BYTES

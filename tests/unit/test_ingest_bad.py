"""Bad input (issue 2): each case gets one clear InputError that says what is wrong and the fix."""

from __future__ import annotations

import gzip
import json
import pickle
import zipfile

import pandas as pd
import pytest

from retention.errors import InputError
from retention.ingest import detect_roles, ingest, prepare, read_table

GOOD = "customer_id,event_time,amount\n1,2011-01-01,3.5\n2,2011-01-02,4.0\n1,2011-01-05,2.0\n"


def _write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match=r"'empty\.csv' is empty"):
        ingest(_write(tmp_path, "empty.csv", b""))
    with pytest.raises(InputError, match="is empty"):
        read_table(b"  \n\n ", filename="blank.csv")


def test_header_only(tmp_path):
    with pytest.raises(InputError, match="header row .* but no data rows"):
        ingest(_write(tmp_path, "header.csv", "customer_id,event_time,amount\n"))


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "a PNG image"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "an executable program"),
        (bytes(range(256)) * 8, "a binary file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel .xls"),
    ],
)
def test_binary_renamed_csv(tmp_path, payload, what):
    with pytest.raises(InputError, match=f"'data.csv' is {what}.*not a table|{what}"):
        ingest(_write(tmp_path, "data.csv", payload))


def test_pickle_is_refused(tmp_path):
    path = _write(tmp_path, "frame.csv", pickle.dumps(pd.DataFrame({"a": [1, 2]})))
    with pytest.raises(InputError, match="pickle.*refused"):
        read_table(path)


def test_xlsx_zip_bomb(tmp_path):
    path = tmp_path / "bomb.xlsx"
    chunk = b"\0" * (1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("xl/worksheets/sheet1.xml", "w") as fh:
            for _ in range(200):  # 200 MB of zeros, about 200 KB on disk
                fh.write(chunk)
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(InputError, match="zip bomb"):
        read_table(path)


def test_gzip_that_expands_past_the_limit(tmp_path):
    path = _write(tmp_path, "big.csv.gz", gzip.compress(b"a,b\n" + b"1,2\n" * 300_000))
    with pytest.raises(InputError, match="unpacks to more than"):
        read_table(path, max_bytes=1024 * 1024)


def test_upload_size_limit(tmp_path, monkeypatch):
    path = _write(tmp_path, "events.csv", GOOD)
    monkeypatch.setenv("RETENTION_MAX_UPLOAD_MB", "0.00001")
    with pytest.raises(InputError, match="the limit is .*RETENTION_MAX_UPLOAD_MB"):
        ingest(path)


def test_undecodable_bytes(tmp_path):
    # 0x81 and 0x8D are neither UTF-8 here nor defined in cp1252.
    path = _write(tmp_path, "bytes.csv", b"user,time\nab\x81\x8d,2011-01-01\n")
    with pytest.raises(InputError, match=r"not text in UTF-8.*0x81 on line 2.*CSV UTF-8"):
        read_table(path)


def test_no_user_like_column(tmp_path):
    path = _write(tmp_path, "nouser.csv", "when,price\n2011-01-01,3.5\n2011-01-02,4.25\n")
    with pytest.raises(
        InputError, match=r"No column that identifies the user .*'nouser.csv'.*--map user=COLUMN"
    ) as caught:
        ingest(path)
    _speaks_to_the_browser(caught.value, "'User' box under 'Which column is which?'")


def _speaks_to_the_browser(exc: InputError, where: str) -> None:
    """The same error in the browser's words: where to pick the column, no command-line option."""
    assert "--" not in exc.in_app and "COLUMN" not in exc.in_app, exc.in_app
    assert where in exc.in_app, exc.in_app
    assert exc.in_app.startswith(exc.message) and str(exc).startswith(exc.message)


def test_no_time_like_column_in_an_event_log(tmp_path):
    path = _write(tmp_path, "notime.csv", "user_id,product\n1,mug\n2,bag\n1,lamp\n")
    with pytest.raises(
        InputError, match=r"No column with the date/time .*'notime.csv'.*--map time=COLUMN"
    ) as caught:
        ingest(path, shape="events")
    _speaks_to_the_browser(caught.value, "Pick the right column in the 'Time' box")


def test_every_time_unparseable(tmp_path):
    path = _write(tmp_path, "badtime.csv", "user_id,when\n1,soon\n2,later\n1,yesterday-ish\n")
    with pytest.raises(
        InputError, match=r"No value in the time column 'when' .*soon.*--map time="
    ) as caught:
        ingest(path, overrides={"time": "when"})
    _speaks_to_the_browser(caught.value, "'Time' box")


def test_a_single_user(tmp_path):
    path = _write(tmp_path, "one.csv", "user_id,ts\n7,2011-01-01\n7,2011-01-02\n")
    with pytest.raises(
        InputError, match=r"single user \('7' in column 'user_id'\).*--map user="
    ) as caught:
        ingest(path)
    _speaks_to_the_browser(caught.value, "'User' box")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("user,,time", r"blank column name at position 2"),
        (",user,time", r"blank column name at position 1.*row index"),
        ("user,time,user", r"duplicated column names: 'user'"),
        ("user,time,User", r"duplicated column names: 'user/User'"),
    ],
)
def test_blank_or_duplicated_column_names(tmp_path, header, match):
    path = _write(tmp_path, "names.csv", f"{header}\n1,2011-01-01,x\n2,2011-01-02,y\n")
    with pytest.raises(InputError, match=match):
        read_table(path)


def test_duplicated_keys_in_json_lines():
    with pytest.raises(InputError, match="duplicated keys"):
        read_table(b'{"user": 1, "user": 2}\n', filename="x.jsonl")


def test_a_100_mb_single_cell(tmp_path):
    path = tmp_path / "huge_cell.csv"
    chunk = "x" * (1024 * 1024)
    with path.open("w") as fh:  # written piece by piece: no 100 MB string is ever held
        fh.write('user,time,text\n1,2011-01-01,"')
        for _ in range(100):
            fh.write(chunk)
        fh.write('"\n2,2011-01-02,short\n')
    with pytest.raises(InputError, match=r"line 2 is longer than"):
        read_table(path)


def test_a_cell_over_the_cell_limit_but_short_of_the_line_limit():
    data = b"user,time,text\n1,2011-01-01," + b"y" * 1_500_000 + b"\n2,2011-01-02,ok\n"
    with pytest.raises(InputError, match=r"column 'text', row 1 has a cell of 1,500,000"):
        read_table(data, filename="cell.csv")


def test_mixed_type_ids_are_kept_as_text_with_a_note(tmp_path):
    lines = [
        {"user": 17850, "ts": "2011-01-01"},
        {"user": "A-17", "ts": "2011-01-02"},
        {"user": 17850.0, "ts": "2011-01-03"},
        {"user": "0042", "ts": "2011-01-04"},
    ]
    path = _write(tmp_path, "mixed.jsonl", "\n".join(json.dumps(r) for r in lines))
    p = ingest(path)
    assert p.events["user_id"].tolist() == ["17850", "A-17", "17850", "0042"]
    assert any("mix numbers and text" in n for n in p.report.notes)
    # The same with Python objects of mixed types in a frame (no crash in DuckDB).
    frame = pd.DataFrame({"user": [1, "b", 2.0], "ts": ["2011-01-01"] * 3})
    assert prepare(frame, {"user": "user", "time": "ts"}, "events").events["user_id"].tolist() == [
        "1", "b", "2",
    ]  # fmt: skip


def test_column_named_like_sql_injection(tmp_path):
    hostile = '"; DROP TABLE x;--'
    frame = pd.DataFrame(
        {hostile: ["1", "2", "1"], "ts": ["2011-01-01", "2011-01-02", "2011-01-03"]}
    )
    path = _write(tmp_path, "evil.csv", frame.to_csv(index=False))
    p = ingest(path, overrides={"user": hostile})
    assert p.mapping["user"] == hostile and p.events["user_id"].tolist() == ["1", "2", "1"]
    with pytest.raises(InputError, match="is not in 'evil.csv'"):
        ingest(path, overrides={"user": hostile + "'; SELECT 1; --"})


def test_mapped_column_missing_lists_columns(tmp_path):
    path = _write(tmp_path, "events.csv", GOOD)
    with pytest.raises(
        InputError,
        match=r"Column 'CustomerID' \(mapped to user\) is not in 'events.csv'.*'customer_id'",
    ):
        ingest(path, overrides={"user": "CustomerID"})


def test_unknown_role_and_bad_shape():
    frame = pd.DataFrame({"u": ["a", "b"], "t": ["2011-01-01", "2011-01-02"]})
    with pytest.raises(InputError, match="Unknown role 'colour'.*user, time, amount, text, event"):
        prepare(frame, {"user": "u", "time": "t", "colour": "u"}, "events")
    with pytest.raises(
        InputError, match="'shape' parameter must be 'events' or 'snapshot'. Got 'log'"
    ):
        prepare(frame, {"user": "u", "time": "t"}, "log")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'shape' parameter"):
        detect_roles(frame, shape="log")  # type: ignore[arg-type]


def test_no_rows_left_after_validation():
    frame = pd.DataFrame({"u": [None, None], "t": ["2011-01-01", "2011-01-02"]})
    with pytest.raises(InputError, match=r"No usable rows .*no user id: 2"):
        prepare(frame, {"user": "u", "time": "t"}, "events", source_name="gone.csv")


def test_snapshot_with_a_single_action():
    frame = pd.DataFrame({"segment": ["Mail"] * 3, "visit": ["0", "1", "0"]})
    with pytest.raises(InputError, match=r"action column 'segment' .* single value"):
        prepare(frame, {"action": "segment", "outcome": "visit"}, "snapshot")


def test_snapshot_without_outcome_says_how_to_map_it():
    frame = pd.DataFrame({"segment": ["A", "B"], "colour": ["red", "blue"]})
    with pytest.raises(
        InputError, match=r"No column with the outcome .*--map outcome=COLUMN"
    ) as caught:
        prepare(frame, {"action": "segment"}, "snapshot")
    _speaks_to_the_browser(caught.value, "'Outcome' box")


def test_missing_file():
    with pytest.raises(InputError, match="does not exist"):
        read_table("/nonexistent/file.csv")


def test_campaign_log_without_a_time_column_names_the_campaign_log_box():
    """A campaign log's fix is its own: `--map campaign.time=COLUMN` on the command line, the
    campaign log's 'Time' box in the browser (not the event log's)."""
    events = pd.DataFrame(
        {"user_id": ["1", "2", "1"], "ts": ["2011-01-01", "2011-01-02", "2011-02-01"]}
    )
    campaigns = pd.DataFrame({"user_id": ["1", "2"], "treatment": ["mail", "none"]})
    with pytest.raises(InputError, match=r"--map campaign\.time=COLUMN") as caught:
        prepare(
            events,
            {"user": "user_id", "time": "ts"},
            "events",
            campaigns=campaigns,
            campaign_mapping={"user": "user_id", "action": "treatment"},
        )
    _speaks_to_the_browser(caught.value, "'Time' box under 'Campaign log columns'")


def test_an_error_without_hints_reads_the_same_at_both_front_doors():
    exc = InputError("The file is empty.")
    assert str(exc) == exc.in_app == "The file is empty."
    exc = InputError("Bad.", cli_hint="Use --x.", ui_hint="Tick the box.")
    assert (str(exc), exc.in_app) == ("Bad. Use --x.", "Bad. Tick the box.")


def test_the_command_line_keeps_its_own_wording(tmp_path, capsys):
    """The command line says which option fixes it, never which box to pick in the browser."""
    from retention.cli import main

    path = _write(tmp_path, "notime.csv", "user_id,product\n1,mug\n2,bag\n1,lamp\n")
    argv = ["run", str(path), "--out", str(tmp_path / "out"), "--workspace", str(tmp_path / "ws")]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--map time=COLUMN" in err
    assert "box" not in err and "Data page" not in err

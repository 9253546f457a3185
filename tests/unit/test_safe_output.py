"""Safe output: user text is data, never markup, formulas or SQL.

Hostile column names, cell values, file, dataset and segment names go through the command line
(ingest → workspace → pipeline → report.html and the CSV exports): the report shows them
escaped, the exports escape spreadsheet formulas, the database stores them as values (bound
parameters) and loses nothing. The pages render no user text as HTML, and XSRF protection stays
on.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from retention.cli import main
from retention.synth import make_planted
from retention.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
SQL = '"; DROP TABLE x;--'
SQL_VALUE = "'; DROP TABLE runs;--"
FORMULA = '=HYPERLINK("http://example.invalid","click")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Markup(HTMLParser):
    """Every tag and attribute name of a page (script bodies are not parsed as markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One pipeline run on an event log full of hostile names and values, then a warm rerun
    after hostile renames."""
    folder = tmp_path_factory.mktemp("hostile")
    planted = make_planted(n_users=160, n_periods=14, seed=11)
    events = planted.events.drop(columns=["text"]).copy()
    users = sorted(events["user_id"].unique())
    hostile_ids = {users[0]: SCRIPT, users[1]: SQL_VALUE, users[2]: FORMULA, users[3]: IMG}
    events["user_id"] = events["user_id"].replace(hostile_ids)
    events["event"] = events["event"].where(events.index % 5 != 0, SCRIPT)
    events["country"] = events["country"].where(events.index % 3 != 0, FORMULA)
    events = events.rename(columns={"user_id": SCRIPT, "ts": SQL, "country": IMG})
    source = folder / f"{IMG}.csv"
    events.to_csv(source, index=False)
    workspace = folder / "ws"
    args = ["run", str(source), "--map", f"user={SCRIPT}", "--map", f"time={SQL}"]
    args += ["--segments", "3", "--episodes", "40", "--workspace", str(workspace), "--quiet"]
    assert main([*args, "--out", str(folder / "out1")]) == 0
    summary = json.loads((folder / "out1" / "summary.json").read_text())

    ws = Workspace(workspace)
    dataset_id = summary["workspace"]["dataset"]
    ws.rename_dataset(dataset_id, SQL_VALUE)
    ws.rename_segment(summary["workspace"]["segmentation_run"], 0, SCRIPT)
    ws.rename_segment(summary["workspace"]["segmentation_run"], 1, "=1+2")
    ws.close()
    assert main([*args, "--out", str(folder / "out2")]) == 0
    return folder, workspace, summary, hostile_ids


def test_report_shows_user_text_escaped(hostile_run):
    folder, _, _, _ = hostile_run
    for out in ("out1", "out2"):
        page = (folder / out / "report.html").read_text(encoding="utf-8")
        assert SCRIPT not in page and IMG not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # it is there, as text
        assert "&lt;img src=x onerror=alert(2)&gt;" in page
        markup = _Markup()
        markup.feed(page)
        assert not [a for a in markup.attributes if a.lower().startswith("on")]
        assert "img" not in markup.tags and "iframe" not in markup.tags
        # Chart data sits in our own scripts, JSON-escaped: no data closes a script early.
        assert markup.tags.count("script") == page.count("</script>")
    renamed = (folder / "out2" / "report.html").read_text(encoding="utf-8")
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in renamed  # the renamed segment


def test_exports_escape_spreadsheet_formulas(hostile_run):
    folder, _, _, hostile_ids = hostile_run
    for out in ("out1", "out2"):
        for name in ("user_segments.csv", "strategies.csv"):
            rows = list(csv.reader(io.StringIO((folder / out / name).read_text("utf-8"))))
            cells = [cell for row in rows for cell in row]
            assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not _number(c)], name
    per_user = pd.read_csv(folder / "out2" / "user_segments.csv", dtype=str, keep_default_na=False)
    assert "'" + FORMULA in set(per_user["user_id"])
    assert {SCRIPT, SQL_VALUE, IMG} <= set(per_user["user_id"])  # kept as data, not mangled
    assert "'=1+2" in set(per_user["segment_name"])
    assert SCRIPT in set(per_user["segment_name"])
    strategies = pd.read_csv(folder / "out2" / "strategies.csv", dtype=str, keep_default_na=False)
    assert "'=1+2" in set(strategies["label"])


def test_sql_takes_hostile_names_and_values_as_data(hostile_run):
    _, workspace, summary, hostile_ids = hostile_run
    assert summary["mapping"]["user"] == SCRIPT and summary["mapping"]["time"] == SQL
    ws = Workspace(workspace)
    try:
        tables = {
            r[0]
            for r in ws.cursor()
            .execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
            .fetchall()
        }
        assert {"datasets", "runs", "artifacts", "embeddings", "meta", "segment_names"} <= tables
        dataset_id = summary["workspace"]["dataset"]
        info = ws.dataset(dataset_id)
        assert info.name == SQL_VALUE
        assert info.mapping["user"] == SCRIPT
        events = ws.load(dataset_id, "events")
        assert set(hostile_ids.values()) <= set(events["user_id"])
        assert SCRIPT in set(events["event"])
        # Extra columns keep their values under a safe name (docs/architecture.md).
        assert FORMULA in set(events["img_src_x_onerror_alert_2"])
        assert len(ws.runs()) == 2 and set(ws.runs()["status"]) == {"done"}
        assert ws.segment_names(summary["workspace"]["segmentation_run"])[0] == SCRIPT
    finally:
        ws.close()


def test_workspace_names_are_bound_parameters(workspace):
    frame = pd.DataFrame({"user_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-01"] * 2)})
    for name in (SQL_VALUE, SQL, "'); DELETE FROM datasets; --", "x' OR '1'='1"):
        dataset_id = workspace.save_dataset(
            name=name,
            source_name=name,
            sha256=None,
            shape="events",
            frames={"events": frame},
            mapping={"user": name},
            report={},
        )
        assert workspace.dataset(dataset_id).name == name
        workspace.rename_dataset(dataset_id, name + "2")
        run = workspace.start_run("segmentation", dataset_id, {"k": name})
        workspace.rename_segment(run, 0, name)
        assert workspace.segment_names(run) == {0: name}
        assert workspace.find_run("segmentation", dataset_id, {"k": name}) is None  # running
    assert len(workspace.datasets()) == 4
    assert len(workspace.runs()) == 4


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _python_sources() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]


def test_pages_render_no_text_as_html():
    """No page opts into raw HTML: user text in st.markdown is escaped by Streamlit."""
    offenders = []
    for path in _python_sources():
        source = path.read_text(encoding="utf-8")
        for pattern in (r"unsafe_allow_html\s*=\s*True", r"\bst\.html\(", r"components\.html\("):
            offenders += [f"{path.name}: {pattern}" for _ in re.finditer(pattern, source)]
    assert not offenders, offenders


def test_xsrf_protection_stays_on():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    server = config.get("server", {})
    assert server.get("enableXsrfProtection") is True
    # Streamlit turns XSRF protection off when CORS protection is off.
    assert server.get("enableCORS", True) is True

"""The command line: the output contract of SPEC §8 and the bad-input error contract."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.cli import main
from retention.synth import make_planted

ROOT = Path(__file__).resolve().parents[2]


def _external_resources(page: str) -> list[str]:
    """Scripts, styles, images or frames the page would fetch from elsewhere."""

    class Finder(HTMLParser):
        found: list[str] = []

        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                if name in ("src", "href") and value and tag in ("script", "link", "img", "iframe"):
                    self.found.append(f"{tag} {value}")

    finder = Finder()
    finder.found = []
    finder.feed(page)
    return finder.found


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    planted = make_planted(n_users=800, n_periods=30, seed=3)
    events = planted.events.copy()
    # Ids that look like spreadsheet formulas must come out escaped.
    events.loc[events["user_id"] == "U00000", "user_id"] = "=HYPERLINK(1)"
    campaigns = planted.campaigns.copy()
    campaigns.loc[campaigns["user_id"] == "U00000", "user_id"] = "=HYPERLINK(1)"
    events.rename(columns={"user_id": "Customer ID", "ts": "Order Date", "text": "Product"}).to_csv(
        folder / "orders.csv", index=False
    )
    campaigns.to_csv(folder / "campaigns.csv", index=False)
    return folder, planted


@pytest.fixture(scope="module")
def run_twice(planted_files, tmp_path_factory):
    folder, planted = planted_files
    outs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"out{i}") / "result"
        code = main(
            [
                "run",
                str(folder / "orders.csv"),
                "--campaigns",
                str(folder / "campaigns.csv"),
                "--out",
                str(out),
                "--segments",
                "4",
                "--seed",
                "5",
                "--workspace",
                str(tmp_path_factory.mktemp(f"ws{i}")),
                "--quiet",
            ]
        )
        assert code == 0
        outs.append(out)
    return outs, planted


def test_outputs_follow_the_contract(run_twice):
    (out, _), planted = run_twice
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "strategies.csv",
        "summary.json",
        "user_segments.csv",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["input"]) >= {"rows", "rows_used", "rows_rejected", "users", "shape"}
    assert summary["input"]["shape"] == "events"
    assert summary["input"]["users"] == planted.truth.shape[0]
    assert summary["mapping"]["user"] == "Customer ID"
    assert summary["mapping"]["time"] == "Order Date"
    assert summary["period"] == "week" and summary["churn_after"] == 4
    segments = summary["segments"]
    assert [s["segment"] for s in segments] == [0, 1, 2, 3]
    assert sum(s["users"] for s in segments) == planted.truth.shape[0]
    assert all(s["keywords"] and isinstance(s["label"], str) for s in segments)
    curves = summary["retention"]["curves"]
    assert set(curves) == {"0", "1", "2", "3"}
    for curve in curves.values():
        assert curve[0] == 1.0 and all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert summary["retention"]["logrank_p"] < 0.01
    analyses = summary["retention"]["analyses"]  # retention, revenue retention and LTV lines
    assert set(analyses["retention"]) == {"0", "1", "2", "3", "all"}
    assert all(line[0] == 1.0 for line in analyses["retention"].values())
    assert all(a <= b for a, b in itertools.pairwise(analyses["ltv"]["all"]))
    assert "Retention and revenue over time" in (out / "report.html").read_text()
    policy = summary["policy"]
    assert set(policy) >= {"algorithm", "gamma", "actions", "stages", "value", "optimal_value"}
    assert len(policy["recommendations"]) == 4 * len(policy["stages"])
    assert policy["value"] >= 0.99 * policy["optimal_value"]
    for rec in policy["recommendations"]:
        assert rec["action"] in policy["actions"] and set(rec["q"]) == set(policy["actions"])
    ope = summary["ope"]
    for block in [ope["policy"], *ope["actions"].values()]:
        for est in ("ips", "snips", "dr"):
            lo, hi = block[est]["ci"]
            assert lo <= block[est]["value"] <= hi
    assert set(summary["timings"]) >= {"ingest", "segments", "retention", "policy", "report"}

    with open(out / "strategies.csv", newline="") as f:
        strategies = list(csv.DictReader(f))
    assert {(int(r["segment"]), r["stage"]) for r in strategies} == {
        (s, st) for s in range(4) for st in policy["stages"]
    }
    with open(out / "user_segments.csv", newline="") as f:
        users = list(csv.DictReader(f))
    assert len(users) == planted.truth.shape[0]
    assert {"user_id", "segment", "stage", "recommended_action"} <= set(users[0])
    ids = {u["user_id"] for u in users}
    assert "'=HYPERLINK(1)" in ids and "=HYPERLINK(1)" not in ids

    report = (out / "report.html").read_text()
    assert _external_resources(report) == []
    assert summary["input"]["sha256"] in report


def test_planted_segments_get_their_planted_best_action(run_twice):
    (out, _), planted = run_twice
    with open(out / "user_segments.csv", newline="") as f:
        users = {r["user_id"].lstrip("'"): int(r["segment"]) for r in csv.DictReader(f)}
    truth = dict(zip(planted.truth["user_id"], planted.truth["segment"], strict=True))
    truth["=HYPERLINK(1)"] = truth.pop("U00000")
    # Each found segment is mostly one planted segment: map it to that one.
    found_to_planted = {}
    for seg in set(users.values()):
        members = [truth[u] for u, s in users.items() if s == seg]
        found_to_planted[seg] = max(set(members), key=members.count)
    assert sorted(found_to_planted.values()) == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    cells = [r for r in summary["policy"]["recommendations"] if r["stage"] != "churned"]
    right = sum(
        r["action"] == planted.specs[found_to_planted[r["segment"]]].best_action for r in cells
    )
    assert right / len(cells) >= 0.9


def test_same_seed_gives_identical_files(run_twice):
    (a, b), _ = run_twice
    for name in ("strategies.csv", "user_segments.csv", "report.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):  # measurements of the run itself, not results
        assert set(s.pop("peak_memory_mb")) == set(s.pop("timings"))
        s.pop("workspace")
    assert sa == sb


BAD_FILES = {
    "empty.csv": b"",
    "header_only.csv": b"user,time\n",
    "binary.csv": bytes(range(256)) * 8,
    "no_user.csv": b"name,when\nx,2024-01-01\ny,2024-01-02\n",
    "one_user.csv": b"user,time\nu1,2024-01-01\nu1,2024-01-09\n",
    "bad_times.csv": b"user,time\nu1,soon\nu2,later\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_exits_2_with_one_error_line_and_leaves_out_dir(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(BAD_FILES[name])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retention",
            "run",
            str(bad),
            "--out",
            str(out),
            "--workspace",
            str(tmp_path / "ws"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert name in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--map", "colour=x"], "unknown role 'colour'"),
        (["--map", "user=nosuch"], "nosuch"),
        (["--segments", "1"], "--segments"),
        (["--gamma", "1.5"], "--gamma"),
        (["--period", "year"], "--period"),
        (["--action-cost", "discount=cheap"], "discount=cheap"),
        (["--churn-after", "1"], "--churn-after"),
    ],
)
def test_bad_options_exit_2(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retention",
            "run",
            str(ROOT / "sample_data" / "planted_events.csv.gz"),
            "--out",
            str(out),
            "--workspace",
            str(tmp_path / "ws"),
            *args,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not out.exists()
    assert not (tmp_path / "ws").exists()


# -- every option is checked before any work ---------------------------------------------------

PLANTED = ROOT / "sample_data" / "planted_events.csv.gz"


def _exit_code(argv: list[str]) -> int:
    """``main``'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture
def no_work(monkeypatch):
    """Any reading of the data fails the test: a bad option must stop the run before."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the run started before every option was checked")

    monkeypatch.setattr("retention.pipeline.ingest", forbidden)


def _assert_refused(tmp_path, capsys, args, needle, *, source=PLANTED):
    out, ws = tmp_path / "out", tmp_path / "ws"
    argv = ["run", str(source), "--out", str(out), "--workspace", str(ws), "--quiet", *args]
    assert _exit_code(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists() and not ws.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--period", "year"], "--period"),
        (["--churn-after", "1"], "'churn_after' parameter must be an int >= 2"),
        (["--churn-after", "two"], "--churn-after"),
        (["--segments", "51"], "--segments"),
        (["--segments", "some"], "--segments"),
        (["--gamma", "-0.1"], "--gamma"),
        (["--gamma", "1"], "--gamma"),
        (["--retain-reward", "inf"], "--retain-reward"),
        (["--churn-penalty", "nan"], "--churn-penalty"),
        (["--revenue-weight", "lots"], "--revenue-weight"),
        (["--action-cost", "discount"], "ACTION=COST"),
        (["--action-cost", "discount=nan"], "discount=nan"),
        (["--action-cost", "a=1", "--action-cost", "a=2"], "--action-cost a=... is given more"),
        (["--episodes", "0"], "--episodes"),
        (["--episodes", "many"], "--episodes"),
        (["--seed", "-1"], "'seed' parameter must be an int in [0, 4294967295]"),
        (["--seed", str(2**32)], "--seed"),
        (["--seed", "0.5"], "--seed"),
        (["--map", "user"], "ROLE=COLUMN"),
        (["--map", "colour=x"], "unknown role 'colour'"),
        (["--map", "user=a", "--map", "user=b"], "--map user=... is given more than once"),
    ],
)
def test_every_option_is_checked_before_any_work(tmp_path, capsys, no_work, args, needle):
    _assert_refused(tmp_path, capsys, args, needle)


def test_missing_input_and_campaign_files_are_refused(tmp_path, capsys, no_work):
    _assert_refused(tmp_path, capsys, [], "no such file", source=tmp_path / "nothing.csv")
    _assert_refused(tmp_path, capsys, [], "no such file", source=tmp_path)  # a folder
    args = ["--campaigns", str(tmp_path / "none.csv")]
    _assert_refused(tmp_path, capsys, args, "--campaigns")


def test_unreadable_input_is_refused(tmp_path, capsys, no_work, monkeypatch):
    # Tests may run as root, who reads any file: the refusal is simulated at open().
    real_open = Path.open

    def open_(self, *args, **kwargs):
        if self == PLANTED:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    _assert_refused(tmp_path, capsys, [], "cannot be read (Permission denied)")


def test_out_and_workspace_must_be_writable_folders(tmp_path, capsys, no_work, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args, needle in [
        (["--out", str(a_file / "out")], "a_file is not a folder"),
        (["--out", str(a_file)], "exists and is not a folder"),
        (["--workspace", str(a_file)], "exists and is not a folder"),
        (["--workspace", str(a_file / "ws")], "a_file is not a folder"),
    ]:
        _assert_refused(tmp_path, capsys, args, needle)  # the later --out/--workspace wins
    assert a_file.read_text() == "x"

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(  # as root every folder is writable: simulate one that is not
        os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode)
    )
    _assert_refused(tmp_path, capsys, ["--out", str(locked / "out")], "locked is not writable")
    assert list(locked.iterdir()) == []


def test_users_csv_carries_last_seen_active_periods_and_spend(run_twice, planted_files):
    """The users CSV for a CRM: each user's last seen date, active weeks and spend, against
    pandas on the input file."""
    (out, _), _ = run_twice
    folder, _ = planted_files
    orders = pd.read_csv(folder / "orders.csv", parse_dates=["Order Date"])
    week = orders["Order Date"].dt.to_period("W-SUN")  # weeks start on Monday
    by_user = orders.assign(week=week).groupby("Customer ID")
    users = pd.read_csv(out / "user_segments.csv", dtype={"user_id": str}).set_index("user_id")
    assert list(users.columns[-3:]) == ["last_seen", "active_periods", "spend"]
    users.index = users.index.str.removeprefix("'")  # the formula-escaped id
    assert set(users.index) == set(by_user.groups)
    ids = sorted(by_user.groups)
    assert (users.loc[ids, "active_periods"].to_numpy() == by_user["week"].nunique()[ids]).all()
    last = by_user["Order Date"].max().dt.strftime("%Y-%m-%d")[ids]
    assert (users.loc[ids, "last_seen"].to_numpy() == last.to_numpy()).all()
    assert np.allclose(users.loc[ids, "spend"], by_user["amount"].sum()[ids], rtol=1e-5)

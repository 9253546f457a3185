"""Issue 14: every setting on the command line, ``--settings FILE.toml`` (flags override the
file), and bad settings files refused with one line naming the key and the allowed values before
anything runs or is written."""

from __future__ import annotations

import tomllib

import pytest

from retention.cli import build_parser, main
from retention.config import PipelineConfig
from retention.policy_runs import PolicyRequest
from retention.samples import SAMPLE_DIR
from retention.settings import BY_KEY, SETTINGS, load_settings, page_values, resolve, to_toml

PLANTED = SAMPLE_DIR / "planted_events.csv.gz"


def _args(*argv: str):
    return build_parser().parse_args(["run", "in.csv", "--out", "o", *argv])


def _write(tmp_path, text: str | bytes, name: str = "s.toml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_every_setting_has_a_flag_a_default_and_words():
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    flags = set(run._option_string_actions)  # noqa: SLF001
    for setting in SETTINGS:
        assert setting.flag in flags, setting.key
        assert setting.label and setting.help, setting.key
        if setting.default is not None:
            assert setting.check(setting.default) == setting.default, setting.key
        else:
            assert setting.default_words, setting.key
    # The issue's list, by the pages' words.
    for key in ("text_weight", "clustering", "segments", "map_method", "text_model", "algorithm",
                "exploration", "learning_rate", "episodes", "gamma", "churn_penalty",
                "retain_reward", "revenue_weight", "action_costs", "lift", "prior_strength",
                "campaign_timing", "period", "churn_after", "seed", "currency"):  # fmt: skip
        assert key in BY_KEY


def test_help_is_grouped_by_page(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: no wrapping inside a phrase
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # noqa: SLF001
    for title in ("Data and retention", "Segments (the Segments page)", "Policy (the Policy page)"):
        assert title in text
    assert "--settings FILE.toml" in text and "[Policy page: Learning method]" in text


def test_the_file_is_read_and_a_flag_overrides_it(tmp_path):
    path = _write(tmp_path, """
period = "month"
gamma = 0.5
churn_penalty = 8
clustering = "hdbscan"
segments = 3
exploration = 0.2
[action_costs]
discount = 0.3
[lift]
none = 1.0
discount = 1.2
""")  # fmt: skip
    values = resolve(_args("--settings", str(path), "--gamma", "0.7", "--lift", "discount=1.3"))
    assert values["gamma"] == 0.7  # the flag beats the file
    assert values["churn_penalty"] == 8.0 and values["period"] == "month"
    assert values["clustering"] == "hdbscan" and values["segments"] == 3
    assert values["lift"] == {"none": 1.0, "discount": 1.3}  # row by row
    assert values["action_costs"] == {"discount": 0.3}
    assert values["retain_reward"] == 1.0  # neither: the default
    # A flag given with the default's value still beats the file.
    assert resolve(_args("--settings", str(path), "--gamma", "0.9"))["gamma"] == 0.9

    config = PipelineConfig.from_settings(values, input=PLANTED)
    seg = config.segment_settings("month")
    assert (seg.algorithm, seg.k, seg.period, seg.random_state) == ("hdbscan", 3, "month", 0)
    request = PolicyRequest.from_config(config, "seg-run", "month")
    assert request.min_epsilon == 0.2 and request.actions == ("none", "discount")
    assert request.reward.gamma == 0.7 and request.reward.action_costs["discount"] == 0.3
    assert request.lift == {"none": 1.0, "discount": 1.3}


def test_a_lift_table_file(tmp_path):
    table = _write(tmp_path, "action,lift,cost\nnone,1,0\nemail,1.1,0.01\n", "lift.csv")
    values = resolve(_args("--lift-table", str(table), "--action-cost", "email=0.02"))
    assert values["lift"] == {"none": 1.0, "email": 1.1}
    assert values["action_costs"] == {"none": 0.0, "email": 0.02}


def test_without_the_file_the_defaults_are_as_before():
    values = resolve(_args())
    config = PipelineConfig.from_settings(values, input=PLANTED)
    assert config.period is None and config.segments == "auto" and config.gamma == 0.9
    assert config.segment_settings().random_state == 0 and config.lift is None
    assert PipelineConfig.from_settings(resolve(_args("--seed", "7")), input=PLANTED)\
        .segment_settings().random_state == 7  # fmt: skip


def test_a_page_file_round_trips(tmp_path):
    values = page_values(
        {"k": 4, "algorithm": "kmeans", "text_weight": 0.6, "map_method": "umap",
         "model_path": None, "user_vector": "items", "weighting": "frequency",
         "random_state": 0},
        {"gamma": 0.8, "retain_reward": 1.0, "churn_penalty": 8.0, "revenue_weight": 0.0,
         "algorithm": "sarsa", "episodes": 30, "epsilon": 0.05, "learning_rate": 0.5, "seed": 3,
         "actions": [{"action": "none", "cost": 0.0, "lift": 1.0},
                     {"action": "gift card", "cost": 0.1, "lift": 1.2}]},
        period="week", churn_after=6, campaign_timing=None, currency="GBP",
    )  # fmt: skip
    text = to_toml(values, source="the Policy page", notes=["Made on the dataset\n'x'."])
    assert text.startswith("# Retention Studio settings, downloaded from the Policy page.")
    assert "# Made on the dataset 'x'.\n" in text  # a note is one comment line
    assert tomllib.loads(text) == values
    path = _write(tmp_path, text)
    assert load_settings(path) == values
    assert values["text_model"] == "english"  # what ran: the bundled model
    assert values["lift"] == {"none": 1.0, "gift card": 1.2}


@pytest.fixture
def no_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the run started before the settings were checked")

    monkeypatch.setattr("retention.pipeline.ingest", forbidden)


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("gama = 0.5\n", ["unknown setting 'gama'", "Did you mean 'gamma'", "churn_penalty"]),
        ("gamma = 1.5\n", ["'gamma'", "a number in [0, 1)", "Got 1.5"]),
        ("segments = 1\n", ["'segments'", "'auto' or an int in [2, 50]"]),
        ("clustering = 'dbscan'\n", ["'clustering'", "one of kmeans, hdbscan", "'dbscan'"]),
        ("episodes = 'many'\n", ["'episodes'", "an int >= 1"]),
        ("seed = 0.5\n", ["'seed'", "an int in [0, 4294967295]"]),
        ("churn_after = 1\n", ["'churn_after'", "an int >= 2"]),
        ("currency = 'pounds'\n", ["'currency'", "three-letter currency code"]),
        ("[lift]\ndiscount = -1\n", ["'lift'", "action = number >= 0"]),
        ("action_costs = 3\n", ["'action_costs'", "a table of action"]),
        ("gamma = \n", ["not valid TOML", "line 1"]),
        ("[lift\n", ["not valid TOML", "line 1"]),
        (b"\xff\xfe\x00g", ["not a text file in UTF-8"]),
    ],
)
def test_a_bad_settings_file_is_one_line_and_nothing_runs(
    tmp_path, capsys, no_work, content, needles
):
    path = _write(tmp_path, content)
    out, ws = tmp_path / "out", tmp_path / "ws"
    argv = ["run", str(PLANTED), "--settings", str(path), "--out", str(out),
            "--workspace", str(ws), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --settings {path}"), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not ws.exists()  # nothing written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--settings", "missing.toml"], "--settings"),
        (["--text-weight", "1.5"], "'text_weight' parameter must be a number in [0, 1]"),
        (["--clustering", "dbscan"], "--clustering"),
        (["--map-method", "tsne"], "--map-method"),
        (["--algorithm", "dqn"], "--algorithm"),
        (["--algorithm", "batch"], "--algorithm batch learns only from a campaign log"),
        (["--exploration", "2"], "'exploration' parameter must be a number in [0, 1]"),
        (["--learning-rate", "0"], "'learning_rate' parameter must be a number in (0, 1]"),
        (["--prior-strength", "-1"], "'prior_strength' parameter must be a number >= 0"),
        (["--lift", "discount"], "ACTION=LIFT"),
        (["--lift", "discount=-1"], "the assumed lift must be a number >= 0"),
        (["--lift", "a=1", "--lift", "a=2"], "--lift a=... is given more than once"),
        (["--segment-seed", "-1"], "'segment_seed' parameter must be an int"),
        (["--text-model", "/no/such/model"], "text model must be auto, english, multilingual"),
    ],
)
def test_every_new_flag_is_checked_before_any_work(tmp_path, capsys, no_work, args, needle):
    out, ws = tmp_path / "out", tmp_path / "ws"
    argv = ["run", str(PLANTED), "--out", str(out), "--workspace", str(ws), "--quiet", *args]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists() and not ws.exists()


def test_lift_with_a_campaign_log_is_refused(tmp_path, capsys, no_work):
    out = tmp_path / "out"
    argv = ["run", str(PLANTED), "--campaigns", str(SAMPLE_DIR / "planted_campaigns.csv.gz"),
            "--lift", "discount=1.2", "--out", str(out), "--workspace", str(tmp_path / "ws"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "measured from the log, not assumed" in err and not out.exists()


def test_the_tables_defaults_are_the_librarys():
    import inspect

    from retention.learn import QLearner
    from retention.mdp import DEFAULT_COSTS, DEFAULT_LIFT, RewardSettings
    from retention.policy import estimate

    reward = RewardSettings()
    for key in ("gamma", "retain_reward", "churn_penalty", "revenue_weight"):
        assert BY_KEY[key].default == getattr(reward, key), key
    learner = QLearner()
    assert BY_KEY["episodes"].default == learner.episodes
    assert BY_KEY["learning_rate"].default == learner.learning_rate
    assert BY_KEY["prior_strength"].default == (
        inspect.signature(estimate).parameters["prior_strength"].default
    )
    for key, table in (("action_costs", DEFAULT_COSTS), ("lift", DEFAULT_LIFT)):
        for action, value in table.items():
            if action != "none":
                assert f"{action} {value:g}" in BY_KEY[key].default_words, key

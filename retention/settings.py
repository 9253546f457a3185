"""Every setting of a run in one table, for the command line and the app alike.

:data:`SETTINGS` lists each setting once: its key (the settings file's key and the parsed
option's name), its flag, what values it allows, its default and the words the app's page uses
for it. The command line's options (:func:`add_arguments`), the settings file
(``--settings FILE.toml``: :func:`load_settings`) and the pages' "Download these settings"
button (:func:`to_toml`) all read this table, so they cannot drift apart: a product manager
tunes in the browser, downloads the file, and the data team schedules the same run with
``python -m retention run DATA --settings FILE.toml --out DIR``.

Precedence: a flag on the command line beats the file, the file beats the default.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retention.errors import InputError
from retention.periods import DEFAULT_CHURN_AFTER, DEFAULT_TIMING, PERIODS, TIMING_HELP, TIMINGS
from retention.segments.settings import (
    ALGORITHMS as CLUSTERINGS,
)
from retention.segments.settings import (
    DEFAULT_TEXT_WEIGHT,
    K_MAX,
    MAP_METHODS,
    USER_VECTORS,
    WEIGHTINGS,
)

SEED_MAX = 2**32 - 1  # NumPy and scikit-learn take unsigned 32-bit seeds (retention.config)
TEXT_MODELS: tuple[str, ...] = ("auto", "english", "multilingual")
POLICY_ALGORITHMS: tuple[str, ...] = ("q", "sarsa", "batch")
#: The argparse groups of ``run --help``, in order: group -> its title.
GROUPS: dict[str, str] = {
    "data": "Data and retention (the Data and Retention pages)",
    "segments": "Segments (the Segments page)",
    "policy": "Policy (the Policy page)",
}


class _Bad(ValueError):
    """A value a setting does not allow (the message: "must be ...")."""


@dataclass(frozen=True)
class Setting:
    """One setting: ``key`` (the settings file's key), ``flag`` (the command line's option),
    ``kind`` (how its values are read and checked: ``choice``, ``int``, ``number``, ``k``,
    ``currency``, ``text_model``, ``table``), the ``choices`` or the range ``low``..``high``
    (``high_open``: ``high`` itself not allowed), the ``default`` (None: decided at run time, as
    ``default_words`` says), the page's ``label`` and ``page``, the ``widget`` key the page keeps
    its value under, and the page's ``slider`` bounds (within the allowed range)."""

    key: str
    flag: str
    group: str
    kind: str
    default: Any
    label: str
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False
    metavar: str | None = None
    page: str | None = None
    widget: str | None = None
    slider: tuple[float, float] | None = None
    default_words: str | None = None

    @property
    def allowed(self) -> str:
        """The values allowed, in words ("a number in [0, 1)")."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "k":
            return f"'auto' or an int in [2, {K_MAX}]"
        if self.kind == "currency":
            return "a three-letter currency code such as GBP, EUR or USD"
        if self.kind == "text_model":
            return f"{', '.join(TEXT_MODELS)} or the path of a local sentence-transformers folder"
        noun = "an int" if self.kind == "int" else "a number"
        if self.kind == "table":
            return f"a table of action = {self._range_words('number')}"
        return self._range_words(noun)

    def _range_words(self, noun: str) -> str:
        if self.low is None and self.high is None:
            return f"{noun} (finite)" if noun == "a number" else noun
        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{noun} in {left}{_num(self.low)}, {_num(self.high)}{right}"

    def check(self, value: Any) -> Any:
        """``value`` as the run takes it, or :class:`_Bad` when it is not allowed."""
        if self.kind == "choice":
            if value not in self.choices:
                raise _Bad(self.allowed)
            return value
        if self.kind == "k":
            return "auto" if value == "auto" else self._number(value, integer=True)
        if self.kind == "currency":
            code = value.strip().upper() if isinstance(value, str) else ""
            if len(code) != 3 or not code.isalpha() or not code.isascii():
                raise _Bad(self.allowed)
            return code
        if self.kind == "text_model":
            if not isinstance(value, str) or not value.strip():
                raise _Bad(self.allowed)
            return value.strip()
        if self.kind == "table":
            if not isinstance(value, Mapping) or not value:
                raise _Bad(self.allowed)
            out: dict[str, float] = {}
            for action, number in value.items():
                if not str(action).strip():
                    raise _Bad(self.allowed)
                out[str(action).strip()] = self._number(number, integer=False)
            return out
        return self._number(value, integer=self.kind == "int")

    def _number(self, value: Any, *, integer: bool) -> int | float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not math.isfinite(value):
            raise _Bad(self.allowed)
        low, high = self.low, self.high
        if self.kind == "k":
            low, high = 2, K_MAX
        if low is not None and (value < low or (self.low_open and value == low)):
            raise _Bad(self.allowed)
        if high is not None and (value > high or (self.high_open and value == high)):
            raise _Bad(self.allowed)
        return int(value) if integer else float(value)

    def message(self, value: Any) -> str:
        """One line: what the setting must be and what was given."""
        return f"The '{self.key}' parameter must be {self.allowed}. Got {value!r}."

    def parse_text(self, text: str) -> Any:
        """A command-line value (text) read and checked: ``argparse``'s ``type``."""
        value: Any = text
        read = {"int": int, "k": int, "number": float}.get(self.kind)
        if read is not None and text != "auto":
            with contextlib.suppress(ValueError):
                value = read(text)
        try:
            return self.check(value)
        except _Bad:
            raise argparse.ArgumentTypeError(self.message(text)) from None


def _num(x: float | None) -> str:
    """A bound in words: 4294967295, not 4.29497e+09."""
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x:g}"


def _costs_help() -> str:
    return "cost of one action for one user and period, in reward points; repeatable"


#: Every setting, grouped as on the pages (and in ``run --help``).
SETTINGS: tuple[Setting, ...] = (
    # -- data and retention
    Setting("period", "--period", "data", "choice", "auto", "Period", "the length of one "
            "period; 'auto' chooses it from the gaps between users' events",
            choices=("auto", *PERIODS), page="Retention", widget="retention.period"),
    Setting("churn_after", "--churn-after", "data", "int", DEFAULT_CHURN_AFTER,
            "Churn window", "periods without activity after which a user counts as churned "
            "(1 period is 'lapsing')", low=2, metavar="N", page="Retention",
            widget="retention.churn_after"),
    Setting("campaign_timing", "--campaign-timing", "data", "choice", DEFAULT_TIMING,
            "Campaign timing", "which move between periods a campaign send counts for: "
            + "; ".join(f"{k}: {v}" for k, v in TIMING_HELP.items()),
            choices=TIMINGS, page="Data"),
    Setting("currency", "--currency", "data", "currency", None, "Currency of the revenue",
            "currency of the revenue and costs (GBP, EUR, USD, ...): money in the report and "
            "summary.json is stated in it", metavar="CODE", page="Data",
            default_words="not stated"),
    # -- segments
    Setting("text_weight", "--text-weight", "segments", "number", DEFAULT_TEXT_WEIGHT,
            "Weight of what users buy vs how they behave", "1 = only the text of their "
            "purchases, 0 = only behaviour (recency, frequency, spend, tenure)", low=0, high=1,
            metavar="W", page="Segments", widget="segments.text_weight", slider=(0.0, 1.0)),
    Setting("clustering", "--clustering", "segments", "choice", "kmeans", "Method",
            "k-means (k chosen for you or set), or HDBSCAN (finds its own number of segments)",
            choices=CLUSTERINGS, page="Segments", widget="segments.algorithm"),
    Setting("segments", "--segments", "segments", "k", "auto", "Number of segments",
            "'auto': the fewest whose silhouette is within 5% of the best (2-12)",
            metavar="K|auto", page="Segments", widget="segments.k"),
    Setting("map_method", "--map-method", "segments", "choice", "pca", "Map",
            "how the 2-D map of users is drawn", choices=MAP_METHODS, page="Segments",
            widget="segments.map"),
    Setting("text_model", "--text-model", "segments", "text_model", "auto",
            "Text model", "the sentence-embedding model: auto, english (bundled MiniLM), "
            "multilingual, or a local sentence-transformers folder", metavar="MODEL",
            page="Segments", widget="segments.text_model"),
    Setting("user_vector", "--user-vector", "segments", "choice", "items",
            "A user's text vector", "items: the mean of the user's items (each distinct text "
            "embedded once); document: the user's whole document (slower)",
            choices=USER_VECTORS, page="Segments", widget="segments.user_vector"),
    Setting("item_weighting", "--item-weighting", "segments", "choice", "spend",
            "Weight each item", "how a user's items are weighted in their text vector",
            choices=WEIGHTINGS, page="Segments", widget="segments.weighting"),
    Setting("segment_seed", "--segment-seed", "segments", "int", None, "Segmentation seed",
            "random seed of the segmentation (the Segments page uses 0)", low=0,
            high=SEED_MAX, metavar="S", default_words="--seed"),
    # -- policy
    Setting("algorithm", "--algorithm", "policy", "choice", "q", "Learning method",
            "q: Q-learning on simulated users (the best policy); sarsa: SARSA (cautious); "
            "batch: batch Q-learning on the campaign log only", choices=POLICY_ALGORITHMS,
            page="Policy", widget="policy.algorithm"),
    Setting("gamma", "--gamma", "policy", "number", 0.9,
            "How much the future counts (each period ahead × this)", "the discount γ",
            low=0, high=1, high_open=True, metavar="G", page="Policy", widget="policy.gamma",
            slider=(0.0, 0.99)),
    Setting("retain_reward", "--retain-reward", "policy", "number", 1.0,
            "Reward for each user still active (points per period)", "points for every user "
            "active in a period", metavar="R", page="Policy", widget="policy.retain",
            slider=(0.0, 5.0)),
    Setting("churn_penalty", "--churn-penalty", "policy", "number", 5.0,
            "Penalty when a user is lost (points, once per loss)", "points taken off each "
            "time a user moves into 'churned'", metavar="P", page="Policy",
            widget="policy.penalty", slider=(0.0, 20.0)),
    Setting("revenue_weight", "--revenue-weight", "policy", "number", 0.0,
            "Weight on revenue (points per unit of money in an active period)", "points per "
            "unit of a segment's mean revenue of an active period", metavar="W", page="Policy",
            widget="policy.revenue", slider=(0.0, 1.0)),
    Setting("episodes", "--episodes", "policy", "int", 200, "Training rounds",
            "episodes of simulated users", low=1, metavar="N", page="Policy",
            widget="policy.episodes", slider=(20, 1000)),
    Setting("exploration", "--exploration", "policy", "number", None,
            "Share of random tries (at the end of training)", "the exploration floor ε",
            low=0, high=1, metavar="E", page="Policy", widget="policy.epsilon",
            slider=(0.0, 1.0), default_words="0.5 for Q-learning, 0.05 for SARSA"),
    Setting("learning_rate", "--learning-rate", "policy", "number", 1.0,
            "How far one outcome moves an estimate", "the learning rate at a first visit",
            low=0, low_open=True, high=1, metavar="LR", page="Policy", widget="policy.lr",
            slider=(0.01, 1.0)),
    Setting("seed", "--seed", "policy", "int", 0, "Random seed", "the same seed and settings "
            "give the same run", low=0, high=SEED_MAX, metavar="S", page="Policy",
            widget="policy.seed", slider=(0, 10_000)),
    Setting("prior_strength", "--prior-strength", "policy", "number", 20.0,
            "Prior strength (campaign log)", "with a campaign log: how many pseudo-users of "
            "'no action' each action's estimate starts from (the Dirichlet prior)", low=0,
            metavar="N"),
    Setting("action_costs", "--action-cost", "policy", "table", None,
            "Cost per user and period", _costs_help(), low=0, metavar="ACTION=COST",
            page="Policy", widget="policy.actions", default_words="recommendation 0.02, "
            "engagement 0.05, discount 0.2"),
    Setting("lift", "--lift", "policy", "table", None, "Assumed lift",
            "without a campaign log: the assumed effect of an action (× the chance of being "
            "active next period); the actions are the table's; repeatable", low=0,
            metavar="ACTION=LIFT", page="Policy", widget="policy.actions",
            default_words="recommendation 1.05, engagement 1.08, discount 1.15"),
)  # fmt: skip
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
#: The flags whose option is added elsewhere in the command line (``--text-model``: the
#: multilingual embedder's own); :func:`add_arguments` adds them only when missing.
SHARED_FLAGS = ("--text-model",)


# --------------------------------------------------------------------------- the settings file


def load_settings(path: Path | str) -> dict[str, Any]:
    """The settings in a TOML file, checked: unknown keys, values out of range and malformed
    TOML are refused with one line naming the key and the allowed values."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"--settings {path}: cannot be read ({exc.strerror or exc}). Check the path."
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(
            f"--settings {path}: not a text file in UTF-8. Give the .toml file the app's "
            "'Download these settings' wrote."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(
            f"--settings {path}: not valid TOML ({exc}). Fix that line, or download the file "
            "again from the app."
        ) from None
    return check_settings(data, where=f"--settings {path}")


def check_settings(data: Mapping[str, Any], where: str = "settings") -> dict[str, Any]:
    """``data`` (a settings file's content) with every key known and every value allowed."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        setting = BY_KEY.get(key)
        if setting is None:
            close = difflib.get_close_matches(key, list(BY_KEY), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise InputError(
                f"{where}: unknown setting '{key}'.{hint} Known settings: {', '.join(BY_KEY)}."
            )
        try:
            out[key] = setting.check(value)
        except _Bad:
            raise InputError(f"{where}: {setting.message(value)}") from None
    return out


def to_toml(values: Mapping[str, Any], source: str = "the app", notes: Sequence[str] = ()) -> str:
    """A settings file for ``values`` (keys of :data:`SETTINGS`; None values left out), in the
    table's order, with a comment saying where it came from and how to use it (and ``notes``,
    one comment line each)."""
    import tomli_w  # the writer; tomllib (standard library) only reads

    known = check_settings({k: v for k, v in values.items() if v is not None})
    ordered = {s.key: known[s.key] for s in SETTINGS if s.key in known}
    header = (
        f"# Retention Studio settings, downloaded from {source}.\n"
        "# Run the same analysis on a schedule:\n"
        "#   python -m retention run DATA.csv --settings this-file.toml --out results/\n"
        "# A flag on the command line overrides the value here "
        "(python -m retention run --help lists them).\n"
        + "".join(f"# {' '.join(note.split())}\n" for note in notes)
        + "\n"
    )
    return header + tomli_w.dumps(ordered)


# --------------------------------------------------------------------------- the command line


class _Given(argparse.Action):
    """Store an option's value and remember that it was given (it then beats the file)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)
        _mark(namespace, self.dest)


class _GivenPair(argparse.Action):
    """``ACTION=NUMBER``, repeatable: a list of pairs, remembered as given."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        pairs = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, [*pairs, values])
        _mark(namespace, self.dest)


def _mark(namespace: Any, dest: str) -> None:
    given = set(getattr(namespace, "given_settings", set()))
    given.add(dest)
    namespace.given_settings = given


def _pair(setting: Setting) -> Callable[[str], tuple[str, float]]:
    """``ACTION=NUMBER`` read and checked by ``setting``'s rule."""

    def parse(text: str) -> tuple[str, float]:
        action, sep, number = text.partition("=")
        if not sep or not action.strip() or not number.strip():
            raise argparse.ArgumentTypeError(f"expected {setting.metavar}, got {text!r}")
        try:
            value = setting.check({action.strip(): float(number)})
        except (ValueError, _Bad):
            raise argparse.ArgumentTypeError(
                f"{text}: the {setting.label.lower()} must be a number"
                f"{' >= 0' if setting.low == 0 else ''}, e.g. {setting.flag} "
                f"{action.strip()}={1.1 if setting.key == 'lift' else 0.5}."
            ) from None
        return next(iter(value.items()))

    return parse


def _dest(setting: Setting) -> str:
    """The parsed option's name (``--action-cost`` keeps its historical ``action_cost``)."""
    return setting.flag.removeprefix("--").replace("-", "_")


def _help(setting: Setting) -> str:
    default = setting.default_words or setting.default
    text = f"{setting.help} (default: {default})"
    if setting.page:
        text += f" [{setting.page} page: {setting.label}]"
    return text.replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """Add ``--settings FILE.toml`` and every setting of :data:`SETTINGS` to ``parser``, in
    argument groups named after the pages (a flag already there is left as it is); ``only``:
    just these groups (``plan`` takes the data and segment settings, not the learner's)."""
    parser.add_argument(
        "--settings",
        metavar="FILE.toml",
        type=Path,
        default=None,
        help="read the settings from this file (the app's 'Download these settings' writes "
        "it); a flag given here overrides the file",
    )
    taken = set(parser._option_string_actions)  # noqa: SLF001 -- argparse has no public look-up
    wanted = set(GROUPS if only is None else only)
    groups = {
        name: parser.add_argument_group(title) for name, title in GROUPS.items() if name in wanted
    }
    for setting in SETTINGS:
        if setting.flag in taken or setting.group not in wanted:
            continue
        group = groups[setting.group]
        if setting.kind == "table":
            group.add_argument(
                setting.flag, dest=_dest(setting), metavar=setting.metavar,
                type=_pair(setting), action=_GivenPair, default=[], help=_help(setting),
            )  # fmt: skip
            continue
        choices = setting.choices if setting.kind == "choice" else None
        group.add_argument(
            setting.flag, dest=_dest(setting), metavar=setting.metavar, choices=choices,
            type=None if choices else setting.parse_text, action=_Given,
            default=setting.default, help=_help(setting),
        )  # fmt: skip
    if "policy" not in groups:
        return
    groups["policy"].add_argument(
        "--lift-table", metavar="FILE.csv", type=Path, default=None,
        help="the assumed lift table as a CSV file with columns action, lift (and optionally "
        "cost); --lift overrides a row",
    )  # fmt: skip


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting's value for this run: the flag when given, else the settings file's
    (``--settings``), else the default; tables merged row by row (``--lift`` and
    ``--action-cost`` over ``--lift-table`` over the file). Bad files raise :class:`InputError` before anything runs."""
    from_file = load_settings(args.settings) if getattr(args, "settings", None) else {}
    given = set(getattr(args, "given_settings", set()))
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        dest = _dest(setting)
        if setting.kind == "table":
            table = dict(from_file.get(setting.key) or {})
            if setting.key == "lift" and getattr(args, "lift_table", None):
                table |= _lift_table(args.lift_table)["lift"]
            table |= dict(getattr(args, dest, None) or [])
            values[setting.key] = table or None
            continue
        flag = getattr(args, dest, setting.default)
        # Given on the command line: marked by our own options; an option added elsewhere
        # (SHARED_FLAGS) counts as given when it holds a value other than the default.
        explicit = dest in given or (flag is not None and flag != setting.default)
        values[setting.key] = (
            flag if explicit or setting.key not in from_file else from_file[setting.key]
        )
    if getattr(args, "lift_table", None):
        costs = _lift_table(args.lift_table).get("cost", {})
        file_costs = dict(from_file.get("action_costs") or {})
        values["action_costs"] = (
            file_costs | costs | dict(getattr(args, "action_cost", None) or [])
        ) or None
    return values


def _lift_table(path: Path) -> dict[str, dict[str, float]]:
    """A lift table file: ``action, lift[, cost]`` (CSV); each column as action -> number."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"--lift-table {path}: cannot be read as CSV ({exc}).") from None
    columns = {str(c).strip().lower(): c for c in table.columns}
    if "action" not in columns or "lift" not in columns:
        raise InputError(
            f"--lift-table {path}: needs the columns action and lift (and optionally cost); "
            f"it has {', '.join(map(str, table.columns))}."
        )
    out: dict[str, dict[str, float]] = {}
    for name in ("lift", "cost"):
        if name not in columns:
            continue
        pairs = dict(zip(table[columns["action"]].astype(str), table[columns[name]], strict=True))
        key = "lift" if name == "lift" else "action_costs"
        try:
            out[name] = BY_KEY[key].check(pairs)
        except _Bad:
            raise InputError(
                f"--lift-table {path}: the column {name} must hold numbers >= 0 for every action."
            ) from None
    return out


# --------------------------------------------------------------------------- the pages


def page_values(
    segmentation: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
    *,
    period: str | None = None,
    churn_after: int | None = None,
    campaign_timing: str | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """The settings file's values for what the app shows: ``segmentation`` as
    :class:`~retention.segments.SegmentSettings` stores it, ``policy`` as the Policy page's
    :class:`~retention.policy_runs.PolicyForm` fields plus its ``actions`` table (records of
    ``action, cost[, lift]``), and the shared data settings."""
    values: dict[str, Any] = {
        "period": period,
        "churn_after": churn_after,
        "campaign_timing": campaign_timing,
        "currency": currency,
    }
    if segmentation is not None:
        s = dict(segmentation)
        values |= {
            "text_weight": float(s.get("text_weight", DEFAULT_TEXT_WEIGHT)),
            "clustering": s.get("algorithm", "kmeans"),
            "segments": s.get("k", "auto"),
            "map_method": s.get("map_method", "pca"),
            # What ran: the run's model choice, else its model folder, else the bundled English
            # model (a run stored before the model choice existed).
            "text_model": s.get("text_model") or s.get("model_path") or "english",
            "user_vector": s.get("user_vector", "items"),
            "item_weighting": s.get("weighting", "spend"),
            "segment_seed": int(s.get("random_state", 0)),
        }
    if policy is not None:
        p = dict(policy)
        rows = list(p.get("actions") or [])
        costs = {str(r["action"]).strip(): float(r.get("cost") or 0.0) for r in rows}
        lifts = {
            str(r["action"]).strip(): float(1.0 if _missing(r.get("lift")) else r["lift"])
            for r in rows
            if "lift" in r
        }
        values |= {
            "algorithm": p.get("algorithm"),
            "gamma": p.get("gamma"),
            "retain_reward": p.get("retain_reward"),
            "churn_penalty": p.get("churn_penalty"),
            "revenue_weight": p.get("revenue_weight"),
            "episodes": p.get("episodes"),
            "exploration": p.get("epsilon"),
            "learning_rate": p.get("learning_rate"),
            "seed": p.get("seed"),
            "action_costs": costs or None,
            "lift": lifts or None,
        }
    return {key: _plain(value) for key, value in values.items() if value is not None}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """NumPy numbers as Python's (TOML writes only those)."""
    if hasattr(value, "item") and not isinstance(value, Mapping | Sequence):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


__all__ = [
    "BY_KEY",
    "SETTINGS",
    "Setting",
    "add_arguments",
    "check_settings",
    "load_settings",
    "page_values",
    "resolve",
    "to_toml",
]

"""``python -m retention plan`` and ``python -m retention results``: the test commands.

``plan INPUT --out DIR`` writes ``assignment.csv`` and ``plan.json``; ``results INPUT --plan
PLAN_DIR --log FILE --events FILE --out DIR`` writes ``summary.json`` (with ``experiment``),
``effects.csv`` and ``next_assignment.csv`` (the next wave). Both take the dataset and segment
options of ``run`` and keep its contract: every option checked first, one ``error:`` line and
status 2 on bad input, ``DIR`` left as it was (outputs staged and published in one step).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from retention.errors import InputError


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {value}")
    return value


def _actions(text: str) -> tuple[str, ...]:
    acts = tuple(a.strip() for a in text.split(",") if a.strip())
    if not acts or "none" in acts:
        raise argparse.ArgumentTypeError(
            f"must name the strategies to test, comma-separated, without 'none' (the holdout); "
            f"got {text!r}"
        )
    return acts


def _segment_ids(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be segment numbers, comma-separated (e.g. 0,2); got {text!r}"
        ) from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"must name segments 0, 1, ...; got {text!r}")
    return ids


def _stages(text: str) -> tuple[str, ...]:
    stages = ("active", "lapsing", "at_risk", "churned")
    got = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in got if x not in stages]
    if not got or bad:
        raise argparse.ArgumentTypeError(
            f"must be stages among {', '.join(stages)}, comma-separated; got {text!r}"
        )
    return got


def _dataset_options(p: argparse.ArgumentParser) -> None:
    """The dataset and segment options of ``run``."""
    from retention.cli import ROLES, _role_column, _seed
    from retention.settings import add_arguments

    p.add_argument("input", metavar="INPUT", type=Path, help="the event log the plan is for")
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    p.add_argument("--campaigns", metavar="FILE", type=Path, help="campaign log of INPUT, if any")
    p.add_argument("--map", metavar="ROLE=COLUMN", type=_role_column, action="append",
                   default=[], help=f"use COLUMN for ROLE (roles: {', '.join(ROLES)})")  # fmt: skip
    p.add_argument("--seed", metavar="S", type=_seed, default=0)
    p.add_argument("--workspace", metavar="DIR", type=Path, default=None)
    p.add_argument("--progress", choices=("auto", "lines", "none"), default="auto",
                   help="progress on stderr: 'auto' a bar when stderr is a terminal, 'lines' "
                   "one line per step, 'none' nothing")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(action_cost=[])
    # --settings FILE.toml and the data and segment settings, as `run` has them (the app's
    # "Download these settings" file plans on the same segments).
    add_arguments(p, only=("data", "segments"))


def add_commands(sub: Any) -> None:
    """Add ``plan`` and ``results`` to the command line's subparsers."""
    from retention.cli import _gamma, _number, _positive_int

    plan = sub.add_parser(
        "plan",
        help="plan a randomised test of the strategies",
        description="Plan a randomised test on the users of INPUT: per segment × stage, the "
        "users available now, the baseline chance of being active next period, the users "
        "needed per arm and the periods the test must run; write assignment.csv (one arm per "
        "user) and plan.json into DIR.",
    )
    _dataset_options(plan)
    plan.add_argument("--actions", metavar="A,B,...", type=_actions,
                      default=("recommendation", "engagement", "discount"))  # fmt: skip
    plan.add_argument("--holdout", metavar="SHARE", type=_share, default=0.1,
                      help="share of each segment × stage kept as the 'none' arm (default 0.1)")  # fmt: skip
    plan.add_argument("--mde", metavar="X", type=_share, default=0.1,
                      help="smallest relative change of the chance of being active next period "
                      "worth detecting (0.1 = +10%%)")  # fmt: skip
    plan.add_argument("--power", metavar="P", type=_share, default=0.8)
    plan.add_argument("--alpha", metavar="A", type=_share, default=0.05)
    plan.add_argument("--max-periods", metavar="N", type=_positive_int, default=12,
                      help="the longest the test may run (default 12 periods)")  # fmt: skip
    plan.add_argument("--test-segments", metavar="G,H,...", type=_segment_ids, default=(),
                      help="only these segments take part (their numbers in the 'segment' "
                      "column of assignment.csv; default every segment)")  # fmt: skip
    plan.add_argument("--stages", metavar="S,T,...", type=_stages,
                      default=("active", "lapsing", "at_risk"),
                      help="the stages that take part (default active,lapsing,at_risk: "
                      "everyone not churned)")  # fmt: skip
    plan.add_argument("--include-churned", action="store_true",
                      help="churned users take part too (win-back)")  # fmt: skip

    res = sub.add_parser(
        "results",
        help="read a test's results: measured effects, retrained policy, next wave",
        description="Check a test's campaign log against its plan (sample-ratio mismatch), "
        "measure each strategy's effect per segment × stage, retrain the policy on them, check "
        "it off-policy on held-out test users and plan the next wave (Thompson sampling).",
    )
    _dataset_options(res)
    res.add_argument("--plan", metavar="PLAN_DIR", type=Path, required=True,
                     help="the folder `plan` wrote (plan.json, assignment.csv)")  # fmt: skip
    res.add_argument("--log", metavar="FILE", type=Path, required=True,
                     help="the test's campaign log: user, time, action, propensity")  # fmt: skip
    res.add_argument("--events", metavar="FILE", type=Path, required=True,
                     help="the events since the test started")  # fmt: skip
    sim = sub.add_parser(
        "simulate-test",
        help="demo: run a planned test in the planted world and write its results",
        description="For demos and checks: apply PLAN_DIR's assignment in the planted world "
        "(the synthetic generator's true effects) and write what a CRM and a shop would hand "
        "back: log.csv (user_id, ts, action, propensity; the holdout as 'none' rows) and "
        "events.csv (user_id, ts), ready for `results`.",
    )
    sim.add_argument("--plan", metavar="PLAN_DIR", type=Path, required=True,
                     help="the folder `plan` wrote (plan.json, assignment.csv)")  # fmt: skip
    sim.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    sim.add_argument("--truth", metavar="FILE", type=Path,
                     help="user_id, segment: each user's planted segment (the planted demo's "
                     "planted_truth.csv); default: the plan's segment number")  # fmt: skip
    sim.add_argument("--seed", metavar="S", type=int, default=0)
    sim.set_defaults(progress="none", quiet=True)

    res.add_argument("--gamma", metavar="G", type=_gamma, default=0.9)
    res.add_argument("--retain-reward", metavar="R", type=_number, default=1.0)
    res.add_argument("--churn-penalty", metavar="P", type=_number, default=5.0)


def run_command(args: argparse.Namespace, progress: Any = None) -> None:
    """``plan``, ``results`` or ``simulate-test``: checked, computed, staged, published."""
    from retention.backup import remove_stale_staging, staging_folder
    from retention.cli import _check_options, _publish, _readable

    if args.command == "simulate-test":
        _simulate(args)
        return
    _check_options(args)
    if args.command == "results":
        _readable(args.log, "Check the path given to --log.")
        _readable(args.events, "Check the path given to --events.")
        for name in ("plan.json", "assignment.csv"):
            _readable(args.plan / name, "Give --plan the folder `plan` wrote.")
    settings = None
    if args.command == "plan":
        from retention.experiment import PlanSettings

        settings = PlanSettings(actions=args.actions, holdout=args.holdout, mde=args.mde,
                                power=args.power, alpha=args.alpha, seed=args.seed,
                                max_periods=args.max_periods, segments=args.test_segments,
                                stages=tuple(args.stages) + (("churned",) if args.include_churned
                                                             else ()))  # fmt: skip
    out = args.out.resolve()
    remove_stale_staging(out)
    staging = staging_folder(out)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        if args.command == "plan":
            _plan(args, settings, staging, progress)
        else:
            _results(args, staging, progress)
        if progress is not None:
            progress.step(f"Publishing into {out}")
        _publish(staging, out)
        if progress is not None:
            progress.step(f"Done: {out}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _dataset(args: argparse.Namespace) -> tuple[Any, str, str, str, dict[int, str], int]:
    """Ingest INPUT, store it and segment it (reused from the workspace as ``run`` does), with
    the data and segment settings of the flags over the ``--settings`` file over the defaults;
    the last item is the churn window (periods)."""
    from retention.config import PipelineConfig
    from retention.ingest import LOCAL_FILE_BYTES, ingest
    from retention.periods import resolve_period
    from retention.results import segment_names
    from retention.runs import load_segmentation, run_segmentation, store_dataset
    from retention.settings import SETTINGS
    from retention.settings import resolve as resolve_settings
    from retention.workspace import Workspace

    wanted = {s.key for s in SETTINGS if s.group in ("data", "segments")}
    values = {k: v for k, v in resolve_settings(args).items() if k in wanted}
    config = PipelineConfig.from_settings(
        values, input=args.input, campaigns=args.campaigns, overrides=dict(args.map),
        workspace=args.workspace, seed=args.seed,
    )  # fmt: skip
    prepared = ingest(args.input, campaigns_path=args.campaigns, overrides=dict(args.map),
                      max_bytes=LOCAL_FILE_BYTES, campaign_timing=config.campaign_timing)  # fmt: skip
    if prepared.shape != "events":
        raise InputError(
            f"'{args.input}' is a campaign snapshot; a test is planned on an event log (who was "
            "active when). Give the event log."
        )
    ws = Workspace(args.workspace)
    dataset_id = store_dataset(ws, prepared, Path(args.input).name)
    period = resolve_period(ws.cursor(), ws.table(dataset_id, "events"), config.period or "auto")
    seg_run = run_segmentation(ws, dataset_id, settings=config.segment_settings(period))
    names = segment_names(ws, seg_run, load_segmentation(ws, seg_run))
    return ws, dataset_id, seg_run, period, names, config.churn_after


def _scaled(progress: Any, lo: float, hi: float) -> Any:
    if progress is None:
        return None
    return lambda f, m: progress(lo + (hi - lo) * f, m)


def _plan(args: argparse.Namespace, settings: Any, out: Path, progress: Any = None) -> None:
    from retention.experiment_runs import plan_for_dataset

    if progress is not None:
        progress(0.0, "Reading the event log and finding segments")
    ws, dataset_id, seg_run, period, names, churn_after = _dataset(args)
    plan = plan_for_dataset(ws, dataset_id, seg_run, period=period, churn_after=churn_after,
                            settings=settings, names=names,
                            progress=_scaled(progress, 0.5, 1.0))  # fmt: skip
    (out / "assignment.csv").write_bytes(plan.assignment_csv())
    (out / "plan.json").write_bytes(plan.plan_json())


def _results(args: argparse.Namespace, out: Path, progress: Any = None) -> None:
    import pandas as pd

    from retention.experiment import ExperimentPlan
    from retention.experiment_runs import (
        analyse,
        base_mdp,
        read_results_files,
        store_measured_policy,
    )
    from retention.mdp import RewardSettings
    from retention.results import stored_strategies
    from retention.strategies import effect_source, to_csv_bytes, with_effect_sources

    try:
        data = json.loads((args.plan / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{args.plan / 'plan.json'}: not readable as JSON ({exc}).") from None
    assignment = pd.read_csv(args.plan / "assignment.csv", dtype={"user_id": str})
    plan = ExperimentPlan.from_json(data, assignment)
    if progress is not None:
        progress(0.0, "Reading the event log and finding segments")
    ws, dataset_id, seg_run, period, names, _ = _dataset(args)
    planned_run = plan.source.get("segmentation_run")
    if planned_run and planned_run != seg_run:
        raise InputError(
            f"Plan {plan.plan_id} was made with other segments (run {planned_run}) than these "
            f"(run {seg_run}). Give `results` the same INPUT and segment options as `plan`."
        )
    reward = RewardSettings(retain_reward=args.retain_reward, churn_penalty=args.churn_penalty,
                            gamma=args.gamma)  # fmt: skip
    base = base_mdp(ws, dataset_id, seg_run, period=period, churn_after=plan.churn_after,
                    actions=plan.settings.arms, reward=reward)  # fmt: skip
    campaigns, events = read_results_files(args.log, args.events, log_name=str(args.log),
                                           events_name=str(args.events))  # fmt: skip
    result = analyse(plan, campaigns, events, base, seed=args.seed, source=f"'{args.log}'",
                     progress=_scaled(progress, 0.3, 0.8))  # fmt: skip
    run_id = store_measured_policy(ws, dataset_id, result, segmentation_run=seg_run,
                                   period=period, churn_after=plan.churn_after,
                                   progress=_scaled(progress, 0.8, 0.95))  # fmt: skip
    stored = stored_strategies(ws, dataset_id, seg_run, run_id, names)
    settings = stored.policy.settings
    block = result.summary() | {
        "policy_run": run_id,
        "lifts": settings["experiment"]["lifts"],
        "effect_source": effect_source(settings),
    }
    summary = {"input": {"file": str(args.input)}, "period": period, "experiment": block}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out / "effects.csv").write_bytes(to_csv_bytes(result.effects))
    (out / "next_assignment.csv").write_bytes(to_csv_bytes(result.next_assignment))
    table = with_effect_sources(stored.strategies.table, settings)
    (out / "strategies.csv").write_bytes(to_csv_bytes(table))


def _simulate(args: argparse.Namespace) -> None:
    """``simulate-test``: log.csv and events.csv of PLAN_DIR's test in the planted world."""
    import pandas as pd

    from retention.cli import _readable
    from retention.experiment import simulate_test

    for name in ("plan.json", "assignment.csv"):
        _readable(args.plan / name, "Give --plan the folder `plan` wrote.")
    plan = _load_plan(args.plan)
    truth = None
    if args.truth is not None:
        _readable(args.truth, "Check the path given to --truth.")
        truth = pd.read_csv(args.truth, dtype={"user_id": str})
        if not {"user_id", "segment"} <= set(truth.columns):
            raise InputError(f"{args.truth} needs the columns user_id and segment.")
    campaigns, events = simulate_test(plan, truth, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    campaigns.to_csv(args.out / "log.csv", index=False)
    events.to_csv(args.out / "events.csv", index=False)
    print(
        f"Simulated test {plan.plan_id}: {campaigns['user_id'].nunique():,} users over "
        f"{plan.periods} {plan.period}s; wrote {args.out / 'log.csv'} and {args.out / 'events.csv'}."
    )


def _load_plan(folder: Path) -> Any:
    import pandas as pd

    from retention.experiment import ExperimentPlan

    try:
        data = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / 'plan.json'}: not readable as JSON ({exc}).") from None
    assignment = pd.read_csv(folder / "assignment.csv", dtype={"user_id": str})
    return ExperimentPlan.from_json(data, assignment)

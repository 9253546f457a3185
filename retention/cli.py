"""The command line: ``python -m retention run INPUT --out DIR [options]``, plus
``backup --workspace DIR --to FILE``, ``restore FILE --workspace DIR [--force]`` and the test
commands ``plan`` and ``results`` (:mod:`retention.experiment_cli`).

Bad input exits with status 2 and one line on stderr that starts with ``error:``, names the file,
column or row and says how to fix it; ``DIR`` is left as it was. Outputs are written into a
staging folder beside ``DIR`` and published only when everything succeeded, in one atomic
rename (or, when ``DIR`` already holds files, one atomic exchange), so a killed run leaves
``DIR`` either as it was or complete. Staging folders left by killed runs are removed by the
next run.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from retention.errors import InputError
from retention.private import restrict_umask

T = TypeVar("T")
ROLES = ("user", "time", "amount", "text", "event", "action", "outcome", "propensity", "recency")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prog = self.prog if self.prog != "python -m retention" else "python -m retention run"
        sys.stderr.write(f"error: {message} (see `{prog} --help`)\n")
        raise SystemExit(2)


def _key_value(kind: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return key.strip(), value.strip()

    return parse


def _role_column(text: str) -> tuple[str, str]:
    """``--map ROLE=COLUMN`` with a known role."""
    role, column = _key_value("ROLE=COLUMN")(text)
    if role not in ROLES:
        raise argparse.ArgumentTypeError(
            f"{text}: unknown role {role!r}. Use one of: {', '.join(ROLES)}."
        )
    return role, column


def _library_check(value: T, check: Callable[[T], object]) -> T:
    """Apply the library's own check of a setting to an option's value, so the rule lives in
    one place and a bad value stops the run before any work."""
    try:
        check(value)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _churn_after(text: str) -> int:
    from retention.periods import check_churn_after  # heavy: imported only when given

    return _library_check(_int(text), check_churn_after)


def _seed(text: str) -> int:
    from retention.config import check_seed  # heavy: imported only when given

    return _library_check(_int(text), check_seed)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None


def _segments(text: str) -> str | int:
    if text == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or an int in [2, 50], got {text!r}"
        ) from None
    if not 2 <= k <= 50:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an int in [2, 50], got {k}")
    return k


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def _gamma(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m retention", description="Retention Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run the whole pipeline on a file",
        description="Ingest INPUT, find segments, compute retention, train a policy and write "
        "summary.json, strategies.csv, user_segments.csv and report.html into DIR.",
    )
    run.add_argument("input", metavar="INPUT", type=Path, help="event log or campaign snapshot")
    run.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    run.add_argument(
        "--campaigns",
        metavar="FILE",
        type=Path,
        help="campaign log (user, time, action[, propensity])",
    )
    run.add_argument(
        "--map",
        metavar="ROLE=COLUMN",
        type=_role_column,
        action="append",
        default=[],
        help=f"use COLUMN for ROLE (roles: {', '.join(ROLES)}); repeatable",
    )
    run.add_argument(
        "--workspace",
        metavar="DIR",
        type=Path,
        default=None,
        help="the workspace folder (default: $RETENTION_WORKSPACE, else workspace/)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "lines", "none"),
        default="auto",
        help="progress on stderr: 'auto' a bar when stderr is a terminal, 'lines' one line per "
        "step and percent (for logs and scripts), 'none' nothing (default: auto)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress on stderr (--progress none)")
    from retention.engine.options import add_engine_options

    add_engine_options(run)  # issue 15: --engine duckdb|spark, --spark-master URL
    from retention.settings import add_arguments as add_settings

    add_settings(run)  # --settings FILE.toml and every setting of the app, grouped by page

    from retention.experiment_cli import add_commands

    add_commands(sub)  # plan, results

    backup = sub.add_parser(
        "backup",
        help="write a backup of a workspace to one file",
        description="Write everything in the workspace (datasets, embedding cache, runs, segment "
        "names) to one zip file with a checksummed manifest. Stop the app on that workspace "
        "first.",
    )
    backup.add_argument("--workspace", metavar="DIR", type=Path, default=None)
    backup.add_argument("--to", metavar="FILE", type=Path, required=True, help="backup file")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")

    restore = sub.add_parser(
        "restore",
        help="restore a workspace from a backup file",
        description="Check a backup and restore it into a workspace folder, all or nothing. A "
        "folder that is not empty is refused unless --force.",
    )
    restore.add_argument("backup", metavar="FILE", type=Path, help="backup file")
    restore.add_argument("--workspace", metavar="DIR", type=Path, default=None)
    restore.add_argument(
        "--force", action="store_true", help="replace the workspace database in DIR"
    )
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """What argparse cannot check alone, before any work: each role or action given once, the
    input files readable, the output and workspace folders writable."""
    _given_once("--map", [role for role, _ in args.map])
    _given_once("--action-cost", [action for action, _ in args.action_cost])
    _given_once("--lift", [action for action, _ in getattr(args, "lift", [])])
    if getattr(args, "settings", None) is not None:
        _readable(args.settings, "Check the path given to --settings.")
    if getattr(args, "lift_table", None) is not None:
        _readable(args.lift_table, "Check the path given to --lift-table.")
    if getattr(args, "engine", None) == "spark":  # a file, a Parquet folder or a table name
        from retention.engine.inputs import classify

        classify(str(args.input))
    else:
        _readable(args.input, "Check the path of the input file.")
    if args.campaigns is not None:
        _readable(args.campaigns, "Check the path given to --campaigns.")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder. Choose a folder path.")
    # Outputs are staged beside --out and renamed into place: both places must be writable.
    _writable_folder("--out", args.out.resolve().parent)
    if args.out.is_dir():
        _writable_folder("--out", args.out.resolve())
    if args.workspace is not None:
        if args.workspace.exists() and not args.workspace.is_dir():
            raise InputError(
                f"--workspace {args.workspace}: exists and is not a folder. Choose a folder path."
            )
        _writable_folder("--workspace", args.workspace.resolve())


def _given_once(option: str, keys: list[str]) -> None:
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InputError(f"{option} {repeated[0]}=... is given more than once. Give each one once.")


def _readable(path: Path, hint: str) -> None:
    """A file that exists and can be opened for reading."""
    if not path.is_file():
        raise InputError(f"{path}: no such file. {hint}")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}). {hint}") from None


def _writable_folder(option: str, folder: Path) -> None:
    """``folder``, or the nearest part of its path that exists, is a folder this process may
    write in (it is created on publishing when missing)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(
            f"{option} {folder}: {existing} is not a folder. Choose a path made of folders."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"{option} {folder}: {existing} is not writable. Choose a folder you can write in."
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False when
    the system or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _keep_alongside(out: Path, staging: Path) -> None:
    """Link the files of ``out`` that the run does not write into ``staging`` (no copy)."""
    for item in out.iterdir():
        target = staging / item.name
        if target.exists() or target.is_symlink():
            continue
        if item.is_symlink():
            os.symlink(os.readlink(item), target)
        elif item.is_dir():
            shutil.copytree(item, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, target)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _publish(staging: Path, out: Path) -> None:
    """Move the finished outputs into ``out`` (created when missing) in one atomic step."""
    from retention.backup import publish_folder

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        publish_folder(staging, out)
        return
    _keep_alongside(out, staging)
    staging.chmod(out.stat().st_mode & 0o7777)  # it takes the place of ``out``
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous outputs
        return
    for item in staging.iterdir():  # no atomic exchange here: replace file by file
        if item.is_dir() and not item.is_symlink() and (out / item.name).is_dir():
            continue
        os.replace(item, out / item.name)
    shutil.rmtree(staging, ignore_errors=True)


class _Progress:
    """Progress on stderr: a bar on a terminal, or plain lines for logs and scripts.

    ``mode`` is ``"auto"`` (a bar only when stderr is a terminal, so a script sees one clean
    error line), ``"lines"`` (``[ 37%] Embedding texts: ...`` once per step and percent, then
    ``[100%] Publishing ...`` and ``[100%] Done ...`` around the move into ``--out``) or
    ``"none"``.
    """

    def __init__(self, mode: str) -> None:
        self.bar = mode == "auto" and sys.stderr.isatty()
        self.lines = mode == "lines"
        self.dirty = False
        self._last: tuple[int, str] | None = None

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar:
            sys.stderr.write(f"\r[{fraction:4.0%}] {message[:70]:<70}")
            sys.stderr.flush()
            self.dirty = True
        elif self.lines:
            key = (int(fraction * 100), re.sub(r"[\d,./]+", "#", message))  # once per percent
            if key != self._last:
                self._last = key
                sys.stderr.write(f"[{fraction:4.0%}] {message}\n")
                sys.stderr.flush()

    def step(self, message: str) -> None:
        """A step outside the pipeline's own progress (publishing the outputs)."""
        if self.lines:
            self(1.0, message)

    def error(self, message: str) -> None:
        prefix = "\n" if self.dirty else ""
        sys.stderr.write(f"{prefix}error: {_one_line(message)}\n")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Library chatter (model-loading bars, warnings) would break the one-line error contract.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    restrict_umask()  # outputs, backups and the workspace: readable by this account only
    args = build_parser().parse_args(argv)
    mode = "none" if args.command not in ("run", "plan", "results") or args.quiet else args.progress
    progress = _Progress(mode)
    untouched = (
        "the output folder was left as it was"
        if args.command in ("run", "plan", "results")
        else "nothing was changed"
    )
    try:
        if args.command == "run":
            _run(args, progress)
        elif args.command in ("plan", "results", "simulate-test"):
            from retention.experiment_cli import run_command

            run_command(args, progress)  # issue 13: progress on stderr
        else:
            _durability(args)
    except InputError as exc:
        progress.error(str(exc))
        return 2
    except KeyboardInterrupt:
        progress.error(f"interrupted; {untouched}")
        return 130
    except Exception as exc:  # a bug, not bad input: still no traceback for the user
        if os.environ.get("RETENTION_DEBUG"):
            raise
        progress.error(
            f"internal error ({type(exc).__name__}: {exc}); {untouched}. Set RETENTION_DEBUG=1 "
            "to see the details and report it."
        )
        return 1
    return 0


def _durability(args: argparse.Namespace) -> None:
    """``backup`` and ``restore``: one line on stdout when done, the error contract otherwise."""
    from retention.backup import backup, restore
    from retention.workspace import DB_NAME, Workspace

    folder = Path(args.workspace or os.environ.get("RETENTION_WORKSPACE") or "workspace").resolve()
    if args.command == "backup":
        if not (folder / DB_NAME).is_file():
            raise InputError(
                f"--workspace {folder}: there is no workspace there (no {DB_NAME}). Check "
                "the folder."
            )
        ws = Workspace(folder)
        try:
            info = backup(ws, args.to, force=args.force)
        finally:
            ws.close()
        print(
            f"Backed up {info.datasets} dataset(s) and {info.runs} run(s) from {folder} "
            f"to {info.path} ({info.size_bytes:,} bytes)."
        )
    else:
        info = restore(args.backup, folder, force=args.force)
        print(
            f"Restored {info.datasets} dataset(s) and {info.runs} run(s) from {info.path} "
            f"into {folder}."
        )


def _run(args: argparse.Namespace, progress: _Progress) -> None:
    """``run``: every option is checked (:func:`_check_options`, the config's own checks) before
    anything is read or written; the outputs are staged and published in one step."""
    from retention.backup import remove_stale_staging, staging_folder
    from retention.command_cache import run_or_reuse  # issue 19: an identical rerun reopens
    from retention.config import PipelineConfig
    from retention.engine.options import resolve_engine
    from retention.settings import resolve as resolve_settings

    resolve_engine(args)  # --engine over $RETENTION_ENGINE over duckdb
    _check_options(args)
    config = PipelineConfig.from_settings(
        resolve_settings(args),  # the flags over the --settings file over the defaults
        input=args.input,
        campaigns=args.campaigns,
        overrides=dict(args.map),
        workspace=args.workspace,
        engine=args.engine,
        spark_master=args.spark_master,
    )
    out = args.out.resolve()
    remove_stale_staging(out)
    staging = staging_folder(out)
    try:
        run_or_reuse(config, staging, progress=progress)
        if progress.dirty:
            sys.stderr.write("\n")
        progress.step(f"Publishing the outputs to {out}")
        _publish(staging, out)
        progress.step(f"Done: the outputs are in {out}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())

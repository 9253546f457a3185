"""The command line's engine options (issue 15): ``--engine duckdb|spark`` (or
``$RETENTION_ENGINE``) and ``--spark-master URL``. Kept apart from :mod:`retention.cli` so that
module only calls two functions."""

from __future__ import annotations

import argparse
import os

from retention.errors import InputError

ENGINES = ("duckdb", "spark")
DEFAULT_MASTER = "local[*]"


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine (where the aggregation steps run)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="duckdb: on this computer (the default); spark: in Apache Spark, where the input "
        "can also be a Parquet folder or a Spark table name, and results still land in the "
        "workspace (default: $RETENTION_ENGINE, else duckdb)",
    )
    group.add_argument(
        "--spark-master",
        metavar="URL",
        default=None,
        help=f"with --engine spark: the Spark master, e.g. local[4], spark://host:7077, or "
        f"sc://host:15002 for Spark Connect (default: {DEFAULT_MASTER})",
    )


def resolve_engine(args: argparse.Namespace) -> None:
    """Fill ``args.engine`` and ``args.spark_master``; InputError for a bad combination."""
    engine = args.engine
    if engine is None:
        engine = (os.environ.get("RETENTION_ENGINE") or "duckdb").strip().lower()
        if engine not in ENGINES:
            raise InputError(
                f"RETENTION_ENGINE={os.environ.get('RETENTION_ENGINE')!r} is not an engine. "
                "Set it to duckdb or spark, or unset it."
            )
    if args.spark_master is not None and engine != "spark":
        raise InputError(
            "--spark-master goes with --engine spark (or RETENTION_ENGINE=spark). Add "
            "--engine spark, or leave out --spark-master."
        )
    master = (args.spark_master or DEFAULT_MASTER).strip()
    if not master:
        raise InputError("--spark-master is empty. Give a URL such as local[*] or sc://host:15002.")
    args.engine, args.spark_master = engine, master

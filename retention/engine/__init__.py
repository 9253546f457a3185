"""Where the aggregation SQL runs: DuckDB (the embedded default) or Apache Spark.

The library writes its SQL once, in DuckDB's dialect. With the Spark engine the same strings are
transpiled by SQLGlot (:func:`to_spark_sql`, shims in :mod:`retention.engine.shims`) and run by
:class:`SparkCursor` on :func:`spark_session`. The default path imports neither pyspark nor
SQLGlot: the names below other than :func:`engine_name`, :data:`ENGINES` and
:class:`EngineUnavailable` load their modules when first used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from retention.errors import InputError

ENGINES = ("duckdb", "spark")
DEFAULT_ENGINE = "duckdb"
ENV_VAR = "RETENTION_ENGINE"


class EngineUnavailable(InputError):
    """The chosen engine cannot run: pyspark or Java missing, the Spark master unreachable, or
    an unknown engine name. The message is one line that says what to install or fix."""


def engine_name(value: str | None = None) -> str:
    """``value``, else ``$RETENTION_ENGINE``, else ``duckdb`` — checked and lower-cased."""
    name = (value if value is not None else os.environ.get(ENV_VAR) or DEFAULT_ENGINE).strip()
    if name.lower() not in ENGINES:
        source = "" if value is not None else f" (from {ENV_VAR})"
        raise EngineUnavailable(
            f"Unknown engine '{name}'{source}: use one of {', '.join(ENGINES)}.",
            cli_hint="Pass --engine duckdb or --engine spark.",
        )
    return name.lower()


_LAZY = {
    "to_spark_sql": "retention.engine.translate",
    "TranslationError": "retention.engine.translate",
    "SparkCursor": "retention.engine.spark",
    "SparkResult": "retention.engine.spark",
    "spark_session": "retention.engine.spark",
    "stop_session": "retention.engine.spark",
    "DEFAULT_MASTER": "retention.engine.spark",
}

if TYPE_CHECKING:
    from retention.engine.spark import (
        DEFAULT_MASTER,
        SparkCursor,
        SparkResult,
        spark_session,
        stop_session,
    )
    from retention.engine.translate import TranslationError, to_spark_sql


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'retention.engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_MASTER",
    "ENGINES",
    "ENV_VAR",
    "EngineUnavailable",
    "SparkCursor",
    "SparkResult",
    "TranslationError",
    "engine_name",
    "spark_session",
    "stop_session",
    "to_spark_sql",
]

"""Exact comparison of a DuckDB result and the Spark engine's result of the same query."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

#: Floating sums may add in another order on Spark: equal to this relative tolerance.
RTOL = 1e-9


def assert_same_frame(
    duck: pd.DataFrame, spark: pd.DataFrame, *, sort: bool = False, what: str = ""
) -> None:
    """Same columns, same dtypes, same rows (in order unless ``sort``): exact for integers,
    text, times and booleans; floats to :data:`RTOL`."""
    assert list(spark.columns) == list(duck.columns), what
    assert list(map(str, spark.dtypes)) == list(map(str, duck.dtypes)), (
        what,
        dict(duck.dtypes),
        dict(spark.dtypes),
    )
    assert len(spark) == len(duck), (what, len(duck), len(spark))
    if sort:
        keys = list(duck.columns)
        duck = duck.sort_values(keys, kind="stable").reset_index(drop=True)
        spark = spark.sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        spark.reset_index(drop=True),
        duck.reset_index(drop=True),
        check_exact=False,
        rtol=RTOL,
        atol=0,
        obj=what or "result",
    )


def assert_same(duck: object, spark: object, what: str = "") -> None:
    """Recursive equality of library results: frames and series as above, arrays and floats to
    :data:`RTOL`, dataclasses field by field, everything else ``==``."""
    if isinstance(duck, pd.DataFrame):
        pd.testing.assert_frame_equal(spark, duck, check_exact=False, rtol=RTOL, atol=0, obj=what)
    elif isinstance(duck, pd.Series):
        pd.testing.assert_series_equal(spark, duck, check_exact=False, rtol=RTOL, atol=0, obj=what)
    elif isinstance(duck, np.ndarray):
        assert isinstance(spark, np.ndarray) and spark.shape == duck.shape, what
        if duck.dtype.kind == "f":
            np.testing.assert_allclose(spark, duck, rtol=RTOL, atol=0, err_msg=what)
        else:
            np.testing.assert_array_equal(spark, duck, err_msg=what)
    elif dataclasses.is_dataclass(duck) and not isinstance(duck, type):
        assert type(spark) is type(duck), what
        for field in dataclasses.fields(duck):
            assert_same(
                getattr(duck, field.name), getattr(spark, field.name), f"{what}.{field.name}"
            )
    elif isinstance(duck, dict):
        assert isinstance(spark, dict) and list(spark) == list(duck), (what, duck, spark)
        for key in duck:
            assert_same(duck[key], spark[key], f"{what}[{key!r}]")
    elif isinstance(duck, (list, tuple)):
        assert type(spark) is type(duck) and len(spark) == len(duck), (what, duck, spark)
        for i, (a, b) in enumerate(zip(duck, spark, strict=True)):
            assert_same(a, b, f"{what}[{i}]")
    elif isinstance(duck, float) and not isinstance(spark, bool):
        assert spark is not None and np.isclose(spark, duck, rtol=RTOL, atol=0, equal_nan=True), (
            what,
            duck,
            spark,
        )
    else:
        assert spark == duck, (what, duck, spark)

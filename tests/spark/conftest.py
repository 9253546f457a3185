"""The one Spark session of the Spark tests, and the generated events they all read.

The session is local mode (two cores, UI off, UTC, two shuffle partitions), started once per
test run and stopped at its end. When pyspark or Java is missing the fixture FAILS with the
install hint: CI must run these tests, never skip them silently (``make test`` installs both).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

#: The Spark settings of the test session: small and quiet.
TEST_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.sql.adaptive.enabled": "false",
}


@pytest.fixture(scope="session")
def spark():
    """The test run's Spark session (``local[2]``)."""
    from retention.engine import EngineUnavailable

    try:
        from retention.engine import spark_session, stop_session

        session = spark_session("local[2]", TEST_CONFIG)
    except EngineUnavailable as exc:
        pytest.fail(f"The Spark tests need pyspark and Java: {exc} (or run 'make test').")
    yield session
    stop_session()


def make_events(seed: int = 11) -> pd.DataFrame:
    """A planted event log (``retention.synth``) plus the cases aggregations get wrong:
    NULL amounts (10% of rows, and one user with none at all), events that tie on the same
    timestamp, users with a single event, a user active in every week of the data, events on
    the first and last microsecond of a day, text with quotes and backslashes, and a user id
    that needs quoting."""
    from retention.synth import make_planted

    rng = np.random.default_rng(seed)
    ev = make_planted(n_users=160, n_periods=14, seed=seed).events.copy()
    ev["ts"] = ev["ts"] + pd.to_timedelta(rng.integers(0, 10**6, len(ev)), unit="us")
    ev.loc[rng.random(len(ev)) < 0.1, "amount"] = np.nan
    start, end = ev["ts"].min().normalize(), ev["ts"].max()
    extra = []
    # Ties: a second event at exactly the same time for some users.
    ties = ev.sample(40, random_state=seed)
    extra.append(ties.assign(amount=ties["amount"].fillna(0) + 1.25))
    # Single-event users, one on a Monday 00:00:00 (a week boundary), one at 23:59:59.999999.
    for i, ts in enumerate(
        [start + pd.Timedelta(days=9), start + pd.Timedelta(days=20, microseconds=-1), end]
    ):
        extra.append(_rows(f"solo_{i}", [ts], [19.99], "one-off", "DE"))
    # Active in every week (and twice on some days).
    weeks = pd.date_range(start, end, freq="7D") + pd.Timedelta(hours=13)
    extra.append(
        _rows(
            "every_week",
            list(weeks) + list(weeks[::3]),
            [5.0] * (len(weeks) + len(weeks[::3])),
            "weekly",
            "FR",
        )
    )
    # Amount always missing.
    extra.append(
        _rows(
            "no_amount",
            [start + pd.Timedelta(days=d) for d in (1, 15, 40)],
            [np.nan] * 3,
            None,
            None,
        )
    )
    # Text and ids that need quoting.
    extra.append(
        _rows(
            'o\'brien \\ "q"',
            [start + pd.Timedelta(days=3), start + pd.Timedelta(days=30)],
            [1.0, 2.0],
            'it\'s a \\ "gift"',
            "GB",
        )
    )
    out = pd.concat([ev, *extra], ignore_index=True)
    out["ts"] = out["ts"].astype("datetime64[us]")  # as the workspace stores them (TIMESTAMP)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _rows(
    user: str, times: list, amounts: list, text: str | None, country: str | None
) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "user_id": [user] * n,
            "ts": pd.to_datetime(times),
            "amount": amounts,
            "text": [text] * n,
            "event": ["purchase"] * n,
            "country": [country] * n,
        }
    )


@pytest.fixture(scope="session")
def events() -> pd.DataFrame:
    return make_events()


@pytest.fixture(scope="session")
def assignments(events) -> pd.DataFrame:
    """A segmentation: four segments, a few users left without one."""
    users = np.sort(events["user_id"].unique())
    rng = np.random.default_rng(5)
    seg = pd.DataFrame({"user_id": users, "segment": rng.integers(0, 4, len(users))})
    return seg.iloc[3:].reset_index(drop=True)


@pytest.fixture(scope="session")
def engines(spark, events):
    """``(duckdb_connection, spark_cursor)``, each with the events as the table ``events``."""
    import duckdb

    from retention.engine import SparkCursor

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", events)
    cur = SparkCursor(spark)
    cur.register("events", events)
    yield con, cur
    cur.unregister("events")
    con.close()

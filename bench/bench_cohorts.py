"""Benchmark: cohort table and stages (the panel) in DuckDB SQL vs a pandas groupby, in one run;
and the cost of a Retention page rerun on cached results.

    python bench/bench_cohorts.py            # 10M events, 500k users (several minutes)
    python bench/bench_cohorts.py --quick    # 1M events, 50k users (under a minute)

The event log is generated with numpy (users arrive over the first 80 weeks of 104, stay for a
geometric number of weeks, are active in each of those weeks with a per-user probability and
make 1 + Poisson purchases per active week) and written to Parquet once. Each method then runs
in its own subprocess, so its peak memory (RSS) is its own: DuckDB reads the Parquet into an
in-memory table, pandas reads it into a DataFrame (``user_id`` categorical — the kindest dtype
for pandas). Timed: from those in-memory events to the cohort counts (a 104 x 104 triangle) and
to the full panel (one row per user-week with recency and stage; DuckDB writes a table, pandas
builds a DataFrame). Both results are checked to be identical.

The cached path: the Retention page caches its results with ``st.cache_data`` keyed by dataset
and settings; a rerun costs a cache hit (``st.cache_data`` unpickles the stored value) plus
building the figures. Both are timed on a 1M-event log, and, when the page exists, a full
``AppTest`` rerun of ``pages/3_retention.py`` on a cached result.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEEKS = 104
CHURN_AFTER = 4
ORIGIN = np.datetime64("2022-01-03T00:00:00", "us")  # a Monday


# -- data ------------------------------------------------------------------------------------


def generate(n_events: int, n_users: int, seed: int = 0) -> pd.DataFrame:
    """A realistic weekly event log with exactly ``n_events`` rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    arrival = rng.integers(0, 80, size=n_users)
    lifetime = np.minimum(rng.geometric(0.045, size=n_users), WEEKS - arrival)
    q = rng.beta(2.0, 2.0, size=n_users) * 0.8 + 0.15  # activity while "alive"
    user = np.repeat(np.arange(n_users, dtype=np.int32), lifetime)
    start = np.repeat(np.cumsum(lifetime) - lifetime, lifetime)
    week = np.repeat(arrival, lifetime) + (np.arange(user.size) - start)
    first = week == np.repeat(arrival, lifetime)  # everyone is active when they arrive
    active = first | (rng.random(user.size) < q[user])
    # A few win-backs: 3% of users come back once, some weeks after they stopped.
    back = rng.random(n_users) < 0.03
    back_week = arrival + lifetime + rng.integers(5, 30, size=n_users)
    back &= back_week < WEEKS
    user = np.concatenate([user[active], np.flatnonzero(back).astype(np.int32)])
    week = np.concatenate([week[active], back_week[back]])
    lam = n_events / user.size - 1.0
    n_each = 1 + rng.poisson(max(lam, 0.0) * 1.05, size=user.size)
    ev_user = np.repeat(user, n_each)
    ev_week = np.repeat(week, n_each)
    keep = np.sort(rng.choice(ev_user.size, size=n_events, replace=False))
    ev_user, ev_week = ev_user[keep], ev_week[keep]
    seconds = rng.integers(0, 7 * 24 * 3600, size=n_events)
    ts = ORIGIN + (ev_week.astype("int64") * 7 * 24 * 3600 + seconds) * np.timedelta64(1, "s")
    ids = np.char.add("u", np.char.zfill(np.arange(n_users).astype(str), 7))
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(ev_user, categories=ids),
            "ts": ts.astype("datetime64[us]"),
            "amount": np.round(rng.lognormal(3.0, 0.6, size=n_events), 2),
        }
    )


# -- the two implementations -----------------------------------------------------------------


def pandas_week_index(df: pd.DataFrame) -> pd.Series:
    day = df["ts"].dt.floor("D")
    week = day - pd.to_timedelta(df["ts"].dt.weekday, unit="D")
    return ((week - week.min()).dt.days // 7).astype("int32")


def pandas_cohorts(df: pd.DataFrame) -> np.ndarray:
    act = pd.DataFrame({"user_id": df["user_id"], "t": pandas_week_index(df)}).drop_duplicates()
    first = act.groupby("user_id", observed=True)["t"].transform("min")
    counts = act.groupby([first.rename("cohort"), (act["t"] - first).rename("k")]).size()
    wide = counts.unstack("k", fill_value=0)
    last = int(act["t"].max())
    wide = wide.reindex(columns=range(last + 1), fill_value=0).astype(float)
    cohort = wide.index.to_numpy()
    wide = wide.mask(np.arange(last + 1)[None, :] > (last - cohort)[:, None])
    return wide.to_numpy()


def pandas_panel(df: pd.DataFrame, churn_after: int) -> pd.DataFrame:
    ev = pd.DataFrame(
        {"user_id": df["user_id"], "t": pandas_week_index(df), "amount": df["amount"]}
    )
    act = (
        ev.groupby(["user_id", "t"], observed=True)
        .agg(revenue=("amount", "sum"), n_events=("amount", "size"))
        .reset_index()
    )
    last = int(act["t"].max())
    first = act.groupby("user_id", observed=True)["t"].min()
    n = (last - first + 1).to_numpy()
    starts = np.repeat(np.cumsum(n) - n, n)
    grid = pd.DataFrame(
        {
            "user_id": np.repeat(first.index.to_numpy(), n),
            "t": (np.repeat(first.to_numpy(), n) + np.arange(n.sum()) - starts).astype("int32"),
        }
    )
    grid["user_id"] = grid["user_id"].astype(df["user_id"].dtype)
    panel = grid.merge(act, on=["user_id", "t"], how="left")
    panel["k"] = panel["t"] - panel.groupby("user_id", observed=True)["t"].transform("min")
    panel["active"] = panel["n_events"].notna()
    block = panel.groupby("user_id", observed=True)["active"].cumsum()
    panel["recency"] = panel.groupby([panel["user_id"], block], observed=True).cumcount()
    r = panel["recency"]
    panel["stage"] = np.select(
        [r == 0, r == 1, r < churn_after], ["active", "lapsing", "at_risk"], "churned"
    )
    panel["revenue"] = panel["revenue"].fillna(0.0)
    panel["n_events"] = panel["n_events"].fillna(0).astype("int64")
    return panel


def panel_check(stage: pd.Series, recency: pd.Series, revenue: pd.Series) -> dict[str, object]:
    return {
        "rows": int(len(stage)),
        "stages": {str(k): int(v) for k, v in stage.value_counts().sort_index().items()},
        "recency_sum": int(recency.sum()),
        "revenue_sum": round(float(revenue.sum()), 2),
    }


# -- workers (one process per method) ---------------------------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, path: str, repeats: int) -> dict[str, object]:
    times: dict[str, list[float]] = {"cohorts": [], "panel": []}
    cpu: dict[str, list[float]] = {"cohorts": [], "panel": []}
    if method == "duckdb":
        import duckdb

        from retention.cohorts import cohort_table
        from retention.periods import build_panel

        con = duckdb.connect()
        con.execute("CREATE TABLE events AS SELECT * FROM read_parquet(?)", [path])
        loaded = rss_mb()
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            table = cohort_table(con, "events", period="week", mode="classic")
            t1, c1 = time.perf_counter(), time.process_time()
            build_panel(con, "events", period="week", churn_after=CHURN_AFTER, out_table="panel")
            t2, c2 = time.perf_counter(), time.process_time()
            times["cohorts"].append(t1 - t0)
            times["panel"].append(t2 - t1)
            cpu["cohorts"].append(c1 - c0)
            cpu["panel"].append(c2 - c1)
        cohorts = table.counts.to_numpy()
        check = con.execute(
            "SELECT count(*), sum(recency), round(sum(revenue), 2) FROM panel"
        ).fetchall()[0]
        stages = dict(con.execute("SELECT stage, count(*) FROM panel GROUP BY 1").fetchall())
        result = {
            "rows": int(check[0]),
            "stages": {k: int(stages[k]) for k in sorted(stages)},
            "recency_sum": int(check[1]),
            "revenue_sum": round(float(check[2]), 2),
        }
    else:
        df = pd.read_parquet(path)
        if method == "pandas":  # as Workspace.load gives it: user_id as Python strings
            df["user_id"] = df["user_id"].astype(str).astype(object)
        loaded = rss_mb()
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            cohorts = pandas_cohorts(df)
            t1, c1 = time.perf_counter(), time.process_time()
            panel = pandas_panel(df, CHURN_AFTER)
            t2, c2 = time.perf_counter(), time.process_time()
            times["cohorts"].append(t1 - t0)
            times["panel"].append(t2 - t1)
            cpu["cohorts"].append(c1 - c0)
            cpu["panel"].append(c2 - c1)
            result = panel_check(panel["stage"], panel["recency"], panel["revenue"])
            del panel
    return {
        "method": method,
        "times": times,
        "cpu": cpu,
        "loaded_rss_mb": loaded,
        "peak_rss_mb": rss_mb(),
        "panel": result,
        "cohorts": np.nan_to_num(cohorts, nan=-1).astype(int).tolist(),
    }


def run_worker(method: str, path: Path, repeats: int) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            method,
            "--data",
            str(path),
            "--repeats",
            str(repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- cached page path ------------------------------------------------------------------------


def cached_path(n_events: int, n_users: int, repeats: int) -> dict[str, object]:
    """Cost of a page rerun on cached results: cache hit (unpickle) + building the figures."""
    import duckdb

    from retention.charts.retention import at_risk_figure, cohort_heatmap, survival_figure
    from retention.cohorts import cohort_table, retention_curves

    df = generate(n_events, n_users, seed=1)
    df["country"] = np.where(np.arange(len(df)) % 7 == 0, "FR", "UK")
    events = df.assign(user_id=df["user_id"].astype(str))
    con = duckdb.connect()
    con.register("ev", events)
    con.execute("CREATE TABLE events AS SELECT * FROM ev")
    t0 = time.perf_counter()
    results = (
        cohort_table(con, "events", period="week", mode="classic"),
        retention_curves(con, "events", period="week", churn_after=CHURN_AFTER, by="country"),
    )
    compute = time.perf_counter() - t0
    stored = pickle.dumps(results)  # what st.cache_data keeps
    hits, figures = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        table, surv = pickle.loads(stored)
        t1 = time.perf_counter()
        for fig in (cohort_heatmap(table), survival_figure(surv), at_risk_figure(surv)):
            fig.to_json()  # what Streamlit serialises for the browser
        t2 = time.perf_counter()
        hits.append(t1 - t0)
        figures.append(t2 - t1)
    out: dict[str, object] = {
        "events": n_events,
        "compute_s": compute,
        "cache_hit_s": statistics.median(hits),
        "figures_s": statistics.median(figures),
        "cached_bytes": len(stored),
    }
    out["apptest_rerun_s"] = apptest_rerun(events, repeats)
    return out


def apptest_rerun(events: pd.DataFrame, repeats: int) -> float | None:
    """Median time of a full AppTest rerun of the Retention page once its results are cached."""
    page = ROOT / "pages" / "3_retention.py"
    if not page.exists():
        return None
    from streamlit.testing.v1 import AppTest

    from retention.workspace import Workspace

    with tempfile.TemporaryDirectory() as folder:
        os.environ["RETENTION_WORKSPACE"] = folder
        ws = Workspace(folder)
        ds = ws.save_dataset(
            name="bench",
            source_name="bench.parquet",
            sha256="bench",
            shape="events",
            frames={"events": events},
            mapping={"user": "user_id", "time": "ts", "amount": "amount"},
            report={},
        )
        ws.close()
        at = AppTest.from_file(str(page), default_timeout=600)
        at.session_state["dataset_id"] = ds
        at.run()
        if at.exception:
            raise RuntimeError(f"page failed: {at.exception}")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M events, 50k users")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--worker", choices=["duckdb", "pandas", "pandas-cat"], help=argparse.SUPPRESS
    )
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.repeats)))
        return

    n_events, n_users = (1_000_000, 50_000) if args.quick else (10_000_000, 500_000)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.parquet"
        t0 = time.perf_counter()
        df = generate(n_events, n_users)
        df.to_parquet(path, index=False)
        users = int(df["user_id"].nunique())
        del df
        gen_s = time.perf_counter() - t0
        runs = {m: run_worker(m, path, args.repeats) for m in ("duckdb", "pandas", "pandas-cat")}
    load_after = os.getloadavg()[0]
    duck = runs["duckdb"]
    identical = {
        m: {
            "cohorts": runs[m]["cohorts"] == duck["cohorts"],
            "panel": runs[m]["panel"] == duck["panel"],
        }
        for m in ("pandas", "pandas-cat")
    }
    cached = cached_path(1_000_000, 50_000, max(3, args.repeats))

    def med(method: str, step: str, kind: str = "times") -> float:
        values = runs[method][kind]
        if step == "both":
            return statistics.median(
                a + b for a, b in zip(values["cohorts"], values["panel"], strict=True)
            )
        return statistics.median(values[step])

    rows = []
    for step in ("cohorts", "panel", "both"):
        row = {"step": step}
        for m in runs:
            row[f"{m}_s"] = med(m, step)
            row[f"{m}_cpu_s"] = med(m, step, "cpu")
        row["speedup"] = row["pandas_s"] / row["duckdb_s"]
        row["speedup_cat"] = row["pandas-cat_s"] / row["duckdb_s"]
        rows.append(row)
    result = {
        "events": n_events,
        "users": users,
        "weeks": WEEKS,
        "panel_rows": duck["panel"]["rows"],
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_after},
        "generate_s": gen_s,
        "rows": rows,
        "peak_rss_mb": {m: r["peak_rss_mb"] for m, r in runs.items()},
        "loaded_rss_mb": {m: r["loaded_rss_mb"] for m, r in runs.items()},
        "identical_to_duckdb": identical,
        "raw_times": {m: r["times"] for m, r in runs.items()},
        "cached_page": cached,
    }
    rss = ", ".join(
        f"{m} {runs[m]['peak_rss_mb']:,.0f} MB (data loaded: {runs[m]['loaded_rss_mb']:,.0f} MB)"
        for m in runs
    )
    same = all(v for d in identical.values() for v in d.values())
    md = [
        f"# Cohorts and stages: DuckDB SQL vs pandas groupby ({n_events:,} events, {users:,} "
        f"users, {WEEKS} weeks, panel {duck['panel']['rows']:,} rows)",
        "",
        f"Median of {args.repeats} runs, wall-clock seconds; {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} before / {load_after:.1f} after (shared machine). pandas: user_id as "
        "strings, as the workspace returns them; pandas (cat): user_id categorical.",
        "",
        "| step | DuckDB SQL | pandas | pandas (cat) | speed-up vs pandas | vs pandas (cat) |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['step']} | {r['duckdb_s']:.2f} | {r['pandas_s']:.2f} | {r['pandas-cat_s']:.2f} "
            f"| {r['speedup']:.1f}x | {r['speedup_cat']:.1f}x |"
            for r in rows
        ],
        "",
        f"CPU seconds (all threads), both steps: DuckDB {rows[2]['duckdb_cpu_s']:.1f}, pandas "
        f"{rows[2]['pandas_cpu_s']:.1f}, pandas (cat) {rows[2]['pandas-cat_cpu_s']:.1f}.",
        f"Peak RSS: {rss}. Results identical to DuckDB's (cohort counts; panel rows, stage "
        f"counts, recency and revenue sums): {same}.",
        "",
        f"## Retention page rerun on cached results ({cached['events']:,} events)",
        "",
        "| path | seconds |",
        "|---|---:|",
        f"| first computation (cohort table + KM by country) | {cached['compute_s']:.2f} |",
        f"| cache hit (unpickle, as st.cache_data does; {cached['cached_bytes']:,} bytes) "
        f"| {cached['cache_hit_s']:.4f} |",
        f"| building the three figures (to JSON) | {cached['figures_s']:.3f} |",
        (
            f"| full AppTest rerun of the page | {cached['apptest_rerun_s']:.2f} |"
            if cached["apptest_rerun_s"] is not None
            else "| full AppTest rerun of the page | (page not present) |"
        ),
    ]
    text = "\n".join(md)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (out / f"cohorts{suffix}.json").write_text(json.dumps(result, indent=2))
    (out / f"cohorts{suffix}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

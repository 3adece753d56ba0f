"""Invariant 5: transient failures retry from the last checkpoint (and are counted); permanent ones fail
fast with one clear message.

Database faults come from tests/fault_proxy.py, a TCP proxy in front of the test server that drops
connections (at random, or scripted: the n-th connection after b bytes, or on demand). Source faults
come from a CSV reader that raises TransientError now and then, and from the fake HTTP API's injected
429/5xx/resets. After every faulty load the target must equal the expected table (count and checksum),
every source record must be read exactly once over all runs, and pgmill.runs.retries must say that
retries happened. Each connection of a whole `pgmill run` (checks, model discovery, builds and the
ledger too) is cut in turn; tests/test_soak_faults.py repeats whole runs under random cuts. Seeds are in
the assertion messages (PGMILL_FAULT_SEED=<seed> replays one).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmill.errors import ConfigError, PgmillError, TransientError
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources import csv as csv_source
from pgmill.ingest.sources.base import RawBatch
from pgmill.orchestrate import run_project
from pgmill.project import open_project
from pgmill.retry import RetryPolicy
from pgmill.transform import runner as transform_runner
from tests.fault_proxy import FaultProxy, Params, socket_file
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv
from tests.test_crash_safety import Dataset, check_exact, make_api_orders, make_orders

FAST_RETRY = {"attempts": 20, "initial_s": 0.01, "max_s": 0.1}


def seed_for(label: str) -> int:
    env = os.environ.get("PGMILL_FAULT_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 30)


def write_orders(project: ProjectDir, rng: random.Random, mode: str = "merge", n_files: int = 3,
                 rows: int = 2000, batch_rows: int = 150, prefix: str = "data/orders", **extra: Any) -> Dataset:
    ds = make_orders(rng, mode, n_files=n_files, rows_per_file=rows, prefix=prefix)
    for path, text in ds.files.items():
        project.write(path, text)
    kw: dict[str, Any] = {"batch_rows": batch_rows}
    if mode == "merge":
        kw["cursor"] = "updated_at"
    project.contract("orders", ORDERS_CONTRACT)
    project.config({"orders": {"source": {"kind": "csv", "path": f"{prefix}_*.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml", "mode": mode, **kw}},
                   retry=FAST_RETRY, **extra)
    return ds


def merge_datasets(parts: list[Dataset], mode: str) -> Dataset:
    """The expected outcome of loading several datasets one after the other (newest wins in merges)."""
    out = Dataset()
    for ds in parts:
        out.records += ds.records
        out.defective |= ds.defective
        out.files.update(ds.files)
        for k, row in ds.expected.items():
            old = out.expected.get(k)
            if old is None or (mode == "merge" and row[5] >= old[5]):  # a tie: the later load wins
                out.expected[k] = row
    return out


def retries(db_url: str) -> int:
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT coalesce(sum(retries), 0) FROM pgmill.runs").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def proxy_for(db_url: str) -> Iterator[Any]:
    proxies: list[FaultProxy] = []

    def make(**kw: Any) -> FaultProxy:
        p = FaultProxy(socket_file(db_url), **kw).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


# ---------------------------------------------------------------- (a) the database connection drops


def test_random_connection_drops_still_load_exactly_once(project: ProjectDir, proxy_for: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """~10% of connections are dropped after a random number of bytes; loads go on until a handful of
    drops have hit, and every load must still complete with exact results."""
    seed = seed_for("random drops")
    rng = random.Random(seed)
    proxy = proxy_for(drop_fraction=0.1, max_bytes=40_000, seed=seed)
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    parts: list[Dataset] = []
    errors: list[str] = []
    rounds = 0
    while (len(proxy.dropped) < 3 or rounds < 2) and rounds < 10:
        parts.append(write_orders(project, rng, prefix=f"data/r{rounds:02d}", n_files=2, rows=1500))
        project.config({"orders": {"source": {"kind": "csv", "path": "data/r*_*.csv"}, "table": "public.orders",
                                   "contract": "contracts/orders.yaml", "mode": "merge", "cursor": "updated_at",
                                   "batch_rows": 150}}, retry=FAST_RETRY)
        try:
            [rec] = run_pipelines(open_project(project.path), ["orders"])
            if rec.status != "succeeded":
                errors.append(f"round {rounds}: run {rec.run_id} {rec.status}: {rec.error}")
        except Exception as exc:  # noqa: BLE001 - reported below with the seed
            errors.append(f"round {rounds}: {type(exc).__name__}: {exc}")
        rounds += 1
    why = (f"seed {seed} (PGMILL_FAULT_SEED), {rounds} loads, {len(proxy.dropped)} of "
           f"{len(proxy.connections)} connections dropped: "
           + ", ".join(f"#{c.number} {c.application_name!r} after {c.moved} B" for c in proxy.dropped))
    assert not errors, f"{why}; a load failed instead of retrying: {errors}"
    check_exact(project.db_url, merge_datasets(parts, "merge"), "orders", why)
    data_drops = [c for c in proxy.dropped if not c.application_name.startswith("pgmill lock")]
    if data_drops:
        assert retries(project.db_url) > 0, f"{why}: no retry counted in pgmill.runs"


# which connection of a run is which (workers: 2, two files): 0 the lock/ledger connection, 1 the one
# that creates the table and the run, 2 the one that reads the source state, 3 and 4 one per file
@pytest.mark.parametrize("victim", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("after", [0, 700, 6000])
def test_scripted_connection_drop_is_retried(project: ProjectDir, proxy_for: Any, monkeypatch: pytest.MonkeyPatch,
                                             victim: int, after: int) -> None:
    """Connection number `victim` of a run drops after `after` bytes (0: during authentication, 700:
    around the first statements, 6000: further in). Whatever it was doing, the run retries and the
    result is exact."""
    seed = seed_for("scripted drop")
    ds = write_orders(project, random.Random(seed), n_files=2, rows=600, batch_rows=60)

    def doom(n: int, params: Params) -> int | None:
        return after if n == victim else None

    proxy = proxy_for(doom=doom)
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    why = f"connection #{victim} dropped after {after} B (seed {seed})"
    try:
        [rec] = run_pipelines(open_project(project.path), ["orders"])
    except Exception as exc:  # noqa: BLE001
        dropped = [(c.number, c.application_name, c.moved) for c in proxy.dropped]
        raise AssertionError(f"{why}: the run raised {type(exc).__name__}: {exc} (dropped: {dropped})") from exc
    dropped = [(c.number, c.application_name, c.moved) for c in proxy.dropped]
    assert rec.status == "succeeded", f"{why}: run {rec.status}: {rec.error} (dropped: {dropped})"
    check_exact(project.db_url, ds, "orders", f"{why} (dropped: {dropped})")
    if dropped:
        assert retries(project.db_url) > 0, f"{why}: a connection was lost but no retry was counted ({dropped})"


@pytest.mark.parametrize("client_only", [False, True])
def test_lock_connection_lost_mid_run(project: ProjectDir, proxy_for: Any, monkeypatch: pytest.MonkeyPatch,
                                      client_only: bool) -> None:
    """The connection that holds the pipeline's advisory lock (and writes the ledger) dies while batches
    are being loaded. The run must still end as a clean, accounted outcome: succeeded with exact rows
    (having taken the lock again), never a raw driver exception and a run left 'running'. `client_only`:
    the server keeps the old session, and the lock, alive; the run must end that session (its own), not
    take it for another run holding the pipeline."""
    seed = seed_for("lock conn")
    ds = write_orders(project, random.Random(seed), n_files=2, rows=3000, batch_rows=100)
    proxy = proxy_for()
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["records"] = run_pipelines(open_project(project.path), ["orders"])
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    killed = 0
    with psycopg.connect(project.db_url, autocommit=True) as c:
        deadline = time.monotonic() + 60
        while t.is_alive() and time.monotonic() < deadline and not killed:
            row = c.execute("SELECT to_regclass('pgmill.runs') IS NOT NULL").fetchone()
            if row and row[0]:
                got = c.execute("SELECT coalesce(sum(rows_read), 0) FROM pgmill.runs").fetchone()
                if got and got[0] > 0:
                    killed = proxy.kill(lambda cn: cn.application_name.startswith("pgmill lock"),
                                        client_only=client_only)
            time.sleep(0.005)
    t.join(60)
    if not killed:
        pytest.skip("the load finished before the lock connection could be dropped")
    with psycopg.connect(project.db_url) as c:
        runs = c.execute("SELECT run_id, status, error FROM pgmill.runs ORDER BY run_id").fetchall()
    err = result.get("error")
    assert err is None, (f"losing the lock connection mid-run escaped as {type(err).__name__}: {err}; "
                         f"ledger: {runs}")
    [rec] = result["records"]
    assert rec.status == "succeeded", f"run {rec.status}: {rec.error}; ledger: {runs}"
    check_exact(project.db_url, ds, "orders", "lock connection dropped mid-run")


# ---------------------------------------------------------------- (a) every step of `pgmill run`

RUN_CHECKS = {"unique": ["order_id"], "not_null": ["customer_id", "ordered_at"],
              "accepted_values": {"status": ["F", "O", "P"]}, "ranges": {"total": {"min": 0}}, "row_count": {"min": 1}}
RUN_MODELS = {
    "customer_totals": "SELECT customer_id, count(*) AS orders, sum(total) AS spent FROM public.orders GROUP BY 1\n",
    "big_spenders": "-- pgmill: {materialized: view}\nSELECT customer_id, spent FROM customer_totals WHERE spent > 1000\n",
}
# the connections a `pgmill run` of run_project_files opens once the tables exist, in order
RUN_CONNECTIONS = {"cost": "pgmill cost", "lock": "pgmill lock orders", "load-setup": "pgmill", "load": "pgmill", "checks": "pgmill check",
                   "checks-step": "pgmill", "model-discovery": "pgmill", "transform-setup": "pgmill",
                   "build": "pgmill transform", "transform-finish": "pgmill", "models-step": "pgmill"}
#: steps recorded in a load's run after it ended (orchestrate._record_steps): their retries are not the run's
AFTER_THE_RUN = ("checks-step", "models-step")


def run_project_files(project: ProjectDir, retry: dict[str, float] = FAST_RETRY) -> None:
    """A merge pipeline over data/r*_*.csv whose contract has table checks, and two models on its table
    (a view over a table): `pgmill run` goes through every step."""
    project.contract("orders", {**ORDERS_CONTRACT, "checks": RUN_CHECKS})
    project.config({"orders": {"source": {"kind": "csv", "path": "data/r*_*.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml", "mode": "merge", "cursor": "updated_at",
                               "batch_rows": 25}},
                   retry=retry, models={"threads": 2})
    for name, text in RUN_MODELS.items():
        project.write(f"models/{name}.sql", text)


def next_orders(project: ProjectDir, rng: random.Random, n: int) -> Dataset:
    """Run n's file of orders (80 records, keys shared with the other runs' files)."""
    ds = make_orders(rng, "merge", n_files=1, rows_per_file=80, prefix=f"data/r{n:04d}")
    for path, text in ds.files.items():
        project.write(path, text)
    return ds


def pgmill_run(project: ProjectDir) -> str | None:
    """One `pgmill run` through the library; what went wrong, or None when it all succeeded."""
    try:
        result = run_project(open_project(project.path))
    except PgmillError as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - the CLI's "unexpected error" (exit 70)
        return f"unexpected {type(exc).__name__}: {exc}"
    if not result.ok or result.transform is None or result.checks is None:
        return f"not ok: {result.as_dict()}"
    return None


def check_runs_exact(db_url: str, parts: list[Dataset], runs: int, why: str) -> None:
    """After `runs` runs of run_project_files: the table is exact, every run succeeded with its rows
    accounted for, every check run wrote each result once, and the models equal their queries."""
    check_exact(db_url, merge_datasets(parts, "merge"), "orders", why)
    per_customer = "SELECT customer_id, count(*), sum(total) FROM orders GROUP BY 1"
    big = "SELECT customer_id, sum(total) FROM orders GROUP BY 1 HAVING sum(total) > 1000"
    with psycopg.connect(db_url) as c:
        statuses = c.execute("SELECT pipeline, status, count(*) FROM pgmill.runs GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        unbalanced = c.execute(
            "SELECT run_id, rows_read, rows_inserted + rows_updated + rows_unchanged + rows_quarantined"
            " + rows_duplicate FROM pgmill.runs WHERE rows_read <> rows_inserted + rows_updated + rows_unchanged"
            " + rows_quarantined + rows_duplicate").fetchall()
        check_runs = c.execute("SELECT count(DISTINCT run_id) FROM pgmill.quality_results").fetchone()
        twice = c.execute("SELECT run_id, table_name, rule, count(*) FROM pgmill.quality_results"
                          " GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
        differ = sql.SQL("SELECT count(*) FROM ((TABLE {m} EXCEPT ALL {q}) UNION ALL ({q} EXCEPT ALL TABLE {m})) d")
        model_diff = [c.execute(differ.format(m=sql.Identifier(m), q=sql.SQL(q))).fetchone()
                      for m, q in (("customer_totals", per_customer), ("big_spenders", big))]
    assert statuses == [("orders", "succeeded", runs), ("transform", "succeeded", runs)], f"{why}: {statuses}"
    assert not unbalanced, f"{why}: runs whose rows do not add up: {unbalanced}"
    assert check_runs == (runs,), f"{why}: {check_runs} check runs recorded results, not {runs}"
    assert not twice, f"{why}: check results written twice: {twice[:10]}"
    assert model_diff == [(0,), (0,)], f"{why}: the models differ from their queries on the final table"


@pytest.mark.parametrize("after", [0, 700, 4000])
@pytest.mark.parametrize("victim", list(RUN_CONNECTIONS))
def test_scripted_drop_in_each_step_of_pgmill_run(project: ProjectDir, proxy_for: Any,
                                                  monkeypatch: pytest.MonkeyPatch, victim: str, after: int) -> None:
    """The second `pgmill run` of a project loses one of its connections after `after` bytes: the
    pipeline's lock, its loads, the checks, the model discovery, a build or the transform's bookkeeping.
    Each step retries on its own; the run succeeds and nothing is lost, doubled or left unfinished."""
    seed = seed_for("scripted run drop")
    rng = random.Random(seed)
    run_project_files(project)
    armed: list[int] = []
    proxy = proxy_for(doom=lambda n, params: after if armed and n == armed[0] else None)
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    parts = [next_orders(project, rng, 0)]
    assert pgmill_run(project) is None
    parts.append(next_orders(project, rng, 1))
    armed.append(len(proxy.connections) + list(RUN_CONNECTIONS).index(victim))
    failure = pgmill_run(project)
    conns = proxy.connections[armed[0] - list(RUN_CONNECTIONS).index(victim):]
    why = (f"{victim} connection dropped after {after} B (seed {seed}); connections: "
           + ", ".join(f"#{c.number} {c.application_name!r} {c.moved} B{' (cut)' if c.dropped else ''}" for c in conns))
    assert failure is None, f"{why}: {failure}"
    target = proxy.connections[armed[0]]
    assert target.application_name == RUN_CONNECTIONS[victim], f"{why}: connection order changed, fix RUN_CONNECTIONS"
    assert target.dropped or target.moved <= after, why
    check_runs_exact(project.db_url, parts, 2, why)
    if target.dropped and victim not in ("cost", "checks", "model-discovery", *AFTER_THE_RUN):  # no run to count in
        assert retries(project.db_url) > 0, f"{why}: no retry counted in pgmill.runs"
    if victim in AFTER_THE_RUN:  # recorded once, though its connection was cut
        assert project.query("SELECT count(*) FROM pgmill.run_steps WHERE name = %s GROUP BY run_id",
                             (victim.removesuffix("-step"),)) == [(1,), (1,)], why


def test_retune_check_after_a_run_is_retried(project: ProjectDir, proxy_for: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """After a run, whether to re-tune is read on a connection of its own; cut, it is read again, and the
    run reports neither a failure nor a note."""
    project.orders_pipeline(mode="append", path="data/orders.csv")
    project.config({"orders": {"source": {"kind": "csv", "path": "data/orders.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml", "mode": "append"}},
                   retry=FAST_RETRY, tune={"auto": "recommend"})
    project.write("data/orders.csv", orders_csv([(i, i % 50, "F", "1.00", "2024-01-01", None) for i in range(1, 501)]))
    project.write("queries/orders_of_customer.sql", "-- name: orders_of_customer\n"
                  "SELECT order_id, total FROM public.orders WHERE customer_id = 7\n")
    state = {"armed": False, "cut": False}

    def doom(n: int, params: Params) -> int | None:  # the first tune connection of the second run
        if not state["armed"] or state["cut"] or params.get("application_name") != "pgmill tune":
            return None
        state["cut"] = True
        return 700

    proxy = proxy_for(doom=doom)
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    first = run_project(open_project(project.path))
    assert first.ok and first.tuning is not None, first.as_dict()
    state["armed"] = True
    again = run_project(open_project(project.path))
    cut = [(c.application_name, c.moved) for c in proxy.dropped]
    assert cut and cut[0][0] == "pgmill tune", cut
    assert again.ok and again.tuning is None and not again.notes, (cut, again.as_dict())


def test_no_model_files_no_model_discovery(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project without models/*.sql: `pgmill run` does not read the catalog to find its models."""
    project.orders_pipeline(mode="merge", path="data/orders.csv")
    project.write("data/orders.csv", orders_csv([(1, 7, "F", "1.00", "2024-01-01", None)]))

    def refuse(conn: Any) -> Any:
        raise AssertionError("the catalog was read for a project without models")

    monkeypatch.setattr(transform_runner, "read_catalog", refuse)
    result = run_project(open_project(project.path))
    assert result.ok and result.transform is None, result.as_dict()


# ---------------------------------------------------------------- (b) the source fails transiently


def test_csv_reader_transient_failures_are_retried(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader raises TransientError before ~10% of its batches; the run retries from the last
    checkpoint and loads everything exactly once."""
    seed = seed_for("flaky reader")
    rng = random.Random(seed)
    ds = write_orders(project, rng, n_files=3, rows=1500, batch_rows=100)
    real = csv_source.read_csv_file
    failures = [0]
    batches = [0]
    lock = threading.Lock()

    def flaky(*args: Any, **kw: Any) -> Iterator[RawBatch]:
        for batch in real(*args, **kw):
            with lock:
                batches[0] += 1
                # at random, and always the third batch: with ~45 batches, chance alone injects nothing
                # about once in a hundred seeds, and such a run proves nothing
                fail = rng.random() < 0.1 or batches[0] == 3
                failures[0] += fail
            if fail:
                raise TransientError("injected: the file system hiccuped")
            yield batch

    monkeypatch.setattr(csv_source, "read_csv_file", flaky)
    [rec] = run_pipelines(open_project(project.path), ["orders"])
    why = f"seed {seed}, {failures[0]} injected failures"
    assert rec.status == "succeeded", f"{why}: {rec.error}"
    check_exact(project.db_url, ds, "orders", why)
    assert failures[0] > 0, why
    # files load two at a time: both streams of one attempt may fail, and that costs one retry. Two merges
    # into one table can also deadlock on a key both files hold; Postgres aborts one, which is retried too.
    errors = [str(e) for (e,) in project.query(
        "SELECT detail->>'error' FROM pgmill.run_steps WHERE status = 'failed'")]
    assert all("injected" in e or "deadlock" in e for e in errors), f"{why}: {errors}"
    deadlocks = sum("deadlock" in e for e in errors)
    assert 1 <= rec.retries <= failures[0] + deadlocks, f"{why}: pgmill.runs.retries = {rec.retries}; {errors}"


def test_http_source_transient_failures_give_complete_results(project: ProjectDir) -> None:
    """The fake API answers 429, 503, 500, resets and truncated bodies at random (and once fails a
    request five times in a row, so that the runner itself retries from the last checkpoint)."""
    fake_api = pytest.importorskip("tests.fake_api")
    pytest.importorskip("pgmill.ingest.sources.http")
    seed = seed_for("flaky api")
    rng = random.Random(seed)
    records, ds, bad = make_api_orders(rng, "merge", n=1500)

    class Flaky(fake_api.FakeApi):  # type: ignore[misc,name-defined]
        def _failure(self) -> str | None:
            with self._lock:
                if self.pages_served == 3 and not getattr(self, "_burst_done", False):
                    self._burst_done = True
                    self._scripted.extend(["429"] * 5)  # more than one request's attempts
            return super()._failure()  # type: ignore[no-any-return]

    with Flaky(records, style="page", page_size=100, failure_rate=0.15,
               failure_kinds=("429", "503", "500", "reset", "truncate"), seed=seed) as api:
        ds.defective = {f"GET {api.url}:record {k}" for k in bad}
        project.contract("orders", ORDERS_CONTRACT)
        project.config({"orders": {"source": api.source(), "table": "public.orders",
                                   "contract": "contracts/orders.yaml", "mode": "merge", "cursor": "updated_at",
                                   "batch_rows": 150}}, retry=FAST_RETRY)
        [rec] = run_pipelines(open_project(project.path), ["orders"])
        outcomes = [s.outcome for s in api.seen]
    why = f"seed {seed}; API answers: { {o: outcomes.count(o) for o in set(outcomes)} }"
    assert rec.status == "succeeded", f"{why}: {rec.error}"
    check_exact(project.db_url, ds, "orders", why)
    assert rec.retries >= 1, f"{why}: the five-429 burst should have cost one run-level retry"


# ---------------------------------------------------------------- (b') the policy every loop uses


def test_policy_waits_full_jitter_backoff_between_transient_failures() -> None:
    calls: list[int] = []
    waits: list[float] = []
    retried: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "done"

    policy = RetryPolicy(attempts=5, initial_s=1.0, max_s=2.5)
    assert policy.call(flaky, on_retry=lambda exc, n, wait: retried.append(n), sleep=waits.append) == "done"
    assert retried == [1, 2, 3] and len(calls) == 4
    assert [0 <= w <= cap for w, cap in zip(waits, (1.0, 2.0, 2.5), strict=True)] == [True] * 3, waits


def test_policy_gives_up_with_the_last_error_and_never_retries_a_permanent_one() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError(f"attempt {len(calls)}")

    with pytest.raises(TransientError, match="attempt 3"):
        RetryPolicy(attempts=3, initial_s=0.001, max_s=0.001).call(down)
    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise ConfigError("no such column")

    with pytest.raises(ConfigError):
        RetryPolicy(attempts=3, initial_s=0.001, max_s=0.001).call(broken)
    assert len(calls) == 1


def test_policy_starts_the_count_over_after_progress() -> None:
    """A load that commits some rows between faults resumes as long as it keeps moving."""
    rows = [0]

    def load() -> int:
        rows[0] += 10  # a checkpoint committed, then the fault
        if rows[0] < 100:
            raise TransientError("connection lost")
        return rows[0]

    policy = RetryPolicy(attempts=2, initial_s=0.001, max_s=0.001)
    assert policy.call(load, progress=lambda: rows[0]) == 100
    rows[0] = 0
    with pytest.raises(TransientError):
        policy.call(load)  # without progress, two faults in a row are the end


# ---------------------------------------------------------------- (c) permanent faults fail fast


def pgmill_cli(project_dir: Path, env_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGMILL_DATABASE_URL": env_url}
    return subprocess.run([sys.executable, "-c", "from pgmill.cli import main; main()", *args, "-p", str(project_dir)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=project_dir)


def assert_one_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode != 0, text
    assert "Traceback" not in proc.stderr + proc.stdout, text
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, text
    for n in needles:
        assert n in errors[0], f"{n!r} not in the error line; {text}"


def test_missing_file_fails_fast_with_one_message(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", path="data/nowhere.csv")
    proc = pgmill_cli(project.path, project.db_url, "run")
    assert_one_clean_error(proc, "data/nowhere.csv", "not found")
    rows = project.query("SELECT status, retries, error FROM pgmill.runs")
    assert len(rows) == 1 and rows[0][0] == "failed" and rows[0][1] == 0, rows
    assert "not found" in rows[0][2]


@pytest.mark.parametrize("wrong", ["dbname", "user"])
def test_bad_credentials_fail_fast(project: ProjectDir, proxy_for: Any, wrong: str) -> None:
    """A database that does not exist, a user that does not exist: one connection attempt (counted at
    the proxy), one clear line, no traceback, nothing retried."""
    project.orders_pipeline(mode="merge")
    project.write("data/orders_1.csv", "order_id,customer_id,status,total,ordered_at,updated_at\n1,1,F,1,2024-01-01,\n")
    proxy = proxy_for()
    bogus = "pgmill_no_such_" + wrong
    proc = pgmill_cli(project.path, proxy.url(project.db_url, **{wrong: bogus}), "run")
    assert_one_clean_error(proc, bogus)
    assert len(proxy.connections) == 1, f"{len(proxy.connections)} connection attempts for a permanent fault"
    # and without the proxy, on the server's own socket
    direct = project.db_url.replace("postgresql://postgres@/", f"postgresql://postgres@/{bogus}_x") \
        if wrong == "dbname" else project.db_url.replace("postgresql://postgres@", f"postgresql://{bogus}@")
    proc = pgmill_cli(project.path, direct, "run")
    assert_one_clean_error(proc, bogus)
    assert not project.query("SELECT to_regclass('pgmill.runs')")[0][0] or \
        project.scalar("SELECT count(*) FROM pgmill.runs") == 0


def test_connection_drop_before_the_load_never_shows_a_traceback(project: ProjectDir, proxy_for: Any) -> None:
    """Through the CLI: the connection that creates the table and the run (#1) drops after its first
    statements. The run must retry (exit 0), or at worst fail with one clean line, never a traceback."""
    seed = seed_for("cli drop")
    ds = write_orders(project, random.Random(seed), n_files=2, rows=500, batch_rows=100)
    proxy = proxy_for(doom=lambda n, params: 700 if n == 1 else None)
    proc = pgmill_cli(project.path, proxy.url(project.db_url), "run")
    text = f"exit {proc.returncode}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, text
    assert proc.returncode == 0, text
    check_exact(project.db_url, ds, "orders", "CLI run with connection #1 dropped")

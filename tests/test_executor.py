"""Units of a load on other executors: a pool of processes and a Dask LocalCluster load the same table as
threads do, with every row accounted for; a Dask worker killed mid-load loses nothing and duplicates
nothing (the unit runs again elsewhere and resumes from its last checkpoint)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from pgmill.config.spec import ExecutorSpec
from pgmill.errors import ConfigError, PgmillError
from pgmill.execute.executors import parse_executor
from pgmill.ingest import stream_load
from pgmill.ingest.runner import run_pipelines
from pgmill.observe.ledger import RunRecord
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, execute, orders_csv, table_checksum
from tests.test_source_postgres import pipeline as pg_pipeline

FILES = 3
ROWS = 600  # per file


def _write_files(project: ProjectDir, rows: int = ROWS) -> int:
    """FILES files of `rows` orders (every 53rd breaks a rule); returns the records written."""
    for f in range(FILES):
        out = []
        for i in range(rows):
            n = f * rows + i + 1
            status = "X" if n % 53 == 0 else "FOP"[n % 3]
            out.append((n, 1000 + n % 17, status, f"{n % 500}.25", f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}", None))
        project.write(f"data/part{f}.csv", orders_csv(out))
    return FILES * rows


def _config(project: ProjectDir, batch_rows: int) -> None:
    """`units` (split into ranges) and `reference` (threads, not split) read the same files into two tables.
    The contract has no key, so a batch loaded twice would show as extra rows."""
    contract = {"columns": {k: {kk: vv for kk, vv in v.items() if kk != "primary_key"}
                            for k, v in ORDERS_CONTRACT["columns"].items()}}
    project.contract("orders", contract)
    source = {"kind": "csv", "path": "data/part*.csv"}
    common = {"contract": "contracts/orders.yaml", "mode": "append", "batch_rows": batch_rows}
    project.config({
        "units": {"source": {**source, "split": {"min_bytes": 1, "parts": 2}}, "table": "public.orders_units",
                  **common},
        "reference": {"source": source, "table": "public.orders_ref", **common},
    })


def _run(pipeline: str, executor: ExecutorSpec | None = None, progress: Any = None) -> RunRecord:
    ctx = open_project()
    if executor is not None:
        ctx.config = ctx.config.model_copy(update={"executor": executor})
    [run] = run_pipelines(ctx, [pipeline], progress=progress)
    assert run.status == "succeeded", run.error
    assert run.counts.balanced(), run.counts
    return run


def _same_as_reference(project: ProjectDir, run: RunRecord, records: int) -> None:
    assert run.counts.rows_read == records  # no committed batch was read twice
    assert table_checksum(project.db_url, "orders_units", "order_id, status") == \
        table_checksum(project.db_url, "orders_ref", "order_id, status")
    q = "SELECT count(*) FROM pgmill.quarantine WHERE pipeline = %s"
    assert project.scalar(q, ("units",)) == project.scalar(q, ("reference",)) == records // 53


def _not_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Units must load elsewhere: here, loading a stream fails."""
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a unit loaded in the calling process")
    monkeypatch.setattr(stream_load, "load_stream", refuse)


def test_processes_load_the_same_table_as_threads(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _write_files(project)
    _config(project, batch_rows=100)
    _run("reference")
    _not_in_this_process(monkeypatch)
    seen: list[tuple[int, int]] = []
    run = _run("units", ExecutorSpec(kind="processes", workers=2),
               progress=lambda p: seen.append((p.rows, p.quarantined)))
    _same_as_reference(project, run, records)
    # progress comes from the ledger as the units' checkpoints commit, and ends at the run's counts
    assert seen and seen[-1] == (records, run.counts.rows_quarantined)
    assert [r for r, _ in seen] == sorted(r for r, _ in seen)
    steps = project.query("SELECT name FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%'"
                          " ORDER BY name", (run.run_id,))
    assert len(steps) == FILES * 2 and all(" bytes " in s[0] for s in steps)  # one step per range
    # a second run finds every unit's checkpoint: nothing to load
    again = _run("units", ExecutorSpec(kind="processes", workers=2))
    assert again.counts.rows_read == 0
    # a unit still loading after its run was closed (Dask cannot stop a started task) commits nothing more
    from pgmill.errors import PipelineLocked
    from pgmill.ingest.lock import check_owner

    with project.connect(autocommit=False) as conn, pytest.raises(PipelineLocked, match="is succeeded already"):
        check_owner(conn, "units", again.run_id)


@pytest.fixture
def cluster(project: ProjectDir) -> Iterator[Any]:
    """Two Dask worker processes (started after the project's environment is set: they inherit it)."""
    from distributed import LocalCluster

    saved = dict(os.environ)  # a nanny sets its workers' variables (MALLOC_TRIM_THRESHOLD_, ...) in this process
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_dask_cluster_loads_the_same_table_as_threads(project: ProjectDir, cluster: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    records = _write_files(project)
    _config(project, batch_rows=100)
    _run("reference")
    _not_in_this_process(monkeypatch)
    run = _run("units", ExecutorSpec(kind="dask", address=cluster.scheduler_address))
    _same_as_reference(project, run, records)


def test_dask_cluster_loads_parquet_row_group_ranges(project: ProjectDir, cluster: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = list(range(1, 2001))
    (project.path / "data").mkdir()
    pq.write_table(pa.table({"id": ids, "v": [f"v{i}" for i in ids]}), project.path / "data/t.parquet",
                   row_group_size=250)
    project.contract("t", {"columns": {"id": {"type": "bigint"}, "v": {"type": "text"}}})
    common = {"contract": "contracts/t.yaml", "mode": "append", "batch_rows": 100}
    project.config({
        "units": {"source": {"kind": "parquet", "path": "data/t.parquet", "split": {"min_bytes": 1, "parts": 4}},
                  "table": "public.t_units", **common},
        "reference": {"source": {"kind": "parquet", "path": "data/t.parquet"}, "table": "public.t_ref", **common},
    })
    _run("reference")
    _not_in_this_process(monkeypatch)
    run = _run("units", ExecutorSpec(kind="dask", address=cluster.scheduler_address))
    assert run.counts.rows_read == 2000
    assert table_checksum(project.db_url, "t_units", "id") == table_checksum(project.db_url, "t_ref", "id")
    steps = project.query("SELECT name FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%'"
                          " ORDER BY name", (run.run_id,))
    assert [s[0] for s in steps] == [f"load data/t.parquet rows {a}-{a + 500}" for a in (0, 1000, 1500, 500)]


def test_dask_worker_killed_mid_load_loses_and_duplicates_nothing(project: ProjectDir, cluster: Any) -> None:
    from distributed import Client

    records = _write_files(project, rows=3000)
    _config(project, batch_rows=25)  # many checkpoints per unit: the kill lands between two of them
    _run("reference")
    spec = ExecutorSpec(kind="dask", address=cluster.scheduler_address)
    result: list[RunRecord | BaseException] = []

    def load() -> None:
        try:
            result.append(_run("units", spec))
        except BaseException as exc:  # reported by the assertions below
            result.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    with Client(cluster.scheduler_address) as client:
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and loader.is_alive() and time.monotonic() < deadline:
            done = project.scalar("SELECT count(*) FILTER (WHERE complete) FROM pgmill.file_ranges"
                                  " WHERE pipeline = 'units'") or 0
            busy = project.scalar("SELECT count(*) FILTER (WHERE NOT complete AND records_done > 0)"
                                  " FROM pgmill.file_ranges WHERE pipeline = 'units'") or 0
            working = {w: tasks for w, tasks in client.processing().items() if tasks}
            if done >= 1 and busy >= 2 and len(working) == 2:  # both workers mid-unit: the victim is too
                pids = client.run(os.getpid)
                victim = next(iter(working))
                killed = pids[victim]
                os.kill(killed, signal.SIGKILL)  # mid-unit: after some units finished, with checkpoints in flight
            time.sleep(0.05)
    loader.join(300)
    assert killed is not None, "the load finished before a worker could be killed mid-unit"
    [outcome] = result
    assert isinstance(outcome, RunRecord), outcome
    _same_as_reference(project, outcome, records)
    assert project.scalar("SELECT bool_and(complete) FROM pgmill.file_ranges WHERE pipeline = 'units'")


def test_executor_option_errors_are_clear() -> None:
    assert parse_executor("dask://sched:8786").address == "tcp://sched:8786"
    assert parse_executor("processes:3").workers == 3
    with pytest.raises(ConfigError, match="expected threads, processes, processes:N or dask://HOST:PORT"):
        parse_executor("spark://x")


def test_no_dask_scheduler_is_a_clear_error(project: ProjectDir) -> None:
    _write_files(project, rows=10)
    _config(project, batch_rows=100)
    ctx = open_project()
    ctx.config = ctx.config.model_copy(update={"executor": ExecutorSpec(kind="dask", address="tcp://127.0.0.1:9")})
    with pytest.raises(PgmillError, match=r"no Dask scheduler answered at tcp://127.0.0.1:9"):
        run_pipelines(ctx, ["units"])


def test_dask_cluster_loads_the_partitions_of_a_postgres_source(project: ProjectDir, source: str, cluster: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each partition is a unit that finds its partition from its label (no listing on the worker)."""
    execute(source, "CREATE TABLE shop.events (id bigint, customer text, total numeric(12,2),"
            " updated_at timestamptz NOT NULL) PARTITION BY RANGE (id)")
    for p in range(3):
        execute(source, sql.SQL("CREATE TABLE shop.{} PARTITION OF shop.events FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(f"events_{p}"), sql.Literal(p * 100), sql.Literal((p + 1) * 100)))
    execute(source, "INSERT INTO shop.events SELECT i, 'c' || i, i, timestamptz '2024-01-01' + i * interval '1 hour'"
            " FROM generate_series(0, 299) i")
    pg_pipeline(project, {"table": "shop.events", "partitions": True}, batch_rows=40)
    _not_in_this_process(monkeypatch)
    run = _run("orders", ExecutorSpec(kind="dask", address=cluster.scheduler_address))
    assert (run.counts.rows_read, run.counts.rows_inserted) == (300, 300)
    assert project.query("SELECT count(DISTINCT id), sum(total) FROM orders") == [(300, sum(range(300)))]
    assert _run("orders", ExecutorSpec(kind="dask", address=cluster.scheduler_address)).counts.rows_read == 0

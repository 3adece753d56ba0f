"""Retention of partitioned tables: expired partitions detached concurrently while the table is read and
written, archived to Parquet and loaded back, an interrupted detach finished; and distribution_key."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from typer.testing import CliRunner

from pgmill.cli.root import app
from pgmill.config.spec import PartitionSpec
from pgmill.db import partition, retention
from pgmill.db.archive import sha256_of
from pgmill.errors import ConfigError
from pgmill.ingest.retention import run_retention
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv, run_one, table_checksum

TODAY = dt.datetime.now(dt.UTC).date()
OLD = ["orders_p202001", "orders_p202002"]
CURRENT = f"orders_p{TODAY:%Y%m}"


def contract(**part: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["ordered_at"]["primary_key"] = True
    doc["partition"] = {"by": "ordered_at", "interval": "month", "premake": 0, "retain": "2 months", **part}
    return doc


def setup(project: ProjectDir, old_rows: int = 2000, **part: Any) -> None:
    """Orders in January and February 2020 (expired) and this month (kept); `old_rows` more per old month."""
    project.contract("orders", contract(**part))
    pipes: dict[str, Any] = {"orders": {"source": {"kind": "csv", "path": "data/orders.csv"}, "table": "public.orders",
                                        "contract": "contracts/orders.yaml"}}
    project.config(pipes)
    project.write("data/orders.csv", orders_csv([
        (1, 10, "F", "10.00", "2020-01-15", "2020-01-15T10:00:00Z"),
        (2, 11, "O", "20.50", "2020-02-01", None),
        (3, 12, "P", "30.00", TODAY.isoformat(), None),
    ]))
    run_one()
    project.execute(
        "INSERT INTO orders SELECT 100 + i, i %% 97, 'F', (i %% 1000) / 100.0, d, d + interval '3 hours'"
        " FROM generate_series(1, %s) i, (VALUES (date '2020-01-20'), (date '2020-02-20')) m(d)", (old_rows,))


def partitions(project: ProjectDir) -> set[str]:
    return partition.existing(project.connect(), "orders")


def test_dry_run_changes_nothing(project: ProjectDir) -> None:
    setup(project)
    before = table_checksum(project.db_url, "orders", "order_id, ordered_at")
    res = CliRunner().invoke(app, ["retention", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["dry_run"] is True
    assert [(p["partition"], p["action"], p["state"]) for p in report["partitions"]] == [
        (OLD[0], "drop", "attached"), (OLD[1], "drop", "attached")]
    assert table_checksum(project.db_url, "orders", "order_id, ordered_at") == before
    assert set(OLD) | {CURRENT} <= partitions(project)


def test_retention_under_a_reader_and_a_writer(project: ProjectDir) -> None:
    setup(project, old_rows=20_000)
    stop = threading.Event()
    errors: list[BaseException] = []
    written: list[int] = []
    reads = [0]

    def reader() -> None:
        with project.connect() as c:
            while not stop.is_set():
                try:
                    c.execute("SELECT count(*) FROM orders").fetchone()
                    reads[0] += 1
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

    def writer() -> None:
        with project.connect() as c:
            k = 1_000_000
            while not stop.is_set():
                try:
                    c.execute("INSERT INTO orders VALUES (%s, 1, 'F', 1, %s, NULL)", (k, TODAY))
                    written.append(k)
                    k += 1
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        report = run_retention(open_project(project.path))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert reads[0] > 0 and len(written) > 0
    assert [p.partition for p in report.partitions] == OLD
    assert partitions(project) == {CURRENT}
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", (OLD,)) == 0
    # every current row is there: the three loaded plus each one the writer committed
    got = {r[0] for r in project.query("SELECT order_id FROM orders")}
    assert got == {3, *written}


def test_archive_then_reload_equals_the_detached_partition(project: ProjectDir) -> None:
    setup(project, archive="parquet", archive_dir="cold")
    expected = {name: table_checksum(project.db_url, name, "order_id") for name in OLD}
    report = run_retention(open_project(project.path), ["orders"])
    assert [(p.partition, p.action, p.rows) for p in report.partitions] == [
        (OLD[0], "archive, drop", 2001), (OLD[1], "archive, drop", 2001)]
    assert partitions(project) == {CURRENT}
    ledger = project.query("SELECT table_name, partition_name, bounds, rows, bytes, sha256, path"
                           " FROM pgmill.archives ORDER BY partition_name")
    assert [r[:4] for r in ledger] == [("public.orders", OLD[0], "[2020-01-01, 2020-02-01)", 2001),
                                       ("public.orders", OLD[1], "[2020-02-01, 2020-03-01)", 2001)]
    for *_, size, sha, path in ledger:
        f = project.path / path
        assert path == f"cold/public.orders/{Path(path).name}"
        assert f.stat().st_size == size and sha256_of(f) == sha
    assert pq.ParquetFile(project.path / ledger[0][6]).metadata.num_rows == 2001
    # pgmill status: storage per table and partition, and what was archived
    res = CliRunner().invoke(app, ["status", "--storage", "--json"])
    assert res.exit_code == 0, res.output
    [orders] = json.loads(res.stdout)["tables"]
    assert (orders["table"], orders["partitioned"], [p["name"] for p in orders["partitions"]]) == (
        "public.orders", True, [CURRENT])
    assert orders["bytes"] == project.scalar("SELECT pg_total_relation_size(%s::regclass)", (CURRENT,)) > 0
    assert (orders["archived_files"], orders["archived_bytes"], orders["archived_rows"]) == (
        2, ledger[0][4] + ledger[1][4], 4002)
    res = CliRunner().invoke(app, ["status"])
    assert res.exit_code == 0, res.output
    assert "public.orders: " in res.stdout and " in 1 partitions; archived 2 files, " in res.stdout
    # an ordinary pipeline loads an archive back
    plain = copy.deepcopy(ORDERS_CONTRACT)
    plain["columns"]["ordered_at"]["primary_key"] = True
    project.contract("back", plain)
    project.config({"back": {"source": {"kind": "parquet", "path": ledger[0][6]}, "table": "public.orders_back",
                             "contract": "contracts/back.yaml"}})
    run = run_one()
    assert run.counts.rows_inserted == 2001
    assert table_checksum(project.db_url, "orders_back", "order_id") == expected[OLD[0]]


def test_archive_to_an_object_store_url_then_reload(project: ProjectDir) -> None:
    """archive_dir as a URL (fsspec's in-process memory filesystem stands for s3://): the ledger names the URL,
    its size and sha256 are those of the stored object, and the object loads back equal to the partition."""
    import fsspec

    store = f"memory://cold-{project.path.name}"
    setup(project, archive="parquet", archive_dir=store + "/")
    expected = table_checksum(project.db_url, OLD[0], "order_id")
    report = run_retention(open_project(project.path), ["orders"])
    assert [p.path for p in report.partitions] == [f"{store}/public.orders/{name}.parquet" for name in OLD]
    ledger = project.query("SELECT bytes, sha256, path FROM pgmill.archives ORDER BY partition_name")
    fs = fsspec.filesystem("memory")
    for size, sha, url in ledger:
        data = fs.cat_file(url.removeprefix("memory://"))
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    assert not (project.path / "cold").exists() and not list(project.path.glob("memory*"))
    # loading it back: copy the object down (as `aws s3 cp` would), check its sha256, load it with a pipeline
    local = project.path / "back" / "orders_p202001.parquet"
    fs.get(ledger[0][2].removeprefix("memory://"), str(local))
    assert sha256_of(local) == ledger[0][1]
    plain = copy.deepcopy(ORDERS_CONTRACT)
    plain["columns"]["ordered_at"]["primary_key"] = True
    project.contract("back", plain)
    project.config({"back": {"source": {"kind": "parquet", "path": "back/orders_p202001.parquet"},
                             "table": "public.orders_back", "contract": "contracts/back.yaml"}})
    assert run_one().counts.rows_inserted == 2001
    assert table_checksum(project.db_url, "orders_back", "order_id") == expected


@pytest.mark.parametrize(("archive_dir", "message"), [
    ("s3://bucket/prefix", "archive_dir s3://bucket/prefix: Install s3fs to access S3"),
    ("nope://x", "archive_dir nope://x: Protocol not known: nope"),
    ("memory://x", "archive_dir memory://x: archives at a URL need fsspec: pip install 'pgmill[archive]'"),
], ids=["store-package-missing", "unknown-scheme", "fsspec-missing"])
def test_an_archive_url_that_cannot_be_written_is_a_config_error(
        project: ProjectDir, monkeypatch: pytest.MonkeyPatch, archive_dir: str, message: str) -> None:
    setup(project, old_rows=0, archive="parquet", archive_dir=archive_dir)
    if "need fsspec" in message:
        monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec raises ImportError
    with pytest.raises(ConfigError) as err:
        run_retention(open_project(project.path), ["orders"])
    assert str(err.value) == message
    assert partitions(project) >= set(OLD)  # checked before any partition was touched
    assert project.scalar("SELECT count(*) FROM pgmill.archives") == 0


def test_an_interrupted_detach_is_finished(project: ProjectDir) -> None:
    """DETACH CONCURRENTLY cancelled while it waits for an older reader leaves the partition pending detach;
    a partition detached by hand but not dropped is found by its name. The next retention finishes both."""
    setup(project, old_rows=10)
    with project.connect() as c:  # a run that stopped after detaching, before dropping
        retention.detach(c, retention.Expired("public.orders", OLD[1], dt.date(2020, 2, 1), dt.date(2020, 3, 1),
                                              "attached"))
    # (PostgreSQL refuses any other detach from a table while one of its partitions is pending)
    blocker = project.connect(autocommit=False)
    blocker.execute("SELECT count(*) FROM orders")  # a transaction that saw the partition: the detach waits
    detacher = project.connect()
    pid = detacher.info.backend_pid
    failure: list[BaseException] = []

    def detach() -> None:
        try:
            detacher.execute(sql.SQL("ALTER TABLE orders DETACH PARTITION {} CONCURRENTLY").format(
                sql.Identifier(OLD[0])))
        except psycopg.errors.QueryCanceled as exc:
            failure.append(exc)

    t = threading.Thread(target=detach)
    t.start()
    for _ in range(200):
        if project.scalar("SELECT wait_event_type IS NOT NULL AND state = 'active' FROM pg_stat_activity"
                          " WHERE pid = %s", (pid,)):
            break
        time.sleep(0.05)
    project.execute("SELECT pg_cancel_backend(%s)", (pid,))
    t.join(30)
    blocker.rollback()
    blocker.close()
    detacher.close()
    assert failure, "the detach was not interrupted"
    assert project.scalar("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", (OLD[0],))
    report = run_retention(open_project(project.path))
    assert [(p.partition, p.state) for p in report.partitions] == [(OLD[0], "pending"), (OLD[1], "detached")]
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", (OLD,)) == 0
    assert partitions(project) == {CURRENT}
    assert project.query("SELECT order_id FROM orders") == [(3,)]


def test_never_the_current_partition_nor_other_tables(project: ProjectDir) -> None:
    setup(project, old_rows=1, retain=1)
    project.execute("CREATE TABLE orders_p199901 (x int)")  # not a partition pgmill detached, but its name fits
    project.execute("CREATE TABLE orders_p2020xx (x int)")
    last_month = partition.period_start(TODAY.replace(day=1) - dt.timedelta(days=1), "month")
    with project.connect() as c:
        partition.ensure_partitions(c, "orders", PartitionSpec(by="ordered_at", interval="month"), "date",
                                    [last_month])
    report = run_retention(open_project(project.path))
    assert [p.partition for p in report.partitions] == OLD
    assert partitions(project) == {CURRENT, f"orders_p{last_month:%Y%m}"}
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname IN ('orders_p199901', 'orders_p2020xx')") == 2


def test_unknown_table_and_bad_retain(project: ProjectDir) -> None:
    setup(project, old_rows=1)
    with pytest.raises(ConfigError, match=r"no retention for nope: the tables with `retain` .* public.orders"):
        run_retention(open_project(project.path), ["nope"])
    project.contract("orders", contract(retain="730d"))
    with pytest.raises(ConfigError, match=r"retain '730d': give a whole number of the partition's periods, e.g. '24 months'"):
        run_retention(open_project(project.path))


def test_distribution_key_missing_from_the_key_is_a_config_error(project: ProjectDir) -> None:
    doc = contract()
    doc["distribution_key"] = "customer_id"
    project.contract("orders", doc)
    project.config({"orders": {"source": {"kind": "csv", "path": "data/orders.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml"}})
    with pytest.raises(ConfigError) as err:
        run_one()
    msg = str(err.value)
    assert "contracts/orders.yaml:" in msg
    assert "primary key (order_id, ordered_at) does not include the distribution_key 'customer_id'" in msg
    doc["columns"]["customer_id"]["primary_key"] = True
    project.contract("orders", doc)
    project.write("data/orders.csv", orders_csv([(1, 10, "F", "10.00", TODAY.isoformat(), None)]))
    assert run_one().counts.rows_inserted == 1


def test_retention_is_a_job_kind(project: ProjectDir) -> None:
    from pgmill.schedule.jobs import scheduled_jobs

    setup(project, old_rows=1)
    doc = open_project(project.path).config.model_dump(exclude_none=True)
    project.config(doc["pipelines"], jobs={"retention": {"schedule": "30 3 * * *"}})
    job = scheduled_jobs(open_project(project.path).config)["retention"]
    assert job.command == ("retention",)
    assert job.timetable.spec.schedule == "30 3 * * *"

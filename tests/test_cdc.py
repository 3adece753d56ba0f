"""Change data capture from PostgreSQL (`cdc:` on a postgres source): the snapshot, then inserts, updates,
deletes, TRUNCATE, unchanged TOAST values, new columns, type changes, quarantine by LSN, exactly once across
runs, and clear errors for a source that cannot stream.

Needs the `pg15_logical` cluster (tests/pg15.py): skipped locally without PostgreSQL 15, failed in CI."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from pgmill.cli.root import app
from pgmill.errors import ConfigError, ContractError, SourceError
from pgmill.ingest.follow import Follow
from pgmill.ingest.runner import run_pipelines
from pgmill.project import open_project
from tests.cdc_source import CONTRACT, ENV, cdc_pipeline, cdc_source, same_rows
from tests.helpers import ProjectDir, connect, execute, query, run_one

pytest_plugins = ["tests.pg15"]  # the pg15_logical fixture
__all__ = ["cdc_source"]  # a fixture, used by name


def counts(project: ProjectDir) -> dict[str, Any]:
    row = project.query(
        "SELECT rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined, rows_deleted,"
        " rows_superseded FROM pgmill.runs ORDER BY run_id DESC LIMIT 1")[0]
    return dict(zip(("read", "inserted", "updated", "unchanged", "quarantined", "deleted", "superseded"), row,
                    strict=True))


def stored_lsn(project: ProjectDir) -> int:
    return int(project.scalar("SELECT (state->'cdc'->>'lsn')::bigint FROM pgmill.state WHERE pipeline = 'orders'"))


def test_snapshot_then_inserts_updates_deletes(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 10.50, 'first', '2024-01-01 10:00Z'),"
            " (2, 'bob', 20.00, NULL, '2024-01-01 11:00Z'), (3, 'cy', 30.00, 'x', '2024-01-01 12:00Z')")
    cdc_pipeline(project)

    run_one()  # the snapshot
    assert counts(project) == {"read": 3, "inserted": 3, "updated": 0, "unchanged": 0, "quarantined": 0,
                               "deleted": 0, "superseded": 0}
    same_rows(project, cdc_source)
    assert project.scalar("SELECT count(*) FROM pgmill.run_steps WHERE name = 'load shop.orders snapshot'") == 1

    with connect(cdc_source) as c:
        c.execute("INSERT INTO shop.orders VALUES (4, 'di', 40.00, NULL, '2024-01-02 10:00Z')")
        c.execute("UPDATE shop.orders SET total = 11.00, note = 'second' WHERE id = 1")
        c.execute("DELETE FROM shop.orders WHERE id = 2")
        with c.transaction():  # one transaction, the same key three times: only its end state is applied
            c.execute("INSERT INTO shop.orders VALUES (5, 'ed', 1.00, NULL, '2024-01-02 11:00Z')")
            c.execute("UPDATE shop.orders SET total = 2.00 WHERE id = 5")
            c.execute("UPDATE shop.orders SET total = 3.00 WHERE id = 5")
    run_one()
    same_rows(project, cdc_source)
    c = counts(project)
    assert c["deleted"] == 1 and c["quarantined"] == 0
    assert c["read"] == 6 and c["inserted"] + c["updated"] + c["superseded"] + c["deleted"] == 6
    # the run confirmed its last batch to the source before it ended, and saw the slot let go
    assert query(cdc_source, "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots"
                             " WHERE slot_name = 'pgmill_orders'") == [(stored_lsn(project),)]
    assert project.scalar("SELECT state->'cdc_slot'->>'active' FROM pgmill.state") == "false"
    # and the ledger keeps it with the segment that applied the changes
    [(held,)] = project.query("SELECT detail->'slot'->'retained_bytes' FROM pgmill.run_steps"
                              " WHERE name = 'load shop.orders changes'")
    assert isinstance(held, int) and held >= 0

    # nothing new: nothing read, nothing applied twice
    before = stored_lsn(project)
    run_one()
    assert counts(project)["read"] == 0
    assert stored_lsn(project) == before
    same_rows(project, cdc_source)


def test_a_transaction_across_two_tables_reaches_both_pipelines(project: ProjectDir, cdc_source: str) -> None:
    lines = {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                         "line": {"type": "int", "primary_key": True}, "qty": {"type": "int", "min": 1}}}
    project.contract("orders", CONTRACT)
    project.contract("lines", lines)
    src = {"kind": "postgres", "url_env": ENV, "cdc": {}}
    project.config({
        "orders": {"source": {**src, "table": "shop.orders"}, "table": "public.orders",
                   "contract": "contracts/orders.yaml", "mode": "merge"},
        "lines": {"source": {**src, "table": "shop.lines"}, "table": "public.lines",
                  "contract": "contracts/lines.yaml", "mode": "merge"},
    })
    run_one(pipeline="orders")
    run_one(pipeline="lines")
    with connect(cdc_source) as c, c.transaction():
        c.execute("INSERT INTO shop.orders VALUES (1, 'ann', 10, NULL, '2024-01-01Z')")
        c.execute("INSERT INTO shop.lines VALUES (1, 1, 2), (1, 2, 5)")
        c.execute("UPDATE shop.lines SET qty = 3 WHERE order_id = 1 AND line = 1")
    run_one(pipeline="orders")
    run_one(pipeline="lines")
    same_rows(project, cdc_source)
    assert project.query("SELECT order_id, line, qty FROM lines ORDER BY 1, 2") == \
        query(cdc_source, "SELECT order_id, line, qty FROM shop.lines ORDER BY 1, 2") == [(1, 1, 3), (1, 2, 5)]
    # each pipeline has its own slot and publication
    assert sorted(r[0] for r in query(cdc_source, "SELECT slot_name FROM pg_replication_slots"
                                                  " WHERE database = current_database()")) == \
        ["pgmill_lines", "pgmill_orders"]


def test_unchanged_toast_value_is_kept_never_nulled(project: ProjectDir, cdc_source: str) -> None:
    big = "".join(f"{i:07d}" for i in range(20_000))  # 140 kB of digits: compressible, still out of line
    with connect(cdc_source) as c:
        c.execute("ALTER TABLE shop.orders ALTER COLUMN note SET STORAGE EXTERNAL")  # out of line, uncompressed
        c.execute("INSERT INTO shop.orders VALUES (1, 'ann', 1, %s, '2024-01-01Z'), (2, 'bob', 2, %s, '2024-01-01Z')",
                  (big, big[::-1]))
    cdc_pipeline(project)
    run_one()
    # updates that leave the large value alone: pgoutput does not resend it
    execute(cdc_source, "UPDATE shop.orders SET total = 5 WHERE id = 1")  # filled from the target
    with connect(cdc_source) as c, c.transaction():  # filled from the same batch's earlier image
        c.execute("INSERT INTO shop.orders VALUES (3, 'cy', 3, %s, '2024-01-01Z')", (big + "x",))
        c.execute("UPDATE shop.orders SET total = 6 WHERE id = 3")
    run_one()
    rows = same_rows(project, cdc_source)
    assert [len(r[3]) for r in rows] == [len(big), len(big), len(big) + 1]


def test_a_row_from_an_earlier_quarantine_without_its_large_value_is_quarantined(
        project: ProjectDir, cdc_source: str) -> None:
    big = "y" * 200_000
    with connect(cdc_source) as c:
        c.execute("ALTER TABLE shop.orders ALTER COLUMN note SET STORAGE EXTERNAL")
        c.execute("INSERT INTO shop.orders VALUES (1, 'ann', -1, %s, '2024-01-01Z')", (big,))  # breaks min 0
    cdc_pipeline(project)
    run_one()
    assert project.scalar("SELECT count(*) FROM orders") == 0
    execute(cdc_source, "UPDATE shop.orders SET total = 4 WHERE id = 1")  # now valid, but note was not resent
    run_one()
    assert project.scalar("SELECT count(*) FROM orders") == 0  # never written with a NULL note
    [(loc, reason)] = project.query("SELECT source_location, violations::text FROM pgmill.quarantine"
                                    " WHERE run_id = (SELECT max(run_id) FROM pgmill.runs)")
    assert loc.startswith("postgres:shop.orders:lsn ")
    assert "did not resend the unchanged large value of note" in reason


def test_a_row_breaking_the_contract_is_quarantined_at_its_lsn_and_the_stream_goes_on(
        project: ProjectDir, cdc_source: str) -> None:
    cdc_pipeline(project)
    run_one()
    with connect(cdc_source) as c:
        c.execute("INSERT INTO shop.orders VALUES (1, 'ann', 10, NULL, '2024-01-01Z')")
        lsn = c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        c.execute("INSERT INTO shop.orders VALUES (2, 'bob', -3, NULL, '2024-01-01Z')")
        c.execute("INSERT INTO shop.orders VALUES (3, 'cy', 30, NULL, '2024-01-01Z')")
    run_one()
    assert project.query("SELECT id FROM orders ORDER BY id") == [(1,), (3,)]
    [(loc, rule, record)] = project.query(
        "SELECT source_location, violations->0->>'rule', record->>'total' FROM pgmill.quarantine")
    assert rule == "min" and record == "-3.00"
    assert lsn is not None
    at = loc.rsplit(" ", 1)[1]
    hi, lo = (int(x, 16) for x in at.split("/"))
    hi0, lo0 = (int(x, 16) for x in lsn[0].split("/"))
    assert loc.startswith("postgres:shop.orders:lsn ") and (hi << 32) + lo >= (hi0 << 32) + lo0
    assert counts(project)["quarantined"] == 1


def test_a_new_source_column_follows_extra_columns_evolve(project: ProjectDir, cdc_source: str) -> None:
    cdc_pipeline(project, contract={**CONTRACT, "extra_columns": "evolve"})
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 10, NULL, '2024-01-01Z')")
    run_one()
    with connect(cdc_source) as c:
        c.execute("ALTER TABLE shop.orders ADD COLUMN channel text")
        c.execute("INSERT INTO shop.orders VALUES (2, 'bob', 20, NULL, '2024-01-02Z', 'web')")
        c.execute("UPDATE shop.orders SET channel = 'shop' WHERE id = 1")
    run_one()
    same_rows(project, cdc_source)
    assert project.query("SELECT id, channel FROM orders ORDER BY id") == [(1, "shop"), (2, "web")]


def test_a_type_change_the_contract_cannot_take_stops_before_applying(project: ProjectDir, cdc_source: str) -> None:
    cdc_pipeline(project)
    run_one()
    with connect(cdc_source) as c:
        c.execute("INSERT INTO shop.orders VALUES (1, 'ann', 10, NULL, '2024-01-01Z')")
        c.execute("ALTER TABLE shop.orders ALTER COLUMN total TYPE text")
        c.execute("INSERT INTO shop.orders VALUES (2, 'bob', 'twenty', NULL, '2024-01-01Z')")
    with pytest.raises(ContractError, match=r"postgres:shop.orders:lsn [0-9A-F]+/[0-9A-F]+: source column "
                       r"shop.orders.total now has type oid 25, which the contract's numeric column cannot take; the "
                       r"stream stopped before applying this transaction"):
        run_one()
    assert project.query("SELECT status FROM pgmill.runs ORDER BY run_id DESC LIMIT 1") == [("failed",)]
    # the transaction before the change was applied; the one after it was not (nor its row quarantined)
    assert project.query("SELECT id FROM orders") == [(1,)]
    assert project.scalar("SELECT count(*) FROM pgmill.quarantine") == 0


def test_truncate_and_soft_delete(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z'),"
            " (2, 'bob', 2, NULL, '2024-01-01Z'), (3, 'cy', 3, NULL, '2024-01-01Z')")
    cdc_pipeline(project, cdc={"soft_delete": "deleted_at"})
    run_one()
    execute(cdc_source, "DELETE FROM shop.orders WHERE id = 2")
    run_one()
    assert counts(project)["deleted"] == 1
    gone = project.query("SELECT id FROM orders WHERE deleted_at IS NOT NULL")
    assert gone == [(2,)]
    execute(cdc_source, "INSERT INTO shop.orders VALUES (2, 'bob', 9, NULL, '2024-01-01Z')")  # it comes back
    run_one()
    assert project.query("SELECT id, total::text, deleted_at IS NULL FROM orders ORDER BY id") == [
        (1, "1.00", True), (2, "9.00", True), (3, "3.00", True)]
    with connect(cdc_source) as c:
        c.execute("TRUNCATE shop.orders")
        c.execute("INSERT INTO shop.orders VALUES (7, 'gus', 7, NULL, '2024-01-01Z')")
    run_one()
    assert project.query("SELECT id, deleted_at IS NULL FROM orders ORDER BY id") == [
        (1, False), (2, False), (3, False), (7, True)]


def test_hard_truncate_empties_the_target(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z')")
    cdc_pipeline(project)
    run_one()
    with connect(cdc_source) as c, c.transaction():
        c.execute("INSERT INTO shop.orders VALUES (2, 'bob', 2, NULL, '2024-01-01Z')")
        c.execute("TRUNCATE shop.orders")
        c.execute("INSERT INTO shop.orders VALUES (3, 'cy', 3, NULL, '2024-01-01Z')")
    run_one()
    same_rows(project, cdc_source)
    assert counts(project)["superseded"] == 1  # the insert of 2, emptied by the TRUNCATE in its batch


def test_the_key_of_a_row_changes(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z')")
    cdc_pipeline(project)
    run_one()
    execute(cdc_source, "UPDATE shop.orders SET id = 10 WHERE id = 1")
    run_one()
    same_rows(project, cdc_source)
    assert project.query("SELECT id FROM orders") == [(10,)]


def test_cdc_status_and_drop(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z')")
    cdc_pipeline(project)
    run_one()
    res = CliRunner().invoke(app, ["cdc", "status", "--json", "--project", str(project.path)])
    assert res.exit_code == 0, res.output
    [st] = json.loads(res.stdout)
    assert st["pipeline"] == "orders" and st["slot"] == "pgmill_orders" and st["exists"] and not st["lost"]
    assert st["stored_lsn"] == st["confirmed_lsn"]  # confirmed only what the target committed
    assert st["retained_bytes"] >= 0 and st["lag_bytes"] >= 0

    res = CliRunner().invoke(app, ["cdc", "drop", "orders", "--project", str(project.path)])
    assert res.exit_code == 0, res.output
    assert "slot pgmill_orders dropped; publication pgmill_orders dropped" in res.stdout
    assert query(cdc_source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgmill_orders'") == [(0,)]
    assert query(cdc_source, "SELECT count(*) FROM pg_publication WHERE pubname = 'pgmill_orders'") == [(0,)]
    # the next run loads a new snapshot, and the stream goes on from there
    execute(cdc_source, "INSERT INTO shop.orders VALUES (2, 'bob', 2, NULL, '2024-01-01Z')")
    run_one()
    assert counts(project)["read"] == 2  # the whole table again, through the snapshot
    same_rows(project, cdc_source)


def test_a_source_without_logical_wal_says_what_to_change(project: ProjectDir, source: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, source)  # the embedded server: wal_level replica
    cdc_pipeline(project)
    with pytest.raises(SourceError, match=r"postgres:shop.orders: the source has wal_level = (replica|minimal); "
                                          r"change data capture needs wal_level = logical"):
        run_one()


def test_a_role_without_replication_says_so(project: ProjectDir, cdc_source: str) -> None:
    with connect(cdc_source) as c:
        c.execute("CREATE ROLE reader LOGIN")
        c.execute("GRANT USAGE ON SCHEMA shop TO reader")
        c.execute("GRANT SELECT ON shop.orders TO reader")
    try:
        os.environ[ENV] = cdc_source.replace("postgres@", "reader@", 1)
        cdc_pipeline(project)
        with pytest.raises(SourceError, match="role reader may not stream changes: it needs the REPLICATION "
                                              "attribute"):
            run_one()
    finally:
        os.environ[ENV] = cdc_source
        with connect(cdc_source) as c:
            c.execute("DROP OWNED BY reader")
            c.execute("DROP ROLE reader")


def test_cdc_config_errors(project: ProjectDir) -> None:
    cdc_pipeline(project, mode="append")
    with pytest.raises(ConfigError, match="a cdc source applies inserts, updates and deletes by key: give the "
                                          "pipeline `mode: merge` and no `cursor`"):
        open_project(project.path)
    project.contract("orders", CONTRACT)
    project.config({"orders": {"source": {"kind": "postgres", "url_env": ENV, "query": "SELECT 1", "cdc": {}},
                               "table": "orders", "contract": "contracts/orders.yaml", "mode": "merge"}})
    with pytest.raises(ConfigError, match=r"cdc streams the changes of one `table` \(not a query"):
        open_project(project.path)


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_follow_streams_until_stopped_with_latency_per_batch(project: ProjectDir, cdc_source: str) -> None:
    cdc_pipeline(project)
    follow = Follow()
    result: list[Any] = []
    loader = threading.Thread(target=lambda: result.append(run_pipelines(open_project(project.path), follow=follow)))
    loader.start()
    try:
        _until(lambda: bool(project.scalar("SELECT to_regclass('pgmill.state') IS NOT NULL")) and project.scalar(
            "SELECT count(*) FROM pgmill.state WHERE state ? 'cdc'") == 1)  # the snapshot is in
        with connect(cdc_source) as c:
            for i in range(1, 41):
                c.execute("INSERT INTO shop.orders VALUES (%s, 'c', %s, NULL, '2024-01-01Z')", (i, i))
                if i % 10 == 0:
                    c.execute("DELETE FROM shop.orders WHERE id = %s", (i - 5,))
                time.sleep(0.01)
        _until(lambda: project.scalar("SELECT count(*) FROM orders") == 36)
    finally:
        follow.stop.set()
        loader.join(60)
    [[run]] = result
    assert run.status == "succeeded" and run.counts.balanced()
    # 40 inserts and 4 deletes read; an insert and its delete that met in one batch fold into the delete
    assert run.counts.rows_read == 44 and run.counts.rows_inserted + run.counts.rows_superseded == 40
    same_rows(project, cdc_source)
    # each batch's source commit to target commit, in the step of its segment
    samples = [x for (s,) in project.query("SELECT detail->'arrival_samples_s' FROM pgmill.run_steps"
                                            " WHERE name = 'load shop.orders changes'") for x in s]
    assert samples and all(0 <= x < 10 for x in samples)
    # confirmed to the source only what the target committed: the slot is at the stored position
    [(confirmed,)] = query(cdc_source, "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots"
                                       " WHERE slot_name = 'pgmill_orders'")
    assert 0 < int(confirmed) <= stored_lsn(project)


def test_a_lost_slot_is_detected_and_the_table_loaded_again(project: ProjectDir, cdc_source: str,
                                                            pg15_logical: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders SELECT g, 'c', g, NULL, '2024-01-01Z' FROM generate_series(1, 50) g")
    cdc_pipeline(project)
    run_one()
    with connect(pg15_logical) as admin:
        admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        admin.execute("SELECT pg_reload_conf()")
        try:
            execute(cdc_source, "DELETE FROM shop.orders WHERE id <= 10")  # in the WAL the slot is about to lose
            for _ in range(4):  # WAL segments past the slot's limit, then a checkpoint removes them
                admin.execute("CREATE TEMP TABLE IF NOT EXISTS filler (x text)")
                admin.execute("INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 2000)")
                admin.execute("SELECT pg_switch_wal()")
            admin.execute("CHECKPOINT")
            _until(lambda: query(cdc_source, "SELECT wal_status FROM pg_replication_slots"
                                             " WHERE slot_name = 'pgmill_orders'") == [("lost",)], 20)
        finally:
            admin.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            admin.execute("SELECT pg_reload_conf()")
    run_one()
    [(detail,)] = project.query("SELECT detail FROM pgmill.run_steps WHERE name = 'resnapshot shop.orders'")
    assert "replication slot pgmill_orders lost the WAL it held (wal_status lost" in detail["reason"]
    assert detail["slot"]["wal_status"] == "lost"
    same_rows(project, cdc_source)
    assert project.scalar("SELECT count(*) FROM orders") == 40
    # and it streams again from the new slot
    execute(cdc_source, "INSERT INTO shop.orders VALUES (100, 'z', 1, NULL, '2024-01-01Z')")
    run_one()
    same_rows(project, cdc_source)


def _external_note(cdc_source: str) -> None:
    execute(cdc_source, "ALTER TABLE shop.orders ALTER COLUMN note SET STORAGE EXTERNAL")  # out of line, uncompressed


def test_a_key_change_keeps_the_rows_large_value(project: ProjectDir, cdc_source: str) -> None:
    big = "k" * 140_000
    _external_note(cdc_source)
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, %s, '2024-01-01Z')", (big,))
    cdc_pipeline(project)
    run_one()
    execute(cdc_source, "UPDATE shop.orders SET id = 10 WHERE id = 1")  # note not resent: found by the old key
    run_one()
    assert [(r[0], len(r[3])) for r in same_rows(project, cdc_source)] == [(10, 140_000)]


def test_an_unchanged_large_value_of_a_column_the_contract_leaves_out(project: ProjectDir, cdc_source: str) -> None:
    _external_note(cdc_source)
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, %s, '2024-01-01Z')", ("n" * 140_000,))
    contract = {"columns": {k: v for k, v in CONTRACT["columns"].items() if k != "note"}}
    cdc_pipeline(project, contract=contract)
    run_one()
    execute(cdc_source, "UPDATE shop.orders SET total = 5 WHERE id = 1")
    run_one()
    assert project.query("SELECT id, total::text FROM orders") == [(1, "5.00")]


def test_a_large_value_changed_by_a_quarantined_update_is_never_filled_from_the_stale_target(
        project: ProjectDir, cdc_source: str) -> None:
    _external_note(cdc_source)
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, %s, '2024-01-01Z')", ("a" * 140_000,))
    cdc_pipeline(project)
    run_one()
    execute(cdc_source, "UPDATE shop.orders SET total = -1, note = %s WHERE id = 1", ("b" * 150_000,))  # breaks min
    run_one()
    execute(cdc_source, "UPDATE shop.orders SET total = 5 WHERE id = 1")  # note unchanged: the target's is stale
    run_one()
    assert project.query("SELECT total::text, length(note) FROM orders") == [("1.00", 140_000)]  # left as it was
    reasons = [r[0] for r in project.query("SELECT violations::text FROM pgmill.quarantine ORDER BY id")]
    assert len(reasons) == 2 and "an earlier change of this row is in quarantine" in reasons[1]


def test_a_slot_of_the_same_name_made_elsewhere_is_never_taken_over(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "SELECT pg_create_logical_replication_slot('pgmill_orders', 'pgoutput')")
    cdc_pipeline(project)
    with pytest.raises(SourceError, match="replication slot pgmill_orders already exists on the source and this "
                                          "project did not make it"):
        run_one()
    assert query(cdc_source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgmill_orders'") == [(1,)]
    cdc_pipeline(project, cdc={"slot": "mine"})  # a name of its own: loads
    run_one()


def test_a_source_table_dropped_and_made_again_is_loaded_again(project: ProjectDir, cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z')")
    cdc_pipeline(project)
    run_one()
    with connect(cdc_source) as c:
        c.execute("DROP TABLE shop.orders")
        c.execute("CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12,2),"
                  " note text, updated_at timestamptz NOT NULL DEFAULT now())")
        c.execute("INSERT INTO shop.orders VALUES (2, 'bob', 2, NULL, '2024-01-01Z')")
    run_one()
    [(reason,)] = project.query("SELECT detail->>'reason' FROM pgmill.run_steps WHERE name = 'resnapshot shop.orders'")
    assert reason.startswith("the source table was dropped and made again")
    same_rows(project, cdc_source)
    execute(cdc_source, "INSERT INTO shop.orders VALUES (3, 'cy', 3, NULL, '2024-01-01Z')")
    run_one()
    assert [r[0] for r in same_rows(project, cdc_source)] == [2, 3]


def test_a_contract_key_that_is_not_the_sources_is_refused_before_any_slot(project: ProjectDir,
                                                                         cdc_source: str) -> None:
    contract = {"columns": {**CONTRACT["columns"], "id": {"type": "bigint"},
                            "customer": {"type": "text", "primary_key": True}}}
    cdc_pipeline(project, contract=contract)
    with pytest.raises(SourceError, match=r"the contract's key \(customer\) is not the source table's replica "
                                          r"identity \(id\)"):
        run_one()
    assert query(cdc_source, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]


def test_a_dropped_publication_is_a_clear_error_and_cdc_drop_starts_over(project: ProjectDir,
                                                                        cdc_source: str) -> None:
    execute(cdc_source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, NULL, '2024-01-01Z')")
    cdc_pipeline(project)
    run_one()
    execute(cdc_source, "DROP PUBLICATION pgmill_orders")
    execute(cdc_source, "INSERT INTO shop.orders VALUES (2, 'bob', 2, NULL, '2024-01-01Z')")
    with pytest.raises(SourceError, match=r"the source stopped the replication stream: .*publication "
                                          r"\"pgmill_orders\" does not exist.*`pgmill cdc drop PIPELINE`"):
        run_one()
    res = CliRunner().invoke(app, ["cdc", "drop", "orders", "--project", str(project.path)])
    assert res.exit_code == 0, res.output
    run_one()
    same_rows(project, cdc_source)

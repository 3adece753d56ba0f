"""Parquet loads: typed columns go through the contract as they are; records are named by row number."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pgmill.ingest.sources.parquet as parquet
from pgmill.config.spec import ParquetSource
from pgmill.errors import SourceError
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources.base import RawBatch
from pgmill.ingest.sources.files import FileTask
from pgmill.project import open_project
from tests.helpers import ProjectDir, fail_range_checkpoint, file_task, run_one, table_checksum

SPEC = ParquetSource(kind="parquet", path="data/*.parquet")
CONTRACT: dict[str, Any] = {
    "columns": {
        "id": {"type": "bigint", "primary_key": True},
        "qty": {"type": "integer", "min": 0},
        "price": {"type": "double precision"},
        "amount": {"type": "numeric(12,2)"},
        "day": {"type": "date", "not_null": True},
        "seen_at": {"type": "timestamptz"},  # a naive Arrow timestamp, read as UTC
        "seen_tz": {"type": "timestamptz"},
        "label": {"type": "text"},
    }
}
UTC = dt.UTC


def typed_table(ids: range) -> pa.Table:
    n = len(ids)
    return pa.table({
        "id": pa.array(list(ids), pa.int64()),
        "qty": pa.array([i % 7 for i in ids], pa.int32()),
        "price": pa.array([i * 1.25 for i in ids], pa.float64()),
        "amount": pa.array([Decimal(i) / 4 for i in ids], pa.decimal128(12, 2)),
        "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in ids], pa.date32()),
        "seen_at": pa.array([dt.datetime(2024, 1, 1, 12, 0, i % 60) for i in ids], pa.timestamp("us")),
        "seen_tz": pa.array([dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC) + dt.timedelta(minutes=i) for i in ids],
                            pa.timestamp("us", tz="UTC")),
        "label": pa.array([f"item {i}" for i in ids], pa.string()),
    }) if n else pa.table({})


def write_parquet(project: ProjectDir, rel: str, table: pa.Table, row_group_size: int | None = None) -> Path:
    path = project.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def pipeline(table: str = "public.items", **kw: Any) -> dict[str, Any]:
    return {"source": {"kind": "parquet", "path": "data/*.parquet"}, "table": table,
            "contract": "contracts/items.yaml", "mode": "merge", **kw}


def setup(project: ProjectDir, **pipelines: dict[str, Any]) -> None:
    project.contract("items", CONTRACT)
    project.config(pipelines or {"items": pipeline()})


def read_all(path: Path, batch_rows: int, **resume: int) -> list[RawBatch]:
    return list(parquet.read_parquet_file(SPEC, file_task(path, **resume), batch_rows))


# ---------------------------------------------------------------- end to end


def test_typed_columns_load_exactly(project: ProjectDir) -> None:
    setup(project)
    write_parquet(project, "data/items.parquet", typed_table(range(1, 4)))
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.counts.rows_quarantined) == (3, 3, 0)
    rows = project.query("SELECT id, qty, price, amount, day, seen_at, seen_tz, label FROM items ORDER BY id")
    assert rows[1] == (2, 2, 2.5, Decimal("0.50"), dt.date(2024, 1, 3), dt.datetime(2024, 1, 1, 12, 0, 2, tzinfo=UTC),
                       dt.datetime(2024, 1, 1, 12, 2, tzinfo=UTC), "item 2")
    assert [r[0] for r in rows] == [1, 2, 3]


def test_naive_timestamp_into_a_timestamp_column(project: ProjectDir) -> None:
    project.contract("items", {"columns": {"id": {"type": "bigint", "primary_key": True},
                                           "seen_at": {"type": "timestamp"}}})
    project.config({"items": pipeline()})
    write_parquet(project, "data/items.parquet", typed_table(range(1, 3)).select(["id", "seen_at"]))
    run_one()
    assert project.query("SELECT seen_at FROM items ORDER BY id") == [
        (dt.datetime(2024, 1, 1, 12, 0, 1),), (dt.datetime(2024, 1, 1, 12, 0, 2),)]


def test_rows_that_break_the_contract_are_quarantined_by_row_number(project: ProjectDir) -> None:
    setup(project)
    table = typed_table(range(1, 6))
    table = table.set_column(1, "qty", pa.array([1, -3, 2, 3, 4], pa.int32()))
    table = table.set_column(4, "day", pa.array([dt.date(2024, 1, 1), None, None, dt.date(2024, 1, 1), None],
                                                pa.date32()))
    write_parquet(project, "data/items.parquet", table)
    run = run_one()
    c = run.counts
    assert (c.rows_read, c.rows_inserted, c.rows_quarantined) == (5, 2, 3)
    assert c.balanced()
    assert project.query("SELECT id FROM items ORDER BY id") == [(1,), (4,)]
    q = project.query("SELECT source_location, violations, record->>'label' FROM pgmill.quarantine "
                      "ORDER BY source_location")
    assert [(r[0], {v["rule"] for v in r[1]}, r[2]) for r in q] == [
        ("data/items.parquet:row 2", {"min", "not_null"}, "item 2"),
        ("data/items.parquet:row 3", {"not_null"}, "item 3"),
        ("data/items.parquet:row 5", {"not_null"}, "item 5"),
    ]


def test_glob_and_empty_files(project: ProjectDir) -> None:
    setup(project)
    write_parquet(project, "data/a.parquet", typed_table(range(1, 4)))
    write_parquet(project, "data/b.parquet", typed_table(range(4, 6)))
    write_parquet(project, "data/c.parquet", typed_table(range(1, 4)).slice(0, 0))
    project.write("data/d.parquet", b"")
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted) == (5, 5)
    files = project.query("SELECT path, records_done, complete, byte_offset = size FROM pgmill.files ORDER BY path")
    assert files == [("data/a.parquet", 3, True, True), ("data/b.parquet", 2, True, True),
                     ("data/c.parquet", 0, True, True), ("data/d.parquet", 0, True, True)]
    again = run_one()
    assert again.counts.rows_read == 0


def test_rerun_after_a_failure_resumes_after_the_committed_rows(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(project, items=pipeline(mode="append", batch_rows=4))
    write_parquet(project, "data/items.parquet", typed_table(range(1, 12)), row_group_size=3)
    real = parquet.read_parquet_file

    def one_batch_then_fail(spec: ParquetSource, task: FileTask, batch_rows: int) -> Iterator[RawBatch]:
        yield next(iter(real(spec, task, batch_rows)))
        raise SourceError("bucket went away")

    monkeypatch.setattr(parquet, "read_parquet_file", one_batch_then_fail)
    with pytest.raises(SourceError, match="bucket went away"):
        run_one()
    assert project.query("SELECT id FROM items ORDER BY id") == [(1,), (2,), (3,), (4,)]
    assert project.query("SELECT records_done, next_line, complete FROM pgmill.files") == [(4, 5, False)]

    monkeypatch.setattr(parquet, "read_parquet_file", real)
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted) == (7, 7)
    assert project.query("SELECT id FROM items ORDER BY id") == [(i,) for i in range(1, 12)]


def test_batch_size_does_not_change_the_result(project: ProjectDir) -> None:
    table = typed_table(range(1, 31))
    table = table.set_column(1, "qty", pa.array([-1 if i % 8 == 0 else i for i in range(1, 31)], pa.int32()))
    write_parquet(project, "data/items.parquet", table, row_group_size=7)
    sizes = [1, 4, 7, 100]
    setup(project, **{f"b{n}": pipeline(f"public.items_b{n}", batch_rows=n) for n in sizes})
    runs = run_pipelines(open_project())
    assert {(r.status, r.counts.rows_read, r.counts.rows_inserted, r.counts.rows_quarantined) for r in runs} == {
        ("succeeded", 30, 27, 3)}
    sums = {table_checksum(project.db_url, f"items_b{n}", "id") for n in sizes}
    assert len(sums) == 1
    bad = project.query("SELECT pipeline, array_agg(source_location ORDER BY id) FROM pgmill.quarantine GROUP BY 1")
    expected = ["data/items.parquet:row 8", "data/items.parquet:row 16", "data/items.parquet:row 24"]
    assert {p: locs for p, locs in bad} == {f"b{n}": expected for n in sizes}


# ---------------------------------------------------------------- the reader


@pytest.mark.parametrize("done", [0, 2, 3, 5, 9, 10])
def test_resume_starts_at_the_first_uncommitted_row(tmp_path: Path, done: int) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(typed_table(range(1, 11)), path, row_group_size=3)
    batches = read_all(path, 4, records_done=done)
    ids = [i for b in batches if b.table.num_columns for i in b.table.column("id").to_pylist()]
    assert ids == list(range(done + 1, 11))
    assert [p for b in batches for p in (b.positions or [])] == list(range(done + 1, 11))
    assert all(b.position_word == "row" and b.table.num_rows <= 4 for b in batches)
    marks = [b.file_mark for b in batches]
    assert all(m is not None for m in marks)
    assert [m.complete for m in marks if m] == [False] * (len(marks) - 1) + [True]
    last = marks[-1]
    assert last is not None and (last.records_done, last.byte_offset) == (10, path.stat().st_size)
    if done < 10:
        assert batches[0].location(0) == f"r.parquet:row {done + 1}"


def test_typed_columns_pass_through_as_arrow_types(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(typed_table(range(1, 3)), path)
    [batch] = read_all(path, 100)
    assert batch.table.schema.field("day").type == pa.date32()
    assert batch.table.schema.field("seen_tz").type == pa.timestamp("us", tz="UTC")
    assert batch.table.schema.field("amount").type == pa.decimal128(12, 2)
    assert batch.nbytes == path.stat().st_size


def test_a_file_that_is_not_parquet_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    path.write_text("id,qty\n1,2\n")
    with pytest.raises(SourceError, match=r"nope\.parquet: not a readable Parquet file"):
        read_all(path, 10)


# ---------------------------------------------------------------- ranges of row groups (`split:`)


def test_row_group_ranges_cover_every_row_once(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(typed_table(range(1, 1001)), path, row_group_size=90)  # 12 groups, the last of 10 rows
    ranges = parquet.row_group_ranges(path, 3, 1)
    assert len(ranges) == 3 and ranges[0].start == 0 and ranges[-1].end == 1000
    assert all(a.end == b.start for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(r.start % 90 == 0 and r.first_line == r.start + 1 for r in ranges)  # whole row groups
    assert parquet.row_group_ranges(path, 3, 1 << 40) == [parquet.ByteRange(0, 1000, 1)]  # under min_bytes
    pq.write_table(typed_table(range(1, 11)), path)
    assert len(parquet.row_group_ranges(path, 3, 1)) == 1  # one row group: nothing to cut
    table = typed_table(range(1, 101))
    with pq.ParquetWriter(path, table.schema) as w:  # row groups of 60, 0 and 40 rows
        for part in (table.slice(0, 60), table.slice(0, 0), table.slice(60, 40)):
            w.write_table(part)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    ranges = parquet.row_group_ranges(path, 4, 1)
    assert [(r.start, r.end) for r in ranges] == [(0, 60), (60, 100)]  # never an empty range


def test_split_parquet_loads_as_ranges_and_a_failed_range_resumes_alone(
        project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    table = typed_table(range(1, 1201))
    table = table.set_column(1, "qty", pa.array([-1 if i % 101 == 0 else i % 7 for i in range(1, 1201)], pa.int32()))
    write_parquet(project, "data/big.parquet", table, row_group_size=100)
    project.contract("t", CONTRACT)
    common = {"contract": "contracts/t.yaml", "mode": "merge", "batch_rows": 40}
    project.config({
        "split": {"source": {"kind": "parquet", "path": "data/big.parquet", "split": {"min_bytes": 1, "parts": 3}},
                  "table": "public.t_split", **common},
        "plain": {"source": {"kind": "parquet", "path": "data/big.parquet"}, "table": "public.t_plain", **common},
    })
    run_one(pipeline="plain")
    # the middle range, rows 400-800, fails at its 4th checkpoint
    restore = fail_range_checkpoint(monkeypatch, lambda m: m.range is not None and m.range.start == 400)
    with pytest.raises(Exception, match="injected failure"):
        run_one(pipeline="split", ok=False)
    state = project.query("SELECT range_start, range_end, complete, records_done FROM pgmill.file_ranges"
                          " WHERE pipeline = 'split' ORDER BY range_start")
    assert [(s[0], s[1], s[2]) for s in state] == [(0, 400, True), (400, 800, False), (800, 1200, True)]
    assert state[1][3] == 3 * 40  # three batches of the middle range committed
    restore()
    run = run_one(pipeline="split")
    assert run.counts.rows_read == 400 - 3 * 40  # the rest of the middle range alone
    steps = project.query("SELECT name FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%'",
                          (run.run_id,))
    assert steps == [("load data/big.parquet rows 400-800",)]
    assert table_checksum(project.db_url, "t_split", "id") == table_checksum(project.db_url, "t_plain", "id")
    q = "SELECT array_agg(source_location ORDER BY source_location) FROM pgmill.quarantine WHERE pipeline = %s"
    assert project.scalar(q, ("split",)) == project.scalar(q, ("plain",))
    assert project.scalar("SELECT complete FROM pgmill.files WHERE pipeline = 'split'") is True

"""NDJSON loads: every line lands in the table or in quarantine, named by its physical line number."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import pgmill.ingest.sources.ndjson as ndjson
from pgmill.config.spec import NdjsonSource
from pgmill.errors import SourceError
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources.base import RawBatch
from pgmill.ingest.sources.files import FileTask
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, file_task, run_one, table_checksum

SPEC = NdjsonSource(kind="ndjson", path="data/*.ndjson")
CONTRACT: dict[str, Any] = {"columns": {**ORDERS_CONTRACT["columns"], "meta": {"type": "jsonb"}}}


def order(order_id: int, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"order_id": order_id, "customer_id": 10 + order_id, "status": "F", "total": 12.5,
                           "ordered_at": "2024-01-01", "updated_at": "2024-01-01T10:00:00Z"}
    rec.update(kw)
    return rec


def ndjson_text(*lines: dict[str, Any] | str) -> str:
    return "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)


def pipeline(table: str = "public.orders", **kw: Any) -> dict[str, Any]:
    return {"source": {"kind": "ndjson", "path": "data/*.ndjson"}, "table": table,
            "contract": "contracts/orders.yaml", "mode": "merge", **kw}


def setup(project: ProjectDir, **pipelines: dict[str, Any]) -> None:
    project.contract("orders", CONTRACT)
    project.config(pipelines or {"orders": pipeline()})


def read_all(path: Path, batch_rows: int, **resume: int) -> list[RawBatch]:
    return list(ndjson.read_ndjson_file(SPEC, file_task(path, **resume), batch_rows))


def quarantine(project: ProjectDir) -> list[tuple[Any, ...]]:
    return project.query("SELECT source_location, raw_text, violations FROM pgmill.quarantine ORDER BY id")


# ---------------------------------------------------------------- end to end


def test_bad_lines_are_quarantined_with_their_line_number(project: ProjectDir) -> None:
    setup(project)
    project.write("data/orders1.ndjson", ndjson_text(
        order(1, meta={"channel": "web", "tags": ["a", "b"]}),
        "",
        order(2, status="X"),
        '{"order_id": 3, "customer_id": ',
        "[1, 2]",
        order(4, total="7.25", customer_id="14", updated_at=None),
        "   ",
        {"order_id": 5, "customer_id": 15, "ordered_at": "2024-02-01"},
    ))
    run = run_one()
    c = run.counts
    assert (c.rows_read, c.rows_inserted, c.rows_quarantined, c.rows_duplicate) == (6, 3, 3, 0)
    assert c.balanced()
    rows = project.query("SELECT order_id, customer_id, status, total::text, ordered_at::text, "
                         "updated_at IS NULL, meta FROM orders ORDER BY order_id")
    assert rows == [
        (1, 11, "F", "12.50", "2024-01-01", False, {"channel": "web", "tags": ["a", "b"]}),
        (4, 14, "F", "7.25", "2024-01-01", True, None),
        (5, 15, None, None, "2024-02-01", True, None),
    ]
    q = quarantine(project)
    assert [r[0] for r in q] == ["data/orders1.ndjson:line 4", "data/orders1.ndjson:line 5",
                                 "data/orders1.ndjson:line 3"]
    assert q[0][1] == '{"order_id": 3, "customer_id": '
    assert q[0][2] == [{"column": None, "rule": "parse",
                        "message": "not valid JSON: Expecting value at column 32"}]
    assert q[1][1] == "[1, 2]"
    assert q[1][2][0]["message"] == "not a JSON object (found an array)"
    assert q[2][2] == [{"column": "status", "rule": "accepted_values",
                        "message": "status = 'X' is not one of ['F', 'O', 'P']"}]


def test_glob_loads_every_file_once(project: ProjectDir) -> None:
    setup(project)
    project.write("data/a.ndjson", ndjson_text(order(1), order(2)))
    project.write("data/b.ndjson", ndjson_text(order(3), "not json"))
    project.write("data/c.txt", ndjson_text(order(99)))
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.counts.rows_quarantined) == (4, 3, 1)
    assert project.query("SELECT order_id FROM orders ORDER BY 1") == [(1,), (2,), (3,)]
    assert [r[0] for r in quarantine(project)] == ["data/b.ndjson:line 2"]
    files = project.query("SELECT path, records_done, complete FROM pgmill.files ORDER BY path")
    assert files == [("data/a.ndjson", 2, True), ("data/b.ndjson", 2, True)]

    again = run_one()
    assert again.counts.rows_read == 0
    project.write("data/d.ndjson", ndjson_text(order(4)))
    third = run_one()
    assert (third.counts.rows_read, third.counts.rows_inserted) == (1, 1)


def test_empty_files_are_remembered_as_loaded(project: ProjectDir) -> None:
    setup(project)
    project.write("data/empty.ndjson", "")
    project.write("data/blank.ndjson", "\n  \n\n")
    run = run_one()
    assert run.counts.rows_read == 0
    assert project.scalar("SELECT count(*) FROM orders") == 0
    files = project.query("SELECT path, records_done, complete FROM pgmill.files ORDER BY path")
    assert files == [("data/blank.ndjson", 0, True), ("data/empty.ndjson", 0, True)]


def test_rerun_after_a_failure_resumes_after_the_committed_batch(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("data/orders.ndjson", ndjson_text(*[order(i) for i in range(1, 8)], "{bad"))
    real = ndjson.read_ndjson_file

    def one_batch_then_fail(spec: NdjsonSource, task: FileTask, batch_rows: int,
                            columns: Sequence[str] = ()) -> Iterator[RawBatch]:
        yield next(iter(real(spec, task, batch_rows, columns)))
        raise SourceError("disk went away")

    monkeypatch.setattr(ndjson, "read_ndjson_file", one_batch_then_fail)
    setup(project, orders=pipeline(mode="append", batch_rows=3))
    with pytest.raises(SourceError, match="disk went away"):
        run_one()
    assert project.query("SELECT order_id FROM orders ORDER BY 1") == [(1,), (2,), (3,)]
    assert project.query("SELECT records_done, byte_offset > 0, next_line, complete FROM pgmill.files") == [
        (3, True, 4, False)]

    monkeypatch.setattr(ndjson, "read_ndjson_file", real)
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.counts.rows_quarantined) == (5, 4, 1)
    assert project.query("SELECT order_id FROM orders ORDER BY 1") == [(i,) for i in range(1, 8)]
    assert [r[0] for r in quarantine(project)] == ["data/orders.ndjson:line 8"]


def test_batch_size_does_not_change_the_result(project: ProjectDir) -> None:
    lines: list[dict[str, Any] | str] = []
    garbage: list[str] = []
    newest: dict[int, int] = {}
    for i in range(1, 41):
        lines.append(order(i % 25 + 1, total=i, meta={"i": i}))  # ids repeat: the newest line must win
        newest[i % 25 + 1] = i
        if i % 7 == 0:
            lines.append("")
        if i % 9 == 0:
            lines.append(f"garbage {i}")
            garbage.append(f"data/orders.ndjson:line {len(lines)}")
    project.write("data/orders.ndjson", ndjson_text(*lines))
    sizes = [1, 2, 5, 13, 1000]
    setup(project, **{f"b{n}": pipeline(f"public.orders_b{n}", batch_rows=n) for n in sizes})
    runs = run_pipelines(open_project())
    assert [r.status for r in runs] == ["succeeded"] * len(sizes)
    assert {(r.counts.rows_read, r.counts.rows_quarantined) for r in runs} == {(44, 4)}
    sums = {table_checksum(project.db_url, f"orders_b{n}", "order_id") for n in sizes}
    assert len(sums) == 1 and next(iter(sums))[0] == 25
    assert project.query("SELECT order_id, total::int FROM orders_b1 ORDER BY 1") == sorted(newest.items())
    bad = project.query("SELECT pipeline, array_agg(source_location ORDER BY id) FROM pgmill.quarantine GROUP BY 1")
    assert {p: locs for p, locs in bad} == {f"b{n}": garbage for n in sizes}


# ---------------------------------------------------------------- the reader


def test_resume_starts_at_the_first_uncommitted_line(tmp_path: Path) -> None:
    path = tmp_path / "o.ndjson"
    path.write_text(ndjson_text(order(1), "", order(2), "oops", order(3), order(4)))
    first = read_all(path, 2)[0]
    mark = first.file_mark
    assert mark is not None
    assert (first.positions, mark.records_done, mark.next_line, mark.complete) == ([1], 1, 3, False)
    rest = read_all(path, 2, resume_offset=mark.byte_offset, resume_line=mark.next_line,
                    records_done=mark.records_done)
    assert rest[0].positions == [3]
    assert rest[0].table.to_pylist()[0]["order_id"] == "2"
    assert [b.location for b in rest[0].bad] == ["o.ndjson:line 4"]
    positions = [p for b in rest for p in (b.positions or [])]
    assert positions == [3, 5, 6]
    last = rest[-1].file_mark
    assert last is not None and (last.records_done, last.complete, last.byte_offset) == (5, True, path.stat().st_size)
    assert sum(b.nbytes for b in rest) == path.stat().st_size - mark.byte_offset


def test_values_are_text_and_nested_values_json(tmp_path: Path) -> None:
    path = tmp_path / "v.ndjson"
    path.write_bytes(b'\xef\xbb\xbf{"i": 5, "f": 2.50, "b": true, "n": null, "s": "\\u00e9", "o": {"k": [1, "x"]}}\r\n'
                     b'{"i": "six", "extra": 1}')
    [batch] = read_all(path, 100)
    assert batch.table.to_pylist() == [
        {"i": "5", "f": "2.5", "b": "true", "n": None, "s": "\u00e9", "o": '{"k": [1, "x"]}', "extra": None},
        {"i": "six", "f": None, "b": None, "n": None, "s": None, "o": None, "extra": "1"},
    ]
    assert batch.positions == [1, 2]
    assert batch.file_mark is not None and batch.file_mark.complete


def test_reasons_for_lines_that_are_not_objects(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(b'{"a": 1}\n"text"\n42\nnull\n{"a": NaN}\n{"a": "\xff"}\n'
                     b'{"a": 999999999999999999999999999999999999999999}\n{"a": 2}\n')
    [batch] = read_all(path, 100)
    assert batch.positions == [1, 8]
    assert batch.table.column("a").to_pylist() == ["1", "2"]
    reasons = {b.location: b.reason for b in batch.bad}
    assert reasons["r.ndjson:line 2"] == "not a JSON object (found a string)"
    assert reasons["r.ndjson:line 3"] == "not a JSON object (found a number)"
    assert reasons["r.ndjson:line 4"] == "not a JSON object (found null)"
    assert reasons["r.ndjson:line 5"] == "not valid JSON: NaN is not valid JSON"
    assert reasons["r.ndjson:line 6"].startswith("not valid UTF-8")
    assert reasons["r.ndjson:line 7"].startswith("not readable as JSON")
    assert [b.raw_text for b in batch.bad][4] == '{"a": "\\xff"}'


def test_a_line_too_long_to_hold_is_quarantined_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 64)
    monkeypatch.setattr(ndjson, "_RAW_TEXT_LIMIT", 10)
    path = tmp_path / "long.ndjson"
    long_line = json.dumps({"a": "x" * 500})
    path.write_text(ndjson_text({"a": 1}, long_line, {"a": 2}, long_line))
    batches = read_all(path, 2)
    good = [v for b in batches if b.table.num_columns for v in b.table.column("a").to_pylist()]
    assert good == ["1", "2"]
    bad = [b for batch in batches for b in batch.bad]
    assert [b.location for b in bad] == ["long.ndjson:line 2", "long.ndjson:line 4"]
    assert bad[0].raw_text == long_line[:10]
    assert bad[0].reason == f"line is {len(long_line) + 1} bytes, over the limit of 64; not parsed"
    assert [p for b in batches for p in (b.positions or [])] == [1, 3]
    assert batches[-1].file_mark is not None and batches[-1].file_mark.complete


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9])
def test_nth_newline_end(n: int) -> None:
    data = b"a\nbb\n\nccc\ndd"
    expected = {1: 2, 2: 5, 3: 6, 4: 10, 9: 10}[n]
    assert ndjson._nth_newline_end(data, n) == expected
    assert ndjson._nth_newline_end(b"no newline", n) == 0


def test_a_chunk_stops_at_its_byte_limit_on_a_line_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson, "MAX_CHUNK_BYTES", 40)
    path = tmp_path / "c.ndjson"
    path.write_text(ndjson_text(*[{"n": i, "pad": "p" * (i % 3) * 5} for i in range(1, 21)]))
    batches = read_all(path, 1000)
    assert len(batches) > 3
    assert [v for b in batches for v in b.table.column("n").to_pylist()] == [str(i) for i in range(1, 21)]
    assert [p for b in batches for p in (b.positions or [])] == list(range(1, 21))
    marks = [b.file_mark for b in batches if b.file_mark]
    assert [m.next_line for m in marks] == [m.records_done + 1 for m in marks]
    assert marks[-1].complete and not any(m.complete for m in marks[:-1])


def test_expected_keys_missing_from_every_line_become_null_columns(tmp_path: Path) -> None:
    path = tmp_path / "k.ndjson"
    path.write_text(ndjson_text({"customer_id": 5}, {}))
    [batch] = list(ndjson.read_ndjson_file(SPEC, file_task(path), 10, ["order_id", "customer_id"]))
    assert batch.table.to_pylist() == [{"customer_id": "5", "order_id": None}, {"customer_id": None, "order_id": None}]


def test_a_line_without_a_required_key_is_quarantined(project: ProjectDir) -> None:
    setup(project, orders=pipeline(batch_rows=1))
    project.write("data/orders.ndjson", ndjson_text(order(1), {"customer_id": 5, "ordered_at": "2024-01-01"}))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (1, 1)
    [(location, violations)] = project.query("SELECT source_location, violations FROM pgmill.quarantine")
    assert location == "data/orders.ndjson:line 2"
    assert [v["rule"] for v in violations] == ["primary_key"]

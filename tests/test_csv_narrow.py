"""Narrow reads: a CSV chunk is parsed only for the columns some rule reads; the good lines go to Postgres as
their own text. Nothing about the result may differ from parsing every column: same rows, same values, the
whole record in quarantine, and every fallback (bad UTF-8, a record over two lines) still exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgmill.config.spec import CsvSource
from pgmill.ingest.sources.csv import read_csv_file
from pgmill.ingest.sources.files import FileTask
from tests.helpers import ProjectDir, run_one, table_checksum

# note and address are text with no rule: a narrow read never parses them
CONTRACT: dict[str, Any] = {"columns": {
    "order_id": {"type": "bigint", "primary_key": True},
    "note": {"type": "text"},
    "status": {"type": "text", "accepted_values": ["F", "O", "P"]},
    "total": {"type": "numeric(12,2)", "min": 0},
    "address": {"type": "text"},
}}
HEADER = "order_id,note,status,total,address"
TEXT = (
    HEADER + "\n"
    '1,plain,F,1.50,"1 Main St, Springfield"\n'
    '2,,O,2.00,""\n'                        # unquoted empty: null; quoted empty: ''
    '3,"say ""hi""",X,3.00,somewhere\n'     # bad status: quarantined with every column
    '4,"a,b",P,-4.00,  padded  \n'          # negative total: quarantined
    '5,five,F,5.00,x\n'
    '5,five again,O,5.50,y\n'               # the same key: the last one wins
    '6,ok,F,6.00\n'                         # ragged: quarantined with its text
)


def _pipeline(project: ProjectDir, contract: dict[str, Any], table: str = "orders", **kw: Any) -> None:
    project.contract(table, contract)
    spec = {"source": {"kind": "csv", "path": "data/*.csv"}, "table": table, "contract": f"contracts/{table}.yaml",
            "mode": "append"}
    spec.update(kw)
    project.config({table: spec})


def test_the_reader_parses_only_the_needed_columns_and_gives_back_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(TEXT)
    task = FileTask(path, "a.csv", path.stat().st_size, "")
    cols = HEADER.split(",")
    [batch] = list(read_csv_file(CsvSource(kind="csv", path="a.csv"), task, cols, 1000, ["order_id", "total"]))
    assert batch.narrow and batch.table.column_names == ["order_id", "total"]
    assert batch.column_names == cols
    assert batch.positions == [2, 3, 4, 5, 6, 7]
    assert [b.location for b in batch.bad] == ["a.csv:line 8"]
    assert batch.records_at([1, 2]) == [
        {"order_id": "2", "note": None, "status": "O", "total": "2.00", "address": ""},
        {"order_id": "3", "note": 'say "hi"', "status": "X", "total": "3.00", "address": "somewhere"},
    ]
    # without `needed`, or when the file's columns are not the contract's, every column is parsed
    [full] = list(read_csv_file(CsvSource(kind="csv", path="a.csv"), task, cols, 1000))
    assert not full.narrow and full.table.column_names == cols
    [other] = list(read_csv_file(CsvSource(kind="csv", path="a.csv"), task, cols[:4], 1000, ["order_id"]))
    assert not other.narrow and other.table.column_names == cols


def test_narrow_load_equals_the_full_parse_and_quarantines_whole_records(project: ProjectDir) -> None:
    project.write("data/a.csv", TEXT)
    _pipeline(project, CONTRACT)
    c = run_one().counts
    assert (c.rows_read, c.rows_inserted, c.rows_quarantined, c.rows_duplicate) == (7, 3, 3, 1)
    assert project.query("SELECT order_id, note, status, total::text, address FROM orders ORDER BY 1") == [
        (1, "plain", "F", "1.50", "1 Main St, Springfield"),
        (2, None, "O", "2.00", ""),
        (5, "five again", "O", "5.50", "y"),
    ]
    q = project.query("SELECT source_location, record, raw_text, violations->0->>'rule' FROM pgmill.quarantine"
                      " ORDER BY id")
    assert q == [
        ("data/a.csv:line 8", None, "6,ok,F,6.00", "parse"),
        ("data/a.csv:line 4", {"order_id": "3", "note": 'say "hi"', "status": "X", "total": "3.00",
                               "address": "somewhere"}, None, "accepted_values"),
        ("data/a.csv:line 5", {"order_id": "4", "note": "a,b", "status": "P", "total": "-4.00",
                               "address": "  padded  "}, None, "min"),
    ]
    # the same file with every column checked (a max_length reads note and address) gives the same table
    checked = {"columns": {**CONTRACT["columns"], "note": {"type": "text", "max_length": 100},
                           "address": {"type": "text", "max_length": 100}}}
    _pipeline(project, checked, table="orders_full")
    run_one()
    assert table_checksum(project.db_url, "orders_full", "order_id") == table_checksum(
        project.db_url, "orders", "order_id")


def test_postgres_refusal_of_an_unread_column_is_bisected_on_the_lines(project: ProjectDir) -> None:
    project.write("data/a.csv", HEADER + "\n1,one,F,1.00,a\n")
    _pipeline(project, CONTRACT, batch_rows=1000)
    run_one()
    project.execute("ALTER TABLE orders ADD CONSTRAINT short_note CHECK (length(note) < 10)")
    lines = [f"{i},note {i},F,{i}.00,addr {i}" for i in range(2, 40)]
    lines[20] = '22,"a note, far too long",F,22.00,"addr, 22"'
    project.write("data/b.csv", HEADER + "\n" + "\n".join(lines) + "\n")
    c = run_one().counts
    assert (c.rows_inserted, c.rows_quarantined) == (37, 1)
    assert project.scalar("SELECT count(*) FROM orders WHERE note = 'note ' || order_id"
                          " AND address = 'addr ' || order_id") == 37  # every row of b.csv but line 22
    [(loc, rec, msg)] = project.query(
        "SELECT source_location, record, violations->0->>'message' FROM pgmill.quarantine")
    assert loc == "data/b.csv:line 22"
    assert rec == {"order_id": "22", "note": "a note, far too long", "status": "F", "total": "22.00",
                   "address": "addr, 22"}
    assert msg.startswith('rejected by PostgreSQL: new row for relation "orders" violates check constraint')


def test_bad_utf8_in_an_unread_column_is_still_quarantined(project: ProjectDir) -> None:
    data = (HEADER + "\n1,caf\xc3\xa9,F,1.00,a\n").encode("latin-1") + b"2,bad \xff byte,F,2.00,b\n3,ok,F,3.00,c\n"
    project.write("data/a.csv", data)
    _pipeline(project, CONTRACT)
    c = run_one().counts
    assert (c.rows_inserted, c.rows_quarantined) == (2, 1)
    assert project.query("SELECT order_id, note FROM orders ORDER BY 1") == [(1, "caf\u00e9"), (3, "ok")]
    [(loc, msg)] = project.query("SELECT source_location, violations->0->>'message' FROM pgmill.quarantine")
    assert loc == "data/a.csv:line 3" and "not valid utf-8" in msg


@pytest.mark.parametrize("batch_rows", [2, 1000])
def test_a_record_over_two_lines_in_an_unread_column_loads_intact(project: ProjectDir, batch_rows: int) -> None:
    project.write("data/a.csv", HEADER + '\n1,one,F,1.00,a\n2,"two\nlines",O,2.00,b\n3,three,X,3.00,c\n'
                  "4,four,P,4.00,d\n")
    _pipeline(project, CONTRACT, batch_rows=batch_rows)
    c = run_one().counts
    assert (c.rows_inserted, c.rows_quarantined) == (3, 1)
    assert project.query("SELECT order_id, note FROM orders ORDER BY 1") == [(1, "one"), (2, "two\nlines"),
                                                                            (4, "four")]
    assert project.scalar("SELECT source_location FROM pgmill.quarantine") == "data/a.csv:line 5"


def test_a_contract_with_nothing_to_check_loads_every_row(project: ProjectDir) -> None:
    project.write("data/a.csv", "a,b\nx,1\n,\ny,\"2,3\"\n")
    _pipeline(project, {"columns": {"a": {"type": "text"}, "b": {"type": "text"}}}, batch_rows=2)
    c = run_one().counts
    assert (c.rows_read, c.rows_inserted) == (3, 3)
    assert sorted(project.query("SELECT a, b FROM orders"), key=str) == sorted(
        [("x", "1"), (None, None), ("y", "2,3")], key=str)


@pytest.mark.parametrize("data", [
    b"", b"a,b\nc,d\n", "x,\u00e9\ny,z\n".encode(), b"x,\xff\ny,z\n", ("\u00e9,\u00fc\n" * 500).encode() + b"\xff\n",
    b"\xc3\n" + ("\u00e9,\u00fc\n" * 500).encode(), b"a\xc3\n\xa9b\n", b"a\nb,\xe9", "a,\U0001f600\n".encode(),
    b"a,\xc0\xaf\n", b"a,\xed\xa0\x80\n", b"\xe9",
])
def test_the_utf8_check_agrees_with_python(data: bytes) -> None:
    from pgmill.ingest.sources.csv import _is_utf8

    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert _is_utf8(bytearray(data)) is valid


def test_a_chunk_with_a_record_over_lines_is_parsed_once_in_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgmill.ingest.sources import csv as csv_source

    lines = [HEADER] + [f'{i},"{"two" + chr(10) + "lines" if i % 20 == 0 else "one"}",F,1.00,a' for i in range(1, 2001)]
    path = tmp_path / "a.csv"
    path.write_text("\n".join(lines) + "\n")
    calls: list[list[str] | None] = []
    real = csv_source.CsvReader._parse

    def counting(self: Any, chunk: Any, first_line: int, newlines: int, include: list[str] | None = None,
                 lines: list[int] | None = None) -> Any:
        calls.append(include)
        return real(self, chunk, first_line, newlines, include, lines)

    monkeypatch.setattr(csv_source.CsvReader, "_parse", counting)
    task = FileTask(path, "a.csv", path.stat().st_size, "")
    batches = list(read_csv_file(CsvSource(kind="csv", path="a.csv"), task, HEADER.split(","), 50, ["order_id"]))
    assert len(batches) > 5 and not any(b.narrow for b in batches)  # a spanning record in every chunk
    assert sum(b.table.num_rows for b in batches) == 2000
    assert calls == [None] * len(batches)  # known before parsing: no narrow parse in vain

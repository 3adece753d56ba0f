"""Dirty data at clean speed: a stray quote or an extra delimiter costs its own line, never the fast path.

A line whose quotes open a value no later line closes into one well-formed record is a bad record of its
own; the lines around it, in its chunk and after, are still read narrow with their own text kept for COPY.
A record that truly spans lines still loads, and the chunks after it go back to narrow reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgmill.config.spec import CsvSource
from pgmill.ingest.sources.base import RawBatch
from pgmill.ingest.sources.csv import read_csv_file
from pgmill.ingest.sources.files import FileTask
from tests.helpers import ProjectDir, run_one, table_checksum

HEADER = "order_id,customer_id,status,total,ordered_at,note"
COLS = HEADER.split(",")
CONTRACT: dict[str, Any] = {"columns": {
    "order_id": {"type": "bigint", "primary_key": True},
    "customer_id": {"type": "bigint", "not_null": True},
    "status": {"type": "text", "accepted_values": ["F", "O", "P"]},
    "total": {"type": "numeric(12,2)", "min": 0},
    "ordered_at": {"type": "date", "not_null": True},
    "note": {"type": "text"},  # no rule: a narrow read never parses it
}}
ROWS = 1000


def _good(i: int) -> str:
    note = f'"n{i}, with a comma"' if i % 7 == 0 else f"note {i}"  # a quoted value on one line is fine
    return f"{i},{100 + i},{'FOP'[i % 3]},{i}.25,2024-01-{1 + i % 28:02d},{note}"


# line (data row number, 1-based) -> (defect kind, the line as written); every other row is _good(i)
DEFECTS: dict[int, tuple[str, str]] = {
    120: ("stray_quote", '120,220,F,1.00,2024-01-01,"never closed'),
    121: ("after_stray", "121,221,O,1.00,2024-01-02,fine"),  # a good line right after it: loaded
    300: ("stray_quote_inside", '300,400,F,1.00,2024-01-03,12" pipe'),
    450: ("extra_delimiter", "450,550,F,1.00,2024-01-04,a,b"),
    500: ("bad_enum", "500,600,X,1.00,2024-01-05,x"),
    510: ("bad_number", "510,610,F,1.0.0,2024-01-05,x"),
    520: ("bad_date", "520,620,F,1.00,2024-02-30,x"),
    530: ("null_required", "530,,F,1.00,2024-01-05,x"),
    540: ("duplicate_key", _good(539)),  # the same record again: one row
    700: ("stray_quote", '700,800,P,7.00,2024-01-07,"opens'),
    701: ("stray_quote", '701,801,P,7.00,2024-01-07,"opens again'),  # two strays in a row do not pair up
}
QUARANTINED = {n for n, (k, _) in DEFECTS.items() if k not in ("after_stray", "duplicate_key")}


def _dirty() -> str:
    lines = [HEADER] + [DEFECTS[i][1] if i in DEFECTS else _good(i) for i in range(1, ROWS + 1)]
    return "\n".join(lines) + "\n"


def _clean_of_the_good_rows() -> str:
    good = [i for i in range(1, ROWS + 1) if i not in QUARANTINED and i != 540]
    lines = [HEADER] + [DEFECTS[i][1] if i in DEFECTS else _good(i) for i in good]
    return "\n".join(lines) + "\n"


def _read(path: Path, batch_rows: int = 40) -> list[RawBatch]:
    task = FileTask(path, path.name, path.stat().st_size, "")
    needed = ["order_id", "customer_id", "status", "total", "ordered_at"]
    return list(read_csv_file(CsvSource(kind="csv", path=path.name), task, COLS, batch_rows, needed))


def test_stray_quotes_and_extra_delimiters_are_quarantined_line_by_line_on_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(_dirty())
    batches = _read(path)
    assert len(batches) > 5
    # every chunk, the ones holding a bad line included, is read narrow with its own text for COPY
    assert all(b.narrow and b.csv_text is not None for b in batches)
    bad = [(b.location, b.reason) for batch in batches for b in batch.bad]
    assert bad == [
        ("d.csv:line 121", 'unterminated quote (") or malformed quoting; expected 6 fields'),
        ("d.csv:line 301", 'unterminated quote ("); expected 6 fields'),
        ("d.csv:line 451", "has 7 fields, expected 6"),
        ("d.csv:line 701", 'unterminated quote (") or malformed quoting; expected 6 fields'),
        ("d.csv:line 702", 'unterminated quote (") or malformed quoting; expected 6 fields'),
    ]
    raw = {b.location: b.raw_text for batch in batches for b in batch.bad}
    assert raw["d.csv:line 121"] == DEFECTS[120][1]  # its own line, nothing swallowed
    positions = [p for b in batches for p in (b.positions or [])]
    assert len(positions) == ROWS - 5
    assert 122 in positions and 699 in positions and 703 in positions  # the lines around the strays
    # the lines of a chunk holding a stray are loaded from the chunk's own text
    [batch] = [b for b in batches if any(x.location == "d.csv:line 121" for x in b.bad)]
    assert batch.records_at([batch.positions.index(122)]) == [  # type: ignore[union-attr]
        {"order_id": "121", "customer_id": "221", "status": "O", "total": "1.00", "ordered_at": "2024-01-02",
         "note": "fine"}]
    # resuming after the last chunk: every byte read, every record counted
    assert batches[-1].file_mark is not None and batches[-1].file_mark.byte_offset == path.stat().st_size
    assert batches[-1].file_mark.records_done == ROWS


def _pipeline(project: ProjectDir, table: str, path: str) -> dict[str, Any]:
    project.contract(table, CONTRACT)
    return {"source": {"kind": "csv", "path": path}, "table": table, "contract": f"contracts/{table}.yaml",
            "mode": "append", "batch_rows": 40}


def test_the_dirty_file_loads_what_a_full_parse_of_its_good_rows_loads(project: ProjectDir) -> None:
    project.write("data/dirty.csv", _dirty())
    project.write("ref/clean.csv", _clean_of_the_good_rows())
    # the reference: every column has a rule, so nothing is read narrow and no line goes to COPY as it was
    full = {"columns": {**CONTRACT["columns"], "note": {"type": "text", "max_length": 100}}}
    project.contract("reference", full)
    project.config({
        "orders": _pipeline(project, "orders", "data/dirty.csv"),
        "reference": {"source": {"kind": "csv", "path": "ref/clean.csv"}, "table": "reference",
                      "contract": "contracts/reference.yaml", "mode": "append"},
    })
    run = run_one(pipeline="orders")
    assert run.counts.rows_read == ROWS
    assert run.counts.rows_quarantined == len(QUARANTINED)
    assert run.counts.rows_duplicate == 1
    run_one(pipeline="reference")
    assert table_checksum(project.db_url, "orders", "order_id") == table_checksum(
        project.db_url, "reference", "order_id")
    got = project.query("SELECT source_location FROM pgmill.quarantine ORDER BY id")
    assert sorted(int(loc.rsplit(" ", 1)[1]) - 1 for (loc,) in got) == sorted(QUARANTINED)


def test_a_record_that_truly_spans_lines_still_loads_and_the_next_chunk_is_narrow(project: ProjectDir) -> None:
    lines = [HEADER] + [_good(i) for i in range(1, 301)]
    lines[150] = '150,250,F,1.50,2024-01-01,"a note\nover ""two"" lines"'
    project.write("data/span.csv", "\n".join(lines) + "\n")
    project.config({"orders": _pipeline(project, "orders", "data/span.csv")})
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (300, 0)
    assert project.scalar("SELECT note FROM orders WHERE order_id = 150") == 'a note\nover "two" lines'
    assert project.scalar("SELECT note FROM orders WHERE order_id = 151") == "note 151"
    batches = _read(project.path / "data/span.csv")
    spanning = [b for b in batches if b.positions and 151 in b.positions]
    assert len(spanning) == 1 and not spanning[0].narrow
    assert all(b.narrow and b.csv_text is not None for b in batches if b is not spanning[0])
    assert spanning[0].positions is not None and spanning[0].positions[spanning[0].positions.index(151) + 1] == 153


def test_a_quote_never_closed_before_the_end_costs_its_line_only(project: ProjectDir) -> None:
    text = f"{HEADER}\n{_good(1)}\n" + '2,102,F,2.00,2024-01-02,"open\n' + f"{_good(3)}\n"
    project.write("data/end.csv", text)
    project.config({"orders": _pipeline(project, "orders", "data/end.csv")})
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (2, 1)
    assert project.query("SELECT source_location, raw_text FROM pgmill.quarantine") == [
        ("data/end.csv:line 3", '2,102,F,2.00,2024-01-02,"open')]


def test_a_split_file_cuts_where_the_reader_does_after_a_stray_quote(tmp_path: Path) -> None:
    """A stray quote flips the parity of every quote after it: cut by parity, a range would start inside the
    genuine record below it. Cut as the reader reads, every range reads like the whole file."""
    from pgmill.ingest.sources.split import range_task, split_file

    lines = [HEADER] + [_good(i) for i in range(1, 41)]
    lines[5] = '5,105,F,1.00,2024-01-05,"stray'
    lines[20] = '20,120,F,1.00,2024-01-20,"a genuine\nvalue, over lines"'
    path = tmp_path / "s.csv"
    path.write_text("\n".join(lines) + "\n")
    spec = CsvSource(kind="csv", path="s.csv")
    task = FileTask(path, path.name, path.stat().st_size, "")
    needed = ["order_id", "customer_id", "status", "total", "ordered_at"]

    def records(t: FileTask) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for b in read_csv_file(spec, t, COLS, 4, needed):
            out += [(b.location(i), b.records_at([i])[0]["note"]) for i in range(b.table.num_rows)]
            out += [(x.location, x.raw_text) for x in b.bad]
        return sorted(out)

    whole = records(task)
    assert ("s.csv:line 6", '5,105,F,1.00,2024-01-05,"stray') in whole
    assert ("s.csv:line 21", "a genuine\nvalue, over lines") in whole and len(whole) == 40
    ranges = split_file(path, spec, 40, min_bytes=0)
    assert len(ranges) > 20
    assert all(r.start != path.read_bytes().index(b"value, over") for r in ranges)
    assert sorted(x for r in ranges for x in records(range_task(task, r))) == whole


def test_a_value_over_many_lines_longer_than_a_chunk_is_one_record(tmp_path: Path) -> None:
    """Its closing line is looked for beyond the chunk, found, and the record read whole."""
    big = "\n".join(f"line {k} of a long, quoted note" for k in range(600))  # ~20 KB, chunks are ~4 KB
    lines = [HEADER] + [_good(i) for i in range(1, 101)]
    lines[50] = f'50,150,F,1.00,2024-01-01,"{big}"'
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    batches = _read(path)
    rows = {b.location(i): b for b in batches for i in range(b.table.num_rows)}
    assert len(rows) == 100 and not [x for b in batches for x in b.bad]
    [b] = [b for b in batches if b.positions and 51 in b.positions]
    assert b.records_at([b.positions.index(51)])[0]["note"] == big  # type: ignore[union-attr]
    assert "big.csv:line 652" in rows  # the next record, after the value's 600 lines

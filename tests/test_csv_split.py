"""A CSV or NDJSON file split into byte ranges: the ranges, read one by one, give exactly the unsplit read."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pgmill.config.spec import CsvSource, NdjsonSource
from pgmill.ingest.sources.base import RawBatch
from pgmill.ingest.sources.csv import read_csv_file
from pgmill.ingest.sources.files import FileTask
from pgmill.ingest.sources.ndjson import read_ndjson_file
from pgmill.ingest.sources.split import ByteRange, range_task, split_file

CSV = CsvSource(kind="csv", path="a.csv")
NDJSON = NdjsonSource(kind="ndjson", path="a.ndjson")
COLS = ["id", "note", "n"]
PARTS = (1, 2, 3, 7)

Record = tuple[Any, ...]


def _records(batches: list[RawBatch]) -> list[Record]:
    """Every record in order: ("ok", line, values) or ("bad", location, text, reason)."""
    out: list[Record] = []
    for b in batches:
        assert b.positions is not None
        for pos, row in zip(b.positions, b.table.to_pylist(), strict=True):
            out.append(("ok", pos, tuple(sorted((k, v) for k, v in row.items() if v is not None))))
        out.extend(("bad", r.location, r.raw_text, r.reason) for r in b.bad)
    # a batch lists its good rows, then its bad ones: order all by line
    return sorted(out, key=lambda r: r[1] if r[0] == "ok" else int(r[1].rsplit(" ", 1)[1]))


def _task(path: Path) -> FileTask:
    return FileTask(path, path.name, path.stat().st_size, "")


def _read(path: Path, spec: CsvSource | NdjsonSource, task: FileTask, batch_rows: int = 4) -> list[RawBatch]:
    if isinstance(spec, CsvSource):
        return list(read_csv_file(spec, task, COLS, batch_rows))
    return list(read_ndjson_file(spec, task, batch_rows))


def _check(path: Path, spec: CsvSource | NdjsonSource, parts: int) -> list[ByteRange]:
    """Split `path` into `parts`, check the ranges tile the data at record boundaries, and that reading them
    one by one gives the unsplit read's records with the same line numbers."""
    data = path.read_bytes()
    ranges = split_file(path, spec, parts, min_bytes=0)
    assert 1 <= len(ranges) <= parts
    assert ranges[-1].end == len(data)
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.end == b.start and a.start < a.end
        assert data[b.start - 1 : b.start] == b"\n"
    for r in ranges:
        assert r.first_line == 1 + data.count(b"\n", 0, r.start)
    whole = _records(_read(path, spec, _task(path)))
    pieces: list[Record] = []
    for r in ranges:
        batches = _read(path, spec, range_task(_task(path), r))
        assert batches and batches[-1].file_mark is not None
        assert batches[-1].file_mark.byte_offset == r.end and batches[-1].file_mark.complete
        pieces += _records(batches)
    assert pieces == whole
    return ranges


# ------------------------------------------------------------------ CSV files

SPANNING = (
    'id,note,n\n'
    '1,"two\nlines",10\n'
    '2,"say ""hi""\nand ""bye""",20\n'
    '3,plain,30\n'
    '4,"""",40\n'
    '5,"a,b\n\nc",50\n'
    '6,"""\n""",60\n'
    '7,x,70\n'
    '8,"end ""q"" \n",80\n'
    '9,"",90\n'
)

CSV_FILES: dict[str, bytes] = {
    "spanning": SPANNING.encode(),
    "no_final_newline": SPANNING.rstrip("\n").encode(),
    "last_record_open_quote_no_newline": (SPANNING + '10,"tail\nstill').encode(),
    "bom": b"\xef\xbb\xbf" + SPANNING.encode(),
    "crlf": SPANNING.replace("\n", "\r\n").encode(),
    "ragged": (SPANNING + "10,short\n11,a,b,c,d\n12,ok,120\n").encode(),
    "accents": ('id,note,n\n1,"héllo\nwörld",1\n2,ça,2\n3,"ñ""\n",3\n' * 5).encode(),
}


@pytest.mark.parametrize("parts", PARTS)
@pytest.mark.parametrize("name", sorted(CSV_FILES))
def test_csv_ranges_read_like_the_whole_file(tmp_path: Path, name: str, parts: int) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(CSV_FILES[name])
    _check(path, CSV, parts)


@pytest.mark.parametrize("name", ["spanning", "crlf", "bom"])
def test_csv_a_cut_asked_at_every_byte(tmp_path: Path, name: str) -> None:
    """With as many parts as bytes, a cut is asked for at every offset: at a quote, inside a doubled
    quote, at a newline inside quotes, at a CR: every one lands on a record boundary."""
    data = CSV_FILES[name]
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    ranges = _check(path, CSV, len(data))
    assert len(ranges) == 9  # one range per record


def test_csv_quote_right_at_the_cut(tmp_path: Path) -> None:
    """The middle of the data is the opening quote of a field spanning lines: the cut is after it."""
    head = b"id,note,n\n"
    body_a = b"1,aaaa,1\n2,"
    rest = b'"x\ny",2\n3,z,3\n'
    pad = len(rest) - len(body_a)  # make the quote the middle byte of the data
    body_a = b"1,aaaa" + b"a" * pad + b",1\n2,"
    data = head + body_a + rest
    assert data[len(head) + (len(data) - len(head)) // 2] == ord('"')
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    ranges = _check(path, CSV, 2)
    assert [r.first_line for r in ranges] == [2, 5]


def test_csv_escaped_quote_at_the_cut(tmp_path: Path) -> None:
    """A doubled quote ("") in the middle of the data, followed by a newline in the same quoted field:
    asked to cut between its two quotes, after them, or at that newline, the split cuts after the field."""
    head = b"id,note,n\n"
    data = head + b'1,aaaaaaaaa,1\n2,"pre"""' + b'",\nmore",2\n3,z,3\n'
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    q = data.index(b'""",')
    for parts in range(1, len(data)):
        ranges = _check(path, CSV, parts)
        assert all(not (q < r.start <= data.index(b"more")) for r in ranges)


@pytest.mark.parametrize("parts", PARTS)
def test_csv_empty_header_only_and_small(tmp_path: Path, parts: int) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"")
    assert split_file(path, CSV, parts, min_bytes=0) == [ByteRange(0, 0, 1)]
    _check(path, CSV, parts)
    path.write_bytes(b"id,note,n\n")
    assert split_file(path, CSV, parts, min_bytes=0) == [ByteRange(10, 10, 2)]
    _check(path, CSV, parts)
    path.write_bytes(b"\xef\xbb\xbfid,note,n")  # a header without its newline
    assert split_file(path, CSV, parts, min_bytes=0) == [ByteRange(12, 12, 1)]
    _check(path, CSV, parts)
    path.write_bytes(SPANNING.encode())
    assert split_file(path, CSV, parts) == [ByteRange(10, len(SPANNING), 2)]  # under min_bytes: one range
    assert split_file(path, CSV, parts, min_bytes=len(SPANNING) + 1) == [ByteRange(10, len(SPANNING), 2)]


def test_csv_without_header(tmp_path: Path) -> None:
    spec = CsvSource(kind="csv", path="a.csv", header=False)
    path = tmp_path / "a.csv"
    path.write_bytes(SPANNING.split("\n", 1)[1].encode())
    for parts in PARTS:
        ranges = _check(path, spec, parts)
        assert ranges[0] == ByteRange(0, ranges[0].end, 1)


def test_csv_unterminated_quote_costs_one_line_and_the_cuts_go_on(tmp_path: Path) -> None:
    """A quote that never closes is one bad line: the cuts go on after it, and the ranges read as unsplit."""
    data = b"id,note,n\n1,a,1\n2,b,2\n3,\"open,3\n4,c,4\n5,d,5\n6,e,6\n"
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    ranges = _check(path, CSV, 7)
    assert ranges[-1].start > data.index(b"4,")


def _random_field(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return "".join(rng.choice("abcxyz0123 ") for _ in range(rng.randint(0, 8)))
    alphabet = ['"', ",", "\n", "\r\n", "a", "b", "é", " ", '""']
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
    return '"' + text.replace('"', '""') + '"'


def _random_csv(rng: random.Random, rows: int, crlf: bool) -> bytes:
    nl = "\r\n" if crlf else "\n"
    lines = ["id,note,n"]
    for i in range(rows):
        fields = [str(i), _random_field(rng), _random_field(rng)]
        if rng.random() < 0.03:
            fields = fields[:2]  # a ragged record: quarantined, with its line
        lines.append(",".join(fields))
    text = nl.join(lines) + (nl if rng.random() < 0.5 else "")
    return text.encode()


@pytest.mark.parametrize("seed", range(12))
def test_csv_random_files(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "a.csv"
    path.write_bytes((b"\xef\xbb\xbf" if seed % 3 == 0 else b"") + _random_csv(rng, rng.randint(0, 400), seed % 2 == 1))
    for parts in (*PARTS, rng.randint(8, 60)):
        _check(path, CSV, parts)


# ------------------------------------------------------------------ NDJSON files

def _ndjson(rows: int, rng: random.Random) -> bytes:
    lines = []
    for i in range(rows):
        r = rng.random()
        if r < 0.05:
            lines.append("not json {")
        elif r < 0.1:
            lines.append("")
        else:
            lines.append(json.dumps({"id": i, "note": "a\nb \"q\" é" * rng.randint(0, 3), "n": rng.random()}))
    return "\n".join(lines).encode()


NDJSON_FILES: dict[str, bytes] = {
    "plain": b"".join(json.dumps({"id": i, "s": "x" * i}).encode() + b"\n" for i in range(30)),
    "no_final_newline": b"\n".join(json.dumps({"id": i}).encode() for i in range(20)),
    "bom_crlf": b"\xef\xbb\xbf" + b"".join(json.dumps({"id": i}).encode() + b"\r\n" for i in range(20)),
    "bad_and_blank": _ndjson(60, random.Random(1)),
}


@pytest.mark.parametrize("parts", PARTS)
@pytest.mark.parametrize("name", sorted(NDJSON_FILES))
def test_ndjson_ranges_read_like_the_whole_file(tmp_path: Path, name: str, parts: int) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(NDJSON_FILES[name])
    _check(path, NDJSON, parts)


@pytest.mark.parametrize("parts", PARTS)
def test_ndjson_empty_and_small(tmp_path: Path, parts: int) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"")
    assert split_file(path, NDJSON, parts, min_bytes=0) == [ByteRange(0, 0, 1)]
    _check(path, NDJSON, parts)
    path.write_bytes(b"\xef\xbb\xbf")
    assert split_file(path, NDJSON, parts, min_bytes=0) == [ByteRange(3, 3, 1)]
    _check(path, NDJSON, parts)
    data = NDJSON_FILES["plain"]
    path.write_bytes(data)
    assert split_file(path, NDJSON, parts) == [ByteRange(0, len(data), 1)]


@pytest.mark.parametrize("seed", range(4))
def test_ndjson_random_files(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "a.ndjson"
    path.write_bytes(_ndjson(rng.randint(0, 300), rng))
    for parts in (*PARTS, rng.randint(8, 60)):
        _check(path, NDJSON, parts)


def test_parts_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id\n1\n")
    with pytest.raises(ValueError, match="parts"):
        split_file(path, CSV, 0)

"""A large file loaded as byte ranges: each range its own stream and checkpoint, the same table as an unsplit
load, and a failed range resumed on its own (finished ranges are not read again)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgmill.errors import PgmillError
from tests.helpers import (
    ORDERS_CONTRACT,
    ProjectDir,
    fail_range_checkpoint,
    orders_csv,
    run_one,
    table_checksum,
)

ROWS = 900
BATCH_ROWS = 40


def _rows() -> list[tuple[Any, ...]]:
    """Unique keys; every 97th row breaks a rule (status X), every 131st a null customer."""
    out: list[tuple[Any, ...]] = []
    for i in range(1, ROWS + 1):
        status = "X" if i % 97 == 0 else "FOP"[i % 3]
        customer = None if i % 131 == 0 else 1000 + i % 17
        out.append((i, customer, status, f"{i % 500}.25", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    f"2024-02-{1 + i % 28:02d}T10:00:00Z"))
    return out


def _csv() -> str:
    text = orders_csv(_rows())
    lines = text.splitlines()
    lines[200] = "9999,1,F"  # ragged (record 200, line 201): a parse error, quarantined with its line
    return "\n".join(lines) + "\n"


def _pipelines(project: ProjectDir, source: dict[str, Any], split: dict[str, Any] | None) -> None:
    project.contract("orders", ORDERS_CONTRACT)
    common = {"contract": "contracts/orders.yaml", "mode": "merge", "batch_rows": BATCH_ROWS}
    project.config({
        "split": {"source": {**source, **({"split": split} if split else {})}, "table": "public.orders_split",
                  **common},
        "plain": {"source": source, "table": "public.orders_plain", **common},
    })


def _quarantined(project: ProjectDir, pipeline: str) -> list[str]:
    return [r[0] for r in project.query(
        "SELECT source_location FROM pgmill.quarantine WHERE pipeline = %s ORDER BY id", (pipeline,))]


def _same_as_plain(project: ProjectDir) -> None:
    assert table_checksum(project.db_url, "orders_split", "order_id") == \
        table_checksum(project.db_url, "orders_plain", "order_id")
    assert sorted(_quarantined(project, "split")) == sorted(_quarantined(project, "plain"))


def _load_steps(project: ProjectDir, run_id: int) -> list[str]:
    return [r[0] for r in project.query(
        "SELECT name FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%' ORDER BY name", (run_id,))]


def test_csv_in_three_ranges_loads_what_an_unsplit_load_does(project: ProjectDir) -> None:
    project.write("data/orders.csv", _csv())
    _pipelines(project, {"kind": "csv", "path": "data/orders.csv"}, {"min_bytes": 1, "parts": 3})
    split = run_one(pipeline="split")
    plain = run_one(pipeline="plain")
    assert split.counts.rows_read == plain.counts.rows_read == ROWS
    assert split.counts.rows_quarantined == plain.counts.rows_quarantined > 0
    _same_as_plain(project)
    assert "data/orders.csv:line 201" in _quarantined(project, "split")
    steps = _load_steps(project, split.run_id)
    assert len(steps) == 3 and all(s.startswith("load data/orders.csv bytes ") for s in steps)
    ranges = project.query("SELECT range_start, range_end, complete, records_done FROM pgmill.file_ranges"
                           " WHERE pipeline = 'split' ORDER BY range_start")
    assert len(ranges) == 3 and all(r[2] for r in ranges)
    assert [r[1] for r in ranges[:-1]] == [r[0] for r in ranges[1:]]  # contiguous
    assert sum(r[3] for r in ranges) == ROWS
    assert project.query("SELECT complete, records_done FROM pgmill.files WHERE pipeline = 'split'") == \
        [(True, ROWS)]
    assert project.scalar("SELECT count(*) FROM pgmill.file_ranges WHERE pipeline = 'plain'") == 0
    again = run_one(pipeline="split")  # a rerun after success reads nothing
    assert (again.counts.rows_read, again.counts.bytes_read) == (0, 0)


def test_ndjson_in_three_ranges_loads_what_an_unsplit_load_does(project: ProjectDir) -> None:
    lines = [json.dumps(dict(zip(["order_id", "customer_id", "status", "total", "ordered_at", "updated_at"], r,
                                 strict=True))) for r in _rows()]
    lines[300] = "{not json"
    project.write("data/orders.ndjson", "\n".join(lines) + "\n")
    _pipelines(project, {"kind": "ndjson", "path": "data/orders.ndjson"}, {"min_bytes": 1, "parts": 3})
    split = run_one(pipeline="split")
    plain = run_one(pipeline="plain")
    assert split.counts.rows_read == plain.counts.rows_read == ROWS
    _same_as_plain(project)
    assert "data/orders.ndjson:line 301" in _quarantined(project, "split")
    assert len(_load_steps(project, split.run_id)) == 3


def test_small_file_under_min_bytes_is_one_stream(project: ProjectDir) -> None:
    project.write("data/orders.csv", _csv())
    _pipelines(project, {"kind": "csv", "path": "data/orders.csv"}, {"min_bytes": 1 << 30, "parts": 3})
    run = run_one(pipeline="split")
    assert _load_steps(project, run.run_id) == ["load data/orders.csv"]
    assert project.scalar("SELECT count(*) FROM pgmill.file_ranges") == 0


def test_a_failed_range_resumes_alone_and_the_plan_is_kept(project: ProjectDir,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("data/orders.csv", _csv())
    _pipelines(project, {"kind": "csv", "path": "data/orders.csv"}, {"min_bytes": 1, "parts": 3})
    # the middle range fails at its 4th checkpoint: three of its batches have committed
    restore = fail_range_checkpoint(monkeypatch, lambda m: m.range is not None and m.range.start == m.plan[1].start)
    with pytest.raises(PgmillError, match="injected failure in the middle range"):
        run_one(pipeline="split", ok=False)
    state = project.query("SELECT range_start, complete, records_done FROM pgmill.file_ranges"
                          " WHERE pipeline = 'split' ORDER BY range_start")
    assert [s[1] for s in state] == [True, False, True]
    done_before = state[1][2]
    assert done_before > 0  # three batches of the middle range committed before it failed
    assert project.query("SELECT complete FROM pgmill.files WHERE pipeline = 'split'") == [(False,)]
    restore()

    # the rerun keeps the committed plan, whatever the setting says now, and reads only the middle range's rest
    _pipelines(project, {"kind": "csv", "path": "data/orders.csv"}, {"min_bytes": 1, "parts": 2})
    second = run_one(pipeline="split")
    middle = project.query("SELECT range_start, range_end, records_done FROM pgmill.file_ranges"
                           " WHERE pipeline = 'split' ORDER BY range_start")[1]
    assert _load_steps(project, second.run_id) == [f"load data/orders.csv bytes {middle[0]}-{middle[1]}"]
    assert 0 < second.counts.rows_read == middle[2] - done_before
    runs = project.query("SELECT sum(rows_read), sum(rows_inserted + rows_updated + rows_unchanged"
                         " + rows_quarantined + rows_duplicate) FROM pgmill.runs WHERE pipeline = 'split'")
    assert runs == [(ROWS, ROWS)]  # every record read once over both runs, and accounted for
    run_one(pipeline="plain")
    _same_as_plain(project)
    assert project.query("SELECT complete, records_done FROM pgmill.files WHERE pipeline = 'split'") == \
        [(True, ROWS)]
    assert run_one(pipeline="split").counts.rows_read == 0


def test_replace_never_splits(project: ProjectDir) -> None:
    project.write("data/orders.csv", _csv())
    project.contract("orders", ORDERS_CONTRACT)
    source = {"kind": "csv", "path": "data/orders.csv", "split": {"min_bytes": 1, "parts": 3}}
    project.config({"split": {"source": source, "table": "public.orders_split", "contract": "contracts/orders.yaml",
                              "mode": "replace", "batch_rows": BATCH_ROWS}})
    run = run_one(pipeline="split")
    assert run.counts.rows_read == ROWS
    assert _load_steps(project, run.run_id) == ["load data/orders.csv"]
    assert project.scalar("SELECT count(*) FROM pgmill.file_ranges") == 0

"""Good rows go to COPY as their original CSV lines when the file holds exactly the contract's columns.

That shortcut must load exactly what the re-encoding path loads: same rows, same values, whatever the
batch boundaries, defects and duplicates. Expected rows are computed here independently of pgmill.
"""

from __future__ import annotations

import random

import polars as pl
import pytest

from pgmill.ingest.writer import CopyData
from tests.helpers import ORDERS_HEADER, ProjectDir, run_one


def _dataset(seed: int, n: int) -> tuple[str, dict[int, tuple[object, ...]], int]:
    """CSV text, the expected final rows by key (newest updated_at wins), and the number of bad rows."""
    rnd = random.Random(seed)
    lines = [ORDERS_HEADER]
    expected: dict[int, tuple[object, ...]] = {}
    bad = 0
    for i in range(n):
        key = rnd.randint(1, n // 2)
        status = rnd.choice("FOP")
        total = f"{rnd.randint(0, 99999) / 100:.2f}"
        day = f"2024-0{rnd.randint(1, 9)}-{rnd.randint(10, 28)}"
        upd = f"2024-10-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z"  # increasing
        kind = rnd.random()
        if kind < 0.05:
            lines.append(f"{key},{rnd.randint(1, 9)},X,{total},{day},{upd}")  # bad enum
            bad += 1
        elif kind < 0.08:
            lines.append(f"{key},{rnd.randint(1, 9)},{status},{total}")  # ragged
            bad += 1
        elif kind < 0.10:
            lines.append(f'{key},"{rnd.randint(1, 9)}",{status},"{total}",{day},{upd}')  # quoted, still good
            expected[key] = (key, status, total, day)
        else:
            lines.append(f"{key},{rnd.randint(1, 9)},{status},{total},{day},{upd}")
            expected[key] = (key, status, total, day)
    return "\n".join(lines) + "\n", expected, bad


def _count_reencodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = CopyData.of

    def counting(df: pl.DataFrame) -> CopyData:
        calls.append(df.height)
        return original(df)

    monkeypatch.setattr(CopyData, "of", staticmethod(counting))
    return calls


@pytest.mark.parametrize(("seed", "batch_rows"), [(1, 7), (2, 50), (3, 1000)])
def test_original_lines_load_exactly_the_expected_rows(project: ProjectDir, seed: int, batch_rows: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    reencoded = _count_reencodes(monkeypatch)
    text, expected, bad = _dataset(seed, 600)
    project.orders_pipeline(mode="merge", cursor="updated_at", path="data/*.csv", batch_rows=batch_rows)
    project.write("data/a.csv", text)
    run = run_one()
    assert run.counts.balanced() and run.counts.rows_quarantined == bad
    got = project.query("SELECT order_id, status, total::text, ordered_at::text FROM orders ORDER BY 1")
    assert got == [expected[k] for k in sorted(expected)]
    assert reencoded == []  # every batch went as its original lines


def test_reordered_columns_and_a_contract_alias(project: ProjectDir) -> None:
    project.contract("orders", {"columns": {
        "order_id": {"type": "bigint", "primary_key": True, "source": "id"},
        "note": {"type": "text"}, "amount": {"type": "numeric(8,2)", "min": 0}}})
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv", "delimiter": ";"},
                               "table": "orders", "contract": "contracts/orders.yaml", "batch_rows": 3}})
    project.write("data/a.csv", 'amount;note;id\n1.5;"a;b";1\n-2;x;2\n3;"say ""hi""";3\n;;4\n4;  pad  ;5\n')
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (4, 1)
    assert project.query("SELECT order_id, note, amount::text FROM orders ORDER BY 1") == [
        (1, "a;b", "1.50"), (3, 'say "hi"', "3.00"), (4, None, None), (5, "  pad  ", "4.00")]


def test_extra_column_takes_the_re_encoding_path_with_the_same_result(project: ProjectDir,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    reencoded = _count_reencodes(monkeypatch)
    text, expected, bad = _dataset(4, 300)
    extra = "\n".join(line + (",extra" if i else ",surplus") for i, line in enumerate(text.splitlines())) + "\n"
    project.orders_pipeline(mode="merge", cursor="updated_at", path="data/*.csv", batch_rows=40)
    project.write("data/a.csv", extra)
    run = run_one()
    assert run.counts.rows_quarantined == bad
    got = project.query("SELECT order_id, status, total::text, ordered_at::text FROM orders ORDER BY 1")
    assert got == [expected[k] for k in sorted(expected)]
    assert len(reencoded) == run.counts.batches

"""Demo data generator: deterministic by seed, written in chunks, and its manifest counts every defect exactly."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from pgmill.demo import datagen
from pgmill.demo.datagen import DEFECT_KINDS, TABLES, Manifest, TableManifest, generate, write_orders_csv


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.csv")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- an independent re-count of the files


def _iso_date(v: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        return False
    try:
        date.fromisoformat(v)
    except ValueError:
        return False
    return True


def _iso_ts(v: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", v):
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _json_ok(v: str) -> bool:
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


def _neg(v: str) -> bool:
    return v.startswith("-")


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
# per table: (kind, test on the row dict) in DEFECT_KINDS order; the first that holds names the row
CHECKS: dict[str, list[tuple[str, Any]]] = {
    "customers": [
        ("null_required", lambda r: r["email"] == ""),
        ("bad_enum", lambda r: r["segment"] not in ("consumer", "business", "enterprise")),
        ("bad_date", lambda r: not _iso_date(r["signup_date"])),
        ("bad_format", lambda r: not EMAIL.match(r["email"])),
    ],
    "products": [
        ("null_required", lambda r: r["name"] == ""),
        ("bad_enum", lambda r: r["category"] not in
         ("books", "electronics", "home", "garden", "toys", "sports", "beauty", "grocery")),
        ("negative_amount", lambda r: _neg(r["price"])),
        ("bad_date", lambda r: not _iso_date(r["created_at"])),
        ("bad_format", lambda r: not re.fullmatch(r"SKU-\d{6}", r["sku"])),
    ],
    "orders": [
        ("null_required", lambda r: r["customer_id"] == "" or r["ordered_at"] == ""),
        ("bad_enum", lambda r: r["status"] not in ("F", "O", "P")),
        ("negative_amount", lambda r: _neg(r["total"])),
        ("bad_date", lambda r: not _iso_date(r["ordered_at"])),
        ("bad_format", lambda r: not re.fullmatch(r"[A-Z]{3}", r["currency"])),
        ("rule_violation", lambda r: float(r["discount"]) > float(r["total"])),
    ],
    "order_items": [
        ("null_required", lambda r: r["product_id"] == ""),
        ("negative_amount", lambda r: int(r["quantity"]) < 1 or _neg(r["unit_price"])),
    ],
    "events": [
        ("null_required", lambda r: r["user_id"] == ""),
        ("bad_enum", lambda r: r["event_type"] not in
         ("page_view", "search", "add_to_cart", "checkout", "purchase", "login")),
        ("bad_date", lambda r: not _iso_ts(r["occurred_at"])),
        ("bad_json", lambda r: not _json_ok(r["payload"])),
    ],
}


def recount(root: Path, tm: TableManifest) -> tuple[int, dict[str, int], set[tuple[str, ...]]]:
    """(records, defects by kind, keys of the rows that load) read back from the files with the csv module."""
    spec = TABLES[tm.table]
    found: Counter[str] = Counter()
    seen: set[tuple[str, ...]] = set()
    records = 0
    for rel in tm.files:
        p = Path(rel) if Path(rel).is_absolute() else root / rel
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            assert next(reader) == list(spec.columns)
            for fields in reader:
                records += 1
                if len(fields) != len(spec.columns):
                    found["malformed_line" if len(fields) == 1 else "ragged_line"] += 1
                    continue
                row = dict(zip(spec.columns, fields, strict=True))
                kind = next((k for k, test in CHECKS[tm.table] if test(row)), None)
                if kind is not None:
                    found[kind] += 1
                    continue
                key = tuple(row[k] for k in spec.key)
                if key in seen:
                    found["duplicate_key"] += 1
                seen.add(key)
    return records, {k: found.get(k, 0) for k in DEFECT_KINDS}, seen


# ---------------------------------------------------------------- tests


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", scale=0.05, seed=7)
    b = generate(tmp_path / "b", scale=0.05, seed=7)
    generate(tmp_path / "c", scale=0.05, seed=8)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert a.as_dict() | {"seconds": 0} == b.as_dict() | {"seconds": 0}


def test_manifest_matches_a_recount_of_the_files(tmp_path: Path) -> None:
    man = generate(tmp_path, scale=0.2, seed=3, defect_rate=0.25)
    assert set(man.tables) == set(TABLES)
    for tm in man.tables.values():
        records, defects, _ = recount(tmp_path, tm)
        assert records == tm.rows, tm.table
        assert defects == tm.defects, tm.table
        for kind in TABLES[tm.table].weights:  # at this size every kind of every table shows up
            assert tm.defects[kind] > 0, (tm.table, kind)
        assert tm.defects["ragged_line"] >= 2 and tm.defects["malformed_line"] >= 1
        assert tm.bytes == sum((tmp_path / f).stat().st_size for f in tm.files)
    assert man.rows == sum(t.rows for t in man.tables.values())


def test_foreign_keys_of_loadable_rows_hold(tmp_path: Path) -> None:
    man = generate(tmp_path, scale=0.05, seed=11)
    keys = {name: recount(tmp_path, tm)[2] for name, tm in man.tables.items()}
    customers = {k[0] for k in keys["customers"]}
    products = {k[0] for k in keys["products"]}
    orders = {k[0] for k in keys["orders"]}

    def column(table: str, col: str) -> set[str]:
        out = set()
        spec = TABLES[table]
        for rel in man.tables[table].files:
            with (tmp_path / rel).open(newline="") as fh:
                for row in csv.DictReader(fh):
                    if None not in row and row[col] and tuple(row[k] for k in spec.key) in keys[table]:
                        out.add(row[col])
        return out

    assert column("orders", "customer_id") <= customers
    assert column("order_items", "order_id") <= orders
    assert column("order_items", "product_id") <= products
    assert column("events", "user_id") <= customers


def test_clean_orders_file_for_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    tm = write_orders_csv(path, 12_345, seed=5, chunk_rows=4_000)
    assert tm.rows == 12_345 and tm.quarantined == 0 and tm.duplicates == 0
    assert tm.bytes == path.stat().st_size
    records, defects, keys = recount(tmp_path, tm)
    assert records == 12_345 and len(keys) == 12_345
    assert all(n == 0 for n in defects.values())
    # the same file again, byte for byte, whatever the chunk size's effect on speed
    again = write_orders_csv(tmp_path / "again.csv", 12_345, seed=5, chunk_rows=4_000)
    assert again.rows == tm.rows
    assert (tmp_path / "again.csv").read_bytes() == path.read_bytes()


def test_orders_file_with_defects(tmp_path: Path) -> None:
    tm = write_orders_csv(tmp_path / "orders.csv", 20_000, seed=9, defect_rate=0.03, chunk_rows=5_000)
    records, defects, _ = recount(tmp_path, tm)
    assert records == tm.rows and defects == tm.defects
    assert tm.quarantined > 0 and tm.duplicates > 0


def test_written_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    heights: list[int] = []
    real = datagen._encode

    def spy(chunk: Any, rng: Any) -> tuple[bytes, int]:
        heights.append(chunk.frame.height)
        return real(chunk, rng)

    monkeypatch.setattr(datagen, "_encode", spy)
    write_orders_csv(tmp_path / "orders.csv", 10_000, chunk_rows=3_000, defect_rate=0.0)
    assert sorted(heights) == [1_000, 3_000, 3_000, 3_000]  # made two at a time, written in order
    heights.clear()
    man: Manifest = generate(tmp_path / "demo", scale=0.5, part_rows=5_000, defect_rate=0.0)
    assert len(man.tables["orders"].files) == 4
    assert max(heights) <= 5 * 5_000  # an order has at most 5 lines: its items' file is the largest


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        generate(tmp_path, scale=0)
    with pytest.raises(ValueError, match="defect_rate"):
        generate(tmp_path, defect_rate=0.9)

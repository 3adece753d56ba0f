"""Within one batch, one row per key: the newest by cursor, else the last; rows in their input order."""

from __future__ import annotations

import random

import polars as pl

from pgmill.ingest.writer import dedupe


def _reference(df: pl.DataFrame, key: list[str], cursor: str | None) -> list[int]:
    """The rule written the slow, obvious way: positions of the kept rows."""
    best: dict[tuple[object, ...], int] = {}
    rows = df.rows(named=True)
    for i, r in enumerate(rows):
        k = tuple(r[c] for c in key)
        j = best.get(k)
        if j is None:
            best[k] = i
        elif cursor is None:
            best[k] = i  # the last one wins
        else:
            new, old = r[cursor], rows[j][cursor]
            # nulls are oldest; ties go to the later row
            if old is None or (new is not None and new >= old):
                best[k] = i
    return sorted(best.values())


def test_unique_keys_are_returned_untouched() -> None:
    df = pl.DataFrame({"id": [5, 3, 9], "v": ["a", "b", "c"]})
    out, kept = dedupe(df, ["id"], None)
    assert kept is None and out.equals(df)


def test_newest_by_cursor_wins_and_order_is_kept() -> None:
    df = pl.DataFrame({"id": [1, 2, 1, 3, 2], "ts": [10, 5, 7, 1, 9], "v": ["a", "b", "c", "d", "e"]})
    out, kept = dedupe(df, ["id"], "ts")
    assert kept is not None and kept.to_list() == [0, 3, 4]
    assert out["v"].to_list() == ["a", "d", "e"]


def test_without_cursor_the_last_row_wins() -> None:
    df = pl.DataFrame({"id": [1, 2, 1, 1], "v": ["a", "b", "c", "d"]})
    out, kept = dedupe(df, ["id"], None)
    assert kept is not None and kept.to_list() == [1, 3]
    assert out["v"].to_list() == ["b", "d"]


def test_composite_key_with_null_cursor_values() -> None:
    df = pl.DataFrame({"a": [1, 1, 1, 2, 1], "b": ["x", "x", "y", "x", "x"], "ts": [None, 3, 1, 2, None]})
    out, kept = dedupe(df, ["a", "b"], "ts")
    assert kept is not None and kept.to_list() == [1, 2, 3]


def test_matches_the_reference_rule_on_random_batches() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        n = rnd.randint(2, 40)
        df = pl.DataFrame({
            "a": [rnd.randint(0, 6) for _ in range(n)],
            "b": [rnd.choice(["x", "y"]) for _ in range(n)],
            "ts": [rnd.choice([None, 1, 2, 3]) for _ in range(n)],
        })
        for key, cursor in ((["a"], None), (["a"], "ts"), (["a", "b"], None), (["a", "b"], "ts")):
            out, kept = dedupe(df, key, cursor)
            expected = _reference(df, key, cursor)
            got = list(range(df.height)) if kept is None else kept.to_list()
            assert got == expected, (key, cursor, df)
            assert out.equals(df[expected])

"""The near-duplicate rule's searches: the blocked search finds planted copies (typos, case, spacing, accents,
word order) at each size, gives the exact search's answer on small tables, and `max_seconds` / `sample:`
bound the work (status skipped with a message saying why). test_quality_duplicates.py covers grouping and
normalization."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pgmill.project import open_project
from pgmill.quality.checks import run_checks
from pgmill.quality.near_search import blocking_keys
from pgmill.quality.results import RuleResult
from tests.helpers import ProjectDir

SYLLABLES = ["ba", "ko", "ri", "tan", "mel", "so", "vi", "dur", "pa", "len", "zo", "gi", "mar", "te", "lu"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(4))


def _typo(rng: random.Random, w: str) -> str:
    i = rng.randrange(2, len(w) - 2)
    return [w[:i] + "x" + w[i + 1:], w[:i] + "e" + w[i:], w[:i] + w[i + 1:], w[:i - 1] + w[i] + w[i - 1] + w[i + 1:]][i % 4]


def _names(n: int, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    """n distinct names of two long words, then a planted near-copy of every tenth one: (rows, plants)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(f"{_word(rng).capitalize()} {_word(rng).capitalize()}")
    rows = sorted(seen)
    plants = []
    kinds = ["typo", "case", "spacing", "accents", "order"]
    for k, i in enumerate(range(0, n, 10)):
        first, last = rows[i].split(" ")
        kind = kinds[k % len(kinds)]
        copy = {"typo": f"{first} {_typo(rng, last)}", "case": rows[i].upper(), "spacing": f"  {first}    {last} ",
                "accents": rows[i].replace("a", "á").replace("o", "ö"), "order": f"{last} {first}"}[kind]
        plants.append((i, len(rows)))
        rows.append(copy)
    return rows, plants


def _table(project: ProjectDir, rows: list[str]) -> None:
    with project.connect() as c:
        c.execute("CREATE TABLE public.people (id bigint PRIMARY KEY, full_name text)")
        with c.cursor().copy("COPY public.people FROM STDIN") as cp:
            for i, r in enumerate(rows):
                cp.write_row((i, r))


def _check(project: ProjectDir, near: dict[str, Any]) -> RuleResult:
    project.contract("people", {
        "columns": {"id": {"type": "bigint", "primary_key": True}, "full_name": {"type": "text"}},
        "checks": {"duplicates": {"near": {"columns": ["full_name"], **near}}},
    })
    project.config({"people": {"source": {"kind": "csv", "path": "x.csv"}, "table": "people",
                               "contract": "contracts/people.yaml"}})
    [res] = [r for r in run_checks(open_project()).results if r.kind == "near_duplicates"]
    return res


def _grouped(res: RuleResult) -> list[list[str]]:
    return sorted(sorted(g["normalized"]) for g in res.sample)


@pytest.mark.parametrize("n", [20, 60, 200])
def test_blocked_search_finds_every_planted_copy(project: ProjectDir, n: int) -> None:
    rows, plants = _names(n, seed=n)
    _table(project, rows)
    res = _check(project, {"similarity": 0.6, "search": "blocked", "severity": "warn"})
    assert res.detail is not None and res.detail["search"] == "blocked"
    # each plant is one group of two rows: a missed plant would lower both counts
    assert (res.rows_failed, res.detail["groups"], res.rows_checked) == (len(plants), len(plants), len(rows))
    pairs = {frozenset((rows[orig], rows[copy])) for orig, copy in plants}
    assert res.sample and all(frozenset(g["spellings"]) in pairs for g in res.sample)  # the first groups
    assert isinstance(res.detail["seconds"], float)


def test_blocked_search_equals_exact_search_on_a_small_table(project: ProjectDir) -> None:
    rows, _ = _names(300, seed=7)
    # near pairs no plant made: one-letter names apart, and a pair the blocking keys do not join (two typos in
    # one word is still similar enough for pg_trgm) to show what blocked search can miss is not in this table
    rows += ["Jonathan Smith", "Jonathon Smith", "Maria Lopez", "Mario Lopez", "José  García", "jose garcia"]
    _table(project, rows)
    exact = _check(project, {"similarity": 0.6, "search": "exact", "severity": "warn"})
    blocked = _check(project, {"similarity": 0.6, "search": "blocked", "severity": "warn"})
    assert exact.detail is not None and blocked.detail is not None
    assert (exact.detail["search"], blocked.detail["search"]) == ("exact", "blocked")
    assert exact.rows_failed == blocked.rows_failed == 33  # 30 plants, Jonathan/Jonathon, Maria/Mario, José
    assert exact.detail["groups"] == blocked.detail["groups"]
    assert _grouped(exact) == _grouped(blocked)


def test_blocked_levenshtein_equals_exact_levenshtein(project: ProjectDir) -> None:
    rows, plants = _names(150, seed=11)
    _table(project, rows)
    near = {"method": "levenshtein", "max_distance": 2, "severity": "warn"}
    exact = _check(project, {**near, "search": "exact"})
    blocked = _check(project, {**near, "search": "blocked"})
    assert blocked.detail is not None and blocked.detail["method"] == "levenshtein distance <= 2"
    # every plant but the word-order ones (many edits apart) is within two edits
    assert exact.rows_failed == blocked.rows_failed == len(plants) - 3
    assert _grouped(exact) == _grouped(blocked)


def test_max_seconds_stops_the_rule_with_status_skipped(project: ProjectDir) -> None:
    # sentences from a small vocabulary: the exact search cannot finish 4,000 of them in 50 ms
    rng = random.Random(3)
    vocab = [_word(rng) for _ in range(40)]
    _table(project, [" ".join(rng.choice(vocab) for _ in range(10)) for _ in range(4000)])
    res = _check(project, {"similarity": 0.8, "search": "exact", "max_seconds": 0.05})
    assert res.status == "skipped" and res.rows_failed == 0 and res.rows_checked == 4000
    assert res.message.startswith("near-duplicate search stopped after ")
    assert "over max_seconds (0.05 s) for 4,000 rows; bound it with `sample:`" in res.message
    assert res.detail is not None and res.detail["max_seconds"] == 0.05
    with project.connect() as c:
        row = c.execute("SELECT status, (detail->>'seconds')::float, message FROM pgmill.quality_results"
                        " WHERE kind = 'near_duplicates'").fetchone()
    assert row is not None and row[0] == "skipped" and row[1] < 5 and row[2] == res.message


def test_sample_bounds_the_rows_compared(project: ProjectDir) -> None:
    rows, _ = _names(100, seed=5)
    _table(project, rows)
    res = _check(project, {"similarity": 0.6, "sample": 40})
    assert res.rows_checked == 40
    assert "40 sampled of 110" in res.message
    assert res.detail is not None and res.detail["values"] <= 40  # distinct normalized values of the sample


def test_blocking_keys_join_one_edit_and_word_order_only() -> None:
    def meet(a: str, b: str) -> bool:
        ka, _ = blocking_keys([a])
        kb, _ = blocking_keys([b])
        return bool(set(ka.tolist()) & set(kb.tolist()))

    assert meet("jonathan smith", "smith jonathan")  # word order
    assert meet("jonathan smith", "jonathon smith")  # substitution
    assert meet("jonathan smith", "jonthan smith")  # deletion
    assert meet("jonathan smith", "jonahtan smith")  # swapped neighbours
    assert meet("jonathan smith", "jonathan r smith")  # a one-letter word more
    assert not meet("jonathan smith", "jnoathon smith")  # two edits in one word
    assert not meet("jonathan smith", "jonathon smyth")  # one edit in each of two words of a short value
    long = "the quick brown fox jumps over the lazy dog today"
    assert meet(long, "the quikc brown fox jumps over the lazy dgo today")  # two words changed
    assert meet(long, "the quick brown fox jumps over the lazydog today")  # two words joined
    assert not meet(long, "the quikc brown fax jumps over the lazy dgo today")  # three words changed

"""Near-duplicate detection finds planted near-duplicates (case, spaces, accents, typos) and leaves
distinct rows alone; exact duplicates and duplicate keys are in test_quality_checks.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgmill.project import open_project
from pgmill.quality.checks import run_checks
from pgmill.quality.results import RuleResult
from tests.helpers import ProjectDir

PEOPLE = [
    (1, "José  García", "ES"),
    (2, "jose garcia", "ES"),
    (3, " JOSE GARCÍA", "ES"),
    (4, "Jonathan Smith", "US"),
    (5, "Jonathon Smith", "US"),
    (6, "Zoë Müller", "DE"),
    (7, "zoe muller", "DE"),
    (8, "Maria Lopez", "MX"),
    (9, "Bob Stone", "GB"),
    (10, "Carla Mendes", "BR"),
    (11, "Hiroshi Tanaka", "JP"),
    (12, None, "US"),
    (13, "   ", "US"),
]


def _people(project: ProjectDir, near: dict[str, Any]) -> RuleResult:
    with project.connect() as c:
        c.execute("CREATE TABLE public.people (id bigint PRIMARY KEY, full_name text, country text)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO public.people VALUES (%s, %s, %s)", PEOPLE)
    project.contract("people", {
        "columns": {"id": {"type": "bigint", "primary_key": True}, "full_name": {"type": "text"},
                    "country": {"type": "text"}},
        "checks": {"duplicates": {"near": near}},
    })
    project.config({"people": {"source": {"kind": "csv", "path": "x.csv"}, "table": "people",
                               "contract": "contracts/people.yaml"}})
    [res] = [r for r in run_checks(open_project()).results if r.kind == "near_duplicates"]
    return res


def _groups(res: RuleResult) -> list[list[int]]:
    """Each group as the ids of its spellings (the keys sample holds only the first and last id)."""
    ids = {name: i for i, name, _ in PEOPLE} | {f"{name} {c}": i for i, name, c in PEOPLE}
    return sorted(sorted(ids[s] for s in g["spellings"]) for g in res.sample)


def test_trigram_finds_planted_near_duplicates_and_leaves_distinct_rows_alone(project: ProjectDir) -> None:
    res = _people(project, {"columns": ["full_name"], "similarity": 0.6, "threshold": 90, "severity": "warn"})
    assert _groups(res) == [[1, 2, 3], [4, 5], [6, 7]]
    assert (res.rows_checked, res.rows_failed, res.detail["groups"]) == (13, 4, 3)  # type: ignore[index]
    jose = next(g for g in res.sample if g["normalized"] == ["jose garcia"])
    assert jose["rows"] == 3 and jose["keys"] == [{"id": 1, "full_name": "José  García"},
                                                  {"id": 3, "full_name": " JOSE GARCÍA"}]
    assert set(jose["spellings"]) == {"José  García", "jose garcia", " JOSE GARCÍA"}
    assert res.status == "warn"  # 9 of 13 rows are not extra copies: 69% < 90%
    assert res.message.startswith("3 groups of alike rows (trigram similarity >= 0.6 after normalizing)")


def test_levenshtein_and_several_columns(project: ProjectDir) -> None:
    res = _people(project, {"columns": ["full_name", "country"], "method": "levenshtein", "max_distance": 1})
    assert _groups(res) == [[1, 2, 3], [4, 5], [6, 7]]
    assert res.detail is not None and res.detail["method"] == "levenshtein distance <= 1"


def test_strict_similarity_keeps_only_normalized_equals(project: ProjectDir) -> None:
    res = _people(project, {"columns": ["full_name"], "similarity": 1.0})
    assert _groups(res) == [[1, 2, 3], [6, 7]]  # Jonathan / Jonathon differ by a letter
    assert res.status == "fail"


@pytest.mark.parametrize("text, expected", [("Ångström  Ćafé", "angstrom cafe"), ("  A\tB  ", "a b")])
def test_normalization(project: ProjectDir, text: str, expected: str) -> None:
    from pgmill.quality.duplicates import Normalizer
    from pgmill.quality.table_info import TableInfo

    with project.connect() as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS pgmill")
        c.execute("CREATE TABLE t (v text)")
        c.execute("INSERT INTO t VALUES (%s)", (text,))
        for norm in (Normalizer.detect(c, "trigram"), Normalizer(None, None, None)):
            q = psycopg.sql.SQL("SELECT {} FROM {} AS t").format(norm.expr(("v",)), TableInfo("public.t", {}).ident)
            assert c.execute(q).fetchone() == (expected,)

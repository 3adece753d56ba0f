"""Parallelism: independent models overlap in time (the ledger shows it); a failure stops only descendants."""

from __future__ import annotations

from pgmill.project import open_project
from pgmill.transform import run_transforms
from tests.helpers import ProjectDir


def _steps(project: ProjectDir, run_id: int) -> dict[str, tuple[object, ...]]:
    rows = project.query("SELECT name, status, started_at, finished_at, rows, detail FROM pgmill.run_steps"
                         " WHERE run_id = %s", (run_id,))
    return {str(r[0]): r[1:] for r in rows}


def test_independent_branches_overlap(project: ProjectDir) -> None:
    project.config(models={"threads": 2})
    # pg_sleep makes each model last long enough that two running at once must overlap
    project.write("models/west.sql", "SELECT 1 AS x FROM (SELECT pg_sleep(0.5)) s")
    project.write("models/east.sql", "SELECT 2 AS x FROM (SELECT pg_sleep(0.5)) s")
    project.write("models/both.sql", "SELECT x FROM west UNION ALL SELECT x FROM east")
    res = run_transforms(open_project(project.path))
    assert res.status == "succeeded" and res.run_id is not None
    steps = _steps(project, res.run_id)
    (_, l0, l1, *_), (_, r0, r1, *_), (_, b0, _, brows, _) = steps["public.west"], steps["public.east"], steps["public.both"]
    assert l0 < r1 and r0 < l1  # [started, finished] intervals intersect
    assert b0 >= max(l1, r1)  # type: ignore[operator]  # the join waits for both branches
    assert brows == 2
    assert project.scalar("SELECT pipeline FROM pgmill.runs WHERE run_id = %s", (res.run_id,)) == "transform"


def test_one_thread_runs_one_at_a_time(project: ProjectDir) -> None:
    project.config()
    project.write("models/a.sql", "SELECT 1 AS x FROM (SELECT pg_sleep(0.2)) s")
    project.write("models/b.sql", "SELECT 1 AS x FROM (SELECT pg_sleep(0.2)) s")
    res = run_transforms(open_project(project.path), threads=1)
    steps = _steps(project, res.run_id or 0)
    (_, a0, a1, *_), (_, b0, b1, *_) = steps["public.a"], steps["public.b"]
    assert a1 <= b0 or b1 <= a0  # type: ignore[operator]


def test_failure_skips_only_descendants(project: ProjectDir) -> None:
    project.config()
    project.write("models/root.sql", "SELECT 1 AS x")
    project.write("models/broken.sql", "SELECT 1 / (x - 1) AS y FROM root")  # division by zero at run time
    project.write("models/child.sql", "SELECT * FROM broken")
    project.write("models/grandchild.sql", "SELECT * FROM child")
    project.write("models/sibling.sql", "SELECT x FROM root")
    project.write("models/mixed.sql", "SELECT x FROM sibling UNION ALL SELECT y FROM child")
    res = run_transforms(open_project(project.path), threads=3)
    assert res.status == "failed"
    assert sorted(res.ran) == ["public.root", "public.sibling"]
    assert res.failed == ["public.broken"]
    assert sorted(res.skipped) == ["public.child", "public.grandchild", "public.mixed"]
    broken = next(m for m in res.models if m.model == "public.broken")
    assert "models/broken.sql" in (broken.error or "") and "division by zero" in (broken.error or "")
    steps = _steps(project, res.run_id or 0)
    assert {k: v[0] for k, v in steps.items()} == {
        "public.root": "succeeded", "public.sibling": "succeeded", "public.broken": "failed",
        "public.child": "skipped", "public.grandchild": "skipped", "public.mixed": "skipped"}
    assert "division by zero" in str(steps["public.broken"][4])
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname IN ('broken', 'child')") == 0
    run = project.query("SELECT status, error FROM pgmill.runs WHERE run_id = %s", (res.run_id,))[0]
    assert run[0] == "failed" and "public.broken" in str(run[1])

"""`run_demo` end to end on the test database: every injected defect quarantined, every duplicate counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from pgmill.demo.datagen import LINE_KINDS, TABLES
from pgmill.demo.project import write_demo_project
from pgmill.demo.run import run_demo
from pgmill.errors import ConfigError
from tests.helpers import ProjectDir


def _count(table: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("shop", table))


def test_demo_accounts_for_every_injected_defect(project: ProjectDir) -> None:
    lines: list[str] = []
    report = run_demo(project.path, scale=0.05, echo=lines.append)
    man = report.manifest
    assert not report.embedded and report.database  # PGMILL_DATABASE_URL (set by the fixture) is honoured
    assert set(report.tables) == set(TABLES)
    for name, t in report.tables.items():
        m = man.tables[name]
        assert t.status == "succeeded", t.error
        assert t.rows_read == m.rows == t.inserted + t.updated + t.unchanged + t.quarantined + t.duplicate, name
        assert t.quarantined == m.quarantined, name
        assert t.duplicate == m.duplicates, name
        assert (t.inserted, t.updated, t.unchanged) == (m.loaded, 0, 0), name
        # each kind of defect is caught as its own reason, row for row
        assert t.caught == {k: n for k, n in m.defects.items() if n and k != "duplicate_key"}, name
        assert all(m.defects[k] > 0 for k in LINE_KINDS), name
        assert project.scalar(_count(name)) == m.loaded
        assert project.scalar("SELECT count(*) FROM pgmill.quarantine WHERE pipeline = %s", (name,)) == m.quarantined
    assert report.orphans and not any(report.orphans.values())
    assert report.ok and report.first_load

    text = "\n".join(lines)
    assert "every one caught" in text
    for hint in ("pgmill status", "pgmill quarantine list", "pgmill db url"):
        assert hint in text
    top = report.reasons[0]
    assert top.rows > 0 and ":line " in top.example_location and top.example_message


def test_demo_rerun_loads_nothing_twice(project: ProjectDir) -> None:
    first = run_demo(project.path, scale=0.02, echo=lambda s: None)
    before = {n: project.scalar(_count(n)) for n in TABLES}
    lines: list[str] = []
    again = run_demo(project.path, scale=0.02, echo=lines.append)
    assert first.ok and again.ok and not again.first_load
    assert all(t.rows_read == 0 and t.status == "succeeded" for t in again.tables.values())
    assert {n: project.scalar(_count(n)) for n in TABLES} == before
    assert any("exactly once" in line for line in lines)


def test_demo_project_refuses_a_foreign_project(tmp_path: Path) -> None:
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    with pytest.raises(ConfigError, match="not the demo"):
        write_demo_project(tmp_path, scale=0.01)


def test_demo_project_rewrite_drops_files_of_an_earlier_scale(tmp_path: Path) -> None:
    big = write_demo_project(tmp_path, scale=0.6)
    assert len(big.tables["events"].files) == 2
    small = write_demo_project(tmp_path, scale=0.3)
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*.csv"))
    assert on_disk == sorted(f for t in small.tables.values() for f in t.files)

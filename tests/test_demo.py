"""`run_demo` end to end on the test database: every injected defect quarantined, every duplicate counted."""

from __future__ import annotations

import json
import re
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
    report = run_demo(project.path, scale=0.05, echo=lines.append, load_only=True)
    assert report.steps is None  # the load alone; the steps after it: test_demo_steps_print_what_the_database_holds
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


def test_demo_project_load_only_has_no_checks_models_or_queries(tmp_path: Path) -> None:
    write_demo_project(tmp_path, scale=0.01)
    assert len(list((tmp_path / "queries").glob("*.sql"))) == 14
    assert len(list((tmp_path / "models" / "marts").glob("*.sql"))) == 4
    assert all("\nchecks:" in f.read_text() for f in (tmp_path / "contracts").glob("*.yaml"))
    write_demo_project(tmp_path, scale=0.01, load_only=True)  # over the full one: its extra files go
    assert not list(tmp_path.glob("queries/*.sql")) and not list(tmp_path.glob("models/marts/*.sql"))
    assert not any("checks:" in f.read_text() for f in (tmp_path / "contracts").glob("*.yaml"))
    assert "tune:" not in (tmp_path / "pgmill.yaml").read_text()


def test_demo_project_rewrite_drops_files_of_an_earlier_scale(tmp_path: Path) -> None:
    big = write_demo_project(tmp_path, scale=0.6)
    assert len(big.tables["events"].files) == 2
    small = write_demo_project(tmp_path, scale=0.3)
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*.csv"))
    assert on_disk == sorted(f for t in small.tables.values() for f in t.files)


def _figure(text: str) -> int:
    return int(text.replace(",", ""))


def test_demo_steps_print_what_the_database_holds(project: ProjectDir) -> None:
    """Each step's printed figures, read back from the database: rows loaded, checks, models, indexes kept,
    the quality report, and the MCP configuration that starts `pgmill mcp` on this project."""
    lines: list[str] = []
    report = run_demo(project.path, scale=0.05, echo=lines.append)
    assert report.ok and report.steps is not None
    text = "\n".join(lines)

    # load: the summary's inserted column is what each table holds
    for name in TABLES:
        row = next(line.split() for line in lines if line.startswith(f"shop.{name} "))
        assert _figure(row[2]) == project.scalar(_count(name)), name

    # checks: passed / warnings / failed as pgmill.quality_results holds them for the printed check run
    m = re.search(r"Table checks: (\d+) rules on (\d+) loaded tables.*: (\d+) passed, (\d+) warnings?, (\d+) failed",
                  text)
    run = re.search(r"pgmill\.quality_results \(check run (\d+)\)", text)
    assert m and run, text
    by_status = dict(project.query("SELECT status, count(*) FROM pgmill.quality_results WHERE run_id = %s"
                                   " GROUP BY status", (int(run.group(1)),)))
    assert int(m.group(1)) == sum(by_status.values()) > 0
    assert int(m.group(2)) == project.scalar("SELECT count(DISTINCT table_name) FROM pgmill.quality_results"
                                             " WHERE run_id = %s", (int(run.group(1)),)) == len(TABLES)
    assert (int(m.group(3)), int(m.group(4)), int(m.group(5))) == (
        by_status.get("pass", 0), by_status.get("warn", 0), by_status.get("fail", 0) + by_status.get("error", 0))
    for status, table, rule in project.query("SELECT status, table_name, rule FROM pgmill.quality_results"
                                             " WHERE run_id = %s AND status <> 'pass'", (int(run.group(1)),)):
        assert f"  {status:<5} {table} {rule}: " in text  # each rule that did not pass, named

    # models: each printed one is a table holding the printed rows
    built = re.search(r"Models: (\d+) built, 0 failed", text)
    model_rows = re.findall(r"^  (marts\.\w+) +table +succeeded +([\d,]+) rows$", text, re.M)
    assert built and int(built.group(1)) == len(model_rows) == 4, text
    for model, rows in model_rows:
        schema, name = model.split(".")
        assert project.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                              (schema, name)) == 1
        assert project.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))) \
            == _figure(rows) > 0

    # tuning: p95 before and after as the tuning run recorded them; the indexes kept are in pg_indexes
    tuned = re.search(r"Tuning run (\d+)\b", text)
    kept = re.search(r"Indexes kept: (\d+) of (\d+) tried", text)
    assert tuned and kept, text
    recorded = project.scalar("SELECT report FROM pgmill.tuning_runs WHERE run_id = %s", (int(tuned.group(1)),))
    applied = recorded["applied"]
    assert len(applied["before"]) == 14  # the shop's declared queries, shipped in the project's queries/
    for name, before in applied["before"].items():
        printed = re.search(rf"^  {name} +([\d.]+) ms +([\d.]+) ms$", text, re.M)
        assert printed, name  # printed to 0.01 ms, recorded to 0.001 ms
        assert float(printed.group(1)) == pytest.approx(before["p95_ms"], abs=0.006), name
        assert float(printed.group(2)) == pytest.approx(applied["after"][name]["p95_ms"], abs=0.006), name
    names = {o["name"]: o["status"] for o in applied["outcomes"]}
    assert int(kept.group(2)) == len(names) and int(kept.group(1)) == sum(s == "kept" for s in names.values())
    present = {r[0] for r in project.query("SELECT indexname FROM pg_indexes WHERE schemaname = 'shop'")}
    assert {n for n, s in names.items() if s == "kept"} == {n for n in present if n.startswith("pgmill_")}
    assert "small dataset" in text

    # the quality report: the file, with each table's rows and rules of the printed check run
    path = project.path / "quality-report.html"
    assert f"Quality report: {path}" in text
    html = path.read_text(encoding="utf-8")
    for name in TABLES:
        rules = project.scalar("SELECT count(*) FROM pgmill.quality_results WHERE run_id = %s AND table_name = %s",
                               (int(run.group(1)), f"shop.{name}"))
        assert f"{project.scalar(_count(name)):,} rows; {rules} rules" in html, name

    # validation: the file, its verdicts as printed, its figures from the ledger
    counts = re.search(r"own figures: (\d+) passed, (\d+) failed, (\d+) not measured", text)
    md = (project.path / "validation.md").read_text(encoding="utf-8")
    assert counts and f"{counts.group(1)} passed, {counts.group(2)} failed, {counts.group(3)} not measured" in md
    for name in re.findall(r"^  fail  (.+?): ", text, re.M):
        assert f"| {name} |" in md and "**FAIL**" in md, name
    read_in_all = project.scalar("SELECT sum(rows_read) FROM pgmill.runs")
    assert read_in_all == sum(m.rows for m in report.manifest.tables.values())
    assert f"({read_in_all:,} rows read)" in md

    # connecting an assistant: the printed JSON is the configuration, starting `pgmill mcp` on this project
    start = lines.index("  {")
    end = lines.index("  }", start)
    config = json.loads("\n".join(lines[start:end + 1]))
    server = config["mcpServers"]["pgmill"]
    assert Path(server["command"]).name == "pgmill"
    assert server["args"] == ["mcp", "--project", str(project.path.resolve())]
    assert server["env"] == {"PGMILL_DATABASE_URL": report.database}  # not embedded here: the URL it used
    assert "pgmill serve" in text and "http://127.0.0.1:8080/" in text

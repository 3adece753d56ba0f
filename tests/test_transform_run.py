"""Materializations: view, table, incremental; evolution of columns; missing tables; settings."""

from __future__ import annotations

import pytest

from pgmill.errors import ConfigError
from pgmill.project import open_project
from pgmill.transform import TransformResult, run_transforms
from tests.helpers import ProjectDir


def _run(project: ProjectDir, **kw: object) -> TransformResult:
    return run_transforms(open_project(project.path), **kw)  # type: ignore[arg-type]


def _seed(project: ProjectDir) -> None:
    project.config()
    project.execute("CREATE TABLE public.events (id int PRIMARY KEY, kind text, at timestamptz)")
    project.execute("INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END,"
                  " '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 10) g")


def _kind(project: ProjectDir, rel: str) -> str:
    return str(project.scalar("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (rel,)))


def test_models_over_existing_tables_with_all_materializations(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/by_kind.sql", "-- pgmill: {materialized: view}\n"
                  "SELECT kind, count(*) AS n FROM events GROUP BY kind;\n")
    project.write("models/marts/top.sql", "-- pgmill: {materialized: table, indexes: [kind]}\n"
                  "SELECT * FROM by_kind WHERE n > 0")
    project.write("models/recent.sql", "-- pgmill: {materialized: incremental, cursor: at}\n"
                  "SELECT id, at FROM events")
    res = _run(project)
    assert res.status == "succeeded" and sorted(res.ran) == ["marts.top", "public.by_kind", "public.recent"]
    assert _kind(project, "public.by_kind") == "v"
    assert _kind(project, "marts.top") == "r"
    assert project.scalar("SELECT sum(n) FROM marts.top") == 10
    assert project.scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = 'marts' AND tablename = 'top'"
                          " AND indexdef LIKE '%(kind)%'") == 1
    assert project.scalar("SELECT count(*) FROM recent") == 10
    steps = project.query("SELECT s.name, s.status, s.rows FROM pgmill.run_steps s JOIN pgmill.runs r USING (run_id)"
                          " WHERE r.pipeline = 'transform' ORDER BY s.name")
    assert steps == [("marts.top", "succeeded", 2), ("public.by_kind", "succeeded", None),
                     ("public.recent", "succeeded", 10)]
    assert project.scalar("SELECT status FROM pgmill.runs WHERE run_id = %s", (res.run_id,)) == "succeeded"


def test_incremental_appends_only_newer_rows(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/recent.sql", "-- pgmill: {materialized: incremental, cursor: at}\nSELECT id, at FROM events")
    _run(project)
    project.execute("INSERT INTO events VALUES (11, 'a', '2026-02-01'), (12, 'b', '2026-02-02'),"
                  " (0, 'a', '2025-01-01')")  # the old one is not newer than the cursor: left out
    res = _run(project)
    assert res.models[0].rows == 2
    assert project.scalar("SELECT count(*) FROM recent") == 12
    assert project.scalar("SELECT count(*) - count(DISTINCT id) FROM recent") == 0
    assert _run(project).models[0].rows == 0  # nothing new


def test_incremental_merge_on_unique_key_and_evolution(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/latest.sql",
                  "-- pgmill: {materialized: incremental, cursor: at, unique_key: id}\nSELECT id, kind, at FROM events")
    _run(project)
    project.execute("UPDATE events SET kind = 'z', at = '2026-03-01' WHERE id = 3")
    project.execute("INSERT INTO events VALUES (20, 'c', '2026-03-01')")
    # the SELECT gains a column: the table gains it, old rows keep NULL there
    project.write("models/latest.sql", "-- pgmill: {materialized: incremental, cursor: at, unique_key: id}\n"
                  "SELECT id, kind, at, upper(kind) AS big FROM events")
    res = _run(project)
    # id 3 changed, id 20 is new, and id 10 (at the previous newest cursor, so seen again) gains `big`
    assert res.models[0].rows == 3 and res.models[0].detail["added_columns"] == ["big"]
    assert project.query("SELECT id, kind, big FROM latest WHERE id IN (1, 3, 20) ORDER BY id") == [
        (1, "b", None), (3, "z", "Z"), (20, "c", "C")]
    assert project.scalar("SELECT count(*) FROM latest") == 11
    res = _run(project, full_refresh=True)
    assert res.models[0].rows == 11 and project.scalar("SELECT count(big) FROM latest") == 11


def test_view_columns_change_and_views_over_views(project: ProjectDir) -> None:
    _seed(project)
    project.config(models={"materialized": "view"})
    project.write("models/base.sql", "SELECT id, kind FROM events")
    project.write("models/over.sql", "SELECT id FROM base WHERE kind = 'a'")
    assert _run(project).status == "succeeded"
    # renaming a column: CREATE OR REPLACE VIEW refuses; the view is recreated, its dependent rebuilt after
    project.write("models/base.sql", "SELECT id, kind AS category FROM events")
    project.write("models/over.sql", "SELECT id FROM base WHERE category = 'a'")
    res = _run(project)
    assert res.status == "succeeded", res.as_dict()
    assert project.scalar("SELECT count(*) FROM over") == 5
    # a column change under a view this run does not rebuild is refused, naming the dependent
    project.write("models/base.sql", "SELECT id, kind AS category, at FROM events WHERE false UNION ALL "
                  "SELECT 1, 'x', now()")
    project.write("models/base.sql", "SELECT id::text AS id, kind AS category FROM events")
    res = _run(project, select=["base"])
    assert res.failed == ["public.base"] and "public.over" in (res.models[0].error or "")
    assert project.scalar("SELECT count(*) FROM over") == 5  # untouched


def test_table_model_rebuild_keeps_grants_and_other_indexes(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/t.sql", "SELECT id, kind FROM events")
    _run(project)
    if not project.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'transform_test_reader'"):
        project.execute("CREATE ROLE transform_test_reader NOLOGIN")
    with project.connect() as c:
        c.execute("GRANT SELECT ON t TO transform_test_reader")
        c.execute("GRANT INSERT, UPDATE ON t TO transform_test_reader WITH GRANT OPTION")
        c.execute("GRANT SELECT ON t TO PUBLIC")
        c.execute("CREATE INDEX by_hand ON t (kind)")
    project.write("models/t.sql", "SELECT id, kind, at FROM events")  # columns change: a rename swap
    res = _run(project)
    assert res.models[0].detail["swap"] == "rename"
    assert project.scalar("SELECT has_table_privilege('transform_test_reader', 'public.t', 'SELECT')")
    assert project.scalar("SELECT has_table_privilege('transform_test_reader', 'public.t', 'UPDATE WITH GRANT OPTION')")
    assert not project.scalar("SELECT has_table_privilege('transform_test_reader', 'public.t', 'DELETE')")
    assert project.scalar("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'public.t'::regclass"
                          " AND a.grantee = 0 AND a.privilege_type = 'SELECT'") == 1  # PUBLIC's grant too
    assert project.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'by_hand'") == 1
    assert project.scalar("SELECT count(*) FROM t WHERE at IS NOT NULL") == 10


def test_table_under_dependent_view_is_refilled(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/t.sql", "SELECT id, kind FROM events")
    project.write("models/v.sql", "-- pgmill: {materialized: view}\nSELECT count(*) AS n FROM t")
    _run(project)
    project.execute("INSERT INTO events VALUES (50, 'a', now())")
    res = _run(project, select=["t"])
    assert res.models[0].detail["swap"] == "refill"
    assert project.scalar("SELECT n FROM v") == 11


def test_missing_table_is_an_error_naming_the_file(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/good.sql", "SELECT * FROM events")
    project.write("models/bad.sql", "SELECT * FROM nowhere JOIN events USING (id)")
    with pytest.raises(ConfigError, match=r"models/bad.sql: reads nowhere"):
        _run(project)


def test_cycle_is_an_error_naming_the_files(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/a.sql", "SELECT * FROM c")
    project.write("models/b.sql", "SELECT * FROM a")
    project.write("models/c.sql", "SELECT * FROM b")
    project.write("models/d.sql", "SELECT * FROM events")
    with pytest.raises(ConfigError, match=r"cycle: models/a.sql -> models/b.sql -> models/c.sql -> models/a.sql"):
        _run(project)


def test_bad_sql_and_bad_header_name_the_file(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/x.sql", "SELECT 1\nFROM events WHER id = 1")
    project.write("models/y.sql", "-- pgmill: {materialised: table}\nSELECT 1")
    project.write("models/z.sql", "DELETE FROM events")
    with pytest.raises(ConfigError) as ei:
        _run(project)
    msg = str(ei.value)
    assert "models/x.sql: line 2: syntax error" in msg
    assert "models/y.sql:1: materialised" in msg
    assert "models/z.sql: a model is one SELECT" in msg


def test_unselected_unbuilt_parent_is_an_error(project: ProjectDir) -> None:
    _seed(project)
    project.write("models/a.sql", "SELECT * FROM events")
    project.write("models/b.sql", "SELECT * FROM a")
    with pytest.raises(ConfigError, match=r"--select \+b"):
        _run(project, select=["b"])
    assert _run(project, select=["+b"]).ran == ["public.a", "public.b"]
    assert _run(project, select=["b"]).ran == ["public.b"]


def test_settings_from_project_file(project: ProjectDir) -> None:
    _seed(project)
    project.config(models={"schema": "analytics", "materialized": "view",
                           "overrides": {"t": {"materialized": "table", "indexes": [{"columns": ["id"], "unique": True}]}}})
    project.write("models/t.sql", "SELECT id FROM events")
    project.write("models/v.sql", "SELECT id FROM analytics.t")
    res = _run(project)
    assert res.ran == ["analytics.t", "analytics.v"]
    assert _kind(project, "analytics.t") == "r" and _kind(project, "analytics.v") == "v"
    assert project.scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = 'analytics' AND indexdef LIKE 'CREATE UNIQUE%'") == 1


def test_no_models_is_a_no_op(project: ProjectDir) -> None:
    project.config()
    res = _run(project)
    assert res.models == [] and res.status == "succeeded"

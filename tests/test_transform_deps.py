"""Dependency inference (golden files), name resolution, cycles, selection and graph exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgmill.config.transform import ModelsConfig
from pgmill.errors import ConfigError
from pgmill.transform import ExistingRelations, Relation, build_graph, discover_models, references
from pgmill.transform.models import header_settings

GOLDEN = Path(__file__).parent / "golden" / "deps"
CASES = sorted(p.stem for p in GOLDEN.glob("*.sql"))


def _show(part: str) -> str:
    return part if re.fullmatch(r"[a-z_][a-z0-9_$]*", part) else '"' + part.replace('"', '""') + '"'


def _line(r: Relation) -> str:
    return ".".join(_show(p) for p in (r.schema, r.name) if p is not None)


@pytest.mark.parametrize("case", CASES)
def test_golden_dependencies(case: str) -> None:
    found = sorted(_line(r) for r in references((GOLDEN / f"{case}.sql").read_text()))
    expected = (GOLDEN / f"{case}.deps").read_text().splitlines()
    assert found == sorted(expected)


def test_golden_cases_cover_the_issue() -> None:
    assert {"cte_shadow", "subqueries", "quoted_names", "view_over_view", "lateral", "set_operations",
            "functions_in_from", "cte_recursive"} <= set(CASES)


def _project(tmp_path: Path, files: dict[str, str], **cfg: object) -> list:  # type: ignore[type-arg]
    for rel, text in files.items():
        p = tmp_path / "models" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return discover_models(tmp_path, ModelsConfig.model_validate(cfg))


CATALOG = ExistingRelations(("public",), frozenset({("public", "orders"), ("public", "customers"), ("raw", "events")}))


def test_resolution_models_win_and_schema_from_folder(tmp_path: Path) -> None:
    models = _project(tmp_path, {
        "stg_orders.sql": "SELECT * FROM orders",
        "marts/revenue.sql": "SELECT * FROM stg_orders JOIN customers USING (customer_id)",
        "marts/events.sql": "SELECT * FROM raw.events, marts.revenue",
    })
    g = build_graph(models, CATALOG)
    assert g.order == ["public.stg_orders", "marts.revenue", "marts.events"]
    assert g.parents["marts.revenue"] == {"public.stg_orders"}
    assert g.sources["marts.revenue"] == {"public.customers"}
    assert g.parents["marts.events"] == {"marts.revenue"} and g.sources["marts.events"] == {"raw.events"}


def test_missing_relations_name_the_file(tmp_path: Path) -> None:
    models = _project(tmp_path, {"a.sql": "SELECT * FROM orders, ghost", "b.sql": "SELECT * FROM nope.x"})
    with pytest.raises(ConfigError) as ei:
        build_graph(models, CATALOG)
    assert "models/a.sql: reads ghost" in str(ei.value) and "models/b.sql: reads nope.x" in str(ei.value)
    g = build_graph(models, CATALOG, strict=False)
    assert g.missing == {"public.a": {"ghost"}, "public.b": {"nope.x"}}


def test_cycle_names_the_files(tmp_path: Path) -> None:
    models = _project(tmp_path, {"a.sql": "SELECT * FROM b", "b.sql": "SELECT * FROM a", "c.sql": "SELECT 1"})
    with pytest.raises(ConfigError, match=r"dependency cycle: models/a.sql -> models/b.sql -> models/a.sql"):
        build_graph(models, CATALOG)


def test_self_reference_is_not_a_cycle(tmp_path: Path) -> None:
    models = _project(tmp_path, {"inc.sql": "-- pgmill: {materialized: incremental, cursor: at}\n"
                                            "SELECT * FROM orders WHERE at > (SELECT max(at) FROM inc)"})
    assert build_graph(models, CATALOG).parents == {"public.inc": set()}


def _chain(tmp_path: Path):  # type: ignore[no-untyped-def]
    models = _project(tmp_path, {
        "a.sql": "SELECT * FROM orders", "b.sql": "SELECT * FROM a", "c.sql": "SELECT * FROM b",
        "x.sql": "SELECT * FROM customers", "y.sql": "SELECT * FROM x, b",
    })
    return build_graph(models, CATALOG)


def test_selection(tmp_path: Path) -> None:
    g = _chain(tmp_path)
    assert g.select(None) == g.order
    assert g.select(["b+"]) == ["public.b", "public.c", "public.y"]
    assert g.select(["+b"]) == ["public.a", "public.b"]
    assert g.select(["+y"]) == ["public.a", "public.b", "public.x", "public.y"]
    assert g.select(["a, x"]) == ["public.a", "public.x"]
    assert g.select(["public.c"]) == ["public.c"]
    with pytest.raises(ConfigError, match="no model named 'bb'; did you mean 'b'"):
        g.select(["bb+"])


def test_exports(tmp_path: Path) -> None:
    g = _chain(tmp_path)
    text = g.to_text()
    assert "public.y [table] models/y.sql\n  <- public.b\n  <- public.x" in text
    assert "public.a [table] models/a.sql\n  <- public.orders (table)" in text
    dot = g.to_dot()
    assert dot.startswith("digraph pgmill {") and '"public.b" -> "public.y";' in dot
    assert '"public.orders" [shape=cylinder];' in dot
    mer = g.to_mermaid().splitlines()
    assert mer[0] == "graph LR"
    ids = {line.split("[")[0].strip(): line for line in mer[1:] if "[" in line}
    b = next(i for i, line in ids.items() if '"public.b<br/>' in line)
    y = next(i for i, line in ids.items() if '"public.y<br/>' in line)
    assert f"  {b} --> {y}" in mer


def test_header_settings() -> None:
    s = header_settings("-- a model\n-- pgmill: {materialized: incremental, cursor: at}\n"
                        "-- pgmill: {unique_key: id, indexes: [at, [a, b], {columns: [c], unique: true}]}\n"
                        "SELECT 1\n-- pgmill: {materialized: view}\n", "m.sql")
    assert s.materialized == "incremental" and s.cursor == "at" and s.unique_key == ["id"]
    assert [(i.columns, i.unique) for i in s.indexes or []] == [(["at"], False), (["a", "b"], False), (["c"], True)]
    with pytest.raises(ConfigError, match=r"m.sql:1: .*materialized"):
        header_settings("-- pgmill: {materialized: cube}\nSELECT 1", "m.sql")
    with pytest.raises(ConfigError, match=r"m.sql:1: pgmill header must be a mapping"):
        header_settings("-- pgmill: table\nSELECT 1", "m.sql")


def test_incremental_needs_a_cursor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models/i.sql: an incremental model needs a cursor"):
        _project(tmp_path, {"i.sql": "-- pgmill: {materialized: incremental}\nSELECT 1"})


def test_two_files_one_relation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both build analytics.t"):
        _project(tmp_path, {"analytics/t.sql": "SELECT 1", "t.sql": "-- pgmill: {schema: analytics}\nSELECT 2"})


def test_unchanged_models_are_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import pgmill.transform.deps as deps
    from pgmill.transform.parsed import CACHE_FILE

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.sql").write_text("SELECT * FROM raw.orders o JOIN raw.customers USING (id);\n")
    (tmp_path / "models" / "b.sql").write_text("-- a comment\nSELECT 1 AS x FROM a")
    first = {m.name: (m.query, m.refs) for m in discover_models(tmp_path, ModelsConfig())}
    assert first["a"] == ("SELECT * FROM raw.orders o JOIN raw.customers USING (id)",
                          [Relation("raw", "customers"), Relation("raw", "orders")])
    calls: list[str] = []
    real = deps.parse_model
    monkeypatch.setattr(deps, "parse_model", lambda text: calls.append(text) or real(text))
    again = {m.name: (m.query, m.refs) for m in discover_models(tmp_path, ModelsConfig())}
    assert again == first and calls == []  # both came from the cache
    # an edited model is parsed again, and the cache forgets what no model holds any more
    (tmp_path / "models" / "b.sql").write_text("SELECT 2 AS x FROM raw.events")
    edited = {m.name: m.refs for m in discover_models(tmp_path, ModelsConfig())}
    assert edited["b"] == [Relation("raw", "events")] and len(calls) == 1
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())["entries"]) == 2
    # a broken cache file is ignored (and replaced); a bad model still fails with its line
    (tmp_path / CACHE_FILE).write_text("{not json")
    assert {m.name: m.refs for m in discover_models(tmp_path, ModelsConfig())} == edited
    (tmp_path / "models" / "b.sql").write_text("SELECT FROM WHERE")
    with pytest.raises(ConfigError, match="models/b.sql: line 1"):
        discover_models(tmp_path, ModelsConfig())

"""Config errors name the file, the line and the field, and suggest the nearest valid key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmill.config.load import find_project_dir, load_contract, load_project
from pgmill.errors import ConfigError


def _err(tmp_path: Path, text: str, contract: bool = False) -> str:
    name = "c.yaml" if contract else "pgmill.yaml"
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as exc:
        if contract:
            load_contract(tmp_path, name)
        else:
            load_project(tmp_path)
    return str(exc.value)


def test_unknown_key_with_suggestion_and_line(tmp_path: Path) -> None:
    msg = _err(tmp_path, "pipelines:\n  orders:\n    source: {kind: csv, path: a.csv}\n    table: t\n"
                         "    contract: c.yaml\n    mdoe: merge\n")
    assert "pgmill.yaml:6: pipelines.orders.mdoe: unknown field 'mdoe'; did you mean 'mode'?" in msg


def test_bad_enum_value(tmp_path: Path) -> None:
    msg = _err(tmp_path, "pipelines:\n  o:\n    source: {kind: csv, path: a.csv}\n    table: t\n"
                         "    contract: c.yaml\n    mode: upsert\n")
    assert "pgmill.yaml:6: pipelines.o.mode: Input should be 'append', 'replace' or 'merge'" in msg


def test_unknown_source_kind(tmp_path: Path) -> None:
    msg = _err(tmp_path, "pipelines:\n  o:\n    source: {kind: excel, path: a.xlsx}\n    table: t\n    contract: c\n")
    assert "pgmill.yaml:3: pipelines.o.source: unknown source kind" in msg
    assert "'csv'" in msg and "'http'" in msg


def test_yaml_syntax_error_points_at_line_and_column(tmp_path: Path) -> None:
    msg = _err(tmp_path, "pipelines:\n  o: [unclosed\n")
    assert msg.startswith(f"{tmp_path / 'pgmill.yaml'}:3:1: YAML syntax error")


def test_contract_unknown_type_lists_supported(tmp_path: Path) -> None:
    msg = _err(tmp_path, "columns:\n  a: {type: integr}\n", contract=True)
    assert "c.yaml:2: columns.a.type: Value error, unsupported type 'integr'; supported:" in msg
    assert "bigint" in msg


def test_contract_bad_regex_and_column_name(tmp_path: Path) -> None:
    msg = _err(tmp_path, "columns:\n  a: {type: text, regex: '(['}\n", contract=True)
    assert "columns.a.regex: Value error, regex does not compile" in msg
    msg = _err(tmp_path, "columns:\n  'b c': {type: text}\n", contract=True)
    assert "column name 'b c' is not a plain SQL identifier" in msg


def test_project_without_pipelines_is_valid(tmp_path: Path) -> None:
    (tmp_path / "pgmill.yaml").write_text("# models and queries only\n")
    assert load_project(tmp_path).pipelines == {}


def test_project_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert find_project_dir(sub) == tmp_path.resolve()


def test_database_url_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgmill.project import open_project

    (tmp_path / "pgmill.yaml").write_text("database: {url: 'postgresql://a@h/db'}\n")
    monkeypatch.setenv("PGMILL_DATABASE_URL", "postgresql://b:pw@h2/db2")
    ctx = open_project(tmp_path)
    assert ctx.target.url == "postgresql://b:pw@h2/db2" and ctx.target.display_url == "postgresql://b:***@h2/db2"
    monkeypatch.delenv("PGMILL_DATABASE_URL")
    assert open_project(tmp_path).target.url == "postgresql://a@h/db"

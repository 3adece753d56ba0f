"""Every contract rule, on every row, with the reason in words; policies quarantine, fail and warn."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from pgmill.config.spec import Contract
from pgmill.errors import ContractError
from pgmill.quality.validate import CompiledContract
from tests.helpers import ProjectDir, run_one


def _check(columns: dict[str, Any], values: dict[str, list[Any]], **extra: Any) -> dict[int, list[str]]:
    """Validate raw string values; return {row: [messages]} for the rows that broke something."""
    compiled = CompiledContract(Contract.model_validate({"columns": columns, **extra}))
    table = pa.table({k: pa.array(v, pa.string()) for k, v in values.items()})
    v = compiled.validate(table)
    assert v.good.height + len(v.bad) == table.num_rows
    return {pos: [x.message for x in viols] for pos, viols in v.bad}


@pytest.mark.parametrize(
    ("typ", "good", "bad"),
    [
        ("smallint", ["1", " -32768 ", "32767"], ["32768", "1.5", "x"]),
        ("integer", ["2147483647", "0"], ["2147483648", "1e3"]),
        ("bigint", ["9223372036854775807", "-1", " 7", "8 "], ["9223372036854775808", "one", "1 2"]),
        ("double precision", ["1.5", "-2e10", "3", " 4.5 "], ["1,5", "abc"]),
        ("numeric(5,2)", ["123.45", "-1", "1e2", ".5", " 1.5", "2 "], ["1234.5", "12a", "1.2.3", "inf", "nan"]),
        ("boolean", ["t", "FALSE", "yes", "0", "On"], ["maybe", "2"]),
        ("date", ["2024-02-29", "1999-12-31", "2024-01-02 "], ["2023-02-29", "2024/01/01", "31-12-1999"]),
        ("timestamptz", ["2024-01-02T03:04:05Z", "2024-01-02 03:04:05.123+02:00", "2024-01-02T03:04:05",
                         "2024-01-02"], ["2024-01-02T25:00:00", "yesterday"]),
        ("timestamp", ["2024-01-02 03:04:05", "2024-01-02T03:04"], ["2024-13-02 03:04:05"]),
        ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC999C0B4EF8BB6D6BB9BD380A11"], ["a0eebc99-zz"]),
        ("jsonb", ['{"a": 1}', "[1,2]", "3"], ["{a:1}", "[1,"]),
        ("varchar(3)", ["abc", "é"], ["abcd"]),
    ],
)
def test_type_casts(typ: str, good: list[str], bad: list[str]) -> None:
    broken = _check({"v": {"type": typ}}, {"v": good + bad})
    assert sorted(broken) == list(range(len(good), len(good) + len(bad))), broken


def test_padded_values_are_valid_and_typed_without_their_spaces() -> None:
    compiled = CompiledContract(Contract.model_validate({"columns": {
        "i": {"type": "bigint"}, "n": {"type": "numeric(8,2)", "min": 0}, "d": {"type": "date"},
        "t": {"type": "timestamptz"}}}))
    v = compiled.validate(pa.table({"i": [" 7", "8"], "n": ["1.50 ", "-1"], "d": [" 2024-01-02 ", "2024-01-03"],
                                    "t": [" 2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"]}))
    assert [(p, [x.message for x in viols]) for p, viols in v.bad] == [(1, ["n = '-1' is below the minimum 0"])]
    assert v.good.rows() == [(7, "1.50", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))]


def test_messages_for_each_rule() -> None:
    cols = {
        "id": {"type": "bigint", "primary_key": True},
        "name": {"type": "text", "not_null": True, "regex": "^[A-Z]", "max_length": 5},
        "status": {"type": "text", "accepted_values": ["F", "O"]},
        "amount": {"type": "numeric(8,2)", "min": 0, "max": 100},
        "day": {"type": "date", "min": "2024-01-01"},
    }
    broken = _check(cols, {
        "id": ["1", None, "3", "4", "5"],
        "name": ["Ann", "Bob", None, "lowercase", "Eve"],
        "status": ["F", "O", "F", "X", "O"],
        "amount": ["10", "-1", "100.01", "5", "7"],
        "day": ["2024-01-05", "2024-01-05", "2023-12-31", "2024-01-01", "2024-02-30"],
    })
    assert broken == {
        1: ["id is missing but is part of the primary key", "amount = '-1' is below the minimum 0"],
        2: ["name is missing but must not be null", "amount = '100.01' is above the maximum 100",
            "day = '2023-12-31' is below the minimum '2024-01-01'"],
        3: ["name = 'lowercase' does not match /^[A-Z]/", "name is 9 characters, over the limit of 5",
            "status = 'X' is not one of ['F', 'O']"],
        4: ["day = '2024-02-30' is not a valid date"],
    }


def test_row_rule_and_null_passes_like_check() -> None:
    broken = _check(
        {"total": {"type": "numeric(8,2)"}, "discount": {"type": "numeric(8,2)"}},
        {"total": ["10", "5", None], "discount": ["2", "6", "1"]},
        rules=[{"name": "discount_le_total", "expr": "discount <= total"}],
    )
    assert broken == {1: ["rule discount_le_total failed: discount <= total"]}


def test_bad_row_rule_expression_is_a_config_error() -> None:
    from pgmill.errors import ConfigError

    with pytest.raises(ConfigError, match="rule 'r': cannot parse expression"):
        CompiledContract(Contract.model_validate({"columns": {"a": {"type": "int"}},
                                                  "rules": [{"name": "r", "expr": "a >>> ("}]}))


def _orders(project: ProjectDir, contract: dict[str, Any], csv: str, **pipe: Any) -> None:
    project.contract("t", contract)
    project.write("data/t.csv", csv)
    spec = {"source": {"kind": "csv", "path": "data/t.csv"}, "table": "t", "contract": "contracts/t.yaml"}
    spec.update(pipe)
    project.config({"t": spec})


def test_policy_fail_stops_the_run_naming_file_line_column_rule(project: ProjectDir) -> None:
    _orders(project, {"columns": {"id": {"type": "int", "primary_key": True},
                                        "v": {"type": "int", "min": 0, "on_failure": "fail"}}},
                  "id,v\n1,5\n2,-3\n")
    with pytest.raises(ContractError) as exc:
        run_one()
    assert str(exc.value) == "data/t.csv:line 3: v = '-3' is below the minimum 0 [rule v.min, policy fail]"
    assert project.scalar("SELECT count(*) FROM t") == 0  # nothing of the batch is committed
    assert project.scalar("SELECT error FROM pgmill.runs") == str(exc.value)


def test_policy_warn_loads_and_counts(project: ProjectDir) -> None:
    _orders(project, {"columns": {"id": {"type": "int", "primary_key": True},
                                        "v": {"type": "int", "min": 0, "on_failure": "warn"}}},
                  "id,v\n1,5\n2,-3\n3,x\n")
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_warned, run.counts.rows_quarantined) == (2, 1, 1)


def test_extra_columns_policies(project: ProjectDir) -> None:
    contract = {"columns": {"id": {"type": "int", "primary_key": True}}, "extra_columns": "quarantine"}
    _orders(project, contract, "id,surprise\n1,\n2,boo\n")
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (1, 1)
    assert project.scalar("SELECT violations->0->>'rule' FROM pgmill.quarantine") == "extra_column"


def test_source_name_mapping(project: ProjectDir) -> None:
    _orders(project, {"columns": {"id": {"type": "int", "primary_key": True, "source": "Order ID"}}},
                  "Order ID\n7\n")
    run_one()
    assert project.scalar("SELECT id FROM t") == 7


def test_extra_columns_evolve_adds_text_columns(project: ProjectDir) -> None:
    contract = {"columns": {"id": {"type": "int", "primary_key": True}}, "extra_columns": "evolve"}
    _orders(project, contract, "id,colour\n1,red\n2,\n", mode="merge")
    run = run_one()
    assert run.counts.rows_inserted == 2
    assert project.query("SELECT id, colour FROM t ORDER BY 1") == [(1, "red"), (2, None)]
    project.write("data/t.csv", "id,colour,size\n1,blue,L\n3,green,\n")
    run_one()
    assert project.query("SELECT id, colour, size FROM t ORDER BY 1") == [
        (1, "blue", "L"), (2, None, None), (3, "green", None)]
    assert project.scalar("SELECT data_type FROM information_schema.columns WHERE table_name = 't'"
                          " AND column_name = 'size'") == "text"

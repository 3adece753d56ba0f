"""Malformed CSV never costs a load: each defect is a clear error or quarantined rows with their lines."""

from __future__ import annotations

import pytest

from pgmill.errors import ContractError
from tests.helpers import ORDERS_HEADER, ProjectDir, orders_csv, run_one

GOOD = [(i, 10 + i, "F", f"{i}.50", f"2024-01-0{1 + i % 9}", "2024-02-01T00:00:00Z") for i in range(1, 6)]


def _run(project: ProjectDir, mode: str = "append", **kw: object) -> object:
    project.orders_pipeline(mode=mode, **kw)
    return run_one()


def _quarantine(project: ProjectDir) -> list[tuple[str, str | None, str]]:
    return project.query(
        "SELECT source_location, raw_text, violations->0->>'message' FROM pgmill.quarantine ORDER BY id"
    )


def test_ragged_rows_are_quarantined_with_line_and_text(project: ProjectDir) -> None:
    text = orders_csv(GOOD[:2]) + "3,13,F,3.50\n" + "4,14,F,4.50,2024-01-04,2024-02-01T00:00:00Z,extra\n"
    project.write("data/orders.csv", text + orders_csv(GOOD[4:], header="").lstrip("\n"))
    run = _run(project)
    assert run.counts.rows_read == 5 and run.counts.rows_inserted == 3 and run.counts.rows_quarantined == 2
    q = _quarantine(project)
    assert q == [
        ("data/orders.csv:line 4", "3,13,F,3.50", "has 4 fields, expected 6"),
        ("data/orders.csv:line 5", "4,14,F,4.50,2024-01-04,2024-02-01T00:00:00Z,extra", "has 7 fields, expected 6"),
    ]


def test_unterminated_quote_costs_its_own_line(project: ProjectDir) -> None:
    text = orders_csv(GOOD[:2]) + '3,13,"F,3.50,2024-01-03,2024-02-01T00:00:00Z\n4,14,F,4.50,2024-01-04,x\n'
    project.write("data/orders.csv", text)
    run = _run(project)
    assert run.counts.rows_inserted == 2
    assert run.counts.rows_quarantined == 2
    (loc, raw, msg), (loc2, _, msg2) = _quarantine(project)
    assert (loc, raw) == ("data/orders.csv:line 4", '3,13,"F,3.50,2024-01-03,2024-02-01T00:00:00Z')
    assert "unterminated quote" in msg
    # nothing lost: the next line is read on its own, and quarantined for its own fault
    assert loc2 == "data/orders.csv:line 5" and "updated_at" in msg2


def test_truncated_last_line(project: ProjectDir) -> None:
    text = orders_csv(GOOD[:3]) + "4,14,F,4.5"  # the writer died mid-line
    project.write("data/orders.csv", text)
    run = _run(project)
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (3, 1)
    assert _quarantine(project)[0][:2] == ("data/orders.csv:line 5", "4,14,F,4.5")


def test_wrong_encoding_is_quarantined_per_row_and_latin1_loads(project: ProjectDir) -> None:
    rows = orders_csv(GOOD[:2]).encode() + b"3,13,F,3.50,2024-01-03,2024-02-01T00:00:00Z\n"
    bad = "9,19,Fé,1,2024-01-03,2024-02-01T00:00:00Z\n".encode("latin-1")
    project.write("data/orders.csv", rows + bad)
    run = _run(project)
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (3, 1)
    [(loc, raw, msg)] = _quarantine(project)
    assert loc == "data/orders.csv:line 5"
    assert msg == "column status is not valid utf-8; set `encoding` on the source"
    assert raw is not None and raw.startswith("9,19,F")


def test_latin1_file_with_encoding_setting(project: ProjectDir) -> None:
    project.contract("orders", {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                                            "name": {"type": "text", "not_null": True}}})
    project.write("data/c.csv", "order_id,name\n1,Zoë\n2,Müller\n".encode("latin-1"))
    project.config({"orders": {"source": {"kind": "csv", "path": "data/c.csv", "encoding": "latin-1"},
                               "table": "orders", "contract": "contracts/orders.yaml"}})
    run = run_one()
    assert run.counts.rows_inserted == 2
    assert project.query("SELECT name FROM orders ORDER BY 1") == [("Müller",), ("Zoë",)]


def test_ten_megabyte_field(project: ProjectDir) -> None:
    project.contract("orders", {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                                            "note": {"type": "text"}}})
    big = "x" * (10 * 1024 * 1024)
    project.write("data/n.csv", f"order_id,note\n1,short\n2,{big}\n3,\"quoted, {big[:1000]}\"\n")
    project.config({"orders": {"source": {"kind": "csv", "path": "data/n.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml", "batch_rows": 2}})
    run = run_one()
    assert run.counts.rows_inserted == 3
    assert project.query("SELECT order_id, length(note) FROM orders ORDER BY 1") == [
        (1, 5), (2, 10 * 1024 * 1024), (3, 1008)]


def test_empty_file_and_header_only_file_load_nothing_and_are_remembered(project: ProjectDir) -> None:
    project.write("data/orders1.csv", "")
    project.write("data/orders2.csv", ORDERS_HEADER + "\n")
    run = _run(project)
    assert run.counts.rows_read == 0 and run.status == "succeeded"
    assert project.scalar("SELECT count(*) FROM pgmill.files WHERE complete") == 2
    project.write("data/orders3.csv", orders_csv(GOOD[:1]))
    run2 = run_one()
    assert run2.counts.rows_read == 1


def test_header_that_does_not_match_the_contract_is_a_clear_error(project: ProjectDir) -> None:
    project.write("data/orders.csv", "id,customer,status\n1,2,F\n")
    project.orders_pipeline(mode="append")
    with pytest.raises(ContractError) as exc:
        run_one()
    msg = str(exc.value)
    assert "data/orders.csv" in msg and "order_id" in msg and "customer_id" in msg and "it has: id, customer, status" in msg
    assert project.scalar("SELECT count(*) FROM orders") == 0
    assert project.scalar("SELECT status FROM pgmill.runs") == "failed"


def test_bom_and_crlf_and_header_order(project: ProjectDir) -> None:
    text = "\ufeffstatus,order_id,customer_id,total,ordered_at,updated_at\r\nF,1,10,1.00,2024-01-01,\r\nO,2,11,2.00,2024-01-02,\r\n"
    project.write("data/orders.csv", text.encode("utf-8"))
    run = _run(project)
    assert run.counts.rows_inserted == 2
    assert project.query("SELECT order_id, status FROM orders ORDER BY 1") == [(1, "F"), (2, "O")]


def test_types_that_drift_between_files(project: ProjectDir) -> None:
    project.write("data/orders1.csv", orders_csv(GOOD[:2]))
    # the second export switched to decimals in ids, US dates and text amounts
    project.write("data/orders2.csv", orders_csv([
        ("3.0", 13, "F", "3.50", "2024-01-03", ""),
        (4, 14, "F", "four", "2024-01-04", ""),
        (5, 15, "F", "5.00", "01/05/2024", ""),
        (6, 16, "F", " 6.00 ", "2024-01-06", ""),
    ]))
    run = _run(project)
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (3, 3)
    msgs = [m for _, _, m in _quarantine(project)]
    assert msgs == ["order_id = '3.0' is not a valid bigint", "total = 'four' is not a valid numeric(12,2)",
                    "ordered_at = '01/05/2024' is not a valid date"]


def test_multiline_quoted_values_keep_physical_line_numbers(project: ProjectDir) -> None:
    project.contract("orders", {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                                            "note": {"type": "text", "max_length": 5}}})
    project.write("data/n.csv", 'order_id,note\n1,"a\nb"\n2,"c\n\nd"\n3,toolong\n4,ok\n')
    project.config({"orders": {"source": {"kind": "csv", "path": "data/n.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml"}})
    run = run_one()
    assert run.counts.rows_inserted == 3
    assert project.query("SELECT note FROM orders ORDER BY order_id") == [("a\nb",), ("c\n\nd",), ("ok",)]
    assert _quarantine(project)[0][0] == "data/n.csv:line 7"


def test_nul_bytes_and_control_characters_do_not_break_quarantine(project: ProjectDir) -> None:
    project.write("data/orders.csv", orders_csv(GOOD[:1]).encode() + b"2,\x00,F,1,2024-01-01,\n")
    run = _run(project)
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (1, 1)


def test_quarantine_keeps_tabs_backslashes_and_newlines_exactly(project: ProjectDir) -> None:
    ragged = '7,17,F\t\\N,"two\nlines \\ and \\\\",ü'
    project.write("data/orders.csv", orders_csv(GOOD[:1]) + ragged + "\n")
    run = _run(project)
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (1, 1)
    [(loc, raw, _msg)] = _quarantine(project)
    assert loc == "data/orders.csv:line 3" and raw == ragged

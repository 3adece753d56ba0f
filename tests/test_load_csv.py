"""CSV loads end to end: every row lands in the table or in quarantine, with its line and reasons."""

from __future__ import annotations

from tests.helpers import ProjectDir, orders_csv, run_one


def test_merge_load_accounts_for_every_row(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", cursor="updated_at")
    project.write("data/orders1.csv", orders_csv([
        (1, 10, "F", "12.50", "2024-01-01", "2024-01-01T10:00:00Z"),
        (2, 11, "X", "5.00", "2024-01-02", "2024-01-02T10:00:00Z"),
        (3, None, "O", "-1", "2024-01-03", "2024-01-03T10:00:00Z"),
        (1, 10, "O", "13.50", "2024-01-01", "2024-01-05T10:00:00Z"),
    ]))
    run = run_one()
    c = run.counts
    assert (c.rows_read, c.rows_inserted, c.rows_quarantined, c.rows_duplicate) == (4, 1, 2, 1)
    assert project.query("SELECT order_id, status, total::text FROM orders") == [(1, "O", "13.50")]
    q = project.query("SELECT source_location, violations FROM pgmill.quarantine ORDER BY source_location")
    assert [r[0] for r in q] == ["data/orders1.csv:line 3", "data/orders1.csv:line 4"]
    assert q[0][1] == [{"column": "status", "rule": "accepted_values",
                        "message": "status = 'X' is not one of ['F', 'O', 'P']"}]
    assert {v["rule"] for v in q[1][1]} == {"not_null", "min"}

"""The reader role reads and cannot write; the loader role writes."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import ProjectDir, orders_csv, run_one


def test_reader_reads_loader_writes(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append")
    project.write("data/orders.csv", orders_csv([(1, 2, "F", "1.00", "2024-01-01", None)]))
    run_one()
    with project.connect() as c:
        c.execute("SET ROLE pgmill_reader")
        assert c.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM pgmill.runs").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM orders")
        c.execute("RESET ROLE")
        c.execute("SET ROLE pgmill_loader")
        c.execute("INSERT INTO orders VALUES (2, 3, 'F', 1, '2024-01-01', NULL)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DROP TABLE orders")

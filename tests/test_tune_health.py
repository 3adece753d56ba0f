"""Index health: unused, duplicate, prefix-redundant and invalid indexes; utilization."""

from __future__ import annotations

from pathlib import Path

from pgmill.db.embedded import EmbeddedServer
from pgmill.errors import ConfigError
from pgmill.tune.health import index_health
from pgmill.tune.workload import parse_query_file
from tests.helpers import connect
from tests.pg15 import seeded


def test_findings(pg_server: EmbeddedServer) -> None:
    url = seeded(pg_server.url())
    with connect(url) as conn:
        conn.execute("CREATE INDEX o_cust ON app.orders (customer_id)")
        conn.execute("CREATE INDEX o_cust_2 ON app.orders (customer_id)")
        conn.execute("CREATE INDEX o_cust_created ON app.orders (customer_id, created_at)")
        conn.execute("CREATE INDEX o_shop ON app.orders (shop_id)")
        conn.execute("SELECT count(*) FROM app.orders WHERE shop_id = 3")
        conn.execute("SELECT pg_stat_force_next_flush()")
        h = index_health(conn)
    kinds = {(f.kind, f.index.split(".")[1]) for f in h.findings}
    assert ("duplicate", "o_cust_2") in kinds
    assert ("redundant", "o_cust") in kinds or ("redundant", "o_cust_2") in kinds
    assert ("unused", "o_cust_created") in kinds
    assert ("unused", "o_shop") not in kinds
    assert h.utilization_scans is not None and 0 < h.utilization_scans <= 1
    assert h.pgmill_indexes == 0 and h.utilization_pgmill is None


def test_query_file_header(tmp_path: Path) -> None:
    p = tmp_path / "q.sql"
    p.write_text("-- name: q1\n-- a note for readers: not a key\n-- params:\n--   - [1, '2024-01-01']\n"
                 "-- target_ms: 20\nSELECT * FROM t WHERE a = $1 AND b >= $2;\n")
    q, params_sql = parse_query_file(p, 100)
    assert (q.name, q.params, q.target_ms, params_sql) == ("q1", [[1, "2024-01-01"]], 20.0, None)
    p.write_text("-- target_mss: 20\nSELECT 1\n")
    try:
        parse_query_file(p, 100)
    except ConfigError as exc:
        assert "did you mean 'target_ms'" in str(exc)
    else:
        raise AssertionError("a misspelt header key must be an error")
    p.write_text("-- params: [[1]]\nSELECT * FROM t WHERE a = $1 AND b = $2\n")
    try:
        parse_query_file(p, 100)
    except ConfigError as exc:
        assert "uses 2" in str(exc)
    else:
        raise AssertionError("a parameter set of the wrong length must be an error")

"""Table checks inside Postgres: each rule on seeded defects with known counts, thresholds and severities,
history across runs (a volume anomaly is flagged), foreign keys, freshness and custom SQL."""

from __future__ import annotations

from typing import Any

import pytest

from pgmill.config.checks import TableChecks
from pgmill.errors import ConfigError
from pgmill.project import open_project
from pgmill.quality.checks import run_checks
from pgmill.quality.groups import compile_groups
from pgmill.quality.results import CheckReport, QualityCheckFailed, RuleResult
from pgmill.quality.rules import flatten
from pgmill.quality.table_info import table_info
from tests.helpers import ProjectDir

ORDER_COLUMNS = {
    "order_id": {"type": "bigint"},
    "customer_id": {"type": "bigint"},
    "status": {"type": "text"},
    "total": {"type": "numeric(12,2)"},
    "discount": {"type": "numeric(12,2)"},
    "ordered_at": {"type": "date"},
    "updated_at": {"type": "timestamptz"},
}

# 1000 orders with known defects, then 4 more rows: orders 500 and 501 copied exactly, 600 and 601 copied
# with another status. n = 1004.
SEED = """
CREATE TABLE public.customers (customer_id bigint, name text);
INSERT INTO public.customers SELECT i, 'c' || i FROM generate_series(1, 100) i;
CREATE TABLE public.orders (order_id bigint, customer_id bigint, status text, total numeric(12,2),
                            discount numeric(12,2), ordered_at date, updated_at timestamptz);
INSERT INTO public.orders SELECT i,
    CASE WHEN i <= 10 THEN NULL WHEN i BETWEEN 11 AND 25 THEN 999 ELSE 1 + i % 100 END,
    CASE WHEN i BETWEEN 101 AND 120 THEN 'X' WHEN i BETWEEN 121 AND 125 THEN NULL ELSE 'F' END,
    CASE WHEN i BETWEEN 201 AND 207 THEN -1 WHEN i BETWEEN 208 AND 210 THEN 20000 ELSE 100 END,
    CASE WHEN i BETWEEN 301 AND 306 THEN 500 ELSE 0 END,
    date '2024-01-01' + i % 300,
    now() - interval '3 days' - i * interval '1 minute'
  FROM generate_series(1, 1000) i;
INSERT INTO public.orders SELECT * FROM public.orders WHERE order_id IN (500, 501);
INSERT INTO public.orders SELECT order_id, customer_id, 'O', total, discount, ordered_at, updated_at
  FROM public.orders WHERE order_id IN (600, 601);
"""

CHECKS: dict[str, Any] = {
    "unique": ["order_id"],
    "not_null": ["customer_id"],
    "completeness": {"customer_id": 95, "status": 99.9},
    "accepted_values": {"status": {"values": ["F", "O", "P"], "threshold": 99, "severity": "warn"}},
    "ranges": {"total": {"min": 0, "max": 10000}},
    "foreign_keys": {"customer_id": {"references": "public.customers(customer_id)", "threshold": 99}},
    "freshness": {"column": "updated_at", "max_age": "1 day", "severity": "warn"},
    "duplicates": {"exact_rows": True},
    "sql": [{"name": "discount_above_total", "threshold": 95,
             "query": "SELECT order_id FROM public.orders WHERE discount > total;"}],
}


def _project(project: ProjectDir, checks: dict[str, Any], table: str = "public.orders",
             columns: dict[str, Any] | None = None, name: str = "orders", **pipeline: Any) -> None:
    project.contract(name, {"columns": columns or ORDER_COLUMNS, "checks": checks})
    project.config({name: {"source": {"kind": "csv", "path": "data/*.csv"}, "table": table,
                           "contract": f"contracts/{name}.yaml", **pipeline}})


def _seed(project: ProjectDir, text: str) -> None:
    project.execute(text.encode())


def _by_rule(report: CheckReport) -> dict[str, RuleResult]:
    return {r.rule: r for r in report.results}


def test_each_rule_finds_its_seeded_defects(project: ProjectDir) -> None:
    _seed(project, SEED)
    _project(project, CHECKS)
    report = run_checks(open_project())
    r = _by_rule(report)
    got = {name: (res.rows_checked, res.rows_failed, res.status) for name, res in r.items()}
    assert got == {
        "unique(order_id)": (1004, 4, "fail"),
        "not_null(customer_id)": (1004, 10, "fail"),
        "completeness(customer_id)": (1004, 10, "pass"),  # 99.0% >= 95%
        "completeness(status)": (1004, 5, "fail"),  # 99.5% < 99.9%
        "accepted_values(status)": (1004, 20, "warn"),  # 98.0% < 99%, severity warn
        "range(total)": (1004, 10, "fail"),
        "foreign_key(customer_id)": (1004, 15, "fail"),  # NULL customer_id passes, 999 has no customer
        "freshness(updated_at)": (1, 1, "warn"),
        "row_count": (1, 0, "pass"),
        "exact_rows": (1004, 2, "fail"),
        # rows 301-306 (discount 500 > total 100) and 201-207 (discount 0 > total -1)
        "discount_above_total": (1004, 13, "pass"),
    }
    assert r["completeness(customer_id)"].pass_rate == pytest.approx(99.004, abs=0.001)
    assert r["accepted_values(status)"].pass_rate == pytest.approx(98.008, abs=0.001)
    assert r["unique(order_id)"].detail == {"groups": 4}
    assert sorted(s["order_id"] for s in r["unique(order_id)"].sample) == [500, 501, 600, 601]
    assert {s["rows"] for s in r["unique(order_id)"].sample} == {2}
    assert sorted(s["row"].split(",")[0] for s in r["exact_rows"].sample) == ["(500", "(501"]
    # without a key the sample is whole rows: the first and the last failing one
    assert [s["status"] for s in r["accepted_values(status)"].sample] == ["X", "X"]
    assert r["range(total)"].message.startswith("10 of 1,004 rows out of range")
    assert "newest updated_at is" in r["freshness(updated_at)"].message
    assert r["freshness(updated_at)"].value == pytest.approx(3 * 86400 + 60, abs=120)
    assert r["row_count"].value == 1004 and r["row_count"].detail
    assert dict(r["row_count"].detail["non_null"])["status"] == 1004 - 5
    assert len(r["discount_above_total"].sample) == 10
    assert not report.ok and report.failed_tables == ["public.orders"]
    with pytest.raises(QualityCheckFailed, match="unique\\(order_id\\)"):
        report.raise_for_failures()
    # and every result is in the history table, queryable
    stored = project.query(
        "SELECT rule, rows_checked, rows_failed, pass_rate::float8, threshold::float8, severity, status"
        " FROM pgmill.quality_results WHERE run_id = %s ORDER BY id", (report.run_id,))
    assert len(stored) == len(r)
    [fk] = [s for s in stored if s[0] == "foreign_key(customer_id)"]
    assert fk[1:3] == (1004, 15) and fk[3] == pytest.approx(98.506, abs=0.001)
    assert fk[4:] == (99.0, "error", "fail")


def test_thresholds_and_severities_decide_the_verdict(project: ProjectDir) -> None:
    _seed(project, SEED)
    # the same defects, lenient thresholds and warn severities: the run passes, with warnings
    _project(project, {
        "severity": "warn",
        "not_null": {"customer_id": {"threshold": 99}},
        "ranges": {"total": {"min": 0, "threshold": 99}},
        "foreign_keys": {"customer_id": "customers(customer_id)"},
        "freshness": {"column": "updated_at", "max_age": "4 days", "severity": "error"},
    })
    report = run_checks(open_project())
    r = _by_rule(report)
    assert r["not_null(customer_id)"].status == "pass"  # 99.004% >= 99%
    assert r["range(total)"].status == "pass" and r["range(total)"].rows_failed == 7  # only the minimum
    assert r["foreign_key(customer_id)"].status == "warn" and r["foreign_key(customer_id)"].threshold == 100
    assert r["freshness(updated_at)"].status == "pass"
    assert report.ok and report.warnings and not report.failures
    report.raise_for_failures()


def test_unique_key_guaranteed_by_an_index_is_not_scanned(project: ProjectDir) -> None:
    _seed(project, """
        CREATE TABLE public.items (order_id bigint NOT NULL, line_no int NOT NULL, sku text,
                                   PRIMARY KEY (order_id, line_no));
        INSERT INTO public.items SELECT i / 3, i % 3, CASE WHEN i % 50 = 0 THEN 'A' ELSE 's' || i END
          FROM generate_series(1, 600) i;
    """)
    _project(project, {"unique": [["order_id", "line_no"], "sku"], "duplicates": {"exact_rows": True}},
             table="items", columns={"order_id": {"type": "bigint", "primary_key": True},
                                     "line_no": {"type": "integer", "primary_key": True},
                                     "sku": {"type": "text"}}, name="items")
    r = _by_rule(run_checks(open_project()))
    assert r["unique(order_id, line_no)"].message == "guaranteed by a unique index on (order_id, line_no)"
    assert r["exact_rows"].status == "pass" and "unique index" in r["exact_rows"].message
    # sku repeats: 'A' on 12 rows -> 1 group, 11 extra rows, sampled by the table's primary key
    sku = r["unique(sku)"]
    assert (sku.rows_checked, sku.rows_failed, sku.detail) == (600, 11, {"groups": 1})
    assert sku.sample == [{"sku": "A", "rows": 12}]


def test_null_keys_are_not_duplicates(project: ProjectDir) -> None:
    _seed(project, """
        CREATE TABLE public.t (a int, b int);
        INSERT INTO public.t VALUES (1, NULL), (1, NULL), (NULL, 2), (NULL, 2), (3, 3), (3, 3), (4, 4);
    """)
    _project(project, {"unique": [["a", "b"], "a"]}, table="t",
             columns={"a": {"type": "integer"}, "b": {"type": "integer"}}, name="t")
    r = _by_rule(run_checks(open_project()))
    assert r["unique(a, b)"].rows_failed == 1  # (3, 3) twice; rows with a NULL in the key are not compared
    assert r["unique(a)"].rows_failed == 2 and r["unique(a)"].detail == {"groups": 2}


def test_volume_anomaly_is_flagged_against_the_tables_history(project: ProjectDir) -> None:
    _seed(project, "CREATE TABLE public.events (id bigserial, kind text)")
    _project(project, {"volume": {"runs": 5, "k": 3, "min_runs": 3, "severity": "warn"}, "row_count": {"min": 1}},
             table="events", columns={"id": {"type": "bigint"}, "kind": {"type": "text"}}, name="events")
    ctx = open_project()
    statuses = []
    for added in (100, 104, 96, 101, 99, 5000, 102):
        project.execute("INSERT INTO public.events (kind) SELECT 'k' FROM generate_series(1, %s)", (added,))
        v = _by_rule(run_checks(ctx))["volume"]
        statuses.append((v.status, v.value))
    # a change needs two past counts: runs 1-4 have seen 0, 0, 1 and 2 changes, still learning
    assert statuses[:4] == [("skipped", None)] * 4
    assert statuses[4] == ("pass", 99.0)
    assert statuses[5] == ("warn", 5000.0)  # far outside median +- 3 MAD of 104, 96, 101, 99
    assert statuses[6][0] == "pass"  # back to normal: the median resists the one outlier
    history = project.query(
        "SELECT value FROM pgmill.quality_results WHERE table_name = 'public.events' AND kind = 'row_count'"
        " ORDER BY run_id")
    assert [int(v) for (v,) in history] == [100, 204, 300, 401, 500, 5500, 5602]
    flagged = project.scalar(
        "SELECT message FROM pgmill.quality_results WHERE kind = 'volume' AND status = 'warn'")
    assert flagged.startswith("+5,000 rows since the last check; usual")


def test_freshness_defaults_to_the_pipeline_cursor(project: ProjectDir) -> None:
    _seed(project, "CREATE TABLE public.orders (order_id bigint, updated_at timestamptz);"
                   "INSERT INTO public.orders VALUES (1, now() - interval '2 hours'), (2, NULL)")
    _project(project, {"freshness": {"max_age": "3 hours"}}, cursor="updated_at",
             columns={"order_id": {"type": "bigint"}, "updated_at": {"type": "timestamptz"}})
    fresh = _by_rule(run_checks(open_project()))["freshness(updated_at)"]
    assert fresh.status == "pass" and fresh.value == pytest.approx(7200, abs=60)
    _seed(project, "DELETE FROM public.orders WHERE updated_at IS NOT NULL")
    stale = _by_rule(run_checks(open_project()))["freshness(updated_at)"]
    assert stale.status == "fail" and stale.message == "no updated_at value at all: nothing is fresh"


def test_broken_rules_fail_alone_and_by_name(project: ProjectDir) -> None:
    _seed(project, SEED)
    _project(project, {
        "not_null": ["custmer_id", "status"],
        "accepted_values": {"order_id": ["one", "two"]},  # text for a bigint column: Postgres refuses it
        "ranges": {"total": {"min": 0}},
        "foreign_keys": {"customer_id": "public.clients(id)"},
        "sql": [{"name": "bad_sql", "query": "SELECT nope FROM public.orders"},
                {"name": "good_sql", "query": "SELECT * FROM public.orders WHERE total < 0"}],
    })
    report = run_checks(open_project())
    r = _by_rule(report)
    assert r["not_null(custmer_id)"].status == "error"
    assert "did you mean 'customer_id'?" in r["not_null(custmer_id)"].message
    assert r["accepted_values(order_id)"].status == "error"
    assert "invalid input syntax for type bigint" in r["accepted_values(order_id)"].message
    assert r["foreign_key(customer_id)"].message == "the parent table public.clients does not exist"
    assert r["bad_sql"].status == "error" and 'column "nope" does not exist' in r["bad_sql"].message
    # the rest ran normally
    assert (r["not_null(status)"].rows_failed, r["range(total)"].rows_failed, r["good_sql"].rows_failed) == (5, 7, 7)
    assert not report.ok


def test_custom_sql_cannot_write(project: ProjectDir) -> None:
    _seed(project, SEED + "CREATE SEQUENCE public.s;")
    _project(project, {"sql": [{"name": "sneaky", "query": "SELECT nextval('public.s') FROM public.orders"}]})
    r = _by_rule(run_checks(open_project()))["sneaky"]
    assert r.status == "error" and "read-only transaction" in r.message
    assert r.message == "the query failed: cannot execute nextval() in a read-only transaction"


def test_missing_table_and_table_selection(project: ProjectDir) -> None:
    _project(project, {"not_null": ["order_id"]}, table="shop.nowhere")
    ctx = open_project()
    report = run_checks(ctx, ["nowhere"])
    [res] = report.results
    assert (res.rule, res.status, res.message) == ("table", "error", "table shop.nowhere does not exist")
    with pytest.raises(ConfigError, match="no table or pipeline named 'other'"):
        run_checks(ctx, ["other"])


def test_contract_checks_are_validated_with_file_and_line(project: ProjectDir) -> None:
    from pgmill.config.load import load_contract

    project.write("contracts/bad.yaml", "columns:\n  a: {type: text}\nchecks:\n  uniqe: [a]\n")
    with pytest.raises(ConfigError, match="bad.yaml:4: checks.uniqe: unknown field 'uniqe'; did you mean 'unique'"):
        load_contract(project.path, "contracts/bad.yaml")
    project.write("contracts/bad.yaml", "columns:\n  a: {type: text}\nchecks:\n  foreign_keys: {a: customers.id}\n")
    with pytest.raises(ConfigError, match="is not 'schema.table\\(column\\)'"):
        load_contract(project.path, "contracts/bad.yaml")
    project.write("contracts/bad.yaml", "columns:\n  a: {type: text}\nchecks:\n  freshness: {max_age: soon}\n")
    with pytest.raises(ConfigError, match="is not an age such as"):
        load_contract(project.path, "contracts/bad.yaml")


def test_whole_row_duplicates_compare_values_and_read_their_sample_back(project: ProjectDir) -> None:
    # every column type hashable: rows group by a hash of their values, so equal values are duplicates
    # even when their text differs (numeric 1.0 and 1.00, jsonb spacing); NULLs group together
    _seed(project, """
        CREATE TABLE public.events (id bigint, amount numeric, payload jsonb, tags text[]);
        INSERT INTO public.events VALUES (1, 1.0, '{"a": 1}', '{x}'), (1, 1.00, '{"a":1}', '{x}'),
            (2, 2, NULL, NULL), (2, 2, NULL, NULL), (2, 2, NULL, NULL), (3, 3, '{"a": 2}', '{y}'),
            (3, 3, '{"a": 2}', '{z}');
        CREATE TABLE public.docs (id bigint, body json);
        INSERT INTO public.docs VALUES (1, '{"a": 1}'), (1, '{"a": 1}'), (1, '{"a":1}'), (2, '{}');
    """)
    _project(project, {"duplicates": {"exact_rows": True}}, table="public.events",
             columns={"id": {"type": "bigint"}}, name="events")
    events = _by_rule(run_checks(open_project()))["exact_rows"]
    assert (events.rows_checked, events.rows_failed, events.detail) == (7, 3, {"groups": 2})
    assert sorted((s["row"], s["rows"]) for s in events.sample) == [
        ('(1,1.0,"{""a"": 1}",{x})', 2), ("(2,2,,)", 3)]  # the first row of each group, as stored
    # a view has no row addresses: the sample is each group's smallest row text, the same rows here
    _seed(project, "CREATE VIEW public.events_v AS SELECT * FROM public.events")
    _project(project, {"duplicates": {"exact_rows": True}}, table="public.events_v",
             columns={"id": {"type": "bigint"}}, name="events_v")
    on_view = _by_rule(run_checks(open_project()))["exact_rows"]
    assert (on_view.rows_failed, on_view.detail) == (3, {"groups": 2})
    assert sorted((s["row"], s["rows"]) for s in on_view.sample) == sorted((s["row"], s["rows"]) for s in events.sample)
    # json has no hash (nor '='): such a table groups by the MD5 of each row's text, so spacing counts
    _project(project, {"duplicates": {"exact_rows": True}}, table="public.docs",
             columns={"id": {"type": "bigint"}}, name="docs")
    docs = _by_rule(run_checks(open_project()))["exact_rows"]
    assert (docs.rows_checked, docs.rows_failed, docs.detail) == (4, 1, {"groups": 1})
    assert [(s["row"], s["rows"]) for s in docs.sample] == [('(1,"{""a"": 1}")', 2)]
    with project.connect() as conn:
        rule = flatten(TableChecks.model_validate({"duplicates": {"exact_rows": True}}))
        queries = {t: compile_groups(table_info(conn, t), rule).query.as_string(conn)  # type: ignore[arg-type,union-attr]
                   for t in ("public.events", "public.docs")}
    assert "hash_record_extended" in queries["public.events"] and "md5" not in queries["public.events"]
    assert "md5" in queries["public.docs"] and "hash_record_extended" not in queries["public.docs"]


# keys out of order on disk (i * 7 % 1000), a third of `note` and two of `qty` missing
_ITEMS_ROWS = (" note text, qty int); INSERT INTO public.items SELECT {}, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n' END,"
               " CASE WHEN i % 500 = 0 THEN NULL ELSE i END FROM generate_series(1, 999) i")
_ITEMS = {
    "bigint": "CREATE TABLE public.items (k bigint," + _ITEMS_ROWS.format("i * 7 % 1000"),
    "numeric(12,2)": "CREATE TABLE public.items (k numeric(12,2)," + _ITEMS_ROWS.format("(i * 7 % 1000) / 8.0"),
    "text": "CREATE TABLE public.items (k text," + _ITEMS_ROWS.format("'k' || (i * 7 % 1000)"),
    "date": "CREATE TABLE public.items (k date," + _ITEMS_ROWS.format("date '2020-01-01' + (i * 7 % 1000)"),
}


@pytest.mark.parametrize("key_type", list(_ITEMS))
def test_null_rule_samples_by_typed_key_equal_the_jsonb_ones(project: ProjectDir, monkeypatch: pytest.MonkeyPatch,
                                                          key_type: str) -> None:
    # not_null and completeness sample their first and last failing keys from min/max of the key column itself;
    # the result must be what min/max over the jsonb arrays gave
    import pgmill.quality.scan as scan

    _seed(project, _ITEMS[key_type])
    project.contract("items", {"columns": {"k": {"type": key_type, "primary_key": True}},
                               "checks": {"completeness": {"note": 50}, "not_null": ["qty"]}})
    project.config({"items": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "public.items",
                              "contract": "contracts/items.yaml"}})

    def results() -> dict[str, tuple[int, list[Any]]]:
        return {r.rule: (r.rows_failed, r.sample) for r in run_checks(open_project()).results}

    fast = results()
    monkeypatch.setattr(scan, "_null_rule_sample", lambda *a: None)
    assert fast == results()
    assert fast["completeness(note)"][0] == 333 and len(fast["completeness(note)"][1]) == 2
    assert fast["not_null(qty)"][0] == 1 and len(fast["not_null(qty)"][1]) == 1
    # and the fast path was taken (its SQL differs from the arrays')
    with project.connect() as conn:
        info = table_info(conn, "public.items")
        assert info is not None
        info.sample_key = ("k",)
        monkeypatch.undo()
        rules = flatten(TableChecks.model_validate({"completeness": {"note": 50}}))
        assert "to_jsonb(min(" in scan.compile_aggregate(conn, info, rules).query.as_string(conn)

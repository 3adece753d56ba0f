"""The HTML quality report of the demo shop: self-contained, and it opens in a real headless Chromium with a
section per table (Debian's `chromium`; CI installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pgmill.demo.project import write_demo_project
from pgmill.ingest.runner import run_pipelines
from pgmill.project import open_project
from pgmill.quality.checks import run_checks
from pgmill.quality.report import write_report
from tests.helpers import ProjectDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

DEMO_CHECKS = {
    "customers": """
checks:
  unique: [customer_id, email]
  not_null: [email]
  completeness: {country: 99}
  accepted_values: {segment: [consumer, business, enterprise]}
  duplicates:
    exact_rows: true
    near: {columns: [full_name, country], similarity: 0.9, threshold: 50, severity: warn}
""",
    "products": """
checks:
  unique: [sku]
  ranges: {price: {min: 0, max: 1000}}
  freshness: {max_age: 36500 days}
""",
    "orders": """
checks:
  foreign_keys: {customer_id: shop.customers(customer_id)}
  ranges: {total: {min: 0}}
  completeness: {coupon_code: 50, client_ip: {threshold: 90, severity: warn}}
  volume: {runs: 5, severity: warn}
  sql:
    - name: discount_not_above_total
      query: SELECT order_id, discount, total FROM shop.orders WHERE discount > total
""",
    "order_items": """
checks:
  unique: [[order_id, line_no]]
  foreign_keys:
    order_id: shop.orders(order_id)
    product_id: shop.products(product_id)
""",
    "events": """
checks:
  foreign_keys: {user_id: shop.customers(customer_id)}
  accepted_values: {event_type: [page_view, search, add_to_cart, checkout, purchase]}
  duplicates: {exact_rows: true}
""",
}


@pytest.fixture
def demo_report(project: ProjectDir) -> Path:
    write_demo_project(project.path, scale=0.05, seed=7, load_only=True)  # the checks below, not the demo's
    for name, text in DEMO_CHECKS.items():
        with (project.path / "contracts" / f"{name}.yaml").open("a", encoding="utf-8") as f:
            f.write(text)
    ctx = open_project(project.path)
    assert all(r.status == "succeeded" for r in run_pipelines(ctx))
    reports = []
    for run in range(1, 5):  # a few runs make the trend lines
        reports.append(run_checks(ctx))
        project.query("INSERT INTO shop.events SELECT event_id + %s, user_id, session_id, event_type,"
                      " occurred_at, payload FROM shop.events ORDER BY event_id LIMIT 200 RETURNING 1",
                      (10_000_000 * run,))
    last = reports[-1]
    by = {(r.table, r.rule): r for r in last.results}
    # the demo keeps its foreign keys and keys; completeness of coupon_code (~20% of orders) fails
    assert by[("shop.orders", "foreign_key(customer_id)")].status == "pass"
    assert by[("shop.order_items", "unique(order_id, line_no)")].status == "pass"
    assert by[("shop.orders", "completeness(coupon_code)")].status == "fail"
    assert by[("shop.events", "accepted_values(event_type)")].status == "fail"  # 'login' is not listed
    first = {(r.table, r.rule): r for r in reports[0].results}
    assert by[("shop.events", "row_count")].value == first[("shop.events", "row_count")].value + 600  # type: ignore[operator]
    return write_report(ctx, project.path / "out" / "quality.html")


def test_report_is_self_contained(demo_report: Path) -> None:
    html = demo_report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from anywhere
    assert "<link" not in html and "<script" not in html
    for table in ("shop.customers", "shop.products", "shop.orders", "shop.order_items", "shop.events"):
        assert f'data-table="{table}"' in html
    assert html.count("<polyline") >= 10  # trend charts and sparklines


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed")
def test_report_opens_in_headless_chromium(demo_report: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", demo_report.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for table in ("shop.customers", "shop.products", "shop.orders", "shop.order_items", "shop.events"):
        anchor = "table-" + table.replace(".", "-").replace("_", "-")
        assert re.search(rf'<section class="table" id="{anchor}" data-table="{re.escape(table)}">', dom), table
    assert "completeness(coupon_code)" in dom and "rules passing per run" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2400", demo_report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

"""The quality report: one self-contained HTML file (inline CSS and SVG, nothing fetched) built from the
history in pgmill.quality_results, and the per-table summary the terminal shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from pgmill.project import ProjectContext
from pgmill.quality.history import checked_tables, latest_run, trend
from pgmill.quality.results import worst_status
from pgmill.quality.schema import ensure_quality_schema
from pgmill.quality.svg import sparkline, trend_chart

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#0f172a;background:#f8fafc;margin:0}
header{background:#0f172a;color:#f8fafc;padding:20px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1}main{padding:16px 32px 48px;max-width:1280px}
nav a{margin-right:14px;color:#2563eb;text-decoration:none}
section.table{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:16px 20px;margin:18px 0}
section.table h2{margin:0 0 4px;font-size:18px}h3{font-size:14px;margin:18px 0 6px;color:#334155}
.meta{color:#64748b;margin:0 0 8px}.charts{display:flex;gap:24px;flex-wrap:wrap}
figure.chart{margin:0}figcaption{font-size:12px;color:#475569}.axis{font-size:10px;fill:#64748b}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #f1f5f9;
vertical-align:top}th{font-size:12px;color:#475569;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600}
.pass{background:#dcfce7;color:#166534}.warn{background:#fef9c3;color:#854d0e}.fail,.error{background:#fee2e2;color:#991b1b}
.skipped{background:#e2e8f0;color:#334155}.bar{background:#e2e8f0;border-radius:4px;height:10px;width:160px;display:inline-block}
.bar i{display:block;height:10px;border-radius:4px;background:#22c55e}.bar i.low{background:#ef4444}
.msg{color:#334155;max-width:420px}details summary{cursor:pointer;color:#2563eb}
pre{background:#f1f5f9;padding:6px;border-radius:6px;max-width:520px;overflow:auto;font-size:11px}
.dup{margin:4px 0}.spell{background:#f1f5f9;border-radius:4px;padding:0 4px;margin-right:4px;white-space:pre}
"""


@dataclass
class TableSection:
    table: str
    results: list[dict[str, Any]]  # the latest run's rows of pgmill.quality_results
    history: list[dict[str, Any]]  # trend rows, oldest first

    @property
    def rows(self) -> int:
        return next((int(r["value"]) for r in self.results if r["kind"] == "row_count" and r["value"] is not None), 0)

    @property
    def status(self) -> str:
        return worst_status(r["status"] for r in self.results)

    def summary(self) -> dict[str, Any]:
        count = {s: sum(1 for r in self.results if r["status"] == s) for s in ("pass", "warn", "fail", "error")}
        return {"table": self.table, "status": self.status, "rows": self.rows, "rules": len(self.results),
                **count, "run_id": self.results[0]["run_id"] if self.results else None}


def collect(ctx: ProjectContext, runs: int = 30) -> list[TableSection]:
    """The latest results and the trend of every table ever checked in the project's database."""
    with ctx.target.connect(autocommit=True, application_name="pgmill report") as conn:
        ensure_quality_schema(conn)
        return [TableSection(t, latest_run(conn, t), trend(conn, t, runs)) for t in checked_tables(conn)]


def write_report(ctx: ProjectContext, path: Path | str) -> Path:
    """Write the HTML quality report to `path` (checking the project first if nothing was ever checked)."""
    sections = collect(ctx)
    if not sections:
        from pgmill.quality.checks import run_checks

        run_checks(ctx)
        sections = collect(ctx)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(sections, ctx.dir.name), encoding="utf-8")
    return out


def render(sections: list[TableSection], project: str) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017 - reads plainer here
    failing = sum(1 for s in sections if s.status == "fail")
    nav = "".join(f'<a href="#{_anchor(s.table)}">{escape(s.table)}</a>' for s in sections)
    body = "".join(_section(s) for s in sections) or "<p>No table has been checked yet.</p>"
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>pgmill quality report: {escape(project)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Quality report: {escape(project)}</h1><p>{len(sections)} tables, {failing} failing;"
        f" generated {now} from pgmill.quality_results</p></header>"
        f"<main><nav>{nav}</nav>{body}</main></body></html>"
    )


def _anchor(table: str) -> str:
    return "table-" + "".join(c if c.isalnum() else "-" for c in table)


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status)}</span>'


def _section(s: TableSection) -> str:
    when = s.results[0]["measured_at"].strftime("%Y-%m-%d %H:%M UTC") if s.results else "never"
    labels = [f"run {h['run_id']}" for h in s.history]
    passing = [100.0 * h["passed"] / h["rules"] if h["rules"] else 100.0 for h in s.history]
    charts = trend_chart("rules passing per run", labels, passing, percent=True) + trend_chart(
        "rows per run", labels, [float(h["rows"] or 0) for h in s.history], color="#7c3aed")
    return (
        f'<section class="table" id="{_anchor(s.table)}" data-table="{escape(s.table)}">'
        f"<h2>{escape(s.table)} {_badge(s.status)}</h2>"
        f'<p class="meta">{s.rows:,} rows; {len(s.results)} rules; last checked {when}'
        f" (check run {s.results[0]['run_id'] if s.results else '-'})</p>"
        f'<div class="charts">{charts}</div>'
        f"<h3>Rules</h3>{_rules(s)}<h3>Completeness per column</h3>{_completeness(s)}"
        f"<h3>Duplicates</h3>{_duplicates(s)}</section>"
    )


def _rules(s: TableSection) -> str:
    rows = []
    for r in s.results:
        rate = float(r["pass_rate"])
        spark = sparkline([float(h["rates"].get(r["rule"], 0)) for h in s.history if r["rule"] in h["rates"]])
        sample = (f"<details><summary>{len(r['sample'])} sampled</summary>"
                  f"<pre>{escape(json.dumps(r['sample'], indent=1, default=str)[:4000])}</pre></details>"
                  if r["sample"] else "")
        rows.append(
            f"<tr><td>{escape(r['rule'])}</td><td>{_badge(r['status'])}</td>"
            f'<td class="num">{rate:.2f}%</td><td class="num">{int(r["rows_failed"]):,} / {int(r["rows_checked"]):,}</td>'
            f'<td class="num">{float(r["threshold"]):g}%</td><td>{escape(r["severity"])}</td>'
            f'<td class="msg">{escape(r["message"] or "")}{sample}</td><td>{spark}</td></tr>')
    return ("<table><thead><tr><th>rule</th><th>status</th><th>pass rate</th><th>failed / checked</th>"
            "<th>threshold</th><th>severity</th><th>result</th><th>trend</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _completeness(s: TableSection) -> str:
    rc = next((r for r in s.results if r["kind"] == "row_count"), None)
    non_null = (rc or {}).get("detail") or {}
    counts: list[list[Any]] = non_null.get("non_null", [])  # [column, non-null rows] in table order
    if not counts:
        return "<p>Not measured.</p>"
    rows = []
    for column, filled in counts:
        pct = 100.0 * filled / s.rows if s.rows else 100.0
        low = ' class="low"' if pct < 95 else ""
        rows.append(f'<tr><td>{escape(column)}</td><td><span class="bar"><i{low} style="width:{pct:.1f}%"></i>'
                    f'</span></td><td class="num">{pct:.2f}%</td><td class="num">{s.rows - filled:,} missing</td></tr>')
    return ("<table><thead><tr><th>column</th><th></th><th>complete</th><th>NULLs</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _duplicates(s: TableSection) -> str:
    items = []
    for r in s.results:
        if r["kind"] not in ("unique", "exact_rows", "near_duplicates"):
            continue
        groups = (r["detail"] or {}).get("groups", 0)
        head = f"<p class=\"dup\">{_badge(r['status'])} <b>{escape(r['rule'])}</b>: {escape(r['message'] or '')}</p>"
        if r["kind"] == "near_duplicates" and groups:
            lis = "".join(
                "<li>" + "".join(f'<span class="spell">{escape(str(x))}</span>' for x in g.get("spellings", []))
                + f" &mdash; {int(g.get('rows', 0))} rows</li>" for g in r["sample"])
            head += f"<ul>{lis}</ul>"
        elif groups:
            head += "<ul>" + "".join(f"<li><code>{escape(json.dumps(g, default=str)[:300])}</code></li>"
                                     for g in r["sample"][:5]) + "</ul>"
        items.append(head)
    return "".join(items) or "<p>No duplicate checks on this table.</p>"

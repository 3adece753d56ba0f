"""The cost report as plain text: the tables `pgmill cost` prints."""

from __future__ import annotations

from pgmill.observe.cost import CostReport
from pgmill.observe.cost_model import GB


def format_cost_report(report: CostReport) -> str:
    """The report as aligned plain-text tables: runs by job, what was billed (used and idle), the checks."""
    out = [_heading(report), ""]
    if report.jobs:
        rows = [["job", "runs", "CPU s", "DB s", "written", "storage +", "processed", "compute", "database",
                 "total", "per GB"]]
        for j in report.jobs:
            rows.append([j.job, str(j.runs), f"{j.cpu_seconds:.2f}", _num(j.db_seconds), _bytes(j.bytes_written),
                         _bytes(j.storage_delta_bytes), _bytes(j.bytes_processed), _usd(j.compute_usd),
                         _usd(j.database_usd), _usd(j.total_usd), _usd(j.per_gb_usd)])
        out += _table(rows)
        out.append("")
    rows = [["billed", "to date", "used", "idle", "busy", "projected", "used", "idle"]]
    for r in report.resources:
        rows.append([r.name, _usd(r.billed_usd), _usd(r.used_usd), _usd(r.idle_usd), _pct(r.busy),
                     _usd(r.projected_usd), _usd(r.projected_used_usd), _usd(r.projected_idle_usd)])
    rows.append(["total", _usd(report.mtd_usd), "", "", "", _usd(report.projected_usd), "", ""])
    out += _table(rows)
    out.append("")
    out.append(f"processed {report.bytes_processed / GB:.3f} GB: the runs cost {_usd(report.per_gb_usd)} per GB, "
               f"{_usd(report.all_in_per_gb_usd)} per GB all-in (idle and storage included)")
    out.append("")
    rows = [["check", "limit", "figure", ""]]
    for c in report.checks:
        unit = " per GB" if "GB" in c.name else ""
        rows.append([f"{c.source}: {c.name}", f"<= {_usd(c.limit)}{unit}", _usd(c.value), c.status])
    out += _table(rows)
    if report.notes:
        out.append("")
        out += [f"note: {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def _heading(report: CostReport) -> str:
    if report.complete:
        return f"Cost of {report.month} (the whole month)"
    counted = ""
    if report.period_start is not None:
        done = (report.as_of - report.period_start).total_seconds() / 86400
        span = (report.month_end - report.period_start).total_seconds() / 86400
        counted = f" ({done:.1f} of {span:.1f} days counted)"
    return f"Cost of {report.month} to {report.as_of:%Y-%m-%d %H:%M} UTC{counted}, and the month projected"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _usd(x: float | None) -> str:
    if x is None:
        return "not measured"
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    if abs(x) >= 0.01:
        return f"${x:.4f}"
    if abs(x) >= 0.000001:
        return f"${x:.6f}"
    return "<$0.000001"


def _num(x: float | None) -> str:
    return "not measured" if x is None else f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "not measured"
    sign = "-" if n < 0 else ""
    v = float(abs(n))
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if v < 1024 or unit == "TB":
            return f"{sign}{v:.0f} {unit}" if unit == "B" else f"{sign}{v:.1f} {unit}"
        v /= 1024
    return f"{sign}{v:.1f} TB"

"""Cost efficiency: the brief's four cost targets as `pgmill cost` holds them (pgmill.observe.cost), for the
current month: processing and storage a month, the month's total, and cost per GB processed."""

from __future__ import annotations

from pgmill.figures import usd
from pgmill.observe.cost import CostReport
from pgmill.validate.model import Criterion

AREA = "Cost efficiency"
SOURCE = "pgmill.run_costs priced with the project's `cost:` settings, as `pgmill cost` reports it"
# (key, the brief's words, the target's name in CostReport.checks, what the figure is)
_CRITERIA = (
    ("cost_processing", "Data processing costs < $25/month", "processing a month (compute + database)",
     "compute and database instance-hours, projected for the month (idle hours included)"),
    ("cost_storage", "Storage costs < $15/month", "storage a month",
     "database storage and pgmill's files, projected for the month"),
    ("cost_month", "Total data infrastructure < $40/month", "total a month",
     "everything billed, projected for the month (to date once the month is over)"),
    ("cost_per_gb", "Cost per GB processed < $0.01", "cost per GB processed",
     "what the runs used / GB of source data the loads read, month to date"),
)


def cost_criteria(report: CostReport) -> list[Criterion]:
    checks = {c.name: c for c in report.checks if c.source == "target"}
    window = f"month {report.month} (UTC)" + ("" if report.complete or not report.measured else
                                             f", {report.elapsed_share:.0%} elapsed, the rest projected")
    out = []
    for key, name, target, what in _CRITERIA:
        check = checks[target]
        c = Criterion(key, AREA, name, f"< {usd(check.limit)}" + ("/GB" if key == "cost_per_gb" else "/month"),
                      "not_measured", source=f"{what}: {SOURCE}", window=window)
        c.detail = {"limit_usd": check.limit, "value_usd": check.value}
        if check.value is None:
            c.note = ("no measured load read source data this month" if report.measured else
                      "; ".join(report.notes) or "nothing measured this month")
        else:
            c.value = check.value
            c.status = "pass" if check.status == "pass" else "fail"
            c.figure = usd(check.value) + ("/GB" if key == "cost_per_gb" else "")
            if report.notes:
                c.note = "; ".join(report.notes)
        out.append(c)
    return out

"""The demo after its load: check the tables, build the models, tune the declared queries, write the quality
report and the validation, and say how to connect an AI assistant and open the dashboard. Each step calls
the library function its command calls (`pgmill check`, `pgmill transform`, `pgmill tune --apply`,
`pgmill report`, `pgmill validate`) and prints what it proved in a few lines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgmill.figures import size
from pgmill.project import ProjectContext
from pgmill.quality.checks import run_checks
from pgmill.quality.report import collect, write_report
from pgmill.quality.results import CheckReport
from pgmill.transform.runner import TransformResult, run_transforms
from pgmill.tune.run import TuneReport, run_tune
from pgmill.validate import Validation, render_markdown, validate

Echo = Callable[[str], None]

REPORT_FILE = "quality-report.html"
VALIDATION_FILE = "validation.md"
DASHBOARD_URL = "http://127.0.0.1:8080/"  # `pgmill serve`'s default address (src/pgmill/cli/ops.py)


@dataclass
class DemoSteps:
    """What the demo did after loading, step by step."""

    checks: CheckReport | None = None
    models: TransformResult | None = None
    tuning: TuneReport | None = None
    report_path: Path | None = None
    validation: Validation | None = None
    mcp_config: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall seconds

    @property
    def ok(self) -> bool:
        return ((self.checks is None or self.checks.ok)
                and (self.models is None or self.models.status == "succeeded"))


def run_steps(ctx: ProjectContext, embedded: bool, database: str, echo: Echo) -> DemoSteps:
    """Run the steps after a successful load, printing each one's figures as it ends."""
    steps = DemoSteps()

    started = time.perf_counter()
    steps.checks = run_checks(ctx)
    steps.seconds["checks"] = time.perf_counter() - started
    _echo_all(echo, render_checks(steps.checks, steps.seconds["checks"]))

    started = time.perf_counter()
    steps.models = run_transforms(ctx)
    steps.seconds["models"] = time.perf_counter() - started
    _echo_all(echo, render_models(steps.models, steps.seconds["models"]))

    echo("")
    echo(f"Tuning the shop's {_count_queries(ctx)} declared queries (queries/*.sql): recommending indexes, "
         "building them, measuring each query before and after ...")
    started = time.perf_counter()
    steps.tuning = run_tune(ctx, apply=True)
    steps.seconds["tune"] = time.perf_counter() - started
    _echo_all(echo, render_tuning(steps.tuning, steps.seconds["tune"], ctx.config.tune.executions))

    started = time.perf_counter()
    steps.report_path = write_report(ctx, ctx.dir / REPORT_FILE)
    steps.seconds["report"] = time.perf_counter() - started
    _echo_all(echo, render_report(ctx, steps.report_path))

    started = time.perf_counter()
    with ctx.target.connect(autocommit=True, application_name="pgmill validate") as conn:
        steps.validation = validate(conn, ctx)
    (ctx.dir / VALIDATION_FILE).write_text(render_markdown(steps.validation), encoding="utf-8")
    steps.seconds["validate"] = time.perf_counter() - started
    _echo_all(echo, render_validation(steps.validation, ctx.dir / VALIDATION_FILE))

    steps.mcp_config = mcp_config(ctx.dir, None if embedded else database)
    _echo_all(echo, render_connect(steps.mcp_config, embedded))
    return steps


def _echo_all(echo: Echo, lines: list[str]) -> None:
    for line in lines:
        echo(line)


def _count_queries(ctx: ProjectContext) -> int:
    return len(list((ctx.dir / "queries").glob("*.sql")))


# ---------------------------------------------------------------- each step's lines


def render_checks(report: CheckReport, seconds: float) -> list[str]:
    results = report.results
    count = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail", "error", "skipped")}
    lines = ["", f"Table checks: {len(results)} rules on {len(report.tables)} loaded tables, run inside PostgreSQL "
                 f"in {seconds:.1f} s: {count['pass']} passed, {_plural(count['warn'], 'warning')}, "
                 f"{count['fail'] + count['error']} failed"]
    for r in results:
        if r.status != "pass":
            lines.append(f"  {r.status:<5} {r.table} {r.rule}: {r.message}")
    kinds = sorted({r.kind for r in results})
    lines.append(f"  Rules of {len(kinds)} kinds ({', '.join(kinds)}); each result is a row of "
                 f"pgmill.quality_results (check run {report.run_id}).")
    return lines


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render_models(result: TransformResult, seconds: float) -> list[str]:
    lines = ["", f"Models: {len(result.ran)} built, {len(result.failed)} failed, {len(result.skipped)} skipped, "
                 f"in {seconds:.1f} s (models/marts/*.sql; the order comes from the tables each SELECT reads)"]
    for m in result.models:
        rows = f"{m.rows:,} rows" if m.rows is not None else ""
        lines.append(f"  {m.model:<24} {m.materialized:<6} {m.status:<9} {rows:>12}"
                     + (f"  {m.error}" if m.error else ""))
    return lines


def render_tuning(report: TuneReport, seconds: float, executions: int) -> list[str]:
    applied = report.applied
    if applied is None or not applied.before:
        return [f"  No index to add: the declared queries are served by the indexes there are ({seconds:.1f} s)."]
    lines = [f"  {'query':<26} {'p95 before':>11} {'p95 after':>10}"]
    for name, before in applied.before.items():
        after = applied.after.get(name)
        lines.append(f"  {name:<26} {before.p95_ms:>8.2f} ms {after.p95_ms if after else 0:>7.2f} ms")
    b = sum(x.p95_ms for x in applied.before.values())
    a = sum(x.p95_ms for x in applied.after.values())
    change = "" if b <= 0 else f"  ({1 - a / b:.0%} lower)" if a < b else "  (no lower: noise at this size)"
    lines.append(f"  {'all (sum of p95)':<26} {b:>8.1f} ms {a:>7.1f} ms{change}")
    kept = [o for o in applied.outcomes if o.status == "kept"]
    others = [o for o in applied.outcomes if o.status != "kept"]
    lines.append(f"  Indexes kept: {len(kept)} of {len(applied.outcomes)} tried, "
                 f"{size(sum(o.size_bytes or 0 for o in kept))}"
                 + ("; each one measured faster for the queries named:" if kept else
                    " (indexes kept by an earlier tuning run stay)"))
    for o in kept:
        lines.append(f"    {o.label}: {', '.join(o.improved) or o.reason}")
    for o in others:
        lines.append(f"    {o.status}: {o.label} ({o.reason})")
    if applied.slower:
        lines.append(f"  Still slower after tuning (noise at this size, or a trade): {', '.join(applied.slower)}")
    lines.append(f"  p95 of {executions} runs per query on the demo's small dataset, in {seconds:.1f} s: a quick "
                 "measure, not a benchmark (bench/bench_tune.py: 30 runs per query, scales 1 and 10).")
    lines.append(f"  Tuning run {report.run_id}" + (f": `pgmill tune --rollback {report.run_id}` drops these indexes."
                                                     if kept else " kept nothing."))
    return lines


def render_report(ctx: ProjectContext, path: Path) -> list[str]:
    sections = [s.summary() for s in collect(ctx)]
    worst = {s["table"]: s["status"] for s in sections}
    return ["", f"Quality report: {path}",
            f"  {len(sections)} tables, rules and trends per table (one HTML file, opens offline): "
            + ", ".join(f"{t} {st}" for t, st in worst.items())]


# why a criterion can fail on a demo just run: the demo's own circumstances, not a steady project's
_DEMO_CAUSE = {
    "validation_loads": "the demo breaks a few percent of its rows on purpose; the quarantine kept them out",
    "realtime": "arrival is each file's write time, and the demo wrote them before its database started",
    "index_utilization": "the checks and the models have just read whole tables",
    "completeness": "the demo's optional columns are often empty",
}


def render_validation(v: Validation, path: Path) -> list[str]:
    lines = ["", f"Validation: {path}",
             f"  pgmill's success criteria on this project's own figures: {v.count('pass')} passed, "
             f"{v.count('fail')} failed, {v.count('not_measured')} not measured (no data here, never a pass)"]
    for c in v.criteria:
        if c.status == "fail":
            lines.append(f"  fail  {c.name}: {c.figure}")
            if c.key in _DEMO_CAUSE:
                lines.append(f"        (here: {_DEMO_CAUSE[c.key]})")
    return lines


def mcp_config(project_dir: Path, database_url: str | None) -> dict[str, Any]:
    """The MCP client configuration that starts `pgmill mcp` on this project (read-only, over stdio)."""
    beside = Path(sys.executable).parent / "pgmill"  # the pgmill of this install, which a client may not find on PATH
    server: dict[str, Any] = {"command": str(beside) if beside.exists() else "pgmill",
                              "args": ["mcp", "--project", str(project_dir.resolve())]}
    if database_url is not None:
        server["env"] = {"PGMILL_DATABASE_URL": database_url}
    return {"mcpServers": {"pgmill": server}}


def render_connect(config: dict[str, Any], embedded: bool) -> list[str]:
    lines = ["", "Connect an AI assistant: add this to your MCP client's configuration (Claude Desktop, Cursor, "
                 "VS Code, ...); it starts `pgmill mcp`, which only reads (tables, contracts, runs, quarantine, "
                 "checks, query plans):"]
    lines += ["  " + line for line in json.dumps(config, indent=2).splitlines()]
    if not embedded:
        lines.append("  (a password in PGMILL_DATABASE_URL is hidden above: put it back, or leave env out and "
                     "set the variable where the client runs)")
    lines += ["", f"Open the dashboard: `pgmill serve` in the project folder, then {DASHBOARD_URL} "
                  "(runs, quarantine, checks, indexes; Ctrl-C stops it)"]
    return lines

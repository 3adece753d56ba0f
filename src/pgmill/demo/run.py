"""`pgmill demo`: generate a shop's exports with defects, load them all and show where every row went, then
check the tables, build the models, tune the declared queries, write the quality report (steps.py)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.connect import ENV_URL
from pgmill.demo.datagen import DEFECT_KINDS, TABLES, Manifest
from pgmill.demo.project import SCHEMA, write_demo_project
from pgmill.demo.steps import DemoSteps, run_steps
from pgmill.ingest import quarantine
from pgmill.ingest.runner import run_pipelines
from pgmill.observe.ledger import RunRecord
from pgmill.project import open_project

Echo = Callable[[str], None]

# the foreign keys the data keeps: (label, child table, its column, parent table, its key)
_FOREIGN_KEYS = (
    ("orders without their customer", "orders", "customer_id", "customers", "customer_id"),
    ("order lines without their order", "order_items", "order_id", "orders", "order_id"),
    ("order lines without their product", "order_items", "product_id", "products", "product_id"),
    ("events without their user", "events", "user_id", "customers", "customer_id"),
)


@dataclass
class TableReport:
    """One pipeline of the demo: what its run did, and what the generator put in its files."""

    pipeline: str
    table: str
    status: str
    error: str | None
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    duplicate: int
    bytes_read: int
    seconds: float
    injected_quarantine: int  # defective records the generator wrote
    injected_duplicates: int
    caught: dict[str, int] = field(default_factory=dict)  # defect kind -> quarantined rows of that kind

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.inserted + self.updated + self.unchanged + self.quarantined + self.duplicate

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Reason:
    """One reason rows were quarantined, with how many and an example."""

    pipeline: str
    column: str
    rule: str
    rows: int
    example_location: str
    example_message: str


@dataclass
class DemoReport:
    project_dir: Path
    database: str  # redacted URL
    embedded: bool
    manifest: Manifest
    tables: dict[str, TableReport]
    reasons: list[Reason]
    orphans: dict[str, int]
    generate_seconds: float
    load_seconds: float
    total_seconds: float
    steps: DemoSteps | None = None  # None when a load failed (nothing after it ran) or load_only

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables.values())

    @property
    def first_load(self) -> bool:
        """True when this run read the files (a rerun on the same files reads nothing: exactly once)."""
        return self.rows_read == self.manifest.rows

    @property
    def ok(self) -> bool:
        """Every run succeeded and balanced; on a first load, every injected defect was caught."""
        if not all(t.status == "succeeded" and t.balanced for t in self.tables.values()):
            return False
        if any(self.orphans.values()) or (self.steps is not None and not self.steps.ok):
            return False
        if not self.first_load:
            return True
        return all(t.quarantined == t.injected_quarantine and t.duplicate == t.injected_duplicates
                   for t in self.tables.values())


# ---------------------------------------------------------------- entry point


def run_demo(workdir: Path | None = None, scale: float = 1.0, echo: Echo = print, *, seed: int = 42,
             defect_rate: float = 0.03, load_only: bool = False) -> DemoReport:
    """Write the demo project (into `workdir`, or a new temporary folder), load every pipeline into the
    project's database (embedded unless PGMILL_DATABASE_URL names one), then check, build the models, tune
    and write the quality report (steps.py); print what each step proved as it ends, return it all.
    `load_only`: a project without checks, models or queries, loaded and nothing more (the benchmarks that
    tune or measure on the loaded shop do the rest themselves)."""
    import os

    started = time.perf_counter()
    project_dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="pgmill-demo-"))
    echo(f"pgmill demo: an online shop's exports, {defect_rate:.0%} of the rows broken on purpose")
    echo("")
    echo(f"Writing the project and its data (scale {scale:g}, seed {seed}) into {project_dir} ...")
    manifest = write_demo_project(project_dir, scale, seed, defect_rate=defect_rate, load_only=load_only)
    echo(f"  {manifest.rows:,} records in {sum(len(t.files) for t in manifest.tables.values())} CSV files, "
         f"{manifest.bytes / 1e6:.1f} MB, in {manifest.seconds:.1f} s")

    ctx = open_project(project_dir)
    embedded = ctx.target.embedded is not None
    if embedded:
        echo(f"Database: embedded PostgreSQL, data in {ctx.state_dir} (starting it ...)")
    else:
        echo(f"Database: {ctx.target.display_url} (from {ENV_URL})" if os.environ.get(ENV_URL)
             else f"Database: {ctx.target.display_url}")
    ctx.target.ensure_running()
    with ctx.target.connect() as conn:
        # created here, once: pipelines that start together would race on CREATE SCHEMA IF NOT EXISTS
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.commit()

    echo(f"Loading {len(ctx.config.pipelines)} pipelines, {ctx.config.workers} at a time ...")
    load_started = time.perf_counter()
    records = run_pipelines(ctx)
    load_seconds = time.perf_counter() - load_started

    with ctx.target.connect() as conn:
        caught = _caught(conn, [r.run_id for r in records])
        reasons = _reasons(conn, list(ctx.config.pipelines))
        all_ok = all(r.status == "succeeded" for r in records)
        orphans = _orphans(conn) if all_ok else {}
    tables = {r.pipeline: _table_report(r, ctx.config.pipelines[r.pipeline].table, manifest, caught)
              for r in records}
    report = DemoReport(project_dir, ctx.target.display_url, embedded, manifest, tables, reasons, orphans,
                        manifest.seconds, load_seconds, 0.0)
    for line in render(report):
        echo(line)
    if all_ok and not load_only:
        report.steps = run_steps(ctx, embedded, report.database, echo)
    report.total_seconds = time.perf_counter() - started
    for line in render_end(report):
        echo(line)
    return report


# ---------------------------------------------------------------- reading the results


def _table_report(r: RunRecord, table: str, manifest: Manifest, caught: dict[str, dict[str, int]]) -> TableReport:
    c = r.counts
    seconds = (r.finished_at - r.started_at).total_seconds() if r.finished_at else 0.0
    m = manifest.tables.get(r.pipeline)
    return TableReport(
        r.pipeline, table, r.status, r.error, c.rows_read, c.rows_inserted, c.rows_updated, c.rows_unchanged,
        c.rows_quarantined, c.rows_duplicate, c.bytes_read, seconds,
        m.quarantined if m else 0, m.duplicates if m else 0, caught.get(r.pipeline, {}),
    )


def classify(pipeline: str, violations: list[dict[str, Any]], raw_text: str | None) -> str | None:
    """Which injected defect kind a quarantined row stands for (None: not one the demo injects)."""
    spec = TABLES.get(pipeline)
    if spec is None:
        return None
    broken = {(v.get("column") or "", v.get("rule") or "") for v in violations}
    for kind in DEFECT_KINDS:
        if broken & set(spec.caught_by.get(kind, ())):
            if kind in ("ragged_line", "malformed_line"):
                return "ragged_line" if raw_text and "," in raw_text else "malformed_line"
            return kind
    return None


def _caught(conn: psycopg.Connection[Any], run_ids: list[int]) -> dict[str, dict[str, int]]:
    """Rows these runs quarantined, per pipeline, by the defect kind they stand for."""
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute("SELECT pipeline, violations, raw_text FROM pgmill.quarantine WHERE run_id = ANY(%s)",
                        (run_ids,)).fetchall()
    for pipeline, violations, raw_text in rows:
        kind = classify(str(pipeline), violations, raw_text) or "other"
        per = out.setdefault(str(pipeline), {})
        per[kind] = per.get(kind, 0) + 1
    return out


def _reasons(conn: psycopg.Connection[Any], pipelines: list[str]) -> list[Reason]:
    examples: dict[tuple[str, str, str], tuple[str, str]] = {}
    for p, col, rule, loc, msg in conn.execute(
        "SELECT DISTINCT ON (q.pipeline, coalesce(v->>'column', ''), v->>'rule')"
        " q.pipeline, coalesce(v->>'column', ''), v->>'rule', q.source_location, coalesce(v->>'message', '')"
        " FROM pgmill.quarantine q, jsonb_array_elements(q.violations) v"
        " ORDER BY q.pipeline, coalesce(v->>'column', ''), v->>'rule', q.id"
    ).fetchall():
        examples[(str(p), str(col), str(rule))] = (str(loc), str(msg))
    out = []
    for p, col, rule, n in quarantine.summary(conn):
        if p in pipelines:
            loc, msg = examples.get((p, col, rule), ("", ""))
            out.append(Reason(p, col, rule, n, loc, msg))
    return out


def _orphans(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows of each child table whose parent did not load (the demo's data has none)."""
    out = {}
    for label, child, col, parent, key in _FOREIGN_KEYS:
        query = sql.SQL("SELECT count(*) FROM {} c WHERE NOT EXISTS (SELECT 1 FROM {} p WHERE p.{} = c.{})").format(
            sql.Identifier(SCHEMA, child), sql.Identifier(SCHEMA, parent), sql.Identifier(key), sql.Identifier(col))
        row = conn.execute(query).fetchone()
        out[label] = int(row[0]) if row else 0
    return out


# ---------------------------------------------------------------- printing


def _n(x: float) -> str:
    return f"{x:,.0f}"


def render(report: DemoReport, top: int = 12) -> list[str]:
    """The demo's report as lines of plain text."""
    lines = [""]
    head = (f"{'table':<18} {'read':>9} {'inserted':>9} {'updated':>8} {'unchanged':>9} {'quarant.':>9} "
            f"{'dupl.':>6} {'MB':>6} {'seconds':>7} {'rows/s':>9}")
    lines += [head, "-" * len(head)]
    for t in report.tables.values():
        lines.append(
            f"{t.table:<18} {_n(t.rows_read):>9} {_n(t.inserted):>9} {_n(t.updated):>8} {_n(t.unchanged):>9} "
            f"{_n(t.quarantined):>9} {_n(t.duplicate):>6} {t.bytes_read / 1e6:>6.1f} {t.seconds:>7.2f} "
            f"{_n(t.rows_per_s):>9}"
        )
    tot_read = report.rows_read
    lines.append("-" * len(head))
    lines.append(
        f"{'all, wall clock':<18} {_n(tot_read):>9} {_n(sum(t.inserted for t in report.tables.values())):>9} "
        f"{_n(sum(t.updated for t in report.tables.values())):>8} "
        f"{_n(sum(t.unchanged for t in report.tables.values())):>9} "
        f"{_n(sum(t.quarantined for t in report.tables.values())):>9} "
        f"{_n(sum(t.duplicate for t in report.tables.values())):>6} "
        f"{sum(t.bytes_read for t in report.tables.values()) / 1e6:>6.1f} {report.load_seconds:>7.2f} "
        f"{_n(tot_read / report.load_seconds if report.load_seconds > 0 else 0):>9}"
    )
    lines.append("")
    failed = [t for t in report.tables.values() if t.status != "succeeded"]
    for t in failed:
        lines.append(f"FAILED {t.pipeline}: {t.error}")
    if all(t.balanced for t in report.tables.values()):
        lines.append("Every row is accounted for: read = inserted + updated + unchanged + quarantined + duplicates, "
                     "in every table.")
    if not report.first_load and not failed:
        lines.append("Nothing new to read: these files were loaded before, and pgmill loads a file exactly once.")
    q_total = sum(t.quarantined for t in report.tables.values())
    injected = sum(t.injected_quarantine for t in report.tables.values())
    if report.first_load:
        lines.append(f"Quarantined {_n(q_total)} rows; the generator broke {_n(injected)} on purpose"
                     + (": every one caught, no good row lost." if q_total == injected else "."))
    lines += ["", "Why rows were quarantined (most frequent first; `pgmill quarantine list` counts them all):"]
    if report.reasons:
        lines.append(f"  {'rows':>7}  {'table':<12} {'column':<12} {'rule':<25} example")
        for r in report.reasons[:top]:
            lines.append(f"  {_n(r.rows):>7}  {r.pipeline:<12} {r.column or '(row)':<12} {r.rule:<25} "
                         f"{r.example_location}: {_shorten(r.example_message, 70)}")
        if len(report.reasons) > top:
            rest = sum(r.rows for r in report.reasons[top:])
            lines.append(f"  ... and {len(report.reasons) - top} more reasons ({_n(rest)} violations)")
    else:
        lines.append("  none")
    dups = sum(t.duplicate for t in report.tables.values())
    if report.first_load:
        lines += ["", f"Duplicates: {_n(dups)} rows repeated a key already seen in their batch (a newer export "
                      "of the same order, a line or event sent twice); the newest version was kept."]
    if report.orphans:
        bad = {k: v for k, v in report.orphans.items() if v}
        lines.append("Foreign keys: " + ("every order, line and event points to a loaded row." if not bad else
                                         "; ".join(f"{_n(v)} {k}" for k, v in bad.items())))
    return lines


def render_end(report: DemoReport) -> list[str]:
    """The demo's last lines: its timings and what to try next."""
    steps = report.steps.seconds if report.steps is not None else {}
    took = "".join(f", {name} {s:.1f} s" for name, s in steps.items())
    where = f"cd {report.project_dir}"
    lines = [
        "",
        f"Generated in {report.generate_seconds:.1f} s, loaded in {report.load_seconds:.1f} s{took}; "
        f"{report.total_seconds:.1f} s in all.",
        "",
        "What to try next:",
        f"  {where}",
        "  pgmill status                 every run: rows read, loaded, quarantined, duplicates, timings",
        "  pgmill quarantine list        quarantined rows counted by table, column and rule",
        "  pgmill quarantine show orders each quarantined order with its file, line and the rules it broke",
        "  pgmill check                  the table checks again; pgmill report rewrites the quality report",
        "  pgmill tune                   the indexes the declared queries need (--apply builds and measures them)",
        "  pgmill validate               the project's figures against pgmill's success criteria",
        "  pgmill db url                 the database URL; open it with psql \"$(pgmill db url)\" and try",
        "                                SELECT status, count(*), sum(total) FROM shop.orders GROUP BY 1;",
    ]
    if report.embedded:
        lines.append("  pgmill db stop                stop the embedded database when you are done")
    return lines


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The index advisor: workload -> candidates -> what-if costing -> a selection within the budget."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgmill.config.tune import TuneConfig, parse_budget
from pgmill.errors import ConfigError
from pgmill.tune import candidates as cand
from pgmill.tune.analyze import analyze
from pgmill.tune.select import Selection, greedy
from pgmill.tune.snapshot import CatalogSnapshot, TableKey, analyze_unanalyzed, load_snapshot, unvacuumed
from pgmill.tune.whatif import make_whatif
from pgmill.tune.workload import WorkloadQuery, load_workload


@dataclass
class Recommendation:
    """One index to create: its DDL, size, the queries it serves and their estimated costs."""

    name: str
    table: str
    definition: str
    label: str
    size_bytes: int
    queries: list[str]
    cost_before: dict[str, float]
    cost_after: dict[str, float]
    candidate: cand.Candidate = field(repr=False)
    lean: cand.Candidate | None = field(default=None, repr=False)  # measured against it by --apply
    lean_size_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "table": self.table, "definition": self.definition, "label": self.label,
                "size_bytes": self.size_bytes, "queries": self.queries,
                "cost_before": {k: round(v, 2) for k, v in self.cost_before.items()},
                "cost_after": {k: round(v, 2) for k, v in self.cost_after.items()},
                "lean_alternative": None if self.lean is None else {
                    "label": self.lean.label(), "definition": self.lean.text(), "size_bytes": self.lean_size_bytes}}


@dataclass
class Advice:
    """What the advisor concluded, and everything needed to apply and explain it."""

    backend: str
    workload: list[WorkloadQuery]
    recommendations: list[Recommendation]
    cost_before: dict[str, float]
    cost_after: dict[str, float]
    candidates: int
    budget_bytes: int | None
    data_bytes: int
    skipped_for_budget: list[str]
    seconds: float
    explains: int
    unvacuumed: list[str] = field(default_factory=list)  # tables whose index-only scans cost as heap reads

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "candidates": self.candidates, "budget_bytes": self.budget_bytes,
            "data_bytes": self.data_bytes, "seconds": round(self.seconds, 3), "explains": self.explains,
            "queries": [{"name": q.name, "source": q.source, "target_ms": q.target_ms, "calls": q.calls,
                         "cost_before": round(self.cost_before.get(q.name, 0.0), 2),
                         "cost_after": round(self.cost_after.get(q.name, 0.0), 2), "runnable": q.runnable,
                         "sql": q.sql}
                        for q in self.workload],
            "recommendations": [r.as_dict() for r in self.recommendations],
            "skipped_for_budget": self.skipped_for_budget, "unvacuumed": self.unvacuumed,
            "estimated_cost_before": round(sum(self.cost_before.values()), 2),
            "estimated_cost_after": round(sum(self.cost_after.values()), 2),
        }


def workload_tables(workload: list[WorkloadQuery]) -> set[TableKey]:
    return {a.table for q in workload if q.analysis for a in q.analysis.accesses}


def data_size(catalog: CatalogSnapshot, tables: set[TableKey]) -> int:
    return sum(catalog.tables[k].size for k in tables if k in catalog.tables)


def prepare_workload(conn: psycopg.Connection[Any], project_dir: Path | None, cfg: TuneConfig,
                     literals: dict[int, str] | None = None) -> tuple[CatalogSnapshot, list[WorkloadQuery]]:
    """The catalog and the workload, with statistics gathered on workload tables that never had any.
    `literals`: sampled literal texts of observed statements, by queryid (tune/literals.py)."""
    catalog = load_snapshot(conn)
    workload = load_workload(conn, catalog, project_dir, target_ms=cfg.target_ms, observed_top=cfg.observed,
                             observed_min_calls=cfg.observed_min_calls, literals=literals)
    if analyze_unanalyzed(conn, catalog, workload_tables(workload)):
        catalog = load_snapshot(conn)
        for q in workload:
            q.analysis = analyze(q.sql, catalog)
    conn.commit()
    return catalog, workload


def advise(conn: psycopg.Connection[Any], project_dir: Path | None, cfg: TuneConfig, *,
           budget: str | None = None, backend: str = "auto", max_columns: int | None = None,
           max_width: int | None = None, literals: dict[int, str] | None = None) -> Advice:
    """Recommend indexes for the workload. `conn` must be in autocommit mode; nothing is left changed.
    `max_columns` and `max_width` override the settings of the same name for this call."""
    started = time.perf_counter()
    catalog, workload = prepare_workload(conn, project_dir, cfg, literals)
    return advise_workload(conn, catalog, workload, cfg, budget=budget, backend=backend,
                           max_columns=max_columns, max_width=max_width, started=started)


def advise_workload(conn: psycopg.Connection[Any], catalog: CatalogSnapshot, workload: list[WorkloadQuery],
                    cfg: TuneConfig, *, budget: str | None = None, backend: str = "auto",
                    max_columns: int | None = None, max_width: int | None = None,
                    started: float | None = None, exclude: frozenset[str] = frozenset()) -> Advice:
    """`advise` for an already loaded catalog and workload (benchmarks reuse one across budgets). Candidates
    named in `exclude` (tried already) are not considered."""
    started = time.perf_counter() if started is None else started
    tables = workload_tables(workload)
    data_bytes = data_size(catalog, tables)
    try:
        budget_bytes = parse_budget(budget if budget is not None else cfg.budget, data_bytes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    width = max_columns or cfg.max_columns
    widest = max_width or cfg.max_width
    accesses = [a for q in workload if q.analysis for a in q.analysis.accesses]
    pool = [c for c in cand.generate(accesses, catalog, width, cfg.schemas, widest) if c.name not in exclude]
    whatif = make_whatif(conn, catalog, backend)
    try:
        costable = []
        for q in workload:
            try:
                whatif.cost(q, ())
            except psycopg.Error as exc:
                if q.source == "declared":
                    raise ConfigError(f"query {q.name}: cannot be planned: {str(exc).strip()}") from exc
                continue  # an observed statement that no longer plans (a dropped table): leave it out
            costable.append(q)
        whatif.prepare(costable, pool)
        sel: Selection = greedy(whatif, catalog, costable, pool, budget=budget_bytes,
                                write_weight=cfg.write_penalty, min_benefit=cfg.min_benefit,
                                data_bytes=data_bytes)
        recs = []
        for ch in sel.chosen:
            c = ch.candidate
            recs.append(Recommendation(
                c.name, f"{c.schema}.{c.table}", c.text(conn), c.label(), ch.size, ch.queries,
                {q: sel.base[q] for q in ch.queries}, {q: sel.final[q] for q in ch.queries}, c, ch.lean,
                None if ch.lean is None else whatif.size(ch.lean)))
        explains = whatif.explains
    finally:
        whatif.close()
    return Advice(whatif.kind, costable, recs, sel.base, sel.final, len(pool), budget_bytes, data_bytes,
                  [c.label() for c in sel.skipped_budget], time.perf_counter() - started, explains,
                  unvacuumed(catalog, tables))

"""`pgmill tune`, `pgmill indexes` and `pgmill explain`: indexes for the workload, their health, plans.

These three need a database, not a project: with no project found, PGMILL_DATABASE_URL names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgmill.cli.shell import JsonOpt, guarded, out

if TYPE_CHECKING:
    from pgmill.config.tune import TuneConfig

ProjectOrDatabaseOpt = Annotated[Path | None, typer.Option(
    "--project", "-p", help="project folder (default: found from the current folder upwards; none needed with "
    "PGMILL_DATABASE_URL)")]


@guarded
def tune(
    apply: Annotated[bool, typer.Option("--apply", help="create the indexes, measure, keep what helped")] = False,
    rollback: Annotated[int | None, typer.Option("--rollback", metavar="RUN",
                                                 help="drop the indexes tuning run RUN kept")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="index storage: 2GB, 50%, 0.5x, unlimited")] = None,
    backend: Annotated[str, typer.Option("--backend", help="what-if costing: auto, hypopg or real")] = "auto",
    max_width: Annotated[int | None, typer.Option("--max-width", metavar="N", help="most columns in one "
                                                  "index, keys and INCLUDE together")] = None,
    sample: Annotated[float, typer.Option("--sample", metavar="SECONDS", min=0, help="first watch the running "
                                          "workload this long for observed statements' constants "
                                          "(pg_stat_activity), so that they can be measured")] = 0.0,
    project: ProjectOrDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recommend indexes for the declared and observed queries; --apply proves them with measured p95."""
    from pgmill.project import open_project_or_database
    from pgmill.tune.run import rollback_run, run_tune

    ctx = open_project_or_database(project)
    cfg = ctx.config.tune if max_width is None else _with_max_width(ctx.config.tune, max_width)
    if rollback is not None:
        result = rollback_run(ctx.target, cfg, rollback)
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(f"rolled back tuning run {rollback}: dropped {', '.join(result['dropped']) or 'nothing'}")
        return
    if sample > 0 and not as_json:
        out.print(f"watching the running workload for {sample:g} s (pg_stat_activity) ...")
    d = run_tune(ctx, apply=apply, budget=budget, backend=backend, cfg=cfg, sample_seconds=sample).as_dict()
    if as_json:
        out.print_json(json.dumps(d, default=str))
    else:
        _print_report(d)


@guarded
def indexes(project: ProjectOrDatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Index health: unused, duplicate, redundant, invalid and bloated indexes; utilization."""
    from pgmill.project import open_project_or_database
    from pgmill.tune.health import index_health

    with open_project_or_database(project).target.connect(autocommit=True) as conn:
        h = index_health(conn)
    if as_json:
        out.print_json(json.dumps(h.as_dict(), default=str))
        return
    u1, u2 = h.utilization_scans, h.utilization_pgmill
    out.print(f"index utilization: {'-' if u1 is None else f'{u1:.1%}'} of scans on tables over 10k rows "
              f"use an index; {'-' if u2 is None else f'{u2:.0%}'} of pgmill's {h.pgmill_indexes} "
              f"indexes used since created (stats since {h.stats_since or 'never reset'})")
    for f in h.findings:
        out.print(f"  {f.kind:9} {f.index} ({_mb(f.size_bytes)}): {f.detail}")
    if not h.findings:
        out.print("  no problems found")


@guarded
def explain(
    query: Annotated[str, typer.Argument(help="a declared query's name, or SQL")],
    no_analyze: Annotated[bool, typer.Option("--no-analyze", help="plan only, do not execute")] = False,
    project: ProjectOrDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a query's plan with the slow parts marked (big sequential scans, misestimates, spills)."""
    from pgmill.project import open_project_or_database
    from pgmill.tune.explain import explain_query
    from pgmill.tune.workload import find_query

    ctx = open_project_or_database(project)
    with ctx.target.connect(autocommit=True) as conn:
        q = find_query(ctx.dir, conn, query, ctx.config.tune.target_ms)
        result = explain_query(conn, q, analyze=not no_analyze)
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        for line in result.render():
            out.print(line, markup=False)


def _with_max_width(cfg: TuneConfig, max_width: int) -> TuneConfig:
    """The tune settings with `max_width` from the command line, validated like the `tune:` section."""
    from pydantic import ValidationError

    from pgmill.errors import ConfigError

    try:
        return type(cfg).model_validate({**cfg.model_dump(), "max_width": max_width})
    except ValidationError as exc:
        raise ConfigError(f"--max-width {max_width}: {exc.errors()[0]['msg']}") from None


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f} MB"


def _print_report(d: dict[str, Any]) -> None:
    out.print(f"tuning run {d['run_id']} ({d['mode']}, costing by {d['backend']}): {len(d['queries'])} queries, "
              f"{d['candidates']} candidate indexes, {d['seconds']:.1f} s")
    if "sampled" in d:
        s = d["sampled"]
        out.print(f"sampled {s['statements']} statement(s) with their constants from {s['seen']} running "
                  f"({s['polls']} looks; {s['truncated']} too long for track_activity_query_size, "
                  f"{s['parameterized']} sent with parameters, {s['hidden']} of other roles not visible)")
    if d.get("unvacuumed"):
        out.print(f"note: most pages of {', '.join(d['unvacuumed'])} are not in the visibility map (no VACUUM since "
                  "a large load?): index-only scans are costed as heap reads, so covering indexes look less useful "
                  "than they will be; run VACUUM (ANALYZE) and tune again")
    if not d["recommendations"]:
        out.print("no index would make the workload cheaper")
    for r in d["recommendations"]:
        out.print(f"  {r['label']}  ~{_mb(r['size_bytes'])}")
        for q in r["queries"]:
            out.print(f"      {q}: cost {r['cost_before'][q]:,.0f} -> {r['cost_after'][q]:,.0f}")
        lean = r.get("lean_alternative")
        if lean:
            out.print(f"      --apply measures it against the leaner {lean['label']}  ~{_mb(lean['size_bytes'])}")
    for s in d["skipped_for_budget"]:
        out.print(f"  over budget: {s}")
    applied = d.get("applied")
    if applied:
        for o in applied["outcomes"]:
            out.print(f"  {o['status']:8} {o['label']}: {o['reason']}")
        out.print("  query                              p95 before   p95 after")
        for name, b in applied["before"].items():
            a = applied["after"].get(name, b)
            out.print(f"  {name:34} {b['p95_ms']:9.2f} ms {a['p95_ms']:9.2f} ms")
        if applied["slower"]:
            out.print(f"  still slower: {', '.join(applied['slower'])}")


def register(app: typer.Typer) -> None:
    """Add `tune`, `indexes` and `explain`."""
    app.command()(tune)
    app.command()(indexes)
    app.command()(explain)

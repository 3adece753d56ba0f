"""What each MCP tool does, as plain functions over a project and its read-only database.

Each returns the text the model reads: data from the database always inside an untrusted-data envelope.
`server.py` only registers these and turns pgmill errors into tool errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from pgmill.db.catalog import table_key
from pgmill.ingest import quarantine
from pgmill.mcp import describe, hypo, project_view
from pgmill.mcp.readonly import ReadOnlyDatabase, json_value
from pgmill.mcp.sqlcheck import QueryRefused
from pgmill.mcp.untrusted import wrap
from pgmill.observe import ledger
from pgmill.project import ProjectContext
from pgmill.redact import redact

MAX_QUARANTINE_SAMPLE = 50
MAX_RUNS = 50


def list_tables(ctx: ProjectContext, db: ReadOnlyDatabase) -> str:
    listed = db.read(describe.tables)
    summaries = project_view.contract_summaries(ctx)
    for t in listed:
        t["contract"] = summaries.pop(t["table"], None)
    for table, contract in sorted(summaries.items()):  # pipelines whose table is not created yet
        listed.append({"table": table, "kind": "not created yet (no successful run)", "contract": contract})
    return wrap(f"{len(listed)} tables and views (row counts are planner estimates; sizes include indexes).",
                listed)


def describe_table(ctx: ProjectContext, db: ReadOnlyDatabase, table: str) -> str:
    def body(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        info = describe.describe(conn, table)
        info["quality"] = latest_quality(conn, info["table"])
        return info

    info = db.read(body)
    info["quality"] = [{k: json_value(v, db.limits.max_cell_chars) for k, v in r.items()} for r in info["quality"]]
    info["contracts"] = {p: c for p, c in project_view.contracts(ctx).items() if c["table"] == info["table"]}
    return wrap(f"Table {info['table']}: columns, constraints, indexes, the project's contracts for it and the"
                " latest quality check results.",
                info)


def query(db: ReadOnlyDatabase, sql_text: str, params: Sequence[Any] | None, max_rows: int | None) -> str:
    result = db.query(sql_text, params or (), max_rows)
    note = (f" Truncated ({result.truncated_reason}): refine the query (WHERE, LIMIT, fewer columns)."
            if result.truncated else "")
    return wrap(f"{len(result.rows)} rows.{note}", result.as_dict())


def explain(db: ReadOnlyDatabase, sql_text: str, params: Sequence[Any] | None, analyze: bool,
            hypothetical: Sequence[str] | None = None, tuning: hypo.Tuning | None = None) -> str:
    if hypothetical:
        if analyze:
            raise QueryRefused("hypothetical indexes exist only for the planner: they cannot be combined with "
                               "analyze (the plans with and without them are estimated)")
        plans = hypo.explain_hypothetical(db, tuning or hypo.Tuning(None), sql_text, params, hypothetical)
        used = sum(1 for h in plans["hypothetical_indexes"] if h["used_in_plan"])
        return wrap(f"Plans (estimated, not executed) without and with {len(hypothetical)} hypothetical indexes"
                    f" ({used} used by the planner); nothing was created."
                    + (" - truncated" if plans["truncated"] else ""), plans)
    # The guard parses the whole text, EXPLAIN included, so the prefix cannot smuggle anything past it.
    options = "ANALYZE, BUFFERS, " if analyze else ""
    result = db.query(f"EXPLAIN ({options}FORMAT TEXT) {sql_text}", params or ())
    plan = "\n".join(str(r[0]) for r in result.rows)
    what = "Plan (executed: actual times and rows)" if analyze else "Plan (estimated, not executed)"
    return wrap(what + (" - truncated" if result.truncated else ""), {"plan": plan})


def pipeline_status(ctx: ProjectContext, db: ReadOnlyDatabase, pipeline: str | None, limit: int) -> str:
    limit = max(1, min(limit, MAX_RUNS))

    def body(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        if not describe.has_table(conn, "pgmill.runs"):
            return {"runs": [], "quarantine": [], "note": "no run yet: pgmill's ledger tables do not exist"}
        runs = [r.as_dict() for r in ledger.recent_runs(conn, pipeline, limit)]
        counts = quarantine.summary(conn, pipeline)
        return {"runs": runs, "quarantine": [{"pipeline": p, "column": c, "rule": r, "rows": n}
                                             for p, c, r, n in counts]}

    status = db.read(body)
    for run in status["runs"]:
        run["error"] = redact(run["error"]) if run["error"] else None
    status["failures"] = [{k: r[k] for k in ("run_id", "pipeline", "status", "started_at", "error")}
                          for r in status["runs"] if r["status"] in ("failed", "abandoned")]
    status["pipelines"] = {n: {"table": table_key(p.table), "mode": p.mode}
                           for n, p in sorted(ctx.config.pipelines.items())
                           if pipeline is None or n == pipeline}
    return wrap(f"Recent runs (newest first), failures and quarantine counts"
                f"{' for ' + pipeline if pipeline else ''}.", status)


def quarantine_sample(db: ReadOnlyDatabase, pipeline: str, limit: int, rule: str | None) -> str:
    limit = max(1, min(limit, MAX_QUARANTINE_SAMPLE))

    def body(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        if not describe.has_table(conn, "pgmill.quarantine"):
            return []
        return quarantine.rows(conn, pipeline, limit, rule)

    rows = [{k: json_value(v, db.limits.max_cell_chars) for k, v in r.items()} for r in db.read(body)]
    return wrap(f"{len(rows)} newest quarantined rows of {pipeline}"
                f"{' that broke ' + rule if rule else ''}: where each came from, its values, what it broke.", rows)


def run_pipeline(ctx: ProjectContext, pipeline: str) -> str:
    from pgmill.ingest.runner import run_pipelines

    records = run_pipelines(ctx, [pipeline])
    out = [r.as_dict() for r in records]
    for r in out:
        r["error"] = redact(r["error"]) if r["error"] else None
    status = ", ".join(f"{r['pipeline']}: {r['status']}" for r in out)
    return wrap(f"Run finished ({status}).", out)


def schema_overview(ctx: ProjectContext, db: ReadOnlyDatabase) -> str:
    """Every readable table with its columns and the pipeline that loads it: the model's map."""
    def body(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        out = []
        for t in describe.tables(conn):
            if not t["readable"]:
                continue
            d = describe.describe(conn, t["table"])
            out.append({"table": d["table"], "kind": d["kind"], "row_estimate": d["row_estimate"],
                        "columns": {c["name"]: c["type"] for c in d["columns"]},
                        "primary_key": next((c["definition"] for c in d["constraints"]
                                             if c["type"] == "primary key"), None)})
        return out

    tables = db.read(body)
    summaries = project_view.contract_summaries(ctx)
    for t in tables:
        t["loaded_by"] = [p["pipeline"] for p in summaries.get(t["table"], {}).get("pipelines", [])]
    return wrap("Schema overview: readable tables, their columns and the pipelines that load them.", tables)


def quality_report(db: ReadOnlyDatabase, table: str | None) -> str:
    """The latest `pgmill check` results (pgmill.quality_results), per table or for one table."""
    from pgmill.quality import history

    def body(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
        if not describe.has_table(conn, "pgmill.quality_results"):
            return {}
        names = [table_key(table)] if table else history.checked_tables(conn)
        return {name: history.latest_run(conn, name) for name in names}

    report = {t: [{k: json_value(v, db.limits.max_cell_chars) for k, v in r.items()} for r in rows]
              for t, rows in db.read(body).items()}
    if not any(report.values()):
        return wrap("No quality check results yet: `pgmill check` records them.", report)
    failing = sum(1 for rows in report.values() for r in rows if r.get("status") not in ("pass", "skipped"))
    return wrap(f"Latest quality check results for {len(report)} tables ({failing} rules not passing).", report)


def index_health(db: ReadOnlyDatabase) -> str:
    """Unused, duplicate, redundant, invalid and bloated indexes, and how much indexes are used."""
    from pgmill.tune.health import index_health as health

    def body(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        return health(conn).as_dict()

    return wrap("Index health (scan counts since the statistics were last reset).", db.read(body))


def recommend_indexes(ctx: ProjectContext, db: ReadOnlyDatabase, tuning: hypo.Tuning, budget: str | None) -> str:
    """The index advisor over the declared (queries/*.sql) and observed (pg_stat_statements) workload."""
    advice = hypo.recommend(ctx.target, ctx.dir, ctx.config.tune, tuning, db.limits, budget=budget).as_dict()
    how = ("costed with HypoPG: hypothetical indexes in a read-only session, nothing was created"
           if tuning.hypopg else
           "costed by building each candidate for real inside a rolled-back transaction: none was kept")
    if not advice["queries"]:
        return wrap("No workload to tune: add queries/*.sql to the project, or let pg_stat_statements observe"
                    " the application's queries.", advice)
    n = len(advice["recommendations"])
    return wrap(f"{n} indexes recommended for {len(advice['queries'])} queries ({how}). Estimated workload "
                f"cost {advice['estimated_cost_before']} -> {advice['estimated_cost_after']}."
                + (" apply_indexes creates them, measured." if n else ""), advice)


def apply_indexes(ctx: ProjectContext, budget: str | None) -> str:
    """`pgmill tune --apply`: create the recommended indexes, measure, keep only those that proved faster."""
    from pgmill.tune.run import run_tune

    report = run_tune(ctx, apply=True, budget=budget).as_dict()
    applied = report.get("applied") or {}
    kept = [o["label"] for o in applied.get("outcomes", []) if o.get("status") == "kept"]
    return wrap(f"Tuning run {report['run_id']}: {len(report['recommendations'])} indexes recommended, "
                f"{len(kept)} kept after measuring (`pgmill tune --rollback {report['run_id']}` drops them).",
                report)


def latest_quality(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    from pgmill.quality import history

    if not describe.has_table(conn, "pgmill.quality_results"):
        return []
    return history.latest_run(conn, table)


def alerts(db: ReadOnlyDatabase, hours: int) -> str:
    from datetime import UTC, datetime, timedelta

    from pgmill.observe.alerts import list_alerts

    since = datetime.now(UTC) - timedelta(hours=max(1, min(hours, 24 * 30)))
    listing = db.read(lambda conn: list_alerts(conn, since, limit=MAX_RUNS).as_dict()
                      if describe.has_table(conn, "pgmill.alert_state") else {"firing": [], "events": []})
    return wrap("Alerts firing now, and alert events of the period with each delivery attempt.", listing)


def schedules(db: ReadOnlyDatabase) -> str:
    from datetime import UTC, datetime

    from pgmill.schedule.slots import overview

    jobs = db.read(lambda conn: overview(conn, datetime.now(UTC))
                   if describe.has_table(conn, "pgmill.expected_runs") else [])
    return wrap("Scheduled jobs: the next expected run, runs late now, the last one, missed and failed slots "
                "of the last day.", jobs)


def success_rate(db: ReadOnlyDatabase, days: int) -> str:
    from datetime import timedelta

    from pgmill.observe.success import success_rate as rate

    report = db.read(lambda conn: rate(conn, timedelta(days=max(1, min(days, 366)))).as_dict())
    return wrap(f"Success rate over the last {days} days from the execution log, per pipeline and job and overall "
                "(the brief's target: above 99.9%).", report)


def cost(ctx: ProjectContext, db: ReadOnlyDatabase, month: str | None) -> str:
    from pgmill.observe.cost import cost_report

    report = db.read(lambda conn: cost_report(conn, ctx.config.cost, month).as_dict())
    return wrap("What the measured work cost: per job and per GB processed, month to date and projected, "
                "against the budget and the brief's targets.", report)


def validation(ctx: ProjectContext, db: ReadOnlyDatabase, days: int) -> str:
    from datetime import timedelta

    from pgmill.validate import validate

    report = db.read(lambda conn: validate(conn, ctx, timedelta(days=max(1, min(days, 3660)))).as_dict())
    return wrap("The brief's measurable success criteria against this project's data (`pgmill validate`): each "
                "figure, its source and window, the threshold, and pass / fail / not_measured (no data is never "
                "a pass); ok is true when every measured criterion passes.", report)

"""The MCP server: tools, resources and prompts over one pgmill project, registered on the official SDK.

Every tool is one call into `tools` (and through it the library); pgmill errors become tool errors with
secrets redacted. Reading tools go through `ReadOnlyDatabase`; `run_pipeline` and `apply_indexes` exist only
when the server was started with allow_writes. `recommend_indexes` is read-only with HypoPG (hypothetical
indexes, see `hypo`); without HypoPG the advisor builds real indexes, so it then needs allow_writes too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from pgmill.db.catalog import split_table
from pgmill.errors import PgmillError
from pgmill.mcp import hypo, project_view, prompts, tools
from pgmill.mcp.readonly import Limits, ReadOnlyDatabase
from pgmill.project import ProjectContext
from pgmill.redact import redact

T = TypeVar("T")
Param = str | int | float | bool | None
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _tool(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except PgmillError as exc:
        raise ToolError(redact(str(exc))) from None


def _resource(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except PgmillError as exc:
        raise ResourceError(redact(str(exc))) from None


def build_server(ctx: ProjectContext, *, allow_writes: bool = False, limits: Limits | None = None) -> MCPServer:
    """The server for project `ctx`; raises NotReadOnly if read-only access cannot be guaranteed."""
    schemas = sorted({split_table(p.table)[0] for p in ctx.config.pipelines.values()})
    db = ReadOnlyDatabase.start(ctx.target, schemas, limits)
    tuning = hypo.detect(ctx.target, install=allow_writes)
    app: MCPServer = MCPServer("pgmill", instructions=prompts.INSTRUCTIONS + _tuning_note(tuning, allow_writes),
                               log_level="WARNING")

    @app.tool(annotations=READ, structured_output=False)
    def list_tables() -> str:
        """Tables and views: estimated rows, size on disk, and the pipeline and contract that load each."""
        return _tool(lambda: tools.list_tables(ctx, db))

    @app.tool(annotations=READ, structured_output=False)
    def describe_table(
        table: Annotated[str, Field(description="table name, 'name' or 'schema.name'")],
    ) -> str:
        """Columns, types, constraints, indexes (size, scans), statistics and the contract rules of a table."""
        return _tool(lambda: tools.describe_table(ctx, db, table))

    @app.tool(annotations=READ, structured_output=False)
    def query(
        sql: Annotated[str, Field(description="one SELECT, WITH, VALUES or TABLE statement; $1, $2... for values")],
        params: Annotated[list[Param] | None, Field(description="values for $1, $2...")] = None,
        max_rows: Annotated[int | None, Field(description="return at most this many rows (never more than the server's cap)")] = None,
    ) -> str:
        """Run read-only SQL as the read-only role. Results are capped in rows and bytes (see `truncated`);
        only built-in side-effect-free functions may be called; statements time out server-side."""
        return _tool(lambda: tools.query(db, sql, params, max_rows))

    @app.tool(annotations=READ, structured_output=False, description=_explain_description(tuning))
    def explain(
        sql: Annotated[str, Field(description="the SELECT to explain; $1, $2... for values")],
        params: Annotated[list[Param] | None, Field(description="values for $1, $2...")] = None,
        analyze: Annotated[bool, Field(description="run it to get actual times and rows")] = False,
        hypothetical_indexes: Annotated[list[str] | None, Field(
            description="indexes to imagine (HypoPG): 'CREATE INDEX ON schema.table (a, b DESC) INCLUDE (c)"
                        " WHERE ...' or just 'schema.table (a, b)'; returns the plan without and with them")
        ] = None,
    ) -> str:
        return _tool(lambda: tools.explain(db, sql, params, analyze, hypothetical_indexes, tuning))

    @app.tool(annotations=READ, structured_output=False)
    def pipeline_status(
        pipeline: Annotated[str | None, Field(description="only this pipeline")] = None,
        limit: Annotated[int, Field(description=f"how many recent runs (at most {tools.MAX_RUNS})")] = 10,
    ) -> str:
        """Recent runs from the ledger (counts, errors), the failures among them, and quarantine counts by rule."""
        return _tool(lambda: tools.pipeline_status(ctx, db, pipeline, limit))

    @app.tool(annotations=READ, structured_output=False)
    def quarantine_sample(
        pipeline: Annotated[str, Field(description="pipeline name")],
        limit: Annotated[int, Field(description=f"how many rows (at most {tools.MAX_QUARANTINE_SAMPLE})")] = 10,
        rule: Annotated[str | None, Field(description="only rows that broke this rule")] = None,
    ) -> str:
        """The newest quarantined rows of a pipeline: source location, raw values, every rule broken."""
        return _tool(lambda: tools.quarantine_sample(db, pipeline, limit, rule))

    @app.tool(annotations=READ, structured_output=False)
    def quality_report(
        table: Annotated[str | None, Field(description="only this table (default: every checked table)")] = None,
    ) -> str:
        """The latest `pgmill check` results: each rule's status, rows checked and failed, per table."""
        return _tool(lambda: tools.quality_report(db, table))

    @app.tool(annotations=READ, structured_output=False)
    def index_health() -> str:
        """Unused, duplicate, prefix-redundant, invalid and bloated indexes, and index utilization."""
        return _tool(lambda: tools.index_health(db))

    @app.tool(annotations=READ, structured_output=False)
    def alerts(
        hours: Annotated[int, Field(description="alert events of this many last hours (at most 720)")] = 24,
    ) -> str:
        """Alerts firing now, and recent alert events with every delivery attempt and its result."""
        return _tool(lambda: tools.alerts(db, hours))

    @app.tool(annotations=READ, structured_output=False)
    def schedules() -> str:
        """Scheduled jobs (`pgmill serve`): next expected run, late runs, last outcome, missed and failed slots."""
        return _tool(lambda: tools.schedules(db))

    @app.tool(annotations=READ, structured_output=False)
    def success_rate(
        days: Annotated[int, Field(description="the window, in days (at most 366)")] = 30,
    ) -> str:
        """Runs, successes, success rate, retries that saved a run, late and missed slots, per pipeline and job."""
        return _tool(lambda: tools.success_rate(db, days))

    @app.tool(annotations=READ, structured_output=False)
    def cost(
        month: Annotated[str | None, Field(description="YYYY-MM (default: the current month)")] = None,
    ) -> str:
        """Cost per job and per GB processed, month to date and projected, against the budget."""
        return _tool(lambda: tools.cost(ctx, db, month))

    @app.tool(annotations=READ, structured_output=False)
    def validation(
        days: Annotated[int, Field(description="the window of the run ledger's and the checks' criteria, in days "
                                               "(at most 3660)")] = 30,
    ) -> str:
        """The brief's success criteria (p95, tuning gain, index use, success rate, retries, rows lost,
        validation, completeness, duplicates, cost) with this project's figures: pass, fail or not measured."""
        return _tool(lambda: tools.validation(ctx, db, days))

    if tuning.hypopg or allow_writes:
        @app.tool(annotations=READ if tuning.hypopg else ToolAnnotations(
                      read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
                  structured_output=False, description=_recommend_description(tuning))
        def recommend_indexes(
            budget: Annotated[str | None, Field(
                description="index storage to spend: 512MB, 2GB, 50% (of the data the workload reads), 0.5x, "
                            "unlimited (default: the project's tune.budget)")] = None,
        ) -> str:
            return _tool(lambda: tools.recommend_indexes(ctx, db, tuning, budget))

    if allow_writes:
        @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                              open_world_hint=False), structured_output=False)
        def apply_indexes(
            budget: Annotated[str | None, Field(
                description="index storage to spend: 512MB, 2GB, 50%, 0.5x, unlimited (default: the project's"
                            " tune.budget)")] = None,
        ) -> str:
            """`pgmill tune --apply`: create the recommended indexes (CONCURRENTLY), measure the workload's
            latency before and after, and keep only the indexes that made it faster. Writes to the database;
            the run is recorded and `pgmill tune --rollback RUN` drops what it kept."""
            return _tool(lambda: tools.apply_indexes(ctx, budget))

        @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                              open_world_hint=True), structured_output=False)
        def run_pipeline(pipeline: Annotated[str, Field(description="pipeline name")]) -> str:
            """Load a pipeline now (exactly once: a rerun loads only what is new). Writes to the database."""
            return _tool(lambda: tools.run_pipeline(ctx, pipeline))

    @app.resource("pgmill://schema", name="schema", mime_type="text/plain",
                  description="Readable tables, their columns, keys and the pipelines that load them")
    def schema_resource() -> str:
        return _resource(lambda: tools.schema_overview(ctx, db))

    @app.resource("pgmill://contracts", name="contracts", mime_type="application/json",
                  description="Every pipeline's table, load mode and contract (columns, rules, policies)")
    def contracts_resource() -> dict[str, dict[str, object]]:
        return _resource(lambda: project_view.contracts(ctx))

    @app.resource("pgmill://project", name="project", mime_type="text/yaml",
                  description="pgmill.yaml with passwords and secret values removed")
    def project_resource() -> str:
        return _resource(lambda: project_view.redacted_project_file(ctx))

    app.prompt(title="Investigate a failed run")(prompts.investigate_failed_run)
    app.prompt(title="Why is this query slow?")(prompts.why_is_this_query_slow)
    app.prompt(title="Profile a table")(prompts.explore_table)
    return app


def _explain_description(tuning: hypo.Tuning) -> str:
    text = "The query plan of a read-only statement (EXPLAIN, or EXPLAIN ANALYZE with buffers)."
    if tuning.hypopg:
        return text + (" With hypothetical_indexes (HypoPG), the estimated plan without and with those indexes;"
                       " nothing is created.")
    return text + f" hypothetical_indexes needs HypoPG, which is unavailable: {hypo.missing(tuning)}."


def _recommend_description(tuning: hypo.Tuning) -> str:
    text = ("Recommend indexes for the project's workload (queries/*.sql and the top statements of "
            "pg_stat_statements) within a storage budget: each index with its DDL, size and the estimated "
            "cost of the queries it serves, before and after.")
    if tuning.hypopg:
        return text + (" Costed with HypoPG's hypothetical indexes in a read-only session: nothing is created;"
                       " apply_indexes (with --allow-writes) creates them.")
    return text + (" HypoPG is not installed, so each candidate index is built for real inside a transaction"
                   " that is rolled back (it takes locks and I/O while it runs): offered only because the"
                   " server was started with --allow-writes.")


def _tuning_note(tuning: hypo.Tuning, allow_writes: bool) -> str:
    if tuning.hypopg or allow_writes:
        return ""
    return ("\nIndex recommendations (recommend_indexes) and hypothetical indexes in explain are not available:"
            f" HypoPG is missing ({hypo.missing(tuning)}), and without it the advisor would build real indexes,"
            " which needs the server started with --allow-writes. index_health and explain work.")

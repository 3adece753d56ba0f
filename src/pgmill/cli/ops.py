"""Running it in production: `pgmill serve`, `pgmill metrics`, `pgmill alerts [test]`, `pgmill cost`."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out, read
from pgmill.project import open_project

TOKEN_ENV = "PGMILL_SERVE_TOKEN"


@guarded
def serve(
    project: ProjectOpt = None,
    http: Annotated[str, typer.Option(
        "--http", metavar="HOST:PORT",
        help=f"serve the dashboard, /metrics and /healthz here (PORT alone binds 127.0.0.1); beyond loopback {TOKEN_ENV} is "
        "required")] = "127.0.0.1:8080",
    once: Annotated[bool, typer.Option(
        "--once", help="run what is due now, wait for it, and exit (for cron, systemd timers and CI); no HTTP")] = False,
    tick: Annotated[float, typer.Option(help="seconds between two looks at the schedule", min=0.5)] = 5.0,
    allow_origin: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="a browser origin allowed besides localhost (repeatable)")] = None,
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="let the dashboard change things (replay quarantined rows), each as a POST "
        "with a CSRF token; without it the dashboard only reads")] = False,
) -> None:
    """Run the project's schedule, evaluate its alerts, serve the dashboard (/) and the metrics, until SIGTERM
    or Ctrl-C."""
    from pgmill.httpauth import parse_address
    from pgmill.observe.hooks import service_hooks
    from pgmill.schedule.service import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx = open_project(project)
    hooks = service_hooks()
    svc = Service(ctx, hooks=hooks, tick_seconds=tick)
    if once:
        report = svc.run_due()
        for hook in hooks:
            getattr(hook, "wait", lambda _t: True)(60)
        failed = [f for f in report.finished if not f.endswith(":succeeded")]
        out.print(f"ran {len(report.started)} due slot(s): {len(report.started) - len(failed)} succeeded"
                  + "".join(f"\n  {f}" for f in failed), markup=False)
        if failed:
            raise typer.Exit(1)
        return
    from pgmill.web.app import create_app
    from pgmill.web.server import bound_port, serve_http, stop_http

    host, port = parse_address(http, "--http")
    app = create_app(ctx, token=os.environ.get(TOKEN_ENV) or None, allow_origins=allow_origin or (),
                     service_state=svc, host=host, allow_writes=allow_writes)
    server, thread = serve_http(app, host, port)
    base = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port(server)}"
    logging.getLogger("pgmill.serve").info("dashboard on %s/ (%s), metrics on %s/metrics, health on %s/healthz",
                                           base, "read and write" if allow_writes else "read-only", base, base)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        logging.getLogger("pgmill.serve").info("%s: stopping (runs in flight are interrupted cleanly)",
                                               signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        svc.serve(stop)
    finally:
        stop_http(server, thread)


@guarded
def metrics(project: ProjectOpt = None) -> None:
    """Print the Prometheus metrics once, as `pgmill serve` answers them at /metrics."""
    from pgmill.observe.metrics import render_metrics

    tables = open_project(project).tables
    text = read(project, lambda conn: render_metrics(conn, tables))
    out.print(text.decode(), markup=False, end="")


alerts_group = typer.Typer(help="Alerts: what is firing, what was sent where; a test message to every channel.",
                           no_args_is_help=False, invoke_without_command=True)


@alerts_group.callback()
@guarded
def alerts(
    ctx: typer.Context,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    since: Annotated[str, typer.Option(metavar="DURATION", help="events of this last period")] = "1d",
) -> None:
    """Firing alerts, and the recent alert events with each delivery attempt."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import UTC, datetime, timedelta

    from pgmill.config.duration import parse_duration
    from pgmill.errors import ConfigError
    from pgmill.observe.alerts import list_alerts

    try:
        start = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    listing = read(project, lambda conn: list_alerts(conn, start))
    if as_json:
        out.print_json(json.dumps(listing.as_dict(), default=str))
        return
    out.print(_format_alerts(listing.as_dict()), markup=False)


def _format_alerts(d: dict[str, Any]) -> str:
    lines = [f"firing: {len(d['firing'])}"]
    for f in d["firing"]:
        lines.append(f"  {f['rule']} [{f['subject']}] since {str(f['since'])[:19]}: {f['message']}")
    lines.append(f"recent events: {len(d['events'])}")
    for e in d["events"]:
        lines.append(f"  #{e['event_id']} {str(e['at'])[:19]} {e['kind']} {e.get('rule') or ''} "
                     f"[{e.get('subject') or ''}]: {e['title']}")
        for a in e.get("deliveries", []):
            lines.append(f"      {a['channel']}: attempt {a['attempt']} {a['status']}"
                         + (f" ({a['error']})" if a.get("error") else "") + f", {a['latency_ms']:.0f} ms")
    return "\n".join(lines)


@alerts_group.command("test")
@guarded
def alerts_test(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Send a test message to every alert channel and report each result (exit 1 if any failed)."""
    from pgmill.errors import ConfigError
    from pgmill.observe.alerts import send_test

    pctx = open_project(project)
    if not pctx.config.alerts.channels:
        raise ConfigError(f"{pctx.dir / 'pgmill.yaml'}: no alert channels (alerts: {{channels: ...}})")
    results = send_test(pctx)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in results]))
    else:
        for r in results:
            out.print(f"{r.channel}: " + ("sent" if r.sent else f"FAILED after {r.attempts} attempts: {r.error}")
                      + f" ({r.latency_ms:.0f} ms)", markup=False)
    if not all(r.sent for r in results):
        raise typer.Exit(1)


@guarded
def cost(
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    month: Annotated[str | None, typer.Option(metavar="YYYY-MM", help="this month (default: the current one)")] = None,
) -> None:
    """What the runs cost: per pipeline and job, per GB processed, month to date and projected, against the budget."""
    from pgmill.observe.cost import cost_report
    from pgmill.observe.cost_text import format_cost_report

    pctx = open_project(project)
    report = read(project, lambda conn: cost_report(conn, pctx.config.cost, month))
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    else:
        out.print(format_cost_report(report), markup=False)


@guarded
def dashboard(
    export: Annotated[Path, typer.Option(
        "--export", metavar="DIR", help="write the pages here as static HTML (index.html is the overview)")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the dashboard as static HTML files that open from disk, with no server (`pgmill serve` serves it live)."""
    from pgmill.web.export import export_dashboard

    report = export_dashboard(open_project(project), export)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    d = report.as_dict()
    out.print(f"wrote {d['files']} pages ({d['bytes']:,} bytes) in {d['seconds']} s: open {d['index']}",
              markup=False)


def register(app: typer.Typer) -> None:
    """Add `serve`, `dashboard`, `metrics`, `alerts` and `cost`."""
    app.command()(serve)
    app.command()(dashboard)
    app.command()(metrics)
    app.add_typer(alerts_group, name="alerts")
    app.command()(cost)



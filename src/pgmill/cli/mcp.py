"""`pgmill mcp`: serve the project over MCP on stdio (the default) or streamable HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from pgmill.cli.shell import ProjectOpt, guarded
from pgmill.project import open_project


@guarded
def mcp(
    project: ProjectOpt = None,
    http: Annotated[str | None, typer.Option(
        "--http", metavar="HOST:PORT",
        help="serve streamable HTTP on this address (PORT alone binds 127.0.0.1); needs PGMILL_MCP_TOKEN"),
    ] = None,
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="add the tools that change things: run_pipeline, apply_indexes (and recommend_indexes "
        "when HypoPG is missing); installs HypoPG if the server has it; queries stay read-only")] = False,
    allow_origin: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="a browser origin allowed over HTTP besides localhost (repeatable)")] = None,
) -> None:
    """Serve the project to AI assistants over the Model Context Protocol (read-only by default)."""
    from pgmill.mcp import http as mcp_http
    from pgmill.mcp.server import build_server

    # check the address and token before touching the database: a mistake fails fast
    address = mcp_http.parse_address(http) if http else None
    if address:
        mcp_http.token_from_env()
    server = build_server(open_project(project), allow_writes=allow_writes)
    if address:
        mcp_http.serve(server, *address, origins=allow_origin or ())
    else:
        server.run("stdio")  # stdout carries the protocol; errors go to stderr


def register(app: typer.Typer) -> None:
    """Add `mcp` (also what `python -m pgmill.mcp` runs)."""
    app.command("mcp")(mcp)

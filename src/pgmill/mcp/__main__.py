"""`python -m pgmill.mcp [--http HOST:PORT] [--allow-writes] [--project DIR]`: the same as `pgmill mcp`."""

import typer

from pgmill.cli.mcp import register

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    app()

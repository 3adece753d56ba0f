"""The `pgmill` command: a thin shell over the library, one module per command group.

    root.py        the typer app (the groups registered in `--help` order) and `main`
    shell.py       what every command shares: the one error guard, the consoles, the common options
    project.py     init, schema
    run.py         run, status, demo
    storage.py     retention
    transform.py   transform, graph
    quality.py     check, report
    tune.py        tune, indexes, explain (a database is enough: no project needed)
    ops.py         serve, metrics, alerts [test], cost (running it in production)
    mcp.py         mcp
    db.py          db start | stop | status | url
    quarantine.py  quarantine list | show | replay

Each command opens the project, calls one library function and prints what it returns; `shell.guarded`
turns whatever it raises into one line on stderr and the exit code the README documents.
"""

from pgmill.cli.root import app, main

__all__ = ["app", "main"]

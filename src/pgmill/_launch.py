"""The `pgmill` command's start: the CLI's modules load with the cyclic garbage collector off.

Loading them (psycopg, pydantic and its schemas, typer, the commands) makes ~100 collections that find
almost nothing and took ~20 ms of a ~0.3 s start. What they create lives as long as the process, so it is
frozen once loaded: later collections no longer walk it either.
"""

import gc
from collections.abc import Callable


def load_cli() -> Callable[[], None]:
    """Import the CLI with the collector off, freeze what the import made, and return its entry point."""
    gc.disable()
    try:
        from pgmill.cli import main
    finally:
        gc.freeze()
        gc.enable()
    return main


def main() -> None:
    load_cli()()

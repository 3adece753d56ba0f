"""What every command shares: the one error guard, the consoles, the common options, opening the project.

Every command is wrapped by `guarded`, so whatever it raises ends as one message on stderr (never a
traceback) and the exit code the README documents: a PgmillError its `exit_code` (2 config ... 10 not
read-only), a psycopg error 5 if a new attempt could succeed and 6 if not, Ctrl-C 130, anything else 70
(a bug: please report it).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

# Nearly every command opens a project: the config models (pydantic) and the driver (psycopg) load with
# the CLI, which pgmill._launch imports with the garbage collector off and then freezes.
from pgmill.project import open_project

if TYPE_CHECKING:
    import psycopg

P = ParamSpec("P")
T = TypeVar("T")

EXIT_INTERRUPTED = 130
EXIT_UNEXPECTED = 70  # EX_SOFTWARE (sysexits.h): an internal error


class _Console:
    """A rich Console made on first use: importing rich costs ~20 ms that a command printing JSON, or
    nothing, need not pay."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    def real(self) -> Any:
        """The rich Console itself."""
        if self._console is None:
            from rich.console import Console

            c = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
            if not self._stderr and not c.is_terminal:
                c = Console(highlight=False, soft_wrap=True, width=160)  # logs and pipes: no 80-column squeeze
            self._console = c
        return self._console

    def print_json(self, text: str) -> None:
        """JSON for scripts as plain text (what rich prints, less its colours, and without importing it);
        coloured on a terminal."""
        stream = sys.stderr if self._stderr else sys.stdout
        if self._console is None and not stream.isatty():
            stream.write(json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n")
            stream.flush()
            return
        self.real().print_json(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


out = _Console()
err = _Console(stderr=True)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: found from the current folder upwards)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def print_error(message: str) -> None:
    """`error: message` on stderr, the message printed as it is (never read as rich markup)."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def guarded(command: Callable[P, None]) -> Callable[P, None]:
    """The error guard of every command: whatever the command raises ends as one message on stderr and the
    exit code of its kind, never a traceback."""

    @functools.wraps(command)
    def guard(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # typer's own ways out: an exit code the command chose, a usage error
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):  # the loader records Ctrl-C in the ledger first
                _interrupted()
            raise typer.Exit(report_failure(exc)) from None

    return guard


def _interrupted() -> NoReturn:
    err.print("interrupted; committed checkpoints are kept, rerun to resume")
    raise typer.Exit(EXIT_INTERRUPTED) from None


def report_failure(exc: Exception) -> int:
    """Print `exc` as one line and return its exit code. Under PGMILL_DEBUG=1 a bug is re-raised, with its
    traceback."""
    from pgmill.errors import DatabaseError, PgmillError, TransientError
    from pgmill.redact import redact
    from pgmill.retry import as_pgmill

    known = as_pgmill(exc)  # psycopg's errors, and a lost connection, as pgmill's (5 or 6)
    if isinstance(exc, PgmillError) or isinstance(known, TransientError | DatabaseError):
        print_error(redact(str(known)))
        return known.exit_code
    if os.environ.get("PGMILL_DEBUG"):
        raise exc
    print_error(f"{known} (set PGMILL_DEBUG=1 for a traceback; please report it)")
    return EXIT_UNEXPECTED


def read(project: Path | None, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Open the project's database (schema pgmill up to date) and read from it."""
    from pgmill.db.migrations import migrate

    with open_project(project).target.connect() as conn:
        migrate(conn)
        return fn(conn)


def settle_for_bulk_work() -> None:
    """This process is about to move millions of rows. The objects it holds now (modules, classes, the
    project) live as long as it does: frozen, the cyclic garbage collector stops walking them again and
    again, and it runs less often among the short-lived rows; it took ~6% of a load's CPU (perf). The C
    allocator gives the batches' freed buffers back to the system (ingest/allocator.py): peak memory stays
    flat however many files the load reads."""
    import gc

    import pgmill.ingest.runner  # noqa: F401  (polars, pyarrow, numpy: imported now, then frozen)
    from pgmill.ingest.allocator import return_freed_memory

    return_freed_memory()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


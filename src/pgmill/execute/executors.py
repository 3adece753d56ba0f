"""The executor seam: a `concurrent.futures.Executor` for a pipeline's units, from the project's `executor:`.

- threads (the default): None here; the loader runs its units on threads of its own, sharing progress.
- processes: a ProcessPoolExecutor whose processes come from a fork server that imported the loader once
  (never forked from this process, which holds threads and connections); parsing and validating escape
  the GIL.
- dask: `distributed`'s executor on the cluster at `address`, with `pure=False`: Dask's default merges
  identical calls, which would silently run one unit for two submissions.

A unit must be safe to run twice: Dask runs a task again when the worker that ran it dies, even one that
had finished if its result was held there. Loading units are (each commits with its own checkpoint and
resumes from it); callers pass back small results (counts), never data.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor

from pgmill.config.spec import ExecutorSpec
from pgmill.errors import ConfigError, PgmillError

#: seconds to wait for a Dask scheduler to answer before giving up with a clear error
CONNECT_TIMEOUT_S = 10


def parse_executor(option: str) -> ExecutorSpec:
    """`--executor`: threads, processes, processes:N, or a Dask scheduler (dask://HOST:PORT, tcp://, tls://)."""
    text = option.strip()
    if text in ("threads", "processes"):
        return ExecutorSpec(kind=text)
    m = re.fullmatch(r"processes:(\d+)", text)
    if m:
        return _spec(kind="processes", workers=int(m.group(1)))
    m = re.fullmatch(r"dask://(\S+)", text)
    if m:
        return _spec(kind="dask", address=f"tcp://{m.group(1)}")
    if re.fullmatch(r"(tcp|tls)://\S+", text):
        return _spec(kind="dask", address=text)
    raise ConfigError(f"--executor {option!r}: expected threads, processes, processes:N or dask://HOST:PORT")


def _spec(**fields: object) -> ExecutorSpec:
    from pydantic import ValidationError

    try:
        return ExecutorSpec.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(f"--executor: {exc.errors()[0]['msg']}") from None


@contextlib.contextmanager
def open_executor(spec: ExecutorSpec, workers: int) -> Iterator[Executor | None]:
    """The executor for `spec` (None: threads of the caller's own), shut down on exit."""
    if spec.kind == "threads":
        yield None
        return
    if spec.kind == "processes":
        pool = ProcessPoolExecutor(max_workers=spec.workers or workers, mp_context=_fresh_processes(),
                                   initializer=_ignore_interrupts)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    assert spec.address is not None  # the spec's validator requires it
    with _dask(spec.address) as ex:
        yield ex


def _ignore_interrupts() -> None:
    """In a pool process: Ctrl-C reaches the whole process group, but stopping is the parent's to decide (it
    lets the checkpoints in flight commit); a worker that raised KeyboardInterrupt would fail its unit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: imported once by the fork server, so that each process of the pool starts with them (copy on write)
PRELOAD = ["pgmill.ingest.units"]


def _fresh_processes() -> multiprocessing.context.BaseContext:
    """Processes forked from a fork server that imported the loader once: never from this process, which
    holds threads and connections (unsafe to fork), and without each one paying the imports (about a
    second of CPU each) as spawned ones do. Where there is no fork server (Windows, macOS default), spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@contextlib.contextmanager
def _dask(address: str) -> Iterator[Executor]:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("executor kind dask needs Dask's distributed scheduler: pip install 'pgmill[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)  # type: ignore[no-untyped-call]
    except OSError as exc:  # distributed raises OSError (TimeoutError among them) when no scheduler answers
        raise PgmillError(f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT_S} s: "
                                  f"start one (`dask scheduler`, then `dask worker {address}`) or fix "
                                  f"executor.address ({exc})") from None
    try:
        yield client.get_executor(pure=False)  # type: ignore[no-untyped-call]
    finally:
        client.close()  # type: ignore[no-untyped-call]

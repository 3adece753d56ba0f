"""Fixtures for the tuning and CDC tests: a PostgreSQL 15 cluster with HypoPG, databases seeded with query
shapes, and a PostgreSQL 15 cluster with `wal_level = logical`.

The cluster comes from the Debian packages `postgresql-15` and `postgresql-15-hypopg` (which `.ci/run`
installs). Without them a test that needs HypoPG is skipped locally and FAILS in CI (CI=true), so CI can
never pass by silently not testing the HypoPG path.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmill.db.embedded import EmbeddedServer
from tests.helpers import connect, execute

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
HYPOPG_CONTROL = Path("/usr/share/postgresql/15/extension/hypopg.control")
SEED = Path(__file__).parent / "golden" / "tune" / "seed.sql"
RUN_AS = ("embedded_postgres", "postgres")


LOGICAL_CONF = "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"


class ClusterFailed(RuntimeError):
    """The PostgreSQL 15 cluster could not be started (binaries missing, or the server refused to start)."""


def _unavailable(why: str, needs: str = "PostgreSQL 15 with HypoPG",
                 packages: str = "postgresql-15 postgresql-15-hypopg") -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{needs} is required in CI: {why} (apt-get install -y {packages})")
    pytest.skip(f"{needs} not available: {why}")


def _user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    for name in RUN_AS:
        try:
            pwd.getpwnam(name)
            return {"user": name}
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", RUN_AS[0]],
                   check=True, capture_output=True)
    return {"user": RUN_AS[0]}


def _own(path: Path, user: dict[str, Any]) -> None:
    if user:
        pw = pwd.getpwnam(user["user"])
        os.chown(path, pw.pw_uid, pw.pw_gid)
    for p in [path, *path.parents]:  # the server user must reach its folder
        mode = p.stat().st_mode
        if mode & 0o011 != 0o011 and os.geteuid() == 0:
            p.chmod(mode | 0o011)


@contextlib.contextmanager
def cluster(base: Path, extra_conf: str = "") -> Iterator[str]:
    """Start a throwaway PostgreSQL 15 cluster in `base` (run as an unprivileged user when we are root) and
    yield the URL of its maintenance database on a Unix socket; `extra_conf` is appended to its settings.
    Raises ClusterFailed when it cannot start. The benchmarks use this too."""
    if not (PG15_BIN / "initdb").exists():
        raise ClusterFailed(f"{PG15_BIN}/initdb not found")
    data, sock = base / "data", base / "sock"
    base.mkdir(parents=True, exist_ok=True)
    user = _user()
    for d in (data, sock):
        d.mkdir(mode=0o700)
        _own(d, user)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    run: dict[str, Any] = {"check": True, "capture_output": True, "text": True, "env": env, "cwd": "/tmp", **user}
    subprocess.run([str(PG15_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                    "--encoding=UTF8", "--locale=C"], **run)
    (data / "postgresql.auto.conf").write_text(
        "listen_addresses = ''\nshared_buffers = 128MB\nfsync = off\nsynchronous_commit = off\n"
        "shared_preload_libraries = 'pg_stat_statements'\ntimezone = 'UTC'\n" + extra_conf)
    log = base / "postgres.log"
    log.touch()
    _own(log, user)
    try:
        subprocess.run([str(PG15_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-k {sock}", "start"], **run, timeout=90)
    except subprocess.CalledProcessError as exc:
        raise ClusterFailed(f"the cluster did not start: {exc.stderr}\n{log.read_text()[-2000:]}") from exc
    try:
        yield f"postgresql://postgres@/postgres?host={sock}"
    finally:
        subprocess.run([str(PG15_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       **{**run, "check": False})
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (maintenance database) of a PostgreSQL 15 cluster on a Unix socket, HypoPG available."""
    if not HYPOPG_CONTROL.exists():
        _unavailable(f"{HYPOPG_CONTROL} not found")
    try:
        with cluster(tmp_path_factory.mktemp("pg15")) as url:
            yield url
    except ClusterFailed as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def pg15_logical(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (maintenance database) of a PostgreSQL 15 cluster with `wal_level = logical`: a CDC source."""
    try:
        with cluster(tmp_path_factory.mktemp("pg15_logical"), LOGICAL_CONF) as url:
            yield url
    except ClusterFailed as exc:
        _unavailable(str(exc), needs="PostgreSQL 15 (wal_level = logical)", packages="postgresql-15")


def _database(server_url: str) -> str:
    name = "tune_" + uuid.uuid4().hex[:10]
    execute(server_url, psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return server_url.replace("/postgres?", f"/{name}?", 1)


def seeded(server_url: str) -> str:
    """A new database on the server holding the seeded shapes (app.customers, app.orders, app.items)."""
    url = _database(server_url)
    with connect(url) as c:
        for statement in SEED.read_text().split(";\n"):  # one transaction each, as an application would
            if statement.strip():
                c.execute(statement.encode())
        c.execute("VACUUM ANALYZE app.customers, app.orders, app.items")  # index-only scans need the visibility map
    return url


@pytest.fixture(params=["real", "hypopg"])
def backend_url(request: pytest.FixtureRequest, pg_server: EmbeddedServer) -> tuple[str, str]:
    """(backend, URL of a freshly seeded database): the embedded PostgreSQL 18 without HypoPG (real
    indexes), and the PostgreSQL 15 cluster with HypoPG."""
    if request.param == "real":
        return "real", seeded(pg_server.url())
    return "hypopg", seeded(request.getfixturevalue("pg15"))

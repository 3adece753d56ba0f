"""Fixtures: one embedded PostgreSQL for the session, a fresh database and project folder per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgmill.db.embedded import EmbeddedServer
from tests.helpers import SOURCE_ENV, ProjectDir, connect, drop_database, new_database


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("pg") / ".pgmill")
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def db_url(pg_server: EmbeddedServer) -> Iterator[str]:
    url = new_database(pg_server)
    yield url
    drop_database(pg_server, url)


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    """An empty project folder whose database is a fresh database on the session server."""
    monkeypatch.setenv("PGMILL_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    return ProjectDir(tmp_path, db_url)


@pytest.fixture
def source(pg_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second database on the session server, its URL in SOURCE_ENV, with an empty shop.orders table."""
    name = "src_" + uuid.uuid4().hex[:12]
    with connect(pg_server.url()) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg_server.url(name)
    with connect(url) as c:
        c.execute("CREATE SCHEMA shop")
        c.execute("CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer text, total numeric(12,2),"
                  " updated_at timestamptz)")
    monkeypatch.setenv(SOURCE_ENV, url)
    yield url
    with connect(pg_server.url()) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[object]]:
    with connect(db_url) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PGMILL_NO_COLOR", "1")

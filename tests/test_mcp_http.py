"""`pgmill mcp --http`: a bearer token is required, foreign origins and hosts are refused, the right token works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
import typer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

from pgmill.cli.mcp import register
from pgmill.errors import ConfigError
from pgmill.mcp.http import origin_allowed, parse_address
from tests.helpers import ProjectDir
from tests.mcp_support import loaded_project, unwrap

TOKEN = "h-mcp-test-token-0123456789abcdef"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_http(project_dir: Path, db_url: str, port: int, token: str | None = TOKEN,
               extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PGMILL_MCP_TOKEN"}
    env["PGMILL_DATABASE_URL"] = db_url
    if token is not None:
        env["PGMILL_MCP_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "pgmill.mcp", "--http", f"127.0.0.1:{port}", "--project", str(project_dir), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start listening")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def http_url(project: ProjectDir) -> Iterator[str]:
    loaded_project(project)
    port = free_port()
    proc = start_http(project.path, project.db_url, port, extra=("--allow-origin", "https://console.example.com"))
    try:
        wait_listening(proc, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


def post(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, json=INIT, headers={**ACCEPT, **headers}, timeout=10)


def test_no_token_is_refused(http_url: str) -> None:
    r = post(http_url, {})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_token_is_refused(http_url: str) -> None:
    assert post(http_url, {"authorization": "Bearer not-the-token-at-all"}).status_code == 401
    assert post(http_url, {"authorization": TOKEN}).status_code == 401  # the scheme is part of it
    assert post(http_url, {"authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_foreign_origin_is_refused(http_url: str) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert post(http_url, {**auth, "origin": "https://evil.example"}).status_code == 403
    assert post(http_url, {**auth, "origin": "http://localhost.evil.example:8080"}).status_code == 403
    assert post(http_url, {"origin": "https://evil.example"}).status_code == 403
    assert post(http_url, {**auth, "origin": "http://localhost:6274"}).status_code == 200
    assert post(http_url, {**auth, "origin": "https://console.example.com"}).status_code == 200


def test_foreign_host_is_refused(http_url: str) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example."""
    r = post(http_url, {"authorization": f"Bearer {TOKEN}", "host": "evil.example"})
    assert r.status_code in (400, 403, 421)


def test_right_token_works(http_url: str) -> None:
    async def main() -> tuple[set[str], list[list[object]]]:
        client = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"})
        async with client, Client(streamable_http_client(http_url, http_client=client)) as mcp:
            tools = {t.name for t in (await mcp.list_tools()).tools}
            res = await mcp.call_tool("query", {"sql": "SELECT count(*) FROM orders"})
            text = "".join(getattr(c, "text", "") for c in res.content)
            return tools, unwrap(text)["rows"]

    tools, rows = anyio.run(main)
    assert "query" in tools and "run_pipeline" not in tools
    assert rows == [[4]]


def test_refuses_to_start_without_token(project: ProjectDir) -> None:
    project.orders_pipeline()
    app = typer.Typer()
    register(app)
    env = {"PGMILL_MCP_TOKEN": ""}
    res = CliRunner().invoke(app, ["--http", "127.0.0.1:1", "--project", str(project.path)], env=env)
    assert res.exit_code == 2
    assert "refusing to serve MCP over HTTP without a bearer token" in res.output


def test_address_and_origin_rules() -> None:
    assert parse_address("8765") == ("127.0.0.1", 8765)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ConfigError):
        parse_address("localhost:http")
    assert origin_allowed("http://localhost:3000") and origin_allowed("https://127.0.0.1")
    assert origin_allowed("http://[::1]:1") and not origin_allowed("http://localhost.evil.example")
    assert not origin_allowed("null") and not origin_allowed("file://localhost")
    assert origin_allowed("https://Console.Example.com/", ["https://console.example.com"])

"""End to end with an external client: the MCP Inspector CLI (npm), over stdio and over streamable HTTP.

The Inspector needs Node 22; `npx -p node@22` brings it, so only npx (and the npm registry, or a warm
~/.npm cache) must be present. Versions are pinned so CI runs what was tested here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import ProjectDir
from tests.mcp_support import loaded_project, unwrap
from tests.test_mcp_http import TOKEN, free_port, start_http, stop, wait_listening

INSPECTOR = ["npx", "-y", "-p", "node@22", "-p", "@modelcontextprotocol/inspector@2.12.0", "mcp-inspector", "--cli",
             "--connect-timeout", "120000"]  # the server starts slowly on a loaded machine (15 s by default)

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="needs npx (Node.js) for the MCP Inspector")


def inspector(*args: str) -> tuple[int, Any, str]:
    """(exit code, parsed JSON from stdout or None, stderr) of one Inspector CLI call."""
    proc = subprocess.run([*INSPECTOR, *args], capture_output=True, text=True, timeout=240)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = None
    return proc.returncode, out, proc.stderr


def _text(result: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in result["content"])


def test_inspector_over_stdio(project: ProjectDir) -> None:
    loaded_project(project)
    server = ["-e", f"PGMILL_DATABASE_URL={project.db_url}",
              sys.executable, "-m", "pgmill.mcp", "--project", str(project.path)]
    code, listed, err = inspector(*server, "--method", "tools/list")
    assert code == 0, err
    assert {"list_tables", "query", "pipeline_status"} <= {t["name"] for t in listed["tools"]}

    code, called, err = inspector(*server, "--method", "tools/call", "--tool-name", "query",
                                  "--tool-arg", "sql=SELECT order_id FROM orders ORDER BY 1")
    assert code == 0, err
    assert not called["isError"] and unwrap(_text(called))["rows"] == [[1], [2], [3], [4]]

    # the Inspector exits non-zero when a tool answers with isError
    code, _, err = inspector(*server, "--method", "tools/call", "--tool-name", "query",
                             "--tool-arg", "sql=COMMIT; DROP TABLE orders")
    assert code != 0 and "tool_is_error" in err
    assert project.scalar("SELECT count(*) FROM orders") == 4


def test_inspector_over_http(project: ProjectDir) -> None:
    loaded_project(project)
    port = free_port()
    proc = start_http(project.path, project.db_url, port)
    try:
        wait_listening(proc, port)
        url = f"http://127.0.0.1:{port}/mcp"
        code, called, err = inspector(url, "--transport", "http", "--header", f"Authorization: Bearer {TOKEN}",
                                      "--method", "tools/call", "--tool-name", "describe_table",
                                      "--tool-arg", "table=public.orders")
        assert code == 0, err
        assert unwrap(_text(called))["table"] == "public.orders"

        code, _, err = inspector(url, "--transport", "http", "--header", "Authorization: Bearer wrong-token",
                                 "--method", "tools/list")
        assert code != 0 and "auth" in err.lower()  # the 401 sends it looking for OAuth, which we do not offer
    finally:
        stop(proc)

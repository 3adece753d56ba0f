"""pgmill's MCP server: the project's database and what pgmill knows about it, for AI assistants, safely.

    from pgmill import open_project
    from pgmill.mcp import build_server

    build_server(open_project("path/to/project")).run("stdio")

Reading goes through `readonly` (the read-only role, the statement check in `sqlcheck`, a READ ONLY
transaction with timeouts, capped results); data from tables reaches the model wrapped by `untrusted`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgmill.mcp.readonly import Limits, NotReadOnly, QueryFailed, ReadOnlyDatabase
    from pgmill.mcp.server import build_server
    from pgmill.mcp.sqlcheck import QueryRefused

# Loaded on first use: the MCP SDK takes half a second to import, and every `pgmill` command imports this
# package to register `pgmill mcp`.
_LAZY = {
    "Limits": "pgmill.mcp.readonly", "NotReadOnly": "pgmill.mcp.readonly", "QueryFailed": "pgmill.mcp.readonly",
    "ReadOnlyDatabase": "pgmill.mcp.readonly", "build_server": "pgmill.mcp.server",
    "QueryRefused": "pgmill.mcp.sqlcheck",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgmill.mcp' has no attribute {name!r}")


__all__ = ["Limits", "NotReadOnly", "QueryFailed", "QueryRefused", "ReadOnlyDatabase", "build_server"]

"""pgmill's MCP server: the project's database and what pgmill knows about it, for AI assistants, safely.

    from pgmill import open_project
    from pgmill.mcp import build_server

    build_server(open_project("path/to/project")).run("stdio")

Reading goes through `readonly` (the read-only role, the statement check in `sqlcheck`, a READ ONLY
transaction with timeouts, capped results); data from tables reaches the model wrapped by `untrusted`.
"""

from pgmill.mcp.readonly import Limits, NotReadOnly, QueryFailed, ReadOnlyDatabase
from pgmill.mcp.server import build_server
from pgmill.mcp.sqlcheck import QueryRefused

__all__ = ["Limits", "NotReadOnly", "QueryFailed", "QueryRefused", "ReadOnlyDatabase", "build_server"]

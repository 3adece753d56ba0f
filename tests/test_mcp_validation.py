"""The MCP tool `validation`: the same report as `pgmill validate`, read-only, on a project with a real load."""

from __future__ import annotations

import pytest
from mcp import Client

from pgmill.project import ProjectContext
from pgmill.validate import validate
from tests.helpers import ProjectDir, connect
from tests.mcp_support import call, data_checksum, loaded_project, server, unwrap, with_client


@pytest.fixture
def ctx(project: ProjectDir) -> ProjectContext:
    return loaded_project(project)  # one load of `orders`: 6 records read, 2 quarantined


def test_validation_is_listed_read_only(ctx: ProjectContext) -> None:
    async def hint(client: Client) -> bool | None:
        [tool] = [t for t in (await client.list_tools()).tools if t.name == "validation"]
        return tool.annotations.read_only_hint if tool.annotations else None

    assert with_client(server(ctx), hint) is True


def test_validation_equals_the_library_and_changes_nothing(ctx: ProjectContext, project: ProjectDir) -> None:
    before = data_checksum(project.db_url)
    err, text = call(server(ctx), "validation", days=7)
    assert not err, text
    d = unwrap(text)
    with connect(project.db_url) as conn:
        expected = validate(conn, ctx).as_dict()
    assert [(c["key"], c["status"], c["figure"]) for c in d["criteria"]] == [
        (c["key"], c["status"], c["figure"]) for c in expected["criteria"]]
    loads = {c["key"]: c for c in d["criteria"]}["validation_loads"]
    assert loads["detail"]["rows_read"] == 6 and loads["detail"]["rows_quarantined"] == 2
    assert loads["status"] == "fail" and d["ok"] is False and d["since_seconds"] == 7 * 86400
    assert {c["key"]: c["status"] for c in d["criteria"]}["query_p95"] == "not_measured"
    assert data_checksum(project.db_url) == before

"""JSON Schema of pgmill.yaml and contract files, for editor completion and checking."""

from __future__ import annotations

from typing import Any

from pgmill.config.spec import Contract, Project


def json_schemas() -> dict[str, dict[str, Any]]:
    project = Project.model_json_schema()
    project["title"] = "pgmill project file (pgmill.yaml)"
    contract = Contract.model_json_schema()
    contract["title"] = "pgmill contract (contracts/*.yaml)"
    return {"project": project, "contract": contract}

"""The README's examples are valid: every YAML block, the model header and the declared query parse."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pgmill.config.spec import Contract, Project
from pgmill.transform.models import discover_models
from pgmill.tune.workload import parse_query_file

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_yaml_blocks_validate() -> None:
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.S)]
    assert len(blocks) >= 3
    for doc in blocks:
        if "pipelines" in doc or set(doc) <= set(Project.model_fields) - set(Contract.model_fields):
            Project.model_validate(doc)
        elif "columns" in doc:
            Contract.model_validate(doc)
        else:
            Contract.model_validate({"columns": {"id": {"type": "bigint"}}, **doc})


def test_sql_examples_parse(tmp_path: Path) -> None:
    sql_blocks = re.findall(r"```sql\n(.*?)```", README, re.S)
    model = next(b for b in sql_blocks if b.startswith("-- pgmill:"))
    query = next(b for b in sql_blocks if b.startswith("-- name:"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "customer_spend.sql").write_text(model)
    [m] = discover_models(tmp_path, Project.model_validate({}).models)
    assert (m.materialized, m.cursor, m.unique_key) == ("incremental", "updated_at", ["customer_id"])
    (tmp_path / "q.sql").write_text(query)
    q, params_sql = parse_query_file(tmp_path / "q.sql", 100.0)
    assert q.name == "orders_of_customer" and q.target_ms == 50 and params_sql

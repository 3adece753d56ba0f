"""What the project says about its tables, as the MCP server shows it: contracts, and pgmill.yaml without secrets."""

from __future__ import annotations

from typing import Any

import yaml

from pgmill.config.load import PROJECT_FILE, load_contract
from pgmill.config.spec import PartitionSpec
from pgmill.db.catalog import table_key
from pgmill.errors import PgmillError
from pgmill.project import ProjectContext
from pgmill.redact import HIDDEN, redact, redact_url, secret_name


def contracts(ctx: ProjectContext) -> dict[str, dict[str, Any]]:
    """Per pipeline: its table, mode, cursor and contract (or the error that keeps it from loading), with its
    partitioning, retention and archive settings."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(ctx.config.pipelines.items()):
        entry: dict[str, Any] = {"table": table_key(spec.table), "mode": spec.mode, "cursor": spec.cursor,
                                 "contract_file": spec.contract}
        try:
            contract = load_contract(ctx.dir, spec.contract)
        except PgmillError as exc:
            entry["contract_error"] = redact(str(exc))
        else:
            entry["primary_key"] = contract.primary_key
            entry["on_failure"] = contract.on_failure
            entry["extra_columns"] = contract.extra_columns
            entry["partition"] = partition_view(contract.partition)
            entry["columns"] = {c: spec_.model_dump(exclude_defaults=True) for c, spec_ in contract.columns.items()}
            entry["rules"] = [r.model_dump(exclude_defaults=True) for r in contract.rules]
        out[name] = entry
    return out


def partition_view(spec: PartitionSpec | None) -> dict[str, Any] | None:
    """The table's partitioning, retention and archive settings (None: a plain table); a URL's password hidden."""
    if spec is None:
        return None
    if spec.kind == "hash":
        return {"by": spec.by, "kind": "hash", "hash": spec.hash}
    if spec.kind == "list":
        return {"by": spec.by, "kind": "list", "values": spec.values, "default": spec.default}
    plural = "" if spec.retain == 1 else "s"
    return {"by": spec.by, "interval": spec.interval, "premake": spec.premake,
            "retain": None if spec.retain is None else f"{spec.retain} {spec.interval}{plural}",
            "archive": spec.archive, "archive_dir": _location(spec.archive_dir) if spec.archive else None}


def _location(archive_dir: str) -> str:
    return redact_url(archive_dir) if "://" in archive_dir else archive_dir


def contract_summaries(ctx: ProjectContext) -> dict[str, dict[str, Any]]:
    """Per table: the pipelines loading it and a one-line view of their contracts (partitioning, retention and
    archive settings included)."""
    by_table: dict[str, dict[str, Any]] = {}
    for pipeline, c in contracts(ctx).items():
        summary = {"pipeline": pipeline, "mode": c["mode"], "contract_file": c["contract_file"]}
        if "contract_error" in c:
            summary["contract_error"] = c["contract_error"]
        else:
            summary.update(columns=len(c["columns"]), primary_key=c["primary_key"], row_rules=len(c["rules"]),
                           partition=c["partition"])
        by_table.setdefault(c["table"], {"pipelines": []})["pipelines"].append(summary)
    return by_table


def redacted_project_file(ctx: ProjectContext) -> str:
    """pgmill.yaml as YAML with passwords in URLs and values of secret-looking keys replaced by ***."""
    doc = yaml.safe_load((ctx.dir / PROJECT_FILE).read_text(encoding="utf-8")) or {}
    return yaml.safe_dump(_scrub(doc), sort_keys=False, allow_unicode=True)


def _scrub(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    # `auth_env` and `url_env` name a variable, they do not hold its value
    if key and secret_name(key) and not key.endswith("_env") and key != "auth_header":
        return HIDDEN
    if isinstance(value, str):
        return redact(value)
    return value

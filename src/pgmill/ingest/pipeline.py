"""A pipeline made ready to run: its spec, its contract compiled, and what every attempt needs to know."""

from __future__ import annotations

from pgmill.config.base import MAX_IDENT_LENGTH
from pgmill.config.load import load_contract
from pgmill.config.spec import Pipeline
from pgmill.config.types import parse_type
from pgmill.db.partition import name_fits
from pgmill.errors import ConfigError
from pgmill.project import ProjectContext
from pgmill.quality.validate import CompiledContract


class PipelinePlan:
    """Everything about one pipeline that does not change between attempts: its spec, contract, key, cursor
    and the columns a narrow read must parse."""

    def __init__(self, ctx: ProjectContext, name: str) -> None:
        if name not in ctx.config.pipelines:
            known = ", ".join(sorted(ctx.config.pipelines)) or "none"
            raise ConfigError(f"no pipeline named {name!r} in {ctx.dir / 'pgmill.yaml'} (pipelines: {known})")
        self.ctx = ctx
        self.name = name
        self.spec: Pipeline = ctx.config.pipelines[name]
        self.contract = load_contract(ctx.dir, self.spec.contract)
        self.compiled = CompiledContract(self.contract, name=self.spec.contract)
        self.key = self.contract.primary_key
        if self.spec.mode == "merge" and not self.key:
            raise ConfigError(f"pipeline {name}: mode merge needs a primary key in {self.spec.contract}")
        part = self.contract.partition
        if part and self.spec.mode == "replace":
            raise ConfigError(f"pipeline {name}: mode replace is not supported yet on a partitioned table "
                              f"({self.spec.contract} has a partition section); use append or merge")
        if part and not name_fits(self.spec.table, part):
            suffix = {"range": "_pYYYYMMDD", "hash": f"_h{(part.hash or 1) - 1}"}.get(part.kind, "_<value>")
            raise ConfigError(f"pipeline {name}: table name {self.spec.table!r} is too long for partition names "
                              f"(<name>{suffix} must fit in {MAX_IDENT_LENGTH} bytes)")
        #: (spec, column type) of a partitioned table, for the writer
        self.partition = (part, self.contract.columns[part.by].type) if part else None
        cur = self.spec.cursor
        if cur is not None and cur not in self.contract.columns:
            raise ConfigError(f"pipeline {name}: cursor {cur!r} is not a column of {self.spec.contract}")
        self.cursor_type = parse_type(self.contract.columns[cur].type).sql if cur else None
        self.columns = list(self.contract.columns)
        self.source_columns = [self.compiled.source_name(c) for c in self.columns]
        # what a narrow read must parse: the columns a rule reads, the key and the cursor
        checked = (set(self.compiled.checked_columns()) | set(self.key) | ({cur} if cur else set())
                   | ({part.by} if part else set()))
        # (at least one column: a frame without columns has no rows to count)
        self.checked = [c for c in self.columns if c in checked] or self.columns[:1]
        self.row_identity = [*self.key, *([cur] if cur and cur not in self.key else [])] or self.checked[:1]
        self.needed = [self.compiled.source_name(c) for c in self.checked]
        cdc = getattr(self.spec.source, "cdc", None)
        #: change data capture's soft-delete column (not a contract column: pgmill adds it to the table)
        self.soft_delete: str | None = cdc.soft_delete if cdc is not None else None
        if self.soft_delete is not None and self.soft_delete in self.contract.columns:
            raise ConfigError(f"pipeline {name}: soft_delete column {self.soft_delete!r} is a column of "
                              f"{self.spec.contract}; name a column the contract does not have (pgmill adds it)")

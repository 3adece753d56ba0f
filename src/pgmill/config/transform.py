"""Settings of the SQL transformations (models/*.sql): the `models:` section of pgmill.yaml.

Settings flow: library default, then this section, then the model file's header comment
(`-- pgmill: {materialized: table, indexes: [customer_id]}`), then the command line (`--threads`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pgmill.config.base import StrictModel, is_identifier

Materialization = Literal["view", "table", "incremental"]


class IndexSpec(StrictModel):
    """An index kept on a model's table: rebuilt with the table, so it is there the moment it is swapped in."""

    columns: list[str] = Field(min_length=1, description="indexed columns (or expressions), in order")
    unique: bool = False
    using: Literal["btree", "hash", "gin", "gist", "brin"] = "btree"


def _index(value: object) -> object:
    """`customer_id`, `[a, b]` and `{columns: [a, b], unique: true}` all declare an index."""
    if isinstance(value, str):
        return {"columns": [value]}
    if isinstance(value, list):
        return {"columns": value}
    return value


class ModelSettings(StrictModel):
    """Per-model settings: in the model file's header comment, or under `models.overrides.NAME`."""

    materialized: Materialization | None = Field(None, description="view, table or incremental")
    schema_: str | None = Field(None, alias="schema", description="schema of the model's relation")
    indexes: list[IndexSpec] | None = Field(None, description="indexes on the model's table")
    cursor: str | None = Field(None, description="incremental: only rows whose cursor is newer than "
                                                 "the newest already in the table are added")
    unique_key: list[str] | None = Field(None, description="incremental: merge on this key instead of appending")

    @field_validator("indexes", mode="before")
    @classmethod
    def _indexes(cls, v: object) -> object:
        return [_index(i) for i in v] if isinstance(v, list) else v

    @field_validator("unique_key", mode="before")
    @classmethod
    def _key(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: str | None) -> str | None:
        if v is not None and not is_identifier(v):
            raise ValueError(f"schema {v!r} is not a plain SQL identifier")
        return v


class ModelsConfig(StrictModel):
    """Defaults for models/*.sql; each model file may override them in its YAML header comment."""

    path: str = Field("models", description="folder of the model files, relative to the project")
    schema_: str = Field("public", alias="schema",
                         description="schema of models directly in the models folder (a subfolder names its own)")
    materialized: Materialization = Field("table", description="materialization of models that do not name one")
    threads: int = Field(4, ge=1, le=64, description="models built at once, each on its own connection")
    critical_path_parallel: bool = Field(
        True, description="plan the build heading the longest remaining chain of models (by the recent runs' "
                          "durations) with Postgres' parallel workers made cheap, for its transaction only")
    overrides: dict[str, ModelSettings] = Field(
        default_factory=dict, description="settings per model, by name (or schema.name)")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: str) -> str:
        if not is_identifier(v):
            raise ValueError(f"schema {v!r} is not a plain SQL identifier")
        return v

"""Model files: models/*.sql (one SELECT each), their settings and the relations they read.

A model's name is its file's name; its schema is its subfolder's name (models/marts/daily.sql builds
marts.daily), else the `models.schema` setting. Settings come from the `models:` section of pgmill.yaml,
then `models.overrides.NAME`, then a header comment in the file::

    -- pgmill: {materialized: incremental, cursor: updated_at, unique_key: order_id, indexes: [customer_id]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from psycopg import sql
from pydantic import ValidationError

from pgmill.config.transform import IndexSpec, Materialization, ModelsConfig, ModelSettings
from pgmill.errors import ConfigError
from pgmill.transform.parsed import ParseCache
from pgmill.transform.relation import Relation, SqlError

_HEADER = re.compile(r"^\s*--\s*pgmill:(.*)$")


@dataclass
class Model:
    """One model file, parsed: what it builds, how, and what it reads."""

    name: str
    schema: str
    file: str  # relative to the project folder, for messages
    query: str  # the SELECT, without its trailing semicolon
    refs: list[Relation]
    materialized: Materialization
    indexes: list[IndexSpec] = field(default_factory=list)
    cursor: str | None = None
    unique_key: list[str] = field(default_factory=list)

    @property
    def relation(self) -> Relation:
        return Relation(self.schema, self.name)

    @property
    def key(self) -> str:
        """The model's name as users select it: schema.name."""
        return f"{self.schema}.{self.name}"

    def sibling(self, suffix: str) -> str:
        """The name of a relation beside the model's, cut to fit Postgres' 63-byte limit."""
        return _fit(self.name, suffix)

    def ident(self, suffix: str = "") -> sql.Identifier:
        """The model's relation (or its sibling named with `suffix`), schema-qualified."""
        return sql.Identifier(self.schema, self.sibling(suffix) if suffix else self.name)


def _fit(name: str, suffix: str) -> str:
    room = 63 - len(suffix.encode())
    base = name.encode()[:room].decode(errors="ignore")
    return base + suffix


def header_settings(text: str, file: str) -> ModelSettings:
    """Settings from the `-- pgmill: {...}` comment lines at the top of a model file."""
    merged: dict[str, object] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break  # the header is the comment block before the SQL
        m = _HEADER.match(line)
        if not m:
            continue
        try:
            doc = yaml.safe_load(m.group(1)) if m.group(1).strip() else {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}:{lineno}: pgmill header is not YAML: {getattr(exc, 'problem', exc)}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{file}:{lineno}: pgmill header must be a mapping, e.g. "
                              "-- pgmill: {materialized: table}")
        merged.update(doc)
        try:
            ModelSettings.model_validate(doc)
        except ValidationError as exc:
            raise ConfigError(f"{file}:{lineno}: {_first_error(exc)}") from exc
    return ModelSettings.model_validate(merged)


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def _merge(*layers: ModelSettings | None) -> ModelSettings:
    """Later layers win, field by field, where they set a value."""
    out: dict[str, object] = {}
    for layer in layers:
        if layer is not None:
            out.update(layer.model_dump(exclude_unset=True, by_alias=True))
    return ModelSettings.model_validate(out)


def load_model(project_dir: Path, path: Path, config: ModelsConfig, cache: ParseCache | None = None) -> Model:
    """Parse one model file; ConfigError names the file (and the line, when the parser gives one)."""
    rel = path.relative_to(project_dir).as_posix()
    models_dir = (project_dir / config.path)
    folders = path.relative_to(models_dir).parts[:-1]
    if len(folders) > 1:
        raise ConfigError(f"{rel}: models sit in {config.path}/ or one subfolder (the schema); "
                          f"found {len(folders)} folders deep")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        body, refs = (cache or ParseCache(project_dir)).parse(text)
    except SqlError as exc:
        raise ConfigError(f"{rel}: {exc}") from exc
    name = path.stem
    schema = folders[0] if folders else config.schema_
    head = header_settings(text, rel)
    if head.schema_ is not None:
        schema = head.schema_
    over = config.overrides.get(f"{schema}.{name}") or config.overrides.get(name)
    s = _merge(over, head)
    schema = s.schema_ or schema
    materialized = s.materialized or config.materialized
    if materialized == "incremental" and not s.cursor:
        raise ConfigError(f"{rel}: an incremental model needs a cursor, e.g. "
                          "-- pgmill: {materialized: incremental, cursor: updated_at}")
    if materialized == "view" and s.indexes:
        raise ConfigError(f"{rel}: a view cannot have indexes; materialize it as a table")
    return Model(name, schema, rel, body, refs, materialized, list(s.indexes or []), s.cursor,
                 list(s.unique_key or []))


def discover_models(project_dir: Path, config: ModelsConfig) -> list[Model]:
    """Every models/**.sql file parsed; all files' errors are reported together."""
    models_dir = project_dir / config.path
    if not models_dir.is_dir():
        return []
    models: list[Model] = []
    errors: list[str] = []
    cache = ParseCache(project_dir)
    for path in sorted(models_dir.rglob("*.sql")):
        try:
            models.append(load_model(project_dir, path, config, cache))
        except ConfigError as exc:
            errors.append(str(exc))
    cache.save()
    seen: dict[str, Model] = {}
    for m in models:
        if m.key in seen:
            errors.append(f"{m.file} and {seen[m.key].file} both build {m.key}")
        seen[m.key] = m
    if errors:
        raise ConfigError("\n".join(errors))
    return models

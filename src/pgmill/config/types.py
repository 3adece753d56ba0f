"""The Postgres types a contract may name, and how each one is checked on the client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "float", "numeric", "text", "bool", "date", "timestamp", "timestamptz", "uuid", "json"]

_ALIASES: dict[str, tuple[Kind, int | None]] = {
    "smallint": ("int", 16),
    "int2": ("int", 16),
    "integer": ("int", 32),
    "int": ("int", 32),
    "int4": ("int", 32),
    "bigint": ("int", 64),
    "int8": ("int", 64),
    "real": ("float", 32),
    "float4": ("float", 32),
    "double precision": ("float", 64),
    "float8": ("float", 64),
    "float": ("float", 64),
    "numeric": ("numeric", None),
    "decimal": ("numeric", None),
    "text": ("text", None),
    "varchar": ("text", None),
    "character varying": ("text", None),
    "char": ("text", None),
    "character": ("text", None),
    "boolean": ("bool", None),
    "bool": ("bool", None),
    "date": ("date", None),
    "timestamp": ("timestamp", None),
    "timestamp without time zone": ("timestamp", None),
    "timestamptz": ("timestamptz", None),
    "timestamp with time zone": ("timestamptz", None),
    "uuid": ("uuid", None),
    "json": ("json", None),
    "jsonb": ("json", None),
}

_TYPE_RE = re.compile(r"^\s*([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")


@dataclass(frozen=True)
class PgType:
    """A parsed contract type: what Postgres calls it and how the validator treats it."""

    sql: str  # canonical SQL spelling, used in DDL
    kind: Kind
    bits: int | None = None  # integer / float width
    precision: int | None = None  # numeric(p, s) or varchar(n)
    scale: int | None = None


def parse_type(text: str) -> PgType:
    """Parse `numeric(12,2)`, `varchar(40)`, `timestamptz`...; raise ValueError naming what is supported."""
    m = _TYPE_RE.match(text.lower())
    if not m or m.group(1) not in _ALIASES:
        supported = ", ".join(sorted({k for k in _ALIASES if " " not in k}))
        raise ValueError(f"unsupported type {text!r}; supported: {supported}")
    name, p, s = m.group(1), m.group(2), m.group(3)
    kind, bits = _ALIASES[name]
    precision = int(p) if p is not None else None
    scale = int(s) if s is not None else None
    if precision is not None and kind not in ("numeric", "text"):
        raise ValueError(f"type {text!r} takes no length or precision")
    if kind == "numeric":
        if precision is not None and not 1 <= precision <= 1000:
            raise ValueError(f"numeric precision must be 1..1000, got {precision}")
        if scale is not None and precision is not None and scale > precision:
            raise ValueError(f"numeric scale {scale} is larger than precision {precision}")
        sql = "numeric" if precision is None else f"numeric({precision},{scale or 0})"
        return PgType(sql, kind, None, precision, scale or 0 if precision is not None else None)
    if kind == "text":
        if name in ("char", "character"):
            sql = f"char({precision or 1})"
            return PgType(sql, kind, None, precision or 1)
        if precision is not None or name != "text":
            return PgType(f"varchar({precision})" if precision else "varchar", kind, None, precision)
        return PgType("text", kind)
    canonical = {
        ("int", 16): "smallint",
        ("int", 32): "integer",
        ("int", 64): "bigint",
        ("float", 32): "real",
        ("float", 64): "double precision",
    }
    sql = canonical.get((kind, bits or 0), name if kind not in ("timestamp", "timestamptz") else kind)
    if kind == "json":
        sql = "jsonb" if name == "jsonb" else "json"
    if kind == "bool":
        sql = "boolean"
    return PgType(sql, kind, bits)

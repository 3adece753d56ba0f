"""A relation as a model's SQL names it, and the error for SQL that is not one SELECT (no parser needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """A relation as written in SQL: schema (None when unqualified) and name."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def sort_key(self) -> tuple[str, str]:
        return (self.schema or "", self.name)


class SqlError(ValueError):
    """The SQL does not parse, or is not one SELECT."""

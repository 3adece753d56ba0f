"""Table-level quality checks in a contract (run as SQL inside Postgres): the `checks:` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TableChecks(BaseModel):
    """Checks run on the whole table after it is loaded or built (`pgmill check`)."""

    model_config = ConfigDict(extra="forbid")

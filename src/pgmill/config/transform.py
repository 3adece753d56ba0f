"""Settings of the SQL transformations (models/*.sql): the `models:` section of pgmill.yaml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ModelsConfig(BaseModel):
    """Defaults for models/*.sql; each model file may override them in its YAML header comment."""

    model_config = ConfigDict(extra="forbid")

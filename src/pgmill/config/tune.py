"""Settings of query tuning (queries/*.sql, the index advisor): the `tune:` section of pgmill.yaml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TuneConfig(BaseModel):
    """How pgmill keeps indexes right for the declared and observed workload."""

    model_config = ConfigDict(extra="forbid")

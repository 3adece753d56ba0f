"""Settings of query tuning (queries/*.sql, the index advisor): the `tune:` section of pgmill.yaml.

Settings flow: library default, then this section, then the query file's header (`target_ms`), then the
command line (`--budget`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pgmill.config.base import StrictModel

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|%|x)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40}


def parse_budget(text: str | None, data_bytes: int) -> int | None:
    """Storage budget in bytes: `2GB`, `512MB`, `50%` or `0.5x` of the data size; none or `unlimited`: no cap."""
    if text is None or text.strip().lower() in ("", "unlimited", "none"):
        return None
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"budget {text!r}: use a size (512MB, 2GB), a share of the data (50%, 0.5x) or unlimited")
    value, unit = float(m.group(1)), (m.group(2) or "b").lower()
    if unit == "%":
        return int(data_bytes * value / 100)
    if unit == "x":
        return int(data_bytes * value)
    return int(value * _UNITS[unit])


class TuneConfig(StrictModel):
    """How pgmill keeps indexes right for the declared and observed workload."""

    budget: str = Field("unlimited", description="index storage the advisor may add: 2GB, 50% (of the data "
                        "the workload reads), 0.5x, or unlimited")
    target_ms: float = Field(100.0, gt=0, description="default p95 latency target of a declared query")
    max_columns: int = Field(3, ge=1, le=8, description="widest index key the advisor proposes")
    max_width: int | None = Field(None, ge=1, le=32, description="most columns in one index, key and INCLUDE "
                                  "columns together (the index width of the literature); none: keys up to "
                                  "max_columns plus up to 4 INCLUDE columns")
    min_benefit: float = Field(0.15, ge=0, description="leanness: an index must save, per byte it takes, at "
                               "least this share of the workload's estimated cost per byte of the data it reads "
                               "(0: any saving)")
    executions: int = Field(30, ge=5, description="measured executions per query, before and after")
    lock_timeout: str = Field("5s", description="lock_timeout of CREATE/DROP INDEX CONCURRENTLY")
    observed: int = Field(20, ge=0, description="top statements from pg_stat_statements added to the workload")
    observed_min_calls: int = Field(2, ge=1, description="ignore statements seen fewer times than this")
    schemas: list[str] = Field(default_factory=list, description="schemas the advisor may index; none: all "
                               "user schemas")
    write_penalty: float = Field(1.0, ge=0, description="how strongly writes beyond the initial load (per live "
                                 "row, from pg_stat_user_tables) lower an index's benefit")
    auto: Literal["apply", "recommend", "off"] = Field(
        "apply", description="after `pgmill run`: re-tune and apply (measured), only recommend, or do nothing")
    retune_size_change: float = Field(0.25, gt=0, description="re-tune after a run when the workload's tables "
                                      "grew or shrank by this share, or the workload changed")

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: str) -> str:
        parse_budget(v, 1)
        return v

"""What the work costs: the `cost:` section of pgmill.yaml (prices and budget).

The default prices are AWS us-east-1 on-demand list prices: a t4g.small EC2 instance for pgmill
($0.0168/h), a db.t4g.micro RDS instance ($0.016/h), gp3 block storage ($0.08/GB-month) and RDS storage
($0.115/GB-month). Set your own; the allocation model is in the README ("What it costs").
"""

from __future__ import annotations

from pydantic import Field

from pgmill.config.base import StrictModel


class Prices(StrictModel):
    compute_per_hour: float = Field(0.0168, ge=0, description="the machine pgmill runs on, $ per hour")
    database_per_hour: float = Field(0.016, ge=0, description="the database server, $ per hour")
    storage_per_gb_month: float = Field(0.08, ge=0, description="pgmill's own disk (files, .pgmill/), $ per GB-month")
    database_storage_per_gb_month: float = Field(0.115, ge=0, description="the database's storage, $ per GB-month")


class Budget(StrictModel):
    month: float | None = Field(40.0, ge=0, description="dollars a month for everything pgmill runs; none: no budget")
    per_gb: float = Field(0.01, ge=0, description="dollars per GB processed")


class CostConfig(StrictModel):
    prices: Prices = Field(default_factory=Prices)
    budget: Budget = Field(default_factory=Budget)

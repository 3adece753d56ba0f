"""What the work costs: the `cost:` section of pgmill.yaml (prices, capacity and budget).

The default prices are AWS us-east-1 on-demand list prices: a t4g.small EC2 instance for pgmill
($0.0168/h), a db.t4g.micro RDS instance ($0.016/h), gp3 block storage ($0.08/GB-month) and RDS storage
($0.115/GB-month). The default capacity is what those buy: 2 vCPUs each, an 8 GB root volume, the RDS
minimum of 20 GB. Set your own; the allocation model is in docs/cost.md.
"""

from __future__ import annotations

from pydantic import Field

from pgmill.config.base import StrictModel


class Prices(StrictModel):
    compute_per_hour: float = Field(0.0168, ge=0, description="the machine pgmill runs on, $ per hour")
    database_per_hour: float = Field(0.016, ge=0, description="the database server, $ per hour")
    storage_per_gb_month: float = Field(0.08, ge=0, description="pgmill's own disk (files, .pgmill/), $ per GB-month")
    database_storage_per_gb_month: float = Field(0.115, ge=0, description="the database's storage, $ per GB-month")


class Capacity(StrictModel):
    """What the hourly prices buy: a run is charged its CPU-seconds at the price of one vCPU-second."""

    compute_vcpus: int = Field(2, ge=1, description="vCPUs of the machine pgmill runs on (t4g.small: 2)")
    database_vcpus: int = Field(2, ge=1, description="vCPUs of the database server (db.t4g.micro: 2)")
    storage_gb: float = Field(8.0, ge=0, description="disk allocated to pgmill's machine, GB, billed whether "
                              "used or not (the smallest EC2 root volume: 8); 0: bill what is used")
    database_storage_gb: float = Field(20.0, ge=0, description="storage allocated to the database, GB, billed "
                                       "whether used or not (the RDS minimum: 20); 0: bill what is used")


class Budget(StrictModel):
    month: float | None = Field(40.0, ge=0, description="dollars a month for everything pgmill runs; none: no budget")
    per_gb: float = Field(0.01, ge=0, description="dollars per GB processed")


class CostConfig(StrictModel):
    prices: Prices = Field(default_factory=Prices)
    capacity: Capacity = Field(default_factory=Capacity)
    budget: Budget = Field(default_factory=Budget)
    measure: bool = Field(True, description="measure every `pgmill run` (CPU, database time, bytes written, "
                          "storage growth) into pgmill.run_costs; one small query a second while it runs")

"""Alerts: the `alerts:` section of pgmill.yaml.

```yaml
alerts:
  channels:
    oncall: "slack://${SLACK_WEBHOOK}"        # any apprise URL; ${VAR} comes from the environment at send time
  rules:
    - {kind: run_failed, channels: [oncall]}
    - {kind: late_run, after: 10m}
    - {kind: cost_over_budget}
    - {kind: cdc_slot, retained_above: 1GB}   # sizes: bytes, or kB, MB, GB, TB (1024-based, as PostgreSQL's)
  repeat: 4h                                  # re-notify a rule still firing after this long
  resolve_after: 5m                           # resolved once false this long (a flapping rule stays one alert)
  heartbeat_url: "https://hc-ping.com/${HC_UUID}"   # pinged after every tick of `pgmill serve`
```

A channel's URL carries its secrets only as `${VAR}` references: the expanded URL is never stored,
printed or logged.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from pgmill.config.base import StrictModel
from pgmill.config.duration import Duration

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CHANNEL_FAILING = "channel_failing"  # the built-in rule: a channel whose deliveries fail, reported on the others

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40}


def parse_size(value: str | int) -> int:
    """Bytes in a size: an int (bytes), or a number with B, kB, MB, GB or TB (any case; 1024-based, as
    PostgreSQL's `pg_size_pretty` and settings such as max_slot_wal_keep_size); ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"size {value!r} must not be negative")
        return value
    m = _SIZE.fullmatch(str(value).strip())
    if m is None:
        raise ValueError(f"{value!r} is not a size: use bytes (1048576) or e.g. 512MB, 1GB, 100 kB")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def _size_checked(value: str | int) -> str | int:
    parse_size(value)
    return value


#: a size field of pgmill.yaml, kept as written and checked when the file is read
Size = Annotated[str | int, AfterValidator(_size_checked)]


class _Rule(StrictModel):
    name: str | None = Field(None, description="the rule's name in messages and metrics; default: its kind")
    channels: list[str] | None = Field(None, description="where it is sent (`[]`: recorded, sent nowhere); "
                                       "default: every channel")
    pipelines: list[str] | None = Field(None, description="only these pipelines or jobs (a job as `pipeline:NAME`, "
                                        "`models`, `checks` or `tune`; quality_failed: their tables; query_p95 and "
                                        "cost_over_budget have none); default: all")
    repeat: Duration | None = Field(None, description="re-notify interval for this rule; default: alerts.repeat")



class RunFailed(_Rule):
    """A run failed after its retries were exhausted."""

    kind: Literal["run_failed"]


class ConsecutiveFailures(_Rule):
    """The last `count` runs of a pipeline or job all failed."""

    kind: Literal["consecutive_failures"]
    count: int = Field(3, ge=2)


class LateRun(_Rule):
    """An expected run has not started `after` its scheduled time."""

    kind: Literal["late_run"]
    after: Duration = Field("10m", description="how late before it fires")



class MissedRun(_Rule):
    """An expected run was missed (skipped by the misfire or overlap policy, or never claimed)."""

    kind: Literal["missed_run"]
    window: Duration = Field("1h", description="a missed slot keeps the alert firing this long (each slot notifies once)")



class Freshness(_Rule):
    """The newest committed cursor (or the last successful load) of a pipeline is older than `max_age`."""

    kind: Literal["freshness"]
    max_age: Duration = Field(description="e.g. 1h, 1d")



class QualityFailed(_Rule):
    """A table check failed in the latest check run of its table."""

    kind: Literal["quality_failed"]
    severity: Literal["error", "warn"] = Field("error", description="lowest severity that fires")


class QuarantineRate(_Rule):
    """A run quarantined more than `above` percent of the rows it read."""

    kind: Literal["quarantine_rate"]
    above: float = Field(5.0, gt=0, le=100, description="percent of rows read")


class QueryP95(_Rule):
    """A declared query's measured p95 is above its target, or regressed by more than `regression` percent
    against its own baseline (the first measurement after tuning)."""

    kind: Literal["query_p95"]
    regression: float = Field(20.0, gt=0, description="percent slower than its baseline")
    min_ms: float = Field(1.0, ge=0, description="a regression smaller than this many milliseconds is noise")


class SuccessRate(_Rule):
    """The share of successful runs over `window` is below `below` percent."""

    kind: Literal["success_rate"]
    below: float = Field(99.9, gt=0, le=100)
    window: Duration = Field("30d")



class ArrivalLatency(_Rule):
    """A pipeline's data took longer than `above` from arrival to queryable at p95 over `window` (the batches
    of the loads that measure it: files, in `pgmill run --follow` and in ordinary runs; a CDC stream's batches,
    from the source's commit)."""

    kind: Literal["latency"]
    above: Duration = Field("5s", description="p95 from arrival to queryable")
    window: Duration = Field("15m")


class CdcSlot(_Rule):
    """A CDC pipeline's replication slot holds back more WAL on the source than `retained_above` (or its
    unconfirmed changes exceed `lag_above`), or the slot is lost, or the pipeline loaded a new snapshot of
    its table because the slot was lost within `window` (figures: as the loader last saw the slot)."""

    kind: Literal["cdc_slot"]
    retained_above: Size = Field("1GB", description="WAL the slot keeps on the source: bytes, or e.g. 512MB, 1GB")
    lag_above: Size | None = Field(None, description="WAL since the slot's confirmed position (changes not applied "
                                   "and confirmed yet); default: not checked")
    window: Duration = Field("1h", description="a re-snapshot keeps the alert firing this long")


class CostOverBudget(_Rule):
    """Month-to-date cost (or the month projected, with `projected: true`) is above `cost.budget.month`."""

    kind: Literal["cost_over_budget"]
    projected: bool = False


AlertRule = Annotated[
    RunFailed | ConsecutiveFailures | LateRun | MissedRun | Freshness | QualityFailed | QuarantineRate | QueryP95
    | SuccessRate | ArrivalLatency | CdcSlot | CostOverBudget,
    Field(discriminator="kind"),
]


class Alerts(StrictModel):
    """Channels (apprise URLs), the rules that send to them, and how often."""

    channels: dict[str, str] = Field(default_factory=dict, description="name -> apprise URL; secrets as ${VAR}")
    rules: list[AlertRule] = Field(default_factory=list)
    repeat: Duration = Field("4h", description="re-notify a rule still firing after this long")
    resolve_after: Duration = Field("5m", description="a firing alert resolves once its condition has been false this "
                               "long, so a flapping condition stays one alert")
    digest_over: int = Field(5, ge=1, description="more alerts than this in one evaluation go out as one digest")
    attempts: int = Field(3, ge=1, le=10, description="delivery attempts per message and channel")
    timeout: Duration = Field("10s", description="one delivery attempt's time limit")
    heartbeat_url: str | None = Field(None, description="pinged after every scheduler tick (secrets as ${VAR}), so "
                                      "a dead `pgmill serve` is noticed from outside")


    @model_validator(mode="after")
    def _known_channels(self) -> Alerts:
        seen: set[str] = set()
        for rule in self.rules:
            name = rule.name or rule.kind
            if name == CHANNEL_FAILING:
                raise ValueError(f"rule name {name!r} is pgmill's own (a channel whose deliveries fail)")
            if name in seen:
                raise ValueError(f"two rules are called {name!r}: give one a `name:`")
            seen.add(name)
            unknown = [c for c in rule.channels or () if c not in self.channels]
            if unknown:
                known = ", ".join(sorted(self.channels)) or "none"
                raise ValueError(f"rule {rule.name or rule.kind}: unknown channel {unknown[0]!r} (channels: {known})")
        return self

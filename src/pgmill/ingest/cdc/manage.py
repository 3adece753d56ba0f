"""`pgmill cdc status` and `pgmill cdc drop`: a CDC pipeline's slot as the source sees it, against the
position the target stored (and written to pgmill.state for /metrics and the cdc_slot alert, as a run does
after each segment: run `pgmill cdc status` on a schedule to watch a slot nothing streams from); and removing
the slot and publication (the next run loads a new snapshot)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgmill.config.spec import PostgresSource, is_cdc
from pgmill.db.migrations import migrate
from pgmill.errors import ConfigError
from pgmill.ingest import lock
from pgmill.ingest.cdc import slot
from pgmill.ingest.cdc.pgoutput import lsn_text
from pgmill.ingest.cdc.run import save_health
from pgmill.ingest.cdc.slot import SlotHealth
from pgmill.project import ProjectContext


@dataclass(frozen=True)
class CdcStatus:
    pipeline: str
    slot: str
    publication: str
    stored_lsn: int | None  # what the target has applied (pgmill.state)
    health: SlotHealth

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "slot": self.slot, "publication": self.publication,
                "stored_lsn": None if self.stored_lsn is None else lsn_text(self.stored_lsn),
                **{k: v for k, v in self.health.as_dict().items() if k != "slot"},
                "restart_lsn": None if self.health.restart_lsn is None else lsn_text(self.health.restart_lsn),
                "confirmed_lsn": None if self.health.confirmed_lsn is None else lsn_text(self.health.confirmed_lsn),
                "lost": self.health.lost}


def cdc_pipelines(ctx: ProjectContext, names: list[str] | None) -> list[str]:
    """The named pipelines (each must stream by CDC), or every CDC pipeline of the project."""
    cdc = [n for n, p in ctx.config.pipelines.items() if is_cdc(p)]
    if not names:
        return cdc
    for n in names:
        if n not in ctx.config.pipelines:
            raise ConfigError(f"no pipeline named {n!r} (pipelines: {', '.join(sorted(ctx.config.pipelines)) or 'none'})")
        if n not in cdc:
            raise ConfigError(f"pipeline {n} does not stream changes (its source has no `cdc:`)")
    return names


def _spec(ctx: ProjectContext, name: str) -> tuple[PostgresSource, slot.Names]:
    spec = ctx.config.pipelines[name].source
    assert isinstance(spec, PostgresSource) and spec.cdc is not None
    return spec, slot.names(name, spec.cdc)


def status(ctx: ProjectContext, names: list[str] | None = None) -> list[CdcStatus]:
    out = []
    wanted = cdc_pipelines(ctx, names)
    if wanted:
        ctx.target.ensure_running()
    for name in wanted:
        spec, n = _spec(ctx, name)
        with ctx.target.connect() as conn:
            migrate(conn)
            row = conn.execute("SELECT (state->'cdc'->>'lsn')::bigint FROM pgmill.state WHERE pipeline = %s",
                               (name,)).fetchone()
        src = slot.connect(spec)
        try:
            health = slot.health(src, n.slot)
        finally:
            src.close()
        with ctx.target.connect() as conn:  # what /metrics and the cdc_slot alert read, fresh
            save_health(conn, name, health)
        out.append(CdcStatus(name, n.slot, n.publication, None if row is None or row[0] is None else int(row[0]),
                             health))
    return out


@dataclass(frozen=True)
class Dropped:
    pipeline: str
    slot: str
    slot_dropped: bool
    publication: str
    publication_dropped: bool

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def drop(ctx: ProjectContext, name: str) -> Dropped:
    """Drop the pipeline's slot and the publication pgmill made, and forget the stored position (so the next
    run starts with a snapshot). Refused while the pipeline runs."""
    [name] = cdc_pipelines(ctx, [name])
    spec, n = _spec(ctx, name)
    ctx.target.ensure_running()
    with ctx.target.connect(autocommit=True) as conn:
        migrate(conn)
        lock.take(conn, name, wait=False)  # a follower holds it: stop it first
        slot_dropped, pub_dropped = slot.drop(spec, n)
        conn.execute("UPDATE pgmill.state SET state = state - 'cdc' - 'cdc_slot' - 'cdc_pending' WHERE pipeline = %s",
                     (name,))
    return Dropped(name, n.slot, slot_dropped, n.publication, pub_dropped)

"""The health of change data capture's replication slots, as each CDC pipeline's loader last saw it: the
`cdc_slot` object it writes into pgmill.state after every segment of the stream (ingest/cdc/run.py; every
30 s while following, and at the end of a run), read here for the metrics and the `cdc_slot` alert.

The figures are the source's (pg_replication_slots): `retained_bytes`, the WAL the source keeps for the slot
(from its restart_lsn to the current WAL position), which a stalled consumer lets grow until the source's
disk is full; `lag_bytes`, WAL written since the slot's confirmed position. No connection to the source is
opened here: `checked_at` says how old the figures are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class SlotState:
    pipeline: str
    slot: str
    exists: bool
    active: bool
    wal_status: str | None
    retained_bytes: int | None
    lag_bytes: int | None
    checked_at: datetime | None

    @property
    def lost(self) -> bool:
        """The slot is gone or its WAL was removed (wal_status lost): the next run loads a new snapshot."""
        return not self.exists or self.wal_status == "lost"


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _when(v: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None


def slot_states(conn: psycopg.Connection[Any]) -> list[SlotState]:
    """Every pipeline whose state has a slot's health, by pipeline name (a value the loader did not write
    reads as missing, never as an error: one odd row must not stop a scrape)."""
    out = []
    for pipeline, h in conn.execute(
            "SELECT pipeline, state->'cdc_slot' FROM pgmill.state WHERE jsonb_typeof(state->'cdc_slot') = 'object'"
            " ORDER BY pipeline").fetchall():
        out.append(SlotState(pipeline, str(h.get("slot") or ""), h.get("exists") is True, h.get("active") is True,
                             h.get("wal_status") if isinstance(h.get("wal_status"), str) else None,
                             _int(h.get("retained_bytes")), _int(h.get("lag_bytes")), _when(h.get("checked_at"))))
    return out

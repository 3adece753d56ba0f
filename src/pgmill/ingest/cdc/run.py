"""Loading a CDC pipeline: one snapshot, then the changes, exactly once (docs/cdc.md).

- **Snapshot.** With no stored position (the first run), or when the slot was lost, pgmill creates the slot
  on a replication connection, which exports the snapshot of its starting point, and loads the whole table
  in that snapshot as a replace: one target transaction that swaps the new table in and stores the slot's
  starting position with it. A crash before that commit leaves the old table and no position: the next run
  starts the snapshot over (the slot is dropped and made again).
- **Changes.** Streamed from the stored position. Whole source transactions are folded into batches
  (changes.py), each loaded as an ordinary checkpoint: contract, quarantine, counts, and the end position
  of its last transaction in pgmill.state, all in one target transaction. Only after that commit is the
  slot told (replication.confirm). On restart, transactions that end at or below the stored position are
  skipped: the slot is a retention hint, the stored position is the truth. So a crash anywhere (pgmill, the
  target, the source) loses nothing and applies nothing twice.
- **Segments.** The stream is loaded in segments of `SEGMENT_S` seconds, each a `load` step of the run with
  its counts and the arrival-to-queryable latency of its batches (source commit time to target commit), and
  the slot's health in pgmill.state. A run without --follow stops once it has applied what the source had
  committed when it started.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgmill.config.spec import CdcSpec, PostgresSource
from pgmill.config.types import parse_type
from pgmill.db import catalog
from pgmill.db.catalog import qualified, split_table
from pgmill.errors import ConfigError, ContractError, SourceError
from pgmill.ingest import state
from pgmill.ingest.cdc import slot
from pgmill.ingest.cdc.changes import Change, Folder, Key
from pgmill.ingest.cdc.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    lsn_text,
)
from pgmill.ingest.cdc.replication import ReplicationStream
from pgmill.ingest.follow import Follow
from pgmill.ingest.pipeline import PipelinePlan
from pgmill.ingest.sources import RawBatch, SourceState, Stream
from pgmill.ingest.sources.postgres import read_postgres, source_url
from pgmill.ingest.stream_load import Progress, ProgressFn, load_replace, load_stream
from pgmill.observe import ledger
from pgmill.project import ProjectContext

#: seconds of stream per `load` step
SEGMENT_S = 30.0
#: a batch gathers transactions for MIN_BATCH_S after its first (so a busy stream is not applied a row at a time:
#: each checkpoint has a fixed cost), then is applied once nothing more is waiting, or at MAX_WAIT_S at the latest
MIN_BATCH_S = 0.05
MAX_WAIT_S = 0.25
#: ... unless the loader already holds BEHIND batches not committed yet: then the batch keeps gathering (up to
#: the pipeline's batch_rows) until the loader is free, so a stream that outruns the loader is applied in fewer,
#: larger checkpoints, each with its fixed cost once, instead of falling further behind
BEHIND = 2
#: how often a gathering batch looks whether the loader is free again, and how long it gathers at most (then it
#: is handed over anyway: a loader that failed or stopped must see the reader come back to it)
BEHIND_POLL_S = 0.01
MAX_BEHIND_S = 2.0
#: a run without --follow ends when the server has sent everything up to the source's position at the start
#: and nothing came for QUIET_S, or when nothing came for IDLE_END_S
QUIET_S = 0.2
IDLE_END_S = 2.0

CHECKPOINT_KEY = "cdc"
#: in pgmill.state while a snapshot is under way: the slot it made is this project's
PENDING_KEY = "cdc_pending"


def load_cdc(ctx: ProjectContext, pipe: PipelinePlan, run_id: int, progress: ProgressFn | None, prog: Progress,
             follow: Follow | None) -> None:
    """Snapshot if needed, then apply changes until caught up (with `follow`: until stopped)."""
    spec = pipe.spec.source
    assert isinstance(spec, PostgresSource) and spec.cdc is not None
    if pipe.partition is not None:
        raise ConfigError(f"pipeline {pipe.name}: a cdc source cannot load into a partitioned table yet")
    names = slot.names(pipe.name, spec.cdc)
    src = slot.connect(spec)
    try:
        slot.check_source(src, spec)
        slot.check_key(src, spec, [pipe.compiled.source_name(k) for k in pipe.key])
        slot.ensure_publication(src, spec, names)
        with ctx.target.connect() as conn:
            with conn.transaction():
                _ensure_soft_delete(conn, pipe)
            st = state.load_state(conn, pipe.name).checkpoint
            stored = st.get(CHECKPOINT_KEY)
            health = slot.health(src, names.slot)
            relid = slot.table_oid(src, spec)
            recreated = stored is not None and stored.get("relid") not in (None, relid)
            if stored is None or stored.get("slot") != names.slot or health.lost or recreated:
                if health.exists and not health.lost and names.slot not in (
                        (stored or {}).get("slot"), st.get(PENDING_KEY)):
                    raise SourceError(
                        f"{slot.origin(spec)}: replication slot {names.slot} already exists on the source and this "
                        "project did not make it (another project streaming a pipeline of the same name?): give "
                        "this pipeline a `slot:` of its own in `cdc:`, or drop that slot where it belongs")
                if stored is not None:  # the slot is gone: the changes since cannot be streamed, load again
                    # the old position goes first, with the record of why: if the new snapshot does not
                    # commit, the next run must snapshot again, never stream from the old position on a new slot
                    with conn.transaction():
                        conn.execute("UPDATE pgmill.state SET state = state - %s WHERE pipeline = %s",
                                     (CHECKPOINT_KEY, pipe.name))
                        reason = (f"the source table was dropped and made again (oid {stored.get('relid')} is now "
                                  f"{relid})" if recreated and not health.lost else _lost_reason(health))
                        ledger.step(conn, run_id, f"resnapshot {spec.table}", "succeeded", datetime.now(UTC),
                                    detail={"reason": reason, "stored_lsn": lsn_text(int(stored["lsn"])),
                                            "slot": health.as_dict(), "then": "a new snapshot of the table"})
                if health.exists:  # ours: left by a snapshot that never committed, lost, or of the old table
                    slot.drop_slot(src, names.slot)
                _snapshot(conn, pipe, run_id, spec, names, relid, progress, prog)
                stored = state.load_state(conn, pipe.name).checkpoint[CHECKPOINT_KEY]
            until = None if follow is not None else slot.current_lsn(src)
            _stream(ctx, conn, src, pipe, run_id, spec, names, int(stored["lsn"]), relid, until, progress, prog,
                    follow)
    finally:
        src.close()


def _lost_reason(h: slot.SlotHealth) -> str:
    if not h.exists:
        return f"replication slot {h.slot} no longer exists on the source"
    return f"replication slot {h.slot} lost the WAL it held (wal_status {h.wal_status}; max_slot_wal_keep_size?)"


def _snapshot(conn: psycopg.Connection[Any], pipe: PipelinePlan, run_id: int, spec: PostgresSource,
              names: slot.Names, relid: int, progress: ProgressFn | None, prog: Progress) -> None:
    """Create the slot, load the table as of its exported snapshot, and store its position, in one commit."""
    where = slot.origin(spec)
    with conn.transaction():  # the slot is ours from now on, even if this snapshot never commits
        state.save_checkpoint(conn, pipe.name, run_id, {PENDING_KEY: names.slot}, None, None)
    rep = ReplicationStream(source_url(spec.url_env, where), where)
    try:
        lsn, snap = rep.create_slot(names.slot)
        stream = Stream(f"{spec.table} snapshot", lambda: read_postgres(spec, SourceState({}, None, {}), None,
                                                                        pipe.spec.batch_rows, snapshot=snap), None)

        def position(c: psycopg.Connection[Any]) -> None:
            _ensure_soft_delete(c, pipe)  # the new table has the contract's columns only
            state.save_checkpoint(c, pipe.name, run_id, {CHECKPOINT_KEY: {"lsn": lsn, "slot": names.slot,
                                                                          "relid": relid}}, None, None)
            c.execute("UPDATE pgmill.state SET state = state - %s WHERE pipeline = %s", (PENDING_KEY, pipe.name))

        load_replace(conn, pipe, run_id, [stream], progress, prog, before_commit=position)
    finally:
        rep.close()


def _ensure_soft_delete(conn: psycopg.Connection[Any], pipe: PipelinePlan) -> None:
    if pipe.soft_delete is not None:
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} timestamptz").format(
            qualified(pipe.spec.table), sql.Identifier(pipe.soft_delete)))


@dataclass
class _Position:
    """What the target has committed, shared by the loader (which sets it) and the reader (which confirms it),
    and the batches handed to the loader and not committed yet: (end position, first WAL position of their
    messages)."""

    committed: int
    confirmed: int = 0
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _stream(ctx: ProjectContext, conn: psycopg.Connection[Any], src: psycopg.Connection[Any], pipe: PipelinePlan,
            run_id: int, spec: PostgresSource, names: slot.Names, lsn: int, relid: int, until: int | None,
            progress: ProgressFn | None, prog: Progress, follow: Follow | None) -> None:
    where = slot.origin(spec)
    assert spec.cdc is not None
    rep = ReplicationStream(source_url(spec.url_env, where), where)
    try:
        rep.start(names.slot, names.publication, lsn)
        reader = _Reader(ctx, pipe, spec.cdc, rep, _Position(lsn), until, follow.stop if follow else None, relid)
        while True:
            stream = Stream(f"{spec.table} changes", reader.segment, None, committed=reader.committed)
            segment = load_stream(conn, pipe, run_id, stream, progress, prog, record_empty=False)
            if reader.done:  # the last position confirmed now, and the slot seen once this stream has let go
                reader.confirm(force=True)
                rep.close()
            h = slot.health(src, names.slot)
            for _ in range(20):  # the walsender lets the slot go as it exits, a moment after the close
                if not (reader.done and h.active):
                    break
                time.sleep(0.05)
                h = slot.health(src, names.slot)
            save_health(conn, pipe.name, h)
            if segment.rows_read:  # the segment's step carries the slot's health too: the ledger keeps its history
                with conn.transaction():
                    conn.execute(
                        "UPDATE pgmill.run_steps SET detail = detail || %s WHERE step_id = (SELECT max(step_id)"
                        " FROM pgmill.run_steps WHERE run_id = %s AND name = %s)",
                        (Jsonb({"slot": h.as_dict()}), run_id, f"load {stream.label}"))
            limit = spec.cdc.max_lag_bytes
            if limit is not None and (h.retained_bytes or 0) > limit:
                raise SourceError(
                    f"{where}: replication slot {names.slot} holds {h.retained_bytes:,} bytes of WAL on the source, "
                    f"more than max_lag_bytes ({limit:,}): pgmill is not keeping up; the source's disk fills "
                    "while this grows")
            if reader.done:
                return
    finally:
        rep.close()


def save_health(conn: psycopg.Connection[Any], pipeline: str, h: slot.SlotHealth) -> None:
    with conn.transaction():
        conn.execute("UPDATE pgmill.state SET state = state || %s WHERE pipeline = %s",
                     (Jsonb({"cdc_slot": {**h.as_dict(), "checked_at": datetime.now(UTC).isoformat()}}), pipeline))


class _Reader:
    """Reads the stream into batches of whole transactions, segment after segment, on the loader's reading
    thread (one at a time)."""

    def __init__(self, ctx: ProjectContext, pipe: PipelinePlan, cdc: CdcSpec, rep: ReplicationStream,
                 pos: _Position, until: int | None, stop: threading.Event | None, relid: int | None) -> None:
        self.ctx = ctx
        self.pipe = pipe
        self.cdc = cdc
        self.rep = rep
        self.pos = pos
        self.until = until
        self.stop = stop
        self.done = False
        spec = pipe.spec.source
        assert isinstance(spec, PostgresSource)
        self.where = slot.origin(spec)
        self.table = tuple(spec.table.split(".")) if spec.table and "." in spec.table else ("public", spec.table)
        kinds = {pipe.compiled.source_name(c): parse_type(col.type).kind for c, col in pipe.contract.columns.items()}
        self.to_contract = dict(zip(pipe.source_columns, pipe.columns, strict=True))
        self.folder = Folder(self.where, [pipe.compiled.source_name(k) for k in pipe.key], kinds, self._stored)
        self.relations: dict[int, Relation] = {}
        self.slot = slot.names(pipe.name, cdc).slot
        self.relid = relid  # the source table's oid when the position was stored
        self._open_floor: int | None = None  # first WAL position of the open and pending transactions

    def committed(self, raw: RawBatch) -> None:
        """The loader committed `raw` (synchronously: on disk): its position may be confirmed to the source."""
        ck = (raw.checkpoint or {}).get(CHECKPOINT_KEY)
        if ck is not None:
            with self.pos.lock:
                self.pos.committed = max(self.pos.committed, int(ck["lsn"]))
                while self.pos.inflight and self.pos.inflight[0][0] <= self.pos.committed:
                    self.pos.inflight.popleft()

    def confirm(self, force: bool = False) -> None:
        """Tell the source what the target has committed (`force`: send it now, not at the next status update).

        Never at or past the first WAL position of a message received and not committed yet (a transaction
        open, pending, or in a batch the loader has not committed): psycopg2, on a keepalive, moves the
        confirmed position on to the server's WAL end by itself once the position it was given reaches the
        last message received, and a transaction that began before the last committed one ended has messages
        below that end. Confirming less is always safe: the server resends from there and what is at or below
        the stored position is skipped."""
        with self.pos.lock:
            floors = [start for _, start in self.pos.inflight]
            lsn = self.pos.committed
        if self._open_floor is not None:
            floors.append(self._open_floor)
        lsn = min([lsn, *(f - 1 for f in floors)])
        if lsn > self.pos.confirmed or force:
            self.rep.confirm(lsn, force=force)
            self.pos.confirmed = max(self.pos.confirmed, lsn)

    def segment(self) -> Iterator[RawBatch]:
        """Batches for up to SEGMENT_S seconds (ending between transactions)."""
        started = time.monotonic()
        txn: list[Change] | None = None
        begin: Begin | None = None
        txn_floor = 0  # the open transaction's first WAL position
        pending: list[Change] = []
        pending_floor: int | None = None  # the pending transactions' first WAL position
        last_end = self.pos.committed
        first_commit: float | None = None  # the source's commit time of the batch's first transaction
        pending_since = 0.0  # when it arrived here
        idle_since = time.monotonic()
        batch_rows = self.pipe.spec.batch_rows

        def flush() -> RawBatch:
            nonlocal pending, pending_floor, first_commit
            raw = self._batch(pending, last_end, first_commit)
            with self.pos.lock:
                self.pos.inflight.append((last_end, pending_floor if pending_floor is not None else last_end))
            pending, pending_floor, first_commit = [], None, None
            return raw

        settle = True  # confirm what the target committed: after a commit message or a quiet read, not per change
        while True:
            if settle:
                floors = [f for f in (pending_floor, txn_floor if txn is not None else None) if f is not None]
                self._open_floor = min(floors) if floors else None
                self.confirm()
            behind = len(self.pos.inflight) >= BEHIND and not (
                pending and time.monotonic() - pending_since > MAX_BEHIND_S) and not (
                self.stop is not None and self.stop.is_set())
            wait = (BEHIND_POLL_S if behind else max(0.0, pending_since + MIN_BATCH_S - time.monotonic())
                    ) if pending else 0.5
            msg = self.rep.read(wait)
            now = time.monotonic()
            settle = msg is None
            if msg is None:
                if pending:  # nothing more right now: apply what has arrived (once the loader is free)
                    if not behind:
                        yield flush()
                    continue
                if txn is None and self._should_end(now - started, now - idle_since, last_end):
                    self._open_floor = None  # nothing open, nothing pending
                    return
                continue
            idle_since = now
            m = decode(msg.payload)
            if isinstance(m, Begin):
                txn, begin, txn_floor = [], m, msg.data_start
            elif isinstance(m, Relation):
                if (m.schema, m.name) == self.table:
                    try:
                        self._check_relation(m, begin.final_lsn if begin is not None else msg.data_start)
                    except (ContractError, SourceError):
                        if pending:  # the transactions before this one are applied first
                            yield flush()
                        raise
                self.relations[m.oid] = m
            elif isinstance(m, (Insert, Update, Delete, Truncate)):
                if txn is None or begin is None:
                    raise SourceError(f"{self.where}: a change arrived outside a transaction (lsn {lsn_text(msg.data_start)})")
                txn_floor = min(txn_floor, msg.data_start)
                for rel in self._relations(m):
                    txn.append(Change(msg.data_start, begin.commit_time, rel, m))
            elif isinstance(m, Commit):
                settle = True
                if txn and m.end_lsn > max(self.pos.committed, last_end):  # else applied before: skipped
                    pending.extend(txn)
                    pending_floor = txn_floor if pending_floor is None else min(pending_floor, txn_floor)
                    if first_commit is None:
                        first_commit, pending_since = m.commit_time.timestamp(), now
                    last_end = m.end_lsn
                elif txn is not None and not pending and m.end_lsn > last_end:
                    with self.pos.lock:  # nothing of ours in it (servers before 15 send those): confirm it
                        if self.pos.committed >= last_end and not self.pos.inflight:
                            self.pos.committed = max(self.pos.committed, m.end_lsn)
                    last_end = max(last_end, m.end_lsn)
                txn, begin = None, None
                if len(pending) >= batch_rows or (pending and now - pending_since > MAX_WAIT_S and not behind):
                    yield flush()
                if self._should_end(now - started, 0.0, last_end):  # a busy stream ends its segments too
                    if pending:
                        yield flush()
                    self._open_floor = None
                    return

    def _check_relation(self, rel: Relation, lsn: int) -> None:
        if self.relid is not None and rel.oid != self.relid:
            raise SourceError(
                f"{self.where}:lsn {lsn_text(lsn)}: the source table was dropped and made again (oid {self.relid} "
                f"is now {rel.oid}): changes made before it was published again are not in the stream; the next run "
                "loads a new snapshot")
        self.folder.check_relation(rel, lsn)

    def _should_end(self, elapsed: float, idle: float, last_end: int) -> bool:
        """Between transactions with nothing pending: end the segment, and say whether the run is done."""
        if self.stop is not None and self.stop.is_set():
            self.done = True
        elif self.until is not None and (last_end >= self.until or idle >= IDLE_END_S
                                         or (idle >= QUIET_S and self.rep.wal_end >= self.until)):
            # everything committed at the start is applied; or the server said it has sent everything up to
            # there (a keepalive's position), or the stream has been quiet for long
            self.done = True
        return self.done or elapsed >= SEGMENT_S

    def _relations(self, m: Insert | Update | Delete | Truncate) -> list[Relation]:
        if not isinstance(m, Truncate):  # the hot path: one relation
            rel = self.relations.get(m.relation_oid)
            if rel is not None and rel.name == self.table[1] and rel.schema == self.table[0]:
                return [rel]
        oids = m.relation_oids if isinstance(m, Truncate) else (m.relation_oid,)
        out = []
        for oid in oids:
            rel = self.relations.get(oid)
            if rel is None:
                raise SourceError(f"{self.where}: a change for relation {oid} arrived before its description")
            if (rel.schema, rel.name) == self.table:
                out.append(rel)
        return out

    def _batch(self, pending: list[Change], end: int, first_commit: float | None) -> RawBatch:
        raw = self.folder.fold(pending)
        raw.checkpoint = {CHECKPOINT_KEY: {"lsn": end, "slot": self.slot, "relid": self.relid}}
        raw.arrived = first_commit
        raw.durable = True  # confirmed to the slot once committed: it must survive a crash of the target
        return raw

    def _stored(self, key: list[str], keys: list[Key], wanted: list[str]
                ) -> tuple[dict[Key, dict[str, str | None]], set[Key]]:
        """The target's stored text of the `wanted` source columns for `keys` (unchanged TOAST values; None for
        a column the target does not have: it is not loaded), and which of the keys have a change in quarantine."""
        tkey = [self.to_contract.get(k, k) for k in key]
        with self.ctx.target.connect() as c:
            have = set(catalog.columns(c, *split_table(self.pipe.spec.table)))
            cols = [self.to_contract.get(w, w) for w in wanted]
            values = [sql.SQL("t.{}::text").format(sql.Identifier(col)) if col in have else sql.SQL("NULL::text")
                      for col in cols]
            select = sql.SQL(", ").join([*(sql.SQL("k.{}").format(sql.Identifier(k)) for k in tkey), *values])
            keyset = sql.SQL(", ").join(sql.SQL("unnest(%s::text[]) AS {}").format(sql.Identifier(k)) for k in tkey)
            types = [parse_type(self.pipe.contract.columns[k].type).sql for k in tkey]
            match = sql.SQL(" AND ").join(sql.SQL("t.{0} = k.{0}::{1}").format(sql.Identifier(k), sql.SQL(t))
                                          for k, t in zip(tkey, types, strict=True))  # the key's index serves it
            params = [[k[i] for k in keys] for i in range(len(tkey))]
            rows = c.execute(sql.SQL("SELECT {} FROM {} t JOIN (SELECT {}) k ON {}").format(
                select, qualified(self.pipe.spec.table), keyset, match), params).fetchall()
            # a quarantined record names its columns as the source does, or (rejected by the database) as the
            # contract does
            held = sql.SQL(" AND ").join(
                sql.SQL("coalesce(q.record->>{}, q.record->>{}) = k.{}").format(
                    sql.Literal(s), sql.Literal(t), sql.Identifier(t)) for s, t in zip(key, tkey, strict=True))
            tainted = c.execute(sql.SQL(
                "SELECT DISTINCT {} FROM pgmill.quarantine q JOIN (SELECT {}) k ON {} WHERE q.pipeline = %s").format(
                sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(k)) for k in tkey), keyset, held),
                [*params, self.pipe.name]).fetchall()
        n = len(tkey)
        return ({tuple(r[:n]): dict(zip(wanted, r[n:], strict=True)) for r in rows},
                {tuple(r) for r in tainted})

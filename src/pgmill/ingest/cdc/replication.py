"""The replication connection: the one module that speaks psycopg2 (the optional extra `pgmill[cdc]`),
because psycopg 3 has no replication protocol (docs/cdc.md "Client" says why streaming, not polling).

It creates the slot (exporting the snapshot the initial load reads), streams pgoutput from a position, and
confirms positions only when told: the caller confirms a transaction's end only after the target committed
it (psycopg2 then repeats that position in its own status updates, never one it was not given).
"""

from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any

from pgmill.errors import DatabaseUnavailable, SourceError
from pgmill.ingest.cdc.pgoutput import lsn_text
from pgmill.redact import redact

#: The walsender formats values with these (pgoutput sends text): the contract parses ISO dates, UTC
#: timestamps and exact floats.
SESSION = "-c DateStyle=ISO,YMD -c TimeZone=UTC -c extra_float_digits=3 -c IntervalStyle=postgres"


@dataclass(frozen=True)
class Received:
    """One pgoutput message and the position of its WAL record."""

    payload: bytes
    data_start: int
    send_time: float


def _psycopg2() -> Any:
    try:
        import psycopg2
        import psycopg2.extras
    except ImportError as exc:
        raise SourceError("a cdc source streams through psycopg2: pip install 'pgmill[cdc]'") from exc
    return psycopg2


class ReplicationStream:
    """A logical replication connection to the source."""

    def __init__(self, url: str, where: str) -> None:
        pg2 = _psycopg2()
        self.where = where
        self._errors = pg2
        try:
            self.conn = pg2.connect(url, connection_factory=pg2.extras.LogicalReplicationConnection,
                                    options=SESSION, application_name="pgmill cdc")
        except pg2.OperationalError as exc:
            message = redact(str(exc).strip())
            if "replication" in message and ("permission" in message or "must be" in message):
                raise SourceError(f"{where}: {message}: the role needs the REPLICATION attribute") from exc
            raise DatabaseUnavailable(f"{where}: cannot open a replication connection: {message}") from exc
        self.cur = self.conn.cursor()

    def create_slot(self, slot: str) -> tuple[int, str]:
        """Create logical slot `slot` (pgoutput); its consistent point and the snapshot it exports, valid
        until this connection sends anything else."""
        from psycopg2 import sql as sql2

        try:
            self.cur.execute(sql2.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT").format(
                sql2.Identifier(slot)))
            row = self.cur.fetchone()
        except self._errors.Error as exc:
            raise SourceError(f"{self.where}: cannot create replication slot {slot}: {redact(str(exc).strip())}") from exc
        assert row is not None
        return parse_lsn(row[1]), str(row[2])

    def start(self, slot: str, publication: str, lsn: int) -> None:
        """Stream the slot's changes after `lsn` (the server starts at the slot's confirmed position when
        that is later)."""
        try:
            self.cur.start_replication(slot_name=slot, decode=False, start_lsn=lsn_text(lsn), status_interval=5,
                                       options={"proto_version": "1", "publication_names": publication})
        except self._errors.Error as exc:
            text = redact(str(exc).strip())
            if getattr(exc, "pgcode", None) == "55006" or isinstance(exc, self._errors.OperationalError):
                # the slot is still held by a consumer that is going away (a killed pgmill's walsender notices
                # its client is gone only when it next writes), or the connection broke: worth retrying
                raise DatabaseUnavailable(f"{self.where}: cannot stream from slot {slot} yet: {text}") from exc
            raise SourceError(f"{self.where}: cannot stream from slot {slot}: {text}") from exc

    def read(self, timeout: float) -> Received | None:
        """The next message, waiting up to `timeout` seconds; None when there is none yet."""
        try:
            msg = self.cur.read_message()
            if msg is None:
                ready, _, _ = select.select([self.cur], [], [], timeout)
                if ready:
                    msg = self.cur.read_message()
        except self._errors.Error as exc:
            text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            if getattr(exc, "pgcode", None) and getattr(exc, "pgcode", None) != "57P01":
                # the server refused to go on (a publication or slot dropped, a table it cannot decode): not a
                # network failure, and retrying would fail the same way
                raise SourceError(
                    f"{self.where}: the source stopped the replication stream: {text}. If the publication or slot "
                    "was dropped, `pgmill cdc drop PIPELINE` and run again to start over from a new snapshot") from exc
            raise DatabaseUnavailable(f"{self.where}: the replication stream broke: {text}") from exc
        if msg is None:
            return None
        return Received(msg.payload, int(msg.data_start), msg.send_time.timestamp())

    @property
    def wal_end(self) -> int:
        """The server's WAL end as of the last message or keepalive received."""
        return int(self.cur.wal_end)

    def confirm(self, lsn: int, force: bool = False) -> None:
        """Tell the server everything up to `lsn` is applied: the slot may release WAL before it. Sent with the
        next status update (every 5 s), or now with `force`."""
        try:
            self.cur.send_feedback(flush_lsn=lsn, write_lsn=lsn, apply_lsn=lsn, force=force)
        except self._errors.Error as exc:
            raise DatabaseUnavailable(f"{self.where}: the replication stream broke: {redact(str(exc).strip())}") from exc

    def close(self) -> None:
        if self.conn.closed:
            return
        try:
            self.conn.close()
        except self._errors.Error:
            return  # already gone: nothing of ours is left open on it


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)

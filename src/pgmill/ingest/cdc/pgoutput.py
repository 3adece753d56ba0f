"""Decode pgoutput (protocol version 1) messages, the built-in logical replication output plugin, into
small frozen dataclasses. Pure: bytes in, values out, no I/O.

One message per call: `decode(data)` takes the `data` of one row of `pg_logical_slot_peek_binary_changes`
(or one CopyData payload of a replication stream, after its XLogData header). The format is PostgreSQL's
"Logical Replication Message Formats" chapter; integers are big-endian, strings NUL-terminated, LSNs
are returned as integers (comparable; `lsn_text` writes them as PostgreSQL does, `16/B374D848`).

Column values arrive as text (pgmill does not ask for `binary = true`): a value is a `str`, `None` for
SQL NULL, or `UNCHANGED_TOAST` for a large (TOASTed) value an UPDATE or DELETE did not change and did not
send: the stored value must be kept, never overwritten with NULL. Text is decoded as UTF-8: the client
must connect with `client_encoding = UTF8`, which pgmill's connections do.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

from pgmill.errors import SourceError

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

ReplicaIdentity = Literal["d", "n", "f", "i"]
"""`REPLICA IDENTITY` of a table: default (primary key), nothing, full (whole old row), index."""


class PgoutputError(SourceError):
    """A pgoutput message could not be decoded: unknown type, truncated, or not what protocol 1 sends."""


class Unchanged(enum.Enum):
    """A column an UPDATE or DELETE did not send: its TOASTed value is unchanged."""

    TOAST = "u"


UNCHANGED_TOAST = Unchanged.TOAST

Value = str | None | Unchanged


@dataclass(frozen=True, slots=True)
class TupleData:
    """One row's column values in the relation's column order."""

    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    """A transaction starts; `final_lsn` is the LSN of its commit record."""

    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """A transaction ends: `commit_lsn` is its commit record, `end_lsn` the position just after it (the
    position to confirm to the slot once the transaction is applied)."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """The transaction was replicated into the source from another node (replication origin)."""

    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a Relation message."""

    key: bool
    name: str
    type_oid: int
    typmod: int


@dataclass(frozen=True, slots=True)
class Relation:
    """A table's current shape, sent before its first change in a session and again after it changes."""

    oid: int
    schema: str
    name: str
    replica_identity: ReplicaIdentity
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Type:
    """A non-built-in data type used by a column (its oid, schema and name)."""

    oid: int
    schema: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    """`old` is sent only when a key column changed (`old_kind` "K": the key columns, others None) or the
    table has REPLICA IDENTITY FULL (`old_kind` "O": the whole old row)."""

    relation_oid: int
    old_kind: Literal["K", "O"] | None
    old: TupleData | None
    new: TupleData


@dataclass(frozen=True, slots=True)
class Delete:
    """`old_kind` "K": the key columns (others None); "O": the whole old row (REPLICA IDENTITY FULL)."""

    relation_oid: int
    old_kind: Literal["K", "O"]
    old: TupleData


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


Message = Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate

_KNOWN = "B (begin), C (commit), O (origin), R (relation), Y (type), I (insert), U (update), D (delete), T (truncate)"


def lsn_text(lsn: int) -> str:
    """An LSN written as PostgreSQL writes it: `16/B374D848`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _time(micros: int) -> datetime:
    return POSTGRES_EPOCH + timedelta(microseconds=micros)


_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class _Reader:
    __slots__ = ("data", "pos", "kind")

    def __init__(self, data: bytes, kind: str) -> None:
        self.data, self.pos, self.kind = data, 1, kind

    def _take(self, fmt: str, size: int, what: str) -> int:
        if self.pos + size > len(self.data):
            raise PgoutputError(f"pgoutput {self.kind} message truncated at byte {self.pos}: {what} needs "
                                f"{size} bytes, {len(self.data) - self.pos} left")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return cast(int, value)

    def int8(self, what: str) -> int:
        return self._take(">B", 1, what)

    def int16(self, what: str) -> int:
        return self._take(">h", 2, what)

    def int32(self, what: str) -> int:
        return self._take(">i", 4, what)

    def uint32(self, what: str) -> int:
        return self._take(">I", 4, what)

    def int64(self, what: str) -> int:
        return self._take(">q", 8, what)

    def uint64(self, what: str) -> int:
        return self._take(">Q", 8, what)

    def byte(self, what: str) -> str:
        return chr(self.int8(what))

    def bytes_(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PgoutputError(f"pgoutput {self.kind} message truncated at byte {self.pos}: {what} needs "
                                f"{n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def string(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgoutputError(f"pgoutput {self.kind} message truncated at byte {self.pos}: {what} has no "
                                "terminating NUL")
        text = self.text(self.data[self.pos:end], what)
        self.pos = end + 1
        return text

    def text(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise PgoutputError(f"pgoutput {self.kind} message: {what} is not UTF-8 ({exc.reason} at its byte "
                                f"{exc.start}); connect with client_encoding = UTF8") from None

    def tuple_data(self) -> TupleData:
        """One tuple: in one tight pass when it is well formed (the stream's hot path, ~5 us for a few text
        columns), else again column by column to say exactly what is wrong."""
        data, pos, end = self.data, self.pos, len(self.data)
        values: list[Value] = []
        append = values.append
        try:
            (n,) = _INT16.unpack_from(data, pos)
            pos += 2
            for _ in range(n):
                kind = data[pos]
                pos += 1
                if kind == 116:  # 't': a value as text
                    (size,) = _INT32.unpack_from(data, pos)
                    pos += 4
                    stop = pos + size
                    if size < 0 or stop > end:
                        raise ValueError
                    append(data[pos:stop].decode())
                    pos = stop
                elif kind == 110:  # 'n': null
                    append(None)
                elif kind == 117:  # 'u': unchanged TOAST
                    append(UNCHANGED_TOAST)
                else:
                    raise ValueError
        except (ValueError, IndexError, struct.error):  # UnicodeDecodeError is a ValueError
            return self._tuple_data_checked()
        self.pos = pos
        return TupleData(tuple(values))

    def _tuple_data_checked(self) -> TupleData:
        values: list[Value] = []
        for i in range(self.int16("the tuple's column count")):
            kind = self.byte(f"column {i + 1}'s kind")
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED_TOAST)
            elif kind == "t":
                values.append(self.text(self.bytes_(self.int32(f"column {i + 1}'s length"),
                                                    f"column {i + 1}'s value"), f"column {i + 1}'s value"))
            elif kind == "b":
                raise PgoutputError(f"pgoutput {self.kind} message: column {i + 1} is in binary format "
                                    "(byte 'b'); pgmill reads text values: do not set the `binary` option")
            else:
                raise PgoutputError(f"pgoutput {self.kind} message: column {i + 1} has unknown kind byte "
                                    f"{kind!r} at byte {self.pos - 1} (expected 'n', 'u' or 't')")
        return TupleData(tuple(values))

    def old_or_new(self, allowed: str, what: str) -> str:
        tag = self.byte(what)
        if tag not in allowed:
            raise PgoutputError(f"pgoutput {self.kind} message: expected {' or '.join(map(repr, allowed))} for "
                                f"{what} at byte {self.pos - 1}, got {tag!r}")
        return tag

    def done(self) -> None:
        if self.pos != len(self.data):
            raise PgoutputError(f"pgoutput {self.kind} message has {len(self.data) - self.pos} unexpected "
                                f"bytes after byte {self.pos}")


def _begin(r: _Reader) -> Begin:
    return Begin(r.uint64("final LSN"), _time(r.int64("commit time")), r.uint32("xid"))


def _commit(r: _Reader) -> Commit:
    return Commit(r.int8("flags"), r.uint64("commit LSN"), r.uint64("end LSN"), _time(r.int64("commit time")))


def _origin(r: _Reader) -> Origin:
    return Origin(r.uint64("origin commit LSN"), r.string("origin name"))


def _relation(r: _Reader) -> Relation:
    oid, schema, name = r.uint32("relation oid"), r.string("schema"), r.string("relation name")
    identity = r.byte("replica identity")
    if identity not in "dnfi":
        raise PgoutputError(f"pgoutput relation message for {schema}.{name}: unknown replica identity "
                            f"{identity!r} (expected 'd', 'n', 'f' or 'i')")
    columns = tuple(Column(bool(r.int8("column flags") & 1), r.string("column name"), r.uint32("column type oid"),
                           r.int32("column typmod"))
                    for _ in range(r.int16("column count")))
    return Relation(oid, schema, name, cast(ReplicaIdentity, identity), columns)


def _type(r: _Reader) -> Type:
    return Type(r.uint32("type oid"), r.string("type schema"), r.string("type name"))


def _insert(r: _Reader) -> Insert:
    oid = r.uint32("relation oid")
    r.old_or_new("N", "the new tuple's tag")
    return Insert(oid, r.tuple_data())


def _update(r: _Reader) -> Update:
    oid = r.uint32("relation oid")
    tag = r.old_or_new("KON", "the old or new tuple's tag")
    if tag == "N":
        return Update(oid, None, None, r.tuple_data())
    old = r.tuple_data()
    r.old_or_new("N", "the new tuple's tag")
    return Update(oid, cast(Literal["K", "O"], tag), old, r.tuple_data())


def _delete(r: _Reader) -> Delete:
    oid = r.uint32("relation oid")
    tag = r.old_or_new("KO", "the old tuple's tag")
    return Delete(oid, cast(Literal["K", "O"], tag), r.tuple_data())


def _truncate(r: _Reader) -> Truncate:
    count, options = r.int32("relation count"), r.int8("options")
    return Truncate(tuple(r.uint32("relation oid") for _ in range(count)), bool(options & 1), bool(options & 2))


_DECODERS: dict[str, tuple[str, Callable[[_Reader], Message]]] = {"B": ("begin", _begin), "C": ("commit", _commit), "O": ("origin", _origin),
             "R": ("relation", _relation), "Y": ("type", _type), "I": ("insert", _insert),
             "U": ("update", _update), "D": ("delete", _delete), "T": ("truncate", _truncate)}


def decode(data: bytes) -> Message:
    """One pgoutput protocol 1 message; PgoutputError names what is wrong and at which byte."""
    if not data:
        raise PgoutputError("empty pgoutput message")
    tag = chr(data[0])
    if tag not in _DECODERS:
        raise PgoutputError(f"unknown pgoutput message type byte {data[0]!r} ({tag!r}, 0x{data[0]:02x}); protocol "
                            f"version 1 sends {_KNOWN}")
    kind, decoder = _DECODERS[tag]
    reader = _Reader(bytes(data), kind)
    message = decoder(reader)
    reader.done()
    return message

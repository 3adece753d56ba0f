"""Whole source transactions folded into one batch for the loader: each key's last change wins.

A batch of whole transactions commits in one target transaction, so only each key's final state in the
batch matters: its last image (an insert or an update: upserted) or its deletion. Changes a later change
to the same key replaced are counted as folded (`rows_duplicate` in the ledger: their effect is in the
later change). A TRUNCATE folds everything before it and empties the target first.

A large value the source did not resend (pgoutput's "unchanged TOAST") is filled from the key's previous
image (or, after an update that changed the key, the old key's): earlier in this batch, in one of the last
batches (which may not be committed yet), or else the target's stored value (as text, and through the
contract again). A row whose value is found nowhere (its earlier version was quarantined or never loaded),
or whose key has a change in quarantine (the target's value may be older than the source's), is
quarantined: a stored value is never overwritten with NULL, nor with a stale one.

Source types the contract cannot take (a column of the contract turned from numeric to text, say) stop the
stream before the transaction that brings them is applied.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from pgmill.config.types import Kind
from pgmill.errors import ContractError, SourceError
from pgmill.ingest.cdc.pgoutput import (
    UNCHANGED_TOAST,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    Value,
    lsn_text,
)
from pgmill.ingest.sources.base import DELETED_AT, BadRecord, RawBatch

# source type OIDs by the contract kinds that can take their text
_INT = {20, 21, 23, 26}
_FLOAT = {700, 701}
_NUMERIC = {1700}
_TEXTLIKE = {19, 25, 1042, 1043}
_ACCEPTS: dict[Kind, set[int] | None] = {  # None: any source type (its text)
    "int": _INT, "float": _INT | _FLOAT | _NUMERIC, "numeric": _INT | _FLOAT | _NUMERIC,
    "text": None, "bool": {16}, "date": {1082}, "timestamp": {1082, 1114, 1184}, "timestamptz": {1082, 1114, 1184},
    "uuid": {2950} | _TEXTLIKE, "json": {114, 3802} | _TEXTLIKE,
}

#: how many recent batches' images are kept for filling unchanged TOAST values (the loader may still be
#: writing the last two when the next is folded)
RECENT_BATCHES = 3

Key = tuple[str | None, ...]
#: (key columns, keys, wanted columns) -> the target's stored text of the wanted columns by key (None for a
#: column the target does not have), and the keys with a change in quarantine
Lookup = Callable[[list[str], list[Key], list[str]], tuple[dict[Key, dict[str, str | None]], set[Key]]]


@dataclass
class Change:
    """One change as received: its WAL position, commit time, and the relation it is about."""

    lsn: int
    commit_time: datetime
    relation: Relation
    message: Insert | Update | Delete | Truncate


@dataclass
class _Final:
    op: str  # "upsert" or "delete"
    lsn: int
    commit_time: datetime
    values: dict[str, Value] = field(default_factory=dict)  # upsert: source column -> value
    from_key: Key | None = None  # upsert by an update that changed the key: the key it had


class Folder:
    """Folds transactions into batches for one table whose key is `key` (source column names)."""

    def __init__(self, origin: str, key: list[str], kinds: dict[str, Kind], lookup: Lookup) -> None:
        self.origin = origin
        self.key = key
        self.kinds = kinds  # contract kind of each contract column, by source name
        self.lookup = lookup  # (key columns, keys, wanted columns) -> the target's stored text
        self._recent: OrderedDict[int, dict[Key, dict[str, Value]]] = OrderedDict()
        self._batch_no = 0

    # ------------------------------------------------------------ checks

    def check_relation(self, rel: Relation, lsn: int) -> None:
        """Stop (ContractError) when a contract column's source type is one its contract type cannot take,
        or the relation's key does not carry the contract's key."""
        cols = {c.name: c for c in rel.columns}
        for name, kind in self.kinds.items():
            col = cols.get(name)
            accepts = _ACCEPTS.get(kind)
            if col is not None and accepts is not None and col.type_oid not in accepts:
                raise ContractError(
                    f"{self.origin}:lsn {lsn_text(lsn)}: source column {rel.schema}.{rel.name}.{name} now has type "
                    f"oid {col.type_oid}, which the contract's {kind} column cannot take; the stream stopped "
                    "before applying this transaction: change the contract (or the source) and run again")
        keyed = {c.name for c in rel.columns if c.key}
        missing = [k for k in self.key if k not in keyed]
        if missing and rel.replica_identity != "f":
            raise SourceError(
                f"{self.origin}: the source table's replica identity does not include the contract's key "
                f"{', '.join(missing)}: updates and deletes would not say which row they change "
                f"(give {rel.schema}.{rel.name} that primary key, or ALTER TABLE ... REPLICA IDENTITY FULL)")

    # ------------------------------------------------------------ folding

    def fold(self, changes: Sequence[Change]) -> RawBatch:
        """One batch from the changes of whole transactions, in commit order (`folded` says how many changes a
        later one replaced)."""
        finals: dict[Key, _Final] = {}
        folded = 0
        truncate = False
        for ch in changes:
            m = ch.message
            names = [c.name for c in ch.relation.columns]
            if isinstance(m, Truncate):
                folded += len(finals)
                finals.clear()
                self._recent.clear()
                truncate = True
                continue
            if isinstance(m, Delete):
                k = self._key(names, m.old.values)
                folded += k in finals
                finals[k] = _Final("delete", ch.lsn, ch.commit_time)
                continue
            values = dict(zip(names, m.new.values, strict=True))
            k = self._key(names, m.new.values)
            before = finals.get(k)
            from_key: Key | None = None
            if isinstance(m, Update) and m.old is not None and m.old_kind is not None:
                old_k = self._key(names, m.old.values)
                if old_k != k:  # the key changed: the old row goes (its large values come along)
                    prev = finals.get(old_k)
                    folded += prev is not None
                    finals[old_k] = _Final("delete", ch.lsn, ch.commit_time)
                    from_key = old_k
                    if before is None and prev is not None and prev.op == "upsert":
                        before = prev
            if before is not None and before.op == "upsert":
                for col, v in values.items():
                    if v is UNCHANGED_TOAST:
                        values[col] = before.values.get(col, UNCHANGED_TOAST)
                from_key = before.from_key if from_key is None else from_key
            folded += k in finals
            finals[k] = _Final("upsert", ch.lsn, ch.commit_time, values, from_key)
        bad = self._fill_toast(finals)
        self._remember(finals)
        shape = [c.name for c in changes[-1].relation.columns] if changes else []
        return self._batch(finals, truncate, bad, folded, shape)

    def _key(self, names: list[str], values: tuple[Value, ...]) -> Key:
        row = dict(zip(names, values, strict=True))
        return tuple(v if isinstance(v, str) else None for v in (row.get(k) for k in self.key))

    def _fill_toast(self, finals: dict[Key, _Final]) -> list[BadRecord]:
        """Fill unchanged TOAST values from recent batches, else from the target (by the row's key, or the key an
        update changed); quarantine what is in neither, or what an earlier quarantined change may have changed."""
        todo = {k: f for k, f in finals.items() if f.op == "upsert" and UNCHANGED_TOAST in f.values.values()}
        if not todo:
            return []
        for k, f in todo.items():
            img = self._recent_image(k) or (self._recent_image(f.from_key) if f.from_key is not None else None)
            if img is not None:
                for col, v in f.values.items():
                    if v is UNCHANGED_TOAST:
                        f.values[col] = img.get(col, UNCHANGED_TOAST)
        left = {k: f for k, f in todo.items() if UNCHANGED_TOAST in f.values.values()}
        if not left:
            return []
        wanted = sorted({c for f in left.values() for c, v in f.values.items() if v is UNCHANGED_TOAST})
        asked = list({*left, *(f.from_key for f in left.values() if f.from_key is not None)})
        stored, tainted = self.lookup(self.key, asked, wanted)
        bad: list[BadRecord] = []
        for k, f in left.items():
            source = k if k in stored else f.from_key
            row = stored.get(source) if source is not None else None
            missing = [c for c, v in f.values.items() if v is UNCHANGED_TOAST and (row is None or c not in row)]
            reason = None
            if missing:
                reason = (f"the source did not resend the unchanged large value of {', '.join(missing)} and the "
                          "target has no earlier version of this row (quarantined or never loaded)")
            elif source in tainted:
                reason = (f"the source did not resend the unchanged large value of {', '.join(wanted)}, and an "
                          "earlier change of this row is in quarantine: the target's value may be older than the "
                          "source's (replay or resolve the quarantined change, then update the row again)")
            if reason is not None:
                del finals[k]
                shown = {c: ("(unchanged, not resent)" if v is UNCHANGED_TOAST else v) for c, v in f.values.items()}
                bad.append(BadRecord(f"{self.origin}:lsn {lsn_text(f.lsn)}", repr(shown), reason))
                continue
            assert row is not None
            for c in wanted:
                if f.values.get(c) is UNCHANGED_TOAST:
                    f.values[c] = row[c]
        return bad

    def _recent_image(self, k: Key) -> dict[str, Value] | None:
        for images in reversed(self._recent.values()):
            img = images.get(k)
            if img is not None:
                return img
        return None

    def _remember(self, finals: dict[Key, _Final]) -> None:
        self._batch_no += 1
        for images in self._recent.values():
            for k, f in finals.items():
                if f.op == "delete":
                    images.pop(k, None)
        self._recent[self._batch_no] = {k: dict(f.values) for k, f in finals.items() if f.op == "upsert"}
        while len(self._recent) > RECENT_BATCHES:
            self._recent.popitem(last=False)

    def _batch(self, finals: dict[Key, _Final], truncate: bool, bad: list[BadRecord], folded: int,
               shape: list[str]) -> RawBatch:
        ups = [f for f in finals.values() if f.op == "upsert"]
        dels = [(k, f) for k, f in finals.items() if f.op == "delete"]
        columns: list[str] = list(shape)  # the table's columns now, and any an earlier image had
        for f in ups:
            columns.extend(c for c in f.values if c not in columns)
        table = pa.table({c: pa.array([_text(f.values.get(c)) for f in ups], pa.string()) for c in columns})
        deletes = pa.table({
            **{c: pa.array([k[i] for k, _ in dels], pa.string()) for i, c in enumerate(self.key)},
            DELETED_AT: pa.array([f.commit_time for _, f in dels], pa.timestamp("us", tz="UTC")),
        })
        return RawBatch(table, self.origin, [f.lsn for f in ups], bad, position_word="lsn", deletes=deletes,
                        truncate=truncate, folded=folded)


def _text(v: Value) -> str | None:
    assert v is not UNCHANGED_TOAST  # filled or quarantined by now
    return v if isinstance(v, str) else None

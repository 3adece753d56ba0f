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


@dataclass(slots=True)
class Change:
    """One change as received: its WAL position, commit time, and the relation it is about."""

    lsn: int
    commit_time: datetime
    relation: Relation
    message: Insert | Update | Delete | Truncate


@dataclass(slots=True)
class _Final:
    op: str  # "upsert" or "delete"
    lsn: int
    commit_time: datetime
    names: tuple[str, ...] = ()  # upsert: the source columns of `values`, in the relation's order
    values: list[Value] = field(default_factory=list)
    from_key: Key | None = None  # upsert by an update that changed the key: the key it had

    def get(self, col: str) -> Value:
        """The value of source column `col` (unchanged TOAST when this image does not have the column)."""
        try:
            return self.values[self.names.index(col)]
        except ValueError:
            return UNCHANGED_TOAST

    def take_unchanged(self, image: _Final) -> None:
        """Fill this image's unchanged TOAST values from an earlier image of the row."""
        same = image.names == self.names
        for i, v in enumerate(self.values):
            if v is UNCHANGED_TOAST:
                self.values[i] = image.values[i] if same else image.get(self.names[i])


class Folder:
    """Folds transactions into batches for one table whose key is `key` (source column names)."""

    def __init__(self, origin: str, key: list[str], kinds: dict[str, Kind], lookup: Lookup) -> None:
        self.origin = origin
        self.key = key
        self.kinds = kinds  # contract kind of each contract column, by source name
        self.lookup = lookup  # (key columns, keys, wanted columns) -> the target's stored text
        self._recent: OrderedDict[int, dict[Key, _Final]] = OrderedDict()  # upserted images of recent batches
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
        later one replaced). Per change only a few tuple and dict operations: a busy stream folds tens of
        thousands of changes a second on one core."""
        finals: dict[Key, _Final] = {}
        folded = 0
        truncate = False
        rel: Relation | None = None
        names: tuple[str, ...] = ()
        at: list[int | None] = []  # where each key column is in the relation's tuples
        for ch in changes:
            m = ch.message
            if ch.relation is not rel:
                rel = ch.relation
                names = tuple(c.name for c in rel.columns)
                at = [names.index(k) if k in names else None for k in self.key]
            if isinstance(m, Truncate):
                folded += len(finals)
                finals.clear()
                self._recent.clear()
                truncate = True
                continue
            if isinstance(m, Delete):
                k = self._key(names, at, m.old.values, ch.lsn)
                folded += k in finals
                finals[k] = _Final("delete", ch.lsn, ch.commit_time)
                continue
            values = list(m.new.values)
            k = self._key(names, at, values, ch.lsn)
            before = finals.get(k)
            from_key: Key | None = None
            if isinstance(m, Update) and m.old is not None and m.old_kind is not None:
                old_k = self._key(names, at, m.old.values, ch.lsn)
                if old_k != k:  # the key changed: the old row goes (its large values come along)
                    prev = finals.get(old_k)
                    folded += prev is not None
                    finals[old_k] = _Final("delete", ch.lsn, ch.commit_time)
                    from_key = old_k
                    if before is None and prev is not None and prev.op == "upsert":
                        before = prev
            f = _Final("upsert", ch.lsn, ch.commit_time, names, values, from_key)
            if before is not None and before.op == "upsert":
                if UNCHANGED_TOAST in values:
                    f.take_unchanged(before)
                f.from_key = before.from_key if from_key is None else from_key
            folded += k in finals
            finals[k] = f
        bad = self._fill_toast(finals)
        self._remember(finals)
        shape = [c.name for c in changes[-1].relation.columns] if changes else []
        return self._batch(finals, truncate, bad, folded, shape)

    def _key(self, names: tuple[str, ...], at: list[int | None], values: Sequence[Value], lsn: int) -> Key:
        if len(values) != len(names):
            raise SourceError(f"{self.origin}:lsn {lsn_text(lsn)}: a change has {len(values)} values for the "
                              f"{len(names)} columns its relation described")
        if len(at) == 1:  # the usual one-column key
            i = at[0]
            return (None if i is None else _text_or_none(values[i]),)
        return tuple(None if i is None else _text_or_none(values[i]) for i in at)

    def _fill_toast(self, finals: dict[Key, _Final]) -> list[BadRecord]:
        """Fill unchanged TOAST values from recent batches, else from the target (by the row's key, or the key an
        update changed); quarantine what is in neither, or what an earlier quarantined change may have changed."""
        todo = {k: f for k, f in finals.items() if f.op == "upsert" and UNCHANGED_TOAST in f.values}
        if not todo:
            return []
        for k, f in todo.items():
            img = self._recent_image(k) or (self._recent_image(f.from_key) if f.from_key is not None else None)
            if img is not None:
                f.take_unchanged(img)
        left = {k: f for k, f in todo.items() if UNCHANGED_TOAST in f.values}
        if not left:
            return []
        wanted = sorted({c for f in left.values() for c, v in zip(f.names, f.values, strict=True)
                         if v is UNCHANGED_TOAST})
        asked = list({*left, *(f.from_key for f in left.values() if f.from_key is not None)})
        stored, tainted = self.lookup(self.key, asked, wanted)
        bad: list[BadRecord] = []
        for k, f in left.items():
            source = k if k in stored else f.from_key
            row = stored.get(source) if source is not None else None
            unchanged = [c for c, v in zip(f.names, f.values, strict=True) if v is UNCHANGED_TOAST]
            missing = [c for c in unchanged if row is None or c not in row]
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
                shown = {c: ("(unchanged, not resent)" if v is UNCHANGED_TOAST else v)
                         for c, v in zip(f.names, f.values, strict=True)}
                bad.append(BadRecord(f"{self.origin}:lsn {lsn_text(f.lsn)}", repr(shown), reason))
                continue
            assert row is not None
            for i, c in enumerate(f.names):
                if f.values[i] is UNCHANGED_TOAST:
                    f.values[i] = row[c]
        return bad

    def _recent_image(self, k: Key) -> _Final | None:
        for images in reversed(self._recent.values()):
            img = images.get(k)
            if img is not None:
                return img
        return None

    def _remember(self, finals: dict[Key, _Final]) -> None:
        """Keep the batch's upserted images (not copied: nothing changes them once folded)."""
        self._batch_no += 1
        gone = [k for k, f in finals.items() if f.op == "delete"]
        for images in self._recent.values():
            for k in gone:
                images.pop(k, None)
        self._recent[self._batch_no] = {k: f for k, f in finals.items() if f.op == "upsert"}
        while len(self._recent) > RECENT_BATCHES:
            self._recent.popitem(last=False)

    def _batch(self, finals: dict[Key, _Final], truncate: bool, bad: list[BadRecord], folded: int,
               shape: list[str]) -> RawBatch:
        ups = [f for f in finals.values() if f.op == "upsert"]
        dels = [(k, f) for k, f in finals.items() if f.op == "delete"]
        columns: list[str] = list(shape)  # the table's columns now, and any an earlier image had
        same = tuple(shape)
        for f in ups:
            if f.names != same:
                columns.extend(c for c in f.names if c not in columns)
        if all(f.names == same for f in ups):  # one shape: the columns are the images transposed
            cells: list[Sequence[Value]] = list(zip(*(f.values for f in ups), strict=True)) if ups else [
                () for _ in columns]
        else:
            rows = [dict(zip(f.names, f.values, strict=True)) for f in ups]
            cells = [[r.get(c) for r in rows] for c in columns]
        assert not any(UNCHANGED_TOAST in col for col in cells)  # filled or quarantined by now
        table = pa.table({c: pa.array(col, pa.string()) for c, col in zip(columns, cells, strict=True)})
        deletes = pa.table({
            **{c: pa.array([k[i] for k, _ in dels], pa.string()) for i, c in enumerate(self.key)},
            DELETED_AT: pa.array([f.commit_time for _, f in dels], pa.timestamp("us", tz="UTC")),
        })
        return RawBatch(table, self.origin, [f.lsn for f in ups], bad, position_word="lsn", deletes=deletes,
                        truncate=truncate, folded=folded)


def _text_or_none(v: Value) -> str | None:
    return v if isinstance(v, str) else None

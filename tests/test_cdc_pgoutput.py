"""pgoutput protocol 1 decoding: real messages captured from a PostgreSQL 15 slot, and hand-built bytes.

The captured part needs the `pg15_logical` cluster (tests/pg15.py): skipped locally without PostgreSQL 15,
a failure in CI.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmill.errors import SourceError
from pgmill.ingest.cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgoutputError,
    Relation,
    Truncate,
    TupleData,
    Type,
    Update,
    decode,
    lsn_text,
)

pytest_plugins = ["tests.pg15"]  # the pg15_logical fixture

BIG = "".join(uuid.UUID(int=i * 7919 + 1).hex for i in range(1000))  # 32 kB, stored out of line

SETUP = """
CREATE SCHEMA cdc;
CREATE TYPE cdc.mood AS ENUM ('ok', 'sad');
CREATE TABLE cdc.items (id int PRIMARY KEY, name text NOT NULL, qty int, note varchar(20));
CREATE TABLE cdc.full_items (id int PRIMARY KEY, name text);
ALTER TABLE cdc.full_items REPLICA IDENTITY FULL;
CREATE TABLE cdc.docs (id bigint PRIMARY KEY, body text, tag text);
ALTER TABLE cdc.docs ALTER body SET STORAGE EXTERNAL;
CREATE TABLE cdc.moods (id int PRIMARY KEY, m cdc.mood);
CREATE PUBLICATION cdc_pub FOR TABLE cdc.items, cdc.full_items, cdc.docs, cdc.moods;
SELECT pg_replication_origin_create('upstream');
"""

# One list per source transaction, in commit order.
WORKLOAD: list[list[str | sql.Composable]] = [
    ["INSERT INTO cdc.items VALUES (1, 'apple', 3, NULL)"],                                 # 0 insert, a NULL
    ["UPDATE cdc.items SET qty = 4 WHERE id = 1"],                                          # 1 update, key same
    ["UPDATE cdc.items SET id = 2 WHERE id = 1"],                                           # 2 key changed
    ["DELETE FROM cdc.items WHERE id = 2"],                                                 # 3 delete by key
    ["INSERT INTO cdc.full_items VALUES (1, 'a')", "UPDATE cdc.full_items SET name = 'b'",  # 4 FULL, two tables
     "INSERT INTO cdc.items VALUES (5, 'pear', NULL, 'x')", "DELETE FROM cdc.full_items"],
    [sql.SQL("INSERT INTO cdc.docs VALUES (1, {}, 't1')").format(sql.Literal(BIG))],         # 5 large value
    ["UPDATE cdc.docs SET tag = 't2' WHERE id = 1"],                                        # 6 TOAST unchanged
    ["TRUNCATE cdc.items, cdc.full_items"],                                                 # 7 truncate
    ["TRUNCATE cdc.docs RESTART IDENTITY CASCADE"],                                         # 8 options
    ["ALTER TABLE cdc.items ADD COLUMN color text DEFAULT 'red'",                           # 9 new column
     "INSERT INTO cdc.items (id, name) VALUES (7, 'plum')"],
    ["INSERT INTO cdc.moods VALUES (1, 'sad')"],                                            # 10 enum: Type
    ["SELECT pg_replication_origin_xact_setup('0/ABCDEF', now())",                          # 11 origin
     "INSERT INTO cdc.moods VALUES (2, 'ok')"],
]


class Captured:
    """The decoded messages of each workload transaction, with the facts to check them against."""

    def __init__(self, transactions: list[list[Message]], rows: list[tuple[Any, int, bytes]],
                 oids: dict[str, int], started: datetime) -> None:
        self.transactions, self.rows, self.oids, self.started = transactions, rows, oids, started


@pytest.fixture(scope="module")
def captured(pg15_logical: str) -> Iterator[Captured]:
    name = "cdc_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg15_logical, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg15_logical.replace("/postgres?", f"/{name}?", 1)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SETUP.encode())
            # decoding reads only flushed WAL: the test cluster's asynchronous commit would hide the last ones
            conn.execute("SET synchronous_commit = on")
            conn.execute("SELECT pg_create_logical_replication_slot('cdc_slot', 'pgoutput')")
            started = datetime.now(UTC)
            for statements in WORKLOAD:
                origin = isinstance(statements[0], str) and "origin" in statements[0]
                with conn.transaction():
                    if origin:
                        conn.execute("SELECT pg_replication_origin_session_setup('upstream')")
                    for statement in statements:
                        conn.execute(statement if isinstance(statement, sql.Composable) else statement.encode())
                if origin:
                    conn.execute("SELECT pg_replication_origin_session_reset()")
            rows = conn.execute("SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
                                "'cdc_slot', NULL, NULL, 'proto_version', '1', 'publication_names', 'cdc_pub')"
                                ).fetchall()
            oids = dict(conn.execute("SELECT relname::text, oid::int FROM pg_class WHERE relnamespace = 'cdc'::regnamespace"
                                     " UNION ALL SELECT typname::text, oid::int FROM pg_type WHERE typname = 'mood'"
                                     ).fetchall())
            conn.execute("SELECT pg_drop_replication_slot('cdc_slot')")
        transactions: list[list[Message]] = []
        for _, _, data in rows:
            message = decode(data)
            if isinstance(message, Begin):
                transactions.append([])
            transactions[-1].append(message)
        yield Captured(transactions, rows, oids, started)
    finally:
        with psycopg.connect(pg15_logical, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _changes(captured: Captured, index: int) -> list[Message]:
    """The messages of workload transaction `index` between its Begin and Commit."""
    messages = captured.transactions[index]
    assert isinstance(messages[0], Begin) and isinstance(messages[-1], Commit)
    return messages[1:-1]


def _items(captured: Captured, *, color: bool = False) -> Relation:
    columns = (Column(True, "id", 23, -1), Column(False, "name", 25, -1), Column(False, "qty", 23, -1),
               Column(False, "note", 1043, 24))  # varchar(20): typmod is length + 4
    if color:
        columns += (Column(False, "color", 25, -1),)
    return Relation(captured.oids["items"], "cdc", "items", "d", columns)


def test_every_transaction_is_framed_by_begin_and_commit(captured: Captured) -> None:
    assert len(captured.transactions) == len(WORKLOAD)  # the DDL-only work sends nothing
    previous_end = 0
    for messages in captured.transactions:
        begin, commit = messages[0], messages[-1]
        assert isinstance(begin, Begin) and isinstance(commit, Commit)
        assert commit.flags == 0
        assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
        assert begin.commit_time == commit.commit_time
        assert captured.started - timedelta(seconds=5) < commit.commit_time < datetime.now(UTC)
        assert commit.commit_lsn > previous_end  # commit order
        previous_end = commit.end_lsn
        assert {isinstance(m, Begin | Commit) for m in messages[1:-1]} == {False}
    # each Begin's xid is the row's; a Commit row's lsn is the commit's end: the position to advance to
    for lsn, xid, data in captured.rows:
        message = decode(data)
        if isinstance(message, Begin):
            assert message.xid == xid
        elif isinstance(message, Commit):
            assert lsn_text(message.end_lsn) == lsn


def test_insert_with_a_null_after_the_relation(captured: Captured) -> None:
    assert _changes(captured, 0) == [
        _items(captured),
        Insert(captured.oids["items"], TupleData(("1", "apple", "3", None))),
    ]


def test_update_without_key_change_sends_only_the_new_row(captured: Captured) -> None:
    assert _changes(captured, 1) == [
        Update(captured.oids["items"], None, None, TupleData(("1", "apple", "4", None)))]


def test_update_of_the_key_sends_the_old_key(captured: Captured) -> None:
    (update,) = _changes(captured, 2)
    assert isinstance(update, Update)
    assert (update.relation_oid, update.old_kind) == (captured.oids["items"], "K")
    assert update.old is not None and update.old.values == ("1", None, None, None)  # the key; the rest not sent
    assert update.new.values == ("2", "apple", "4", None)
    assert _changes(captured, 2) == [
        Update(captured.oids["items"], "K", TupleData(("1", None, None, None)), TupleData(("2", "apple", "4", None)))]


def test_delete_sends_the_key(captured: Captured) -> None:
    (delete,) = _changes(captured, 3)
    assert isinstance(delete, Delete)
    assert (delete.relation_oid, delete.old_kind, delete.old.values) == (captured.oids["items"], "K",
                                                                         ("2", None, None, None))
    assert _changes(captured, 3) == [Delete(captured.oids["items"], "K", TupleData(("2", None, None, None)))]


def test_replica_identity_full_sends_whole_old_rows_across_two_tables(captured: Captured) -> None:
    full = captured.oids["full_items"]
    relation = _changes(captured, 4)[0]
    assert isinstance(relation, Relation)
    assert relation.replica_identity == "f"
    assert [(c.name, c.key, c.type_oid, c.typmod) for c in relation.columns] == [("id", True, 23, -1),
                                                                                 ("name", True, 25, -1)]
    assert _changes(captured, 4) == [
        Relation(full, "cdc", "full_items", "f", (Column(True, "id", 23, -1), Column(True, "name", 25, -1))),
        Insert(full, TupleData(("1", "a"))),
        Update(full, "O", TupleData(("1", "a")), TupleData(("1", "b"))),
        Insert(captured.oids["items"], TupleData(("5", "pear", None, "x"))),
        Delete(full, "O", TupleData(("1", "b"))),
    ]


def test_unchanged_toasted_value_arrives_as_unchanged(captured: Captured) -> None:
    docs = captured.oids["docs"]
    relation, insert = _changes(captured, 5)
    assert relation == Relation(docs, "cdc", "docs", "d", (Column(True, "id", 20, -1), Column(False, "body", 25, -1),
                                                           Column(False, "tag", 25, -1)))
    assert insert == Insert(docs, TupleData(("1", BIG, "t1")))
    assert _changes(captured, 6) == [Update(docs, None, None, TupleData(("1", UNCHANGED_TOAST, "t2")))]


def test_truncate_names_the_relations_and_its_options(captured: Captured) -> None:
    # a truncate gives the tables new files: their Relation messages are sent again first
    items, full, docs = _changes(captured, 7), _changes(captured, 8), captured.oids["docs"]
    assert items[0] == _items(captured)
    assert isinstance(items[1], Relation) and items[1].name == "full_items"
    assert items[2] == Truncate((captured.oids["items"], captured.oids["full_items"]), False, False)
    truncate = full[1]
    assert isinstance(truncate, Truncate)
    assert (truncate.relation_oids, truncate.cascade, truncate.restart_identity) == ((docs,), True, True)
    assert isinstance(full[0], Relation) and full[0].oid == docs
    assert full[1] == Truncate((docs,), True, True)


def test_new_column_sends_a_new_relation(captured: Captured) -> None:
    assert _changes(captured, 9) == [
        _items(captured, color=True),
        Insert(captured.oids["items"], TupleData(("7", "plum", None, None, "red"))),
    ]


def test_a_user_type_is_announced_before_its_relation(captured: Captured) -> None:
    moods, mood = captured.oids["moods"], captured.oids["mood"]
    assert _changes(captured, 10) == [
        Type(mood, "cdc", "mood"),
        Relation(moods, "cdc", "moods", "d", (Column(True, "id", 23, -1), Column(False, "m", mood, -1))),
        Insert(moods, TupleData(("1", "sad"))),
    ]


def test_origin_of_a_replicated_transaction(captured: Captured) -> None:
    assert _changes(captured, 11) == [Origin(0xABCDEF, "upstream"), Insert(captured.oids["moods"], TupleData(("2", "ok")))]


# hand-built messages

def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def test_begin_and_commit_fields() -> None:
    begin = b"B" + struct.pack(">QqI", 0x16_B374D848, 86_400_000_000 + 1, 4_000_000_000)
    assert decode(begin) == Begin(0x16_B374D848, datetime(2000, 1, 2, 0, 0, 0, 1, tzinfo=UTC), 4_000_000_000)
    commit = b"C" + struct.pack(">BQQq", 0, 10, 20, -1)
    assert decode(commit) == Commit(0, 10, 20, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert lsn_text(0x16_B374D848) == "16/B374D848"
    assert lsn_text(0) == "0/0"


def test_tuple_edge_cases() -> None:
    insert = (b"I" + struct.pack(">I", 42) + b"N" + struct.pack(">h", 4) + b"n" + b"u" + b"t" + struct.pack(">i", 0)
              + b"t" + struct.pack(">i", 4) + "é€".encode()[:4] + b"")
    with pytest.raises(PgoutputError, match=r"^pgoutput insert message: column 4's value is not UTF-8 "
                       r"\(unexpected end of data at its byte 2\); connect with client_encoding = UTF8$"):
        decode(insert)  # 'é€' is 5 bytes: cut after 4, it is not UTF-8
    insert = (b"I" + struct.pack(">I", 42) + b"N" + struct.pack(">h", 4) + b"n" + b"u" + b"t" + struct.pack(">i", 0)
              + b"t" + struct.pack(">i", 5) + "é€".encode())
    assert decode(insert) == Insert(42, TupleData((None, UNCHANGED_TOAST, "", "é€")))
    assert decode(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 0)) == Insert(1, TupleData(()))
    # an oid above 2**31 stays positive
    assert decode(b"D" + struct.pack(">I", 3_000_000_000) + b"K" + struct.pack(">h", 1) + b"n") == Delete(
        3_000_000_000, "K", TupleData((None,)))


def test_relation_with_empty_schema_and_no_columns() -> None:
    message = b"R" + struct.pack(">I", 7) + _s("") + _s("t") + b"n" + struct.pack(">h", 1) + b"\x01" + _s("a b") \
        + struct.pack(">Ii", 3_000_000_000, -1)
    assert decode(message) == Relation(7, "", "t", "n", (Column(True, "a b", 3_000_000_000, -1),))


@pytest.mark.parametrize(("data", "error"), [
    (b"", "empty pgoutput message"),
    (b"Z\x00", "unknown pgoutput message type byte 90 ('Z', 0x5a); protocol version 1 sends B (begin), C (commit), "
               "O (origin), R (relation), Y (type), I (insert), U (update), D (delete), T (truncate)"),
    (b"S" + b"\x00" * 4, "unknown pgoutput message type byte 83 ('S', 0x53)"),  # a protocol 2 stream start
    (b"B" + b"\x00" * 10, "pgoutput begin message truncated at byte 9: commit time needs 8 bytes, 2 left"),
    (b"B" + b"\x00" * 21, "pgoutput begin message has 1 unexpected bytes after byte 21"),
    (b"Y" + b"\x00" * 4 + b"public", "pgoutput type message truncated at byte 5: type schema has no terminating NUL"),
    (b"I" + b"\x00" * 4 + b"X", "pgoutput insert message: expected 'N' for the new tuple's tag at byte 5, got 'X'"),
    (b"U" + b"\x00" * 4 + b"K" + struct.pack(">h", 0) + b"K",
     "pgoutput update message: expected 'N' for the new tuple's tag at byte 8, got 'K'"),
    (b"D" + b"\x00" * 4 + b"N", "pgoutput delete message: expected 'K' or 'O' for the old tuple's tag at byte 5"),
    (b"I" + b"\x00" * 4 + b"N" + struct.pack(">h", 1) + b"b" + struct.pack(">i", 1) + b"\x01",
     "pgoutput insert message: column 1 is in binary format (byte 'b'); pgmill reads text values"),
    (b"I" + b"\x00" * 4 + b"N" + struct.pack(">h", 2) + b"nx",
     "pgoutput insert message: column 2 has unknown kind byte 'x' at byte 9 (expected 'n', 'u' or 't')"),
    (b"I" + b"\x00" * 4 + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 9) + b"abc",
     "pgoutput insert message truncated at byte 13: column 1's value needs 9 bytes, 3 left"),
    (b"R" + struct.pack(">I", 1) + _s("s") + _s("t") + b"x", "pgoutput relation message for s.t: unknown replica "
                                                             "identity 'x'"),
])
def test_malformed_messages_name_the_problem(data: bytes, error: str) -> None:
    with pytest.raises(PgoutputError) as raised:
        decode(data)
    assert str(raised.value).startswith(error)
    assert isinstance(raised.value, SourceError)

"""Which replication client for CDC (issue 15): source commit to "change decoded in the client" latency.

Starts a throwaway PostgreSQL 15 cluster with `wal_level = logical` (tests/pg15.py's `cluster`), a table, a
publication, and for each client a fresh pgoutput slot; commits N single-row transactions at a steady
pace with random gaps, and measures, per transaction, the time from the source commit to
the Insert being decoded (pgmill.ingest.cdc.pgoutput) in the consumer, on the same monotonic clock (the
start is taken just before the INSERT is sent, so the figure is an upper bound: it includes the statement
and the commit themselves; taken after COMMIT returns, a loaded machine can show negative values):

- stream: psycopg2's LogicalReplicationConnection (START_REPLICATION), feedback after each Commit;
- poll-50 / poll-200: psycopg 3, `pg_logical_slot_peek_binary_changes` every 50 / 200 ms, then
  `pg_replication_slot_advance` to the last Commit's end LSN (what pgmill would do after the target commit).

    PYTHONPATH=$PWD/src .venv/bin/python bench/probe_cdc_client.py [--transactions 200]

The source runs with `synchronous_commit = on` (the default): both paths decode only flushed WAL, so with
`off` every figure would include up to wal_writer_delay (200 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/pg15.py

from tests.pg15 import LOGICAL_CONF, cluster  # noqa: E402

from pgmill.ingest.cdc.pgoutput import Commit, Insert, decode, lsn_text  # noqa: E402

PUBLICATION = "probe_pub"
OPTIONS = {"proto_version": "1", "publication_names": PUBLICATION}


def _seen_insert(data: bytes, seen: dict[int, float]) -> int | None:
    """Record the decode time of an Insert; return a Commit's end LSN."""
    message = decode(data)
    if isinstance(message, Insert):
        seen[int(str(message.new.values[0]))] = time.perf_counter()
    elif isinstance(message, Commit):
        return message.end_lsn
    return None


def stream(url: str, slot: str, n: int, seen: dict[int, float], ready: threading.Event) -> None:
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False, options=OPTIONS)
    ready.set()

    def consume(msg: psycopg2.extras.ReplicationMessage) -> None:
        end = _seen_insert(msg.payload, seen)
        if end is not None:
            msg.cursor.send_feedback(flush_lsn=end)
            if len(seen) >= n:
                raise psycopg2.extras.StopReplication

    with contextlib.suppress(psycopg2.extras.StopReplication):  # raised by `consume` once n inserts are seen
        cur.consume_stream(consume)
    conn.close()


def poller(interval: float, peeks: list[float]) -> Callable[[str, str, int, dict[int, float], threading.Event], None]:
    """A polling consumer; appends each peek's duration (ms) to `peeks`."""
    def poll(url: str, slot: str, n: int, seen: dict[int, float], ready: threading.Event) -> None:
        peek = ("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
                "'publication_names', %s)")
        with psycopg.connect(url, autocommit=True) as conn:
            ready.set()
            while len(seen) < n:
                end = None
                started = time.perf_counter()
                rows = conn.execute(peek, [slot, PUBLICATION]).fetchall()
                peeks.append((time.perf_counter() - started) * 1000)
                for (data,) in rows:
                    end = _seen_insert(data, seen) or end
                if end is not None:  # after the target commit, in pgmill
                    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [slot, lsn_text(end)])
                time.sleep(interval)
    return poll


def measure(url: str, name: str, consumer: Callable[..., None], n: int) -> dict[str, float]:
    slot = "probe_" + name.replace("-", "_")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        seen: dict[int, float] = {}
        ready = threading.Event()
        thread = threading.Thread(target=consumer, args=(url, slot, n, seen, ready), daemon=True)
        thread.start()
        ready.wait(30)
        time.sleep(0.5)
        committed: dict[int, float] = {}
        rng = random.Random(15)
        for i in range(n):
            committed[i] = time.perf_counter()  # before the INSERT is sent: an upper bound on the latency
            conn.execute("INSERT INTO probe (id, v) VALUES (%s, 'x')", [i])
            time.sleep(0.02 + rng.random() * 0.01)
        thread.join(60)
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        conn.execute("TRUNCATE probe")
    if len(seen) != n:
        raise SystemExit(f"{name}: decoded {len(seen)} of {n} inserts")
    ms = sorted((seen[i] - committed[i]) * 1000 for i in range(n))
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"min_ms": round(ms[0], 2), "p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2),
            "max_ms": round(ms[-1], 2)}


def drain(url: str, name: str, consumer: Callable[..., None], n: int) -> float:
    """Seconds for a consumer to decode a backlog of n single-row transactions committed before it started."""
    slot = "drain_" + name.replace("-", "_")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        with conn.pipeline() as pipeline:  # autocommit, a Sync after each row: one transaction per row
            for i in range(n):
                conn.execute("INSERT INTO probe (id, v) VALUES (%s, 'x')", [i])
                pipeline.sync()
        row = conn.execute("SELECT count(DISTINCT xmin::text) FROM probe").fetchone()
        if row is None or row[0] != n:
            raise SystemExit(f"drain: expected {n} transactions, the rows came from {row}")
        seen: dict[int, float] = {}
        started = time.perf_counter()
        consumer(url, slot, n, seen, threading.Event())
        seconds = time.perf_counter() - started
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        conn.execute("TRUNCATE probe")
    return round(seconds, 3)


def peek_with_open_transaction(url: str, rows: int) -> dict[str, float]:
    """Median peek (ms) over an idle slot, then while a transaction that wrote `rows` rows is still open: the
    slot cannot restart after that transaction's start, so every peek decodes its changes again."""
    peek = ("SELECT count(*) FROM pg_logical_slot_peek_binary_changes('probe_open', NULL, NULL, 'proto_version', "
            "'1', 'publication_names', %s)")

    def median_peek(conn: psycopg.Connection[tuple[object, ...]], first: int) -> float:
        times = []
        for i in range(5):
            conn.execute("INSERT INTO probe (id, v) VALUES (%s, 'x')", [first + i])  # one small commit
            started = time.perf_counter()
            conn.execute(peek, [PUBLICATION])
            times.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(times), 1)

    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as writer:
        conn.execute("SELECT pg_create_logical_replication_slot('probe_open', 'pgoutput')")
        idle = median_peek(conn, 1_000_000)
        writer.execute("INSERT INTO probe (id, v) SELECT g, repeat('y', 100) FROM generate_series(2000000, 2000000 + %s) g",
                       [rows - 1])
        busy = median_peek(conn, 1_000_100)
        writer.rollback()
        conn.execute("SELECT pg_drop_replication_slot('probe_open')")
        conn.execute("TRUNCATE probe")
    return {"idle_peek_ms": idle, "open_transaction_peek_ms": busy}


def feedback_holds(url: str) -> dict[str, str]:
    """Exactly-once needs the slot to move only when we say: receive 5 transactions, confirm only the first,
    let psycopg2's automatic status updates (every second here) and the server's keepalives run for 3 s, and
    read the slot's confirmed position back."""
    import psycopg2
    import psycopg2.extras

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('probe_feedback', 'pgoutput')")
        for i in range(5):
            conn.execute("INSERT INTO probe (id, v) VALUES (%s, 'x')", [3_000_000 + i])
        repl = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        cur = repl.cursor()
        cur.start_replication(slot_name="probe_feedback", decode=False, options=OPTIONS, status_interval=1)
        ends: list[int] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            msg = cur.read_message()
            if msg is None:
                time.sleep(0.05)
                continue
            message = decode(msg.payload)
            if isinstance(message, Commit):
                ends.append(message.end_lsn)
                if len(ends) == 1:
                    cur.send_feedback(flush_lsn=message.end_lsn)
        repl.close()
        row = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                           "WHERE slot_name = 'probe_feedback'").fetchone()
        conn.execute("SELECT pg_drop_replication_slot('probe_feedback')")
        conn.execute("TRUNCATE probe")
    return {"received_commits": str(len(ends)), "confirmed_first": lsn_text(ends[0]),
            "received_last": lsn_text(ends[-1]), "slot_confirmed_flush": str(row[0] if row else None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000, help="transactions in the drain test")
    parser.add_argument("--open-rows", type=int, default=200_000, help="rows of the open transaction")
    args = parser.parse_args()
    peeks: dict[str, list[float]] = {"poll-50": [], "poll-200": []}
    clients = {"stream": stream, "poll-50": poller(0.05, peeks["poll-50"]),
               "poll-200": poller(0.2, peeks["poll-200"])}
    with tempfile.TemporaryDirectory(prefix="probe_cdc_") as tmp, \
            cluster(Path(tmp) / "pg15", LOGICAL_CONF + "synchronous_commit = on\n") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE probe").format(sql.Identifier(PUBLICATION)))
        results = {name: measure(url, name, client, args.transactions) for name, client in clients.items()}
        for name, durations in peeks.items():
            results[name]["peek_median_ms"] = round(statistics.median(durations), 2)
        drained = {name: drain(url, name, clients[name], args.backlog) for name in ("stream", "poll-50")}
        open_peek = peek_with_open_transaction(url, args.open_rows)
        feedback = feedback_holds(url)
    print(f"{args.transactions} single-row transactions, source commit to Insert decoded in the client (ms)")
    print("| client | min | p50 | p95 | p99 | max | median peek |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['min_ms']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
              f"{r.get('peek_median_ms', '')} |")
    print(f"backlog of {args.backlog} single-row transactions decoded in (s): {drained}")
    print(f"peek (ms, median of 5) on an idle slot, and with an open transaction of {args.open_rows} rows: {open_peek}")
    print(f"stream, only the first of 5 received transactions confirmed, 3 s later: {feedback}")
    print(json.dumps({"latency": results, "drain_s": drained, "peek_open_transaction": open_peek,
                      "feedback": feedback}))


if __name__ == "__main__":
    main()

"""Arrival to queryable for CDC (issue 15): a PostgreSQL 15 source to the embedded PostgreSQL 18.

A generator commits rows into `shop.events` of a PostgreSQL 15 cluster (`wal_level = logical`, tests/pg15.py's
`cluster`) at a steady rate for `--seconds`, paced by a schedule (start + k * period, never drifting sleeps),
each session with `synchronous_commit = on`:

- profile A: 1,000 rows/s, one row per transaction;
- profile B: 10,000 rows/s, 100 rows per transaction.

The generator runs in its own process and records, per transaction, `time.time()` right after its COMMIT
returned (the commit time of all its rows). A poller in the bench process selects, every ~10 ms, the ids
greater than the last it saw from the target table (by its primary key) and records `time.time()` when each id
is first visible. Latency = first visible - commit returned, on the same machine clock. Figures: p50/p95/p99/max
per profile and arm; rows delivered must equal rows written (the bench fails otherwise).

Arms, each a session of its own against the same two servers:

- reference: PostgreSQL's own logical replication, `CREATE PUBLICATION` on the source and `CREATE SUBSCRIPTION`
  in a fresh database of the embedded PostgreSQL 18 of a BenchProject;
- pgmill: `pgmill run events --follow` (a `kind: postgres` pipeline with `cdc: {}`, a contract with a primary
  key and rules) in a subprocess, stopped by SIGINT; its RSS (with children) sampled every `--rss-every` s;
- poll: the same table and contract read by its cursor (`cursor: id`, no `cdc:`) by `pgmill run
  events_poll --follow` at the default interval (1 s): the polled-table figure of the issue.

Usage: python bench/bench_cdc.py [--seconds 300] [--profiles A,B] [--arms pgmill,reference] [--reps 1]
(`--seconds 1800 --profiles A --arms pgmill` for the memory-over-30-minutes run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/pg15.py

from tests.pg15 import LOGICAL_CONF, cluster  # noqa: E402

from common import BENCH_DIR, BenchProject, loadavg, log, machine, median, pgmill_env  # noqa: E402

SOURCE_DB = "cdcsrc"
SOURCE_TABLE = ("shop", "events")
PIPELINE = "events"
#: the `poll` arm: the same table read by its cursor (`id`) at `pgmill run --follow`'s default interval (1 s)
POLL_PIPELINE = "events_poll"
TARGET_TABLE = ("bench", "events")  # the pgmill arm's table
PUBLICATION = "bench_ref"
SUBSCRIPTION = "bench_ref"
PROFILES = {"A": (1_000, 1), "B": (10_000, 100)}  # rows per second, rows per transaction
CONTRACT = """\
# bench_cdc: shop.events of the PostgreSQL 15 source, 4 rules
columns:
  id:         {type: bigint, primary_key: true}
  payload:    {type: text, not_null: true}
  amount:     {type: "numeric(12,2)", min: 0}
  created_at: {type: timestamptz, not_null: true}
rules:
  - name: amount_below_a_million
    expr: amount < 1000000
"""


class BenchFailed(RuntimeError):
    """A session could not be measured: said loudly, no figures written."""


# ---------------------------------------------------------------- source


def _with_db(url: str, database: str) -> str:
    return url.replace("/postgres?", f"/{database}?", 1)


def _table(parts: tuple[str, str]) -> sql.Identifier:
    return sql.Identifier(*parts)


def _source_table(src: str) -> None:
    """A fresh, empty shop.events on the source."""
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_table(SOURCE_TABLE)))
        c.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SOURCE_TABLE[0])))
        c.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text NOT NULL, amount numeric(12,2), "
                          "created_at timestamptz NOT NULL DEFAULT clock_timestamp())").format(_table(SOURCE_TABLE)))


def _warm_up_row(src: str) -> None:
    """Row 0: not measured; its arrival shows the path is up (subscription started, pgmill streaming)."""
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(sql.SQL("INSERT INTO {} (id, payload, amount) VALUES (0, 'warm-up', 0)").format(_table(SOURCE_TABLE)))


def generate(src: str, rate: int, per_tx: int, transactions: int, start_in: float, out: Connection) -> None:
    """The load generator (its own process): `transactions` transactions of `per_tx` rows, transaction k due at
    start + k * per_tx / rate. Sends back the time.time() each COMMIT returned, and the worst lag behind the
    schedule."""
    period = per_tx / rate
    commits = np.zeros(transactions)
    lag = 0.0
    single = sql.SQL("INSERT INTO {} (id, payload, amount) VALUES (%s, %s, %s)").format(_table(SOURCE_TABLE))
    many = sql.SQL("INSERT INTO {} (id, payload, amount) SELECT * FROM unnest(%s::bigint[], %s::text[], "
                   "%s::numeric[])").format(_table(SOURCE_TABLE))
    with psycopg.connect(src, autocommit=True) as c:  # autocommit: each statement is its own transaction
        c.execute("SET synchronous_commit = on")  # the cluster's default is off (tests/pg15.py)
        start = time.monotonic() + start_in
        for k in range(transactions):
            due = start + k * period
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                lag = max(lag, -wait)
            first = k * per_tx + 1
            ids = list(range(first, first + per_tx))
            payloads = [f"event {i} " + "x" * 80 for i in ids]
            amounts = [f"{i % 1000}.25" for i in ids]
            if per_tx == 1:
                c.execute(single, (ids[0], payloads[0], amounts[0]), prepare=True)
            else:
                c.execute(many, (ids, payloads, amounts), prepare=True)
            commits[k] = time.time()
    out.send_bytes(commits.tobytes())
    out.send(lag)
    out.close()


# ---------------------------------------------------------------- target


@dataclass
class Poller:
    """Every ~10 ms: the ids above the last seen; when each was first visible (time.time())."""

    url: str
    table: tuple[str, str]
    rows: int
    interval: float = 0.01

    def __post_init__(self) -> None:
        self.seen = np.zeros(self.rows + 1)
        self.last = 0
        self.polls = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = sql.SQL("SELECT id FROM {} WHERE id > %s ORDER BY id").format(_table(self.table))
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                while not self.stop.is_set() and self.last < self.rows:
                    ids = [r[0] for r in c.execute(query, (self.last,), prepare=True).fetchall()]
                    now = time.time()
                    self.polls += 1
                    if ids:
                        self.seen[np.asarray(ids, dtype=np.int64)] = now
                        self.last = ids[-1]
                    self.stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - handed to the bench thread, which raises it
            self.error = exc

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and self.last < self.rows and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop.set()
        self.thread.join(10)
        if self.error is not None:
            raise BenchFailed(f"the poller failed: {self.error!r}") from self.error


def _wait_visible(url: str, table: tuple[str, str], timeout: float, alive: Any = None) -> float:
    """Seconds until row 0 is visible in `table` of `url` (the table may not exist yet); BenchFailed after
    `timeout`, or as soon as `alive()` returns a reason the writer cannot deliver it."""
    started = time.monotonic()
    query = sql.SQL("SELECT 1 FROM {} WHERE id = 0").format(_table(table))
    with psycopg.connect(url, autocommit=True) as c:
        while True:
            with contextlib.suppress(psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                if c.execute(query).fetchone():
                    return round(time.monotonic() - started, 2)
            why = alive() if alive else None
            if why:
                raise BenchFailed(why)
            if time.monotonic() - started > timeout:
                raise BenchFailed(f"the first row (id 0) did not become visible in {'.'.join(table)} within "
                                  f"{timeout:g} s")
            time.sleep(0.05)


def _id_indexed(url: str, table: tuple[str, str]) -> bool:
    """Whether an index of `table` leads with `id` (else every poll scans the table, and the figures show it)."""
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                        "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND a.attname = 'id')",
                        (".".join(table),)).fetchone()
    return bool(row and row[0])


def _count(url: str, table: tuple[str, str]) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(sql.SQL("SELECT count(*) FROM {} WHERE id > 0").format(_table(table))).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------- one session


def _measure(src: str, target: str, table: tuple[str, str], profile: str, args: argparse.Namespace,
             alive: Any = None, marks: dict[str, float] | None = None) -> dict[str, Any]:
    """Warm-up row, then the generator and the poller; the figures. The writer (subscription or pgmill) runs;
    `marks["stream"]` gets the monotonic time the generator started."""
    rate, per_tx = PROFILES[profile]
    transactions = int(rate * args.seconds / per_tx)
    rows = transactions * per_tx
    _warm_up_row(src)
    first_s = _wait_visible(target, table, args.first_timeout, alive)
    indexed = _id_indexed(target, table)
    if not indexed:
        log(f"  warning: no index of {'.'.join(table)} leads with id: each poll scans the table")
    poller = Poller(target, table, rows)
    poller.thread.start()
    la = loadavg()
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    gen = ctx.Process(target=generate, args=(src, rate, per_tx, transactions, 1.0, send))
    if marks is not None:
        marks["stream"] = time.monotonic()
    gen.start()
    send.close()
    commits = np.frombuffer(recv.recv_bytes(), dtype=np.float64)
    lag = recv.recv()
    gen.join(30)
    if gen.exitcode != 0:
        raise BenchFailed(f"the generator failed (exit {gen.exitcode})")
    generated_at = time.time()
    poller.wait_all(args.drain_timeout)
    written = _count(src, SOURCE_TABLE)
    delivered = _count(target, table)
    seen = int(np.count_nonzero(poller.seen[1:]))
    if not written == delivered == seen == rows:
        raise BenchFailed(f"profile {profile}: {rows} rows generated, {written} on the source, {delivered} on the "
                          f"target, {seen} seen by the poller ({args.drain_timeout:g} s after the generator ended)")
    lat = poller.seen[1:] - np.repeat(commits, per_tx)
    q = np.percentile(lat, [50, 95, 99])
    return {
        "rows_written": written, "rows_delivered": delivered, "transactions": transactions,
        "achieved_rows_per_s": round(rows / (commits[-1] - commits[0]) if transactions > 1 else rows),
        "generator_max_lag_s": round(lag, 3), "first_row_s": first_s,
        "drained_after_s": round(float(poller.seen.max()) - generated_at, 3),
        "p50_s": round(float(q[0]), 3), "p95_s": round(float(q[1]), 3), "p99_s": round(float(q[2]), 3),
        "max_s": round(float(lat.max()), 3), "min_s": round(float(lat.min()), 3),
        "under_1s": round(float(np.mean(lat < 1.0)), 4), "polls": poller.polls, "loadavg_1m": la[0],
        "target_id_indexed": indexed,
    }


def reference(src: str, proj: BenchProject, profile: str, args: argparse.Namespace, sock: str) -> dict[str, Any]:
    """PostgreSQL's own logical replication into a fresh database of the embedded server."""
    db = f"ref_{profile.lower()}"
    _source_table(src)
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUBLICATION)))
        c.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(PUBLICATION),
                                                                       _table(SOURCE_TABLE)))
    proj.sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
    proj.sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    target = proj.server.url(db)
    conninfo = f"host={sock} user=postgres dbname={SOURCE_DB}"  # the subscriber reaches the source's socket
    with psycopg.connect(target, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SOURCE_TABLE[0])))
        c.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text NOT NULL, amount numeric(12,2), "
                          "created_at timestamptz NOT NULL)").format(_table(SOURCE_TABLE)))
        c.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false)").format(
            sql.Identifier(SUBSCRIPTION), sql.Literal(conninfo), sql.Identifier(PUBLICATION)))
    try:
        return _measure(src, target, SOURCE_TABLE, profile, args)
    finally:
        with psycopg.connect(target, autocommit=True) as c:
            c.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(SUBSCRIPTION)))  # and its slot
        proj.sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        with psycopg.connect(src, autocommit=True) as c:
            c.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUBLICATION)))


class RssSampler:
    """RSS of a process and its children (MB), every `every` seconds, with the time since the sampler began."""

    def __init__(self, pid: int, every: float) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self._p = psutil.Process(pid)
        self._every = every
        self.began = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(psutil.Error):  # the process (or a child) just ended
                rss = self._p.memory_info().rss + sum(c.memory_info().rss for c in self._p.children(recursive=True))
                self.samples.append((round(time.monotonic() - self.began, 1), round(rss / 2**20, 1)))
            self.stop.wait(self._every)

    def summary(self, stream_from: float) -> dict[str, Any]:
        """Start (first sample once the stream began), end, max over the stream; every sample."""
        self.stop.set()
        self.thread.join(5)
        during = [mb for t, mb in self.samples if t >= stream_from] or [mb for _, mb in self.samples] or [0.0]
        return {"rss_start_mb": during[0], "rss_end_mb": during[-1], "rss_max_mb": max(during),
                "rss_every_s": self._every, "rss_samples": self.samples}


def _stop(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """SIGINT (what ends `--follow`), then kill after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise BenchFailed(f"pgmill run --follow did not stop within {timeout:g} s of SIGINT:\n{err[-2000:]}") from None


def _drop_cdc(proj: BenchProject, src: str) -> None:
    """`pgmill cdc drop events`, then make sure no slot or publication of pgmill is left on the source."""
    subprocess.run([sys.executable, "-m", "pgmill", "cdc", "drop", PIPELINE, "--project", str(proj.dir)],
                   env={**os.environ, **pgmill_env(), "SRC_URL": src}, capture_output=True, timeout=60, check=False)
    name = f"pgmill_{PIPELINE}"
    with psycopg.connect(src, autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone():
            c.execute("SELECT pg_drop_replication_slot(%s)", (name,))
        c.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))


def pgmill_arm(src: str, proj: BenchProject, profile: str, args: argparse.Namespace,
               pipeline: str = PIPELINE) -> dict[str, Any]:
    """`pgmill run events --follow` from the source's shop.events into bench.events, measured alike (the `poll`
    arm: `events_poll`, by cursor)."""
    _source_table(src)
    _drop_cdc(proj, src)
    proj.reset(PIPELINE, ".".join(TARGET_TABLE))
    proj.reset(POLL_PIPELINE, None)
    cmd = [sys.executable, "-m", "pgmill", "run", pipeline, "--project", str(proj.dir), "--json", "--follow",
           *shlex.split(args.pgmill_args)]
    since = time.time()
    proc = subprocess.Popen(cmd, env={**os.environ, **pgmill_env(), "SRC_URL": src}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    rss = RssSampler(proc.pid, args.rss_every)

    def alive() -> str | None:
        if proc.poll() is None:
            return None
        out, err = proc.communicate()
        return (f"pgmill run --follow ended (exit {proc.returncode}) before the first row (id 0) was visible:\n"
                f"{err[-3000:]}{out[-1000:]}")

    marks: dict[str, float] = {}
    try:
        figures = _measure(src, proj.url, TARGET_TABLE, profile, args, alive, marks)
    except BaseException:
        if proc.poll() is None:
            with contextlib.suppress(BenchFailed):
                _, err = _stop(proc, 30)
                log(f"pgmill stderr (tail):\n{err[-2000:]}")
        rss.summary(0)
        raise
    out, err = _stop(proc, 60)
    memory = rss.summary(marks["stream"] - rss.began)
    if proc.returncode != 0:
        raise BenchFailed(f"pgmill run --follow exited {proc.returncode} after SIGINT:\n{err[-3000:]}")
    try:
        [load] = json.loads(out)["loads"]
    except (ValueError, KeyError) as exc:
        raise BenchFailed(f"pgmill run --follow --json printed no single load: {out[-2000:]!r}") from exc
    if load.get("status") != "succeeded" or load.get("rows_quarantined", 0):
        raise BenchFailed(f"pgmill run --follow: {load}")
    _drop_cdc(proj, src)
    return {**figures, **memory, "pgmill_rows_inserted": load.get("rows_inserted"),
            "pgmill_recorded": _recorded(proj, since)}


def _recorded(proj: BenchProject, since: float) -> dict[str, Any] | None:
    """pgmill's own figure (`arrival_to_queryable_s` of its load steps, source commit to target commit)."""
    try:
        rows = proj.sql("SELECT (detail->>'arrival_to_queryable_s')::float8 FROM pgmill.run_steps "
                        "WHERE detail ? 'arrival_to_queryable_s' AND extract(epoch FROM finished_at) >= %s", (since,))
    except psycopg.Error:
        return None
    xs = [r[0] for r in rows]
    if not xs:
        return None
    q = np.percentile(xs, [50, 95])
    return {"steps": len(xs), "p50_s": round(float(q[0]), 3), "p95_s": round(float(q[1]), 3), "max_s": max(xs)}


# ---------------------------------------------------------------- run, results


def configure(proj: BenchProject) -> None:
    source = {"kind": "postgres", "url_env": "SRC_URL", "table": ".".join(SOURCE_TABLE)}
    target = {"contract": f"contracts/{PIPELINE}.yaml", "table": ".".join(TARGET_TABLE), "mode": "merge"}
    proj.configure({PIPELINE: {"source": {**source, "cdc": {}}, **target},
                    POLL_PIPELINE: {"source": source, **target, "cursor": "id"}},
                   {PIPELINE: CONTRACT})


SUMMARY = ("p50_s", "p95_s", "p99_s", "max_s", "min_s", "under_1s", "achieved_rows_per_s", "generator_max_lag_s",
           "rows_written", "rows_delivered", "loadavg_1m", "rss_start_mb", "rss_end_mb", "rss_max_mb")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="how long the generator writes, per session")
    ap.add_argument("--profiles", default="A,B", help="A: 1,000 rows/s, 1 a transaction; B: 10,000 rows/s, 100")
    ap.add_argument("--tag", default="", help="suffix of the result files (`_memory`: results_cdc_memory.json)")
    ap.add_argument("--arms", default="pgmill,poll,reference",
                    help="pgmill (cdc), poll (the same table by cursor), reference (comma-separated)")
    ap.add_argument("--reps", type=int, default=1, help="sessions per profile and arm (figures: their medians)")
    ap.add_argument("--first-timeout", type=float, default=60.0, help="seconds for row 0 to become visible")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds after the generator for the rest")
    ap.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples of pgmill")
    ap.add_argument("--pgmill-args", default="", help="more arguments for `pgmill run --follow`")
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    profiles = [p.strip().upper() for p in args.profiles.split(",") if p.strip()]
    if not arms or set(arms) - {"pgmill", "poll", "reference"} or not profiles or set(profiles) - set(PROFILES):
        ap.error("--arms takes pgmill, poll and/or reference, --profiles A and/or B")
    proj = BenchProject("cdc").fresh()
    configure(proj)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {p: {a: [] for a in arms} for p in profiles}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_cdc_") as tmp, cluster(Path(tmp) / "pg15", LOGICAL_CONF) as url:
            sock = url.split("host=", 1)[1]
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SOURCE_DB)))
                source_version = str(c.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            src = _with_db(url, SOURCE_DB)
            for rep in range(args.reps):
                for profile in profiles:
                    for arm in arms:
                        log(f"rep {rep + 1}/{args.reps}, profile {profile}, {arm}: {args.seconds:g} s ...")
                        r = (reference(src, proj, profile, args, sock) if arm == "reference"
                             else pgmill_arm(src, proj, profile, args, POLL_PIPELINE if arm == "poll" else PIPELINE))
                        log(f"  {({k: r[k] for k in SUMMARY if k in r})}")
                        runs[profile][arm].append(r)
            target_version = proj.server_version()
    except BenchFailed as exc:
        raise SystemExit(f"bench_cdc FAILED: {exc}") from exc
    finally:
        proj.stop()
    figures = {p: {a: {k: median([r[k] for r in rs]) for k in SUMMARY if k in rs[0]} for a, rs in by.items()}
               for p, by in runs.items()}
    doc = {"measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "args": vars(args),
           "source": f"PostgreSQL {source_version} (tests/pg15.py cluster, wal_level = logical)",
           "target": f"PostgreSQL {target_version} (embedded)", "figures": figures, "runs": runs}
    (BENCH_DIR / f"results_cdc{args.tag}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (BENCH_DIR / f"RESULTS_cdc{args.tag}.md").write_text(render(doc))
    log((BENCH_DIR / f"RESULTS_cdc{args.tag}.md").read_text())


def render(doc: dict[str, Any]) -> str:
    m, a = doc["machine"], doc["args"]
    cmd = (f"python bench/bench_cdc.py --seconds {a['seconds']:g} --profiles {a['profiles']} --arms {a['arms']} "
           f"--reps {a['reps']}" + (f" --tag {a['tag']}" if a.get('tag') else ""))
    lines = [
        "# Arrival to queryable: CDC from PostgreSQL 15",
        "",
        f"Generated by `{cmd}` on {doc['measured_at']} (every session's figures in `bench/results_cdc{a.get('tag') or ''}.json`).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; pgmill {m['pgmill']}; "
        f"psycopg {m['psycopg']}. Source: {doc['source']}; target: {doc['target']}, both on this machine.",
        "",
        f"A generator commits rows into `shop.events` at a steady rate for {a['seconds']:g} s per session (profile "
        "A: 1,000 rows/s, one row per transaction; B: 10,000 rows/s, 100 rows per transaction), paced by a "
        "schedule, `synchronous_commit = on`. **Commit time** = `time.time()` in the generator process right after "
        "the COMMIT returned (all rows of a transaction share it). **Queryable** = `time.time()` when a poller on "
        "the target (every ~10 ms, `id > last seen` by the primary key) first saw the row, so the figures include "
        "up to ~10 ms of polling; stamped after COMMIT returned, a latency can be a millisecond below zero (the "
        "poller saw the row before the generator process ran again: `min_s` in the JSON). Rows delivered equal rows "
        "written in every session (the bench fails otherwise). "
        f"Figures are medians over {a['reps']} session(s) per profile and arm"
        + (" (one: the sessions are long)." if a["reps"] == 1 else "."),
        "",
        "| profile | arm | rows | achieved rows/s | p50 s | p95 s | p99 s | max s | under 1 s | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"reference": "PostgreSQL subscription (reference)", "pgmill": "pgmill run --follow, cdc",
             "poll": "pgmill run --follow, cursor poll (1 s interval)"}
    for profile, by in doc["figures"].items():
        for arm, f in by.items():
            lines.append(f"| {profile} | {names[arm]} | {f['rows_delivered']:,} | {f['achieved_rows_per_s']:,} | "
                         f"{f['p50_s']} | {f['p95_s']} | {f['p99_s']} | {f['max_s']} | {f['under_1s']:.1%} | "
                         f"{f['loadavg_1m']} |")
    mem = [(p, f) for p, by in doc["figures"].items() for arm, f in by.items() if arm == "pgmill"]
    if mem:
        lines += ["", "RSS of `pgmill run --follow` and its children, sampled every "
                  f"{a['rss_every']:g} s over the stream:", "",
                  "| profile | start MB | end MB | max MB |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {p} | {f['rss_start_mb']} | {f['rss_end_mb']} | {f['rss_max_mb']} |" for p, f in mem]
        own = [(p, r["pgmill_recorded"]) for p, by in doc["runs"].items() for r in by.get("pgmill", [])
               if r.get("pgmill_recorded")]
        if own:
            lines += ["", "pgmill's own figure (`arrival_to_queryable_s` of its load steps, source commit to target "
                      "commit), per session: " + "; ".join(f"{p}: p50 {o['p50_s']} s, p95 {o['p95_s']} s over "
                                                          f"{o['steps']} steps" for p, o in own) + "."]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

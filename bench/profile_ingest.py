"""Where a `pgmill run` spends its time: client (py-spy samples per thread, CPU seconds) and server
(pg_stat_statements), on the benchmark's orders file and contract. Not part of the figures of record.

    PY=.venv/bin/python; [ -x $PY ] || PY=/work/venv/bin/python
    $PY -m pip install py-spy            # or: pip install --target /tmp/pyspy py-spy (PYSPY=/tmp/pyspy/bin/py-spy)
    $PY bench/profile_ingest.py [--rows 5000000] [--mode append|merge] [--top 25]

Writes the raw samples to bench/out/profile/<mode>.raw.txt and prints: wall and ledger seconds, client CPU
seconds, server time by statement, and the top functions by own samples and by inclusive samples (pgmill
frames), per thread.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
from collections import Counter
from pathlib import Path

import bench_ingest
from common import OUT_DIR, log, pgmill_env, run_measured

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m["file"]
    if "pgmill/" in f:
        f = "pgmill/" + f.split("pgmill/", 1)[1]
    else:
        f = Path(f).name
    return f"{m['func']} ({f})"


def thread_group(name: str) -> str:
    name = name.split(": ", 1)[-1]
    return re.sub(r"_\d+$", "", name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--mode", choices=["append", "merge"], default="append")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rate", type=int, default=100)
    a = ap.parse_args()
    pyspy = os.environ.get("PYSPY") or shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy"
    src = bench_ingest.orders_file(a.rows)
    proj = bench_ingest.open_project({"main": src}, name="profile_db")
    out = OUT_DIR / "profile"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{a.mode}_{a.rows}.raw.txt"
    try:
        pipe = f"main_{a.mode}"
        proj.reset(pipe, bench_ingest.TABLE)
        proj.sql("SELECT pg_stat_statements_reset()")
        cmd = [pyspy, "record", "-r", str(a.rate), "--threads", "-f", "raw", "-o", str(raw), "--",
               sys.executable, "-m", "pgmill", "run", pipe, "--project", str(proj.dir), "--json"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        m = run_measured(cmd, env=pgmill_env())
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if m.returncode != 0:
            sys.exit(m.stderr[-3000:])
        import json

        start = min(i for i in (m.stdout.find("{"), m.stdout.find("[")) if i >= 0)
        doc, _ = json.JSONDecoder().raw_decode(m.stdout[start:])  # py-spy writes its own lines after it
        [rec] = doc["loads"] if isinstance(doc, dict) else doc
        cpu_u = after.ru_utime - before.ru_utime
        cpu_s = after.ru_stime - before.ru_stime
        server = bench_ingest.server_profile(proj)
        top_sql = proj.sql("SELECT calls, round(total_exec_time::numeric / 1000, 2), left(regexp_replace(query, '\\s+', ' ', 'g'), 110)"
                           " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 6")
    finally:
        proj.stop()
    print(f"# {a.mode}, {rec['rows_read']:,} rows: ledger {rec['seconds']:.1f} s "
          f"({rec['rows_read'] / rec['seconds']:,.0f} rows/s, under py-spy at {a.rate} Hz), wall {m.seconds:.1f} s")
    print(f"client CPU (pgmill process + py-spy): user {cpu_u:.1f} s, sys {cpu_s:.1f} s")
    print(f"server time by statement kind (s): {server}")
    for calls, secs, q in top_sql:
        print(f"  {secs:>7} s {calls:>5} calls  {q}")
    own: dict[str, Counter[str]] = {}
    incl: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        g = thread_group(frames[0])
        k = int(n)
        totals[g] += k
        own.setdefault(g, Counter())[short(frames[-1])] += k
        seen = set()
        for f in frames[1:]:
            s = short(f)
            if "pgmill/" in s and s not in seen:
                seen.add(s)
                incl.setdefault(g, Counter())[s] += k
    for g, total in totals.most_common():
        print(f"\n## thread {g}: {total} samples ({total / a.rate:.1f} s busy)")
        print("own samples:")
        for f, k in own[g].most_common(a.top):
            print(f"  {k / total:6.1%}  {f}")
        print("inclusive (pgmill frames):")
        for f, k in incl.get(g, Counter()).most_common(a.top):
            print(f"  {k / total:6.1%}  {f}")
    log(f"raw samples: {raw}")


if __name__ == "__main__":
    main()

"""TPC-H SF1 tuned by postgres-mcp and by pgmill from the same query texts, measured alike (issue 16, item 3).

    python bench/bench_tpch_peer.py [--quick] [--sf N] [--rounds R] [--executions N] [--budget SIZE]

What it does, every run from scratch:
  1. data and cluster from bench_tpch.py (tpchgen-cli, cached in bench/out/tpch-data; a fresh PostgreSQL 15
     with HypoPG under bench/out/tpch_peer/pg15; primary keys only, VACUUM ANALYZE);
  2. the workload: the six TPC-H queries bench_mixed.py picks (Q4, Q8, Q11, Q14, Q19, Q22: about a second
     each at SF1 on primary keys only, and an index can speed each up), with the specification's validation
     literals, as written in bench/queries_mixed/tpch_qualified/ (every column qualified by its table and
     two derived tables folded into the query, the same results: postgres-mcp 0.3.0 fails on the texts as
     written, see bench_mixed.py). Both tools get these same texts;
  3. postgres-mcp 0.3.0 (its own venv, bench_peer.ensure_peer_venv): the MCP tool `analyze_query_indexes`
     (`TextPresentation.analyze_queries` with the tool's defaults: DTA, max_index_size_mb 10000), 3 calls,
     each a new process; its calls can answer differently: each distinct set it answered is measured;
  4. pgmill: a project with the six texts as declared queries (queries/*.sql) and `tune: {observed: 0}`,
     `run_tune(apply=True)`: advise (HypoPG), create, measure, keep only what helped; once with no budget
     and, for each distinct postgres-mcp set, once with that set's real storage (built and sized here,
     in bytes) as `tune.budget`: the target's "no more storage" (or once with --budget);
  5. every set (none, postgres-mcp's, pgmill's kept sets) built by the benchmark and measured R rounds
     (default 5), sets interleaved and their order rotated each round: every query 1 warm-up run then N
     (default 10) timed executions; per-query p95 and p50, summed p95 per set (median over rounds), real
     index storage (pg_relation_size), build time.

Target of issue 16: on TPC-H SF1, pgmill's index set no larger than postgres-mcp's for a summed p95 at least
10% lower: each budgeted arm against the postgres-mcp set whose storage it was given. Figures go to bench/RESULTS_tpch_peer.md and bench/results.json (section "tpch_peer"); --quick
(SF 0.1) to bench/out/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mixed import (  # noqa: E402
    MCP_RUNS,
    TPCH_PICK,
    TPCH_QUALIFIED,
    measure_sets,
    pgmill_arm,
    postgres_mcp,
    tpch_queries,
)
from bench_peer import set_bytes  # noqa: E402
from bench_tpch import loaded_cluster  # noqa: E402
from common import OUT_DIR, RESULTS_JSON, loadavg, log, machine, save, save_to  # noqa: E402

MD = Path(__file__).resolve().parent / "RESULTS_tpch_peer.md"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="scale factor 0.1, results to bench/out/")
    ap.add_argument("--sf", type=float, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--executions", type=int, default=10, help="timed executions of each query per round")
    ap.add_argument("--budget", default=None, help="the budgeted pgmill arm's tune.budget (default: the real "
                    "size of each postgres-mcp set, in bytes)")
    args = ap.parse_args()
    sf = args.sf if args.sf is not None else (0.1 if args.quick else 1.0)
    os.environ.pop("PGMILL_DATABASE_URL", None)

    import psycopg

    load_start = loadavg()
    base = OUT_DIR / "tpch_peer"
    pg, url, loaded, version = loaded_cluster(sf, base, "tpch peer bench")
    try:
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        hypopg = str(conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'hypopg'").fetchone()[0])
        queries = tpch_queries(TPCH_QUALIFIED)
        files = tuple(TPCH_QUALIFIED / f"{n}.sql" for n in TPCH_PICK)
        mcp = postgres_mcp(url, [q.sql for q in queries])
        if not mcp["gave_indexes"]:
            raise SystemExit("postgres-mcp gave no index set in any call: nothing to compare (see the log above)")
        # each distinct set postgres-mcp answered (its calls differ), measured, and given to pgmill as a budget
        peers: dict[str, list[str]] = {}
        for i, run in enumerate(mcp["runs"], 1):
            ddls = [x["definition"] for x in run["indexes"]]
            if ddls and sorted(ddls) not in [sorted(d) for d in peers.values()]:
                peers[f"postgres-mcp call {i}"] = ddls
        arms = {"pgmill": pgmill_arm(url, base / "project", {"observed": 0}, conn, {}, declared=files)}
        against = {"pgmill": next(iter(peers))}
        for j, (peer, ddls) in enumerate(peers.items()):
            size = set_bytes(conn, ddls)
            budget = args.budget or str(size)  # bytes: `tune.budget` takes a plain number as bytes
            arm = f"pgmill, budget {args.budget or f'{size / 2**20:.2f} MiB'}"
            arms[arm] = pgmill_arm(url, base / f"project_budget{j}", {"observed": 0, "budget": budget}, conn, {},
                                   declared=files)
            against[arm] = peer
            if args.budget:
                break
        sets = {"none": [], **peers, **{k: v["ddls"] for k, v in arms.items()}}
        results, loads = measure_sets(conn, sets, [], queries, args.rounds, 0, args.executions)
        conn.close()
        out: dict[str, Any] = {
            "sf": sf, "tpchgen": version, "server": pg.version(), "hypopg": hypopg, "load": loaded,
            "queries": [q.name for q in queries], "rounds": args.rounds, "executions": args.executions,
            "budget_given": args.budget, "peers": list(peers), "against": against,
            "sets": results, "postgres_mcp": mcp, "pgmill": arms,
            "targets": {k: {"storage_no_larger": results[k]["index_bytes"] <= results[against[k]]["index_bytes"],
                            "sum_p95_10pct_lower": results[k]["sum_p95_ms"] <= 0.9 * results[against[k]]["sum_p95_ms"]}
                        for k in arms},
            "loadavg_start": load_start, "loadavg_measuring": loads, "loadavg_end": loadavg(),
        }
    finally:
        pg.stop()
    text = render({**out, "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    if sf != 1.0:
        where = OUT_DIR / "RESULTS_tpch_peer.quick.md"
        where.write_text(text)
        save_to(OUT_DIR / "results.quick.json", "tpch_peer", out)
    else:
        where = MD
        MD.write_text(text)
        save("tpch_peer", out)
    log(text)
    log(f"written: {where} ({RESULTS_JSON.name if where == MD else 'results.quick.json'})")


def render(r: dict[str, Any]) -> str:
    mib = 2**20
    s, mc = r["sets"], r["postgres_mcp"]
    arms = list(r["pgmill"])
    cols = ["none", *r["peers"], *arms]
    vers = mc["runs"][0]["versions"]
    mach = r["machine"]
    out = [f"# pgmill vs postgres-mcp on TPC-H SF{r['sf']:g}: the same query texts, measured alike", "",
           f"Generated by `bench/bench_tpch_peer.py` on {r['measured_at']}. TPC-H at scale factor {r['sf']:g} "
           f"(`{r['tpchgen']}`, {r['load']['table_bytes'] / mib:,.0f} MiB of tables, primary keys only) in "
           f"PostgreSQL {r['server']} with HypoPG {r['hypopg']}. The workload: the TPC-H queries "
           f"{', '.join(r['queries'])} with the specification's validation literals, every column qualified "
           "(bench/queries_mixed/tpch_qualified/); both tools were given these texts. Each index set built by "
           f"the benchmark and measured {r['rounds']} rounds, sets interleaved: every query 1 warm-up run then "
           f"{r['executions']} timed executions; medians of the rounds.", "",
           f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB; shared with other work: "
           f"load average at start {r['loadavg_start']}, while measuring {min(r['loadavg_measuring'])}-"
           f"{max(r['loadavg_measuring'])}, at end {r['loadavg_end']}",
           f"- pgmill {mach['pgmill']} (Python {mach['python']}); postgres-mcp {vers['version']} (pglast "
           f"{vers['pglast']}, mcp {vers['mcp']}; {mc['install_note']})",
           "- postgres-mcp: its MCP tool `analyze_query_indexes` (`TextPresentation.analyze_queries`) with the "
           f"tool's defaults: DTA, max_index_size_mb 10000; {MCP_RUNS} calls, each a new process; each distinct "
           f"set it answered measured: {', '.join(r['peers'])}",
           "- pgmill: a project with the same texts as declared queries and `tune: {observed: 0}`, `run_tune("
           "apply=True)`: advise (HypoPG), create, measure, keep only what helped; with no budget, and "
           + (f"with `budget: {r['budget_given']}`" if r["budget_given"] else "with each postgres-mcp set's real "
              "storage (in bytes) as `tune.budget`: the target's \"no more storage\""), "",
           "## Per query (ms, medians of the rounds)", "",
           "| query | " + " | ".join(f"p95 {c}" for c in cols) + " | " + " | ".join(f"p50 {c}" for c in cols) + " |",
           "| --- |" + " ---: |" * (2 * len(cols))]
    for q in r["queries"]:
        out.append(f"| {q} | " + " | ".join(f"{s[c]['p95_ms'][q]:,.1f}" for c in cols) + " | "
                   + " | ".join(f"{s[c]['p50_ms'][q]:,.1f}" for c in cols) + " |")
    out += ["", "## Summary", "", "| | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols),
            "| summed p95, ms | " + " | ".join(f"{s[c]['sum_p95_ms']:,.1f}" for c in cols) + " |",
            "| summed p95 per round, ms | " + " | ".join(str(s[c]["sum_p95_rounds"]) for c in cols) + " |",
            "| indexes | " + " | ".join(str(len(s[c]["indexes"])) for c in cols) + " |",
            "| index storage (real), MiB | " + " | ".join(f"{s[c]['index_bytes'] / mib:,.1f}" for c in cols) + " |",
            "| build time, s (median) | " + " | ".join(f"{s[c]['build_seconds']}" for c in cols) + " |", ""]
    for a in arms:
        p, t, m = s[a], r["targets"][a], s[r["against"][a]]
        met = t["storage_no_larger"] and t["sum_p95_10pct_lower"]
        out.append(f"- **target of issue 16** ({a} against {r['against'][a]}): storage no larger AND summed p95 at least "
                   f"10% lower: storage {p['index_bytes'] / mib:,.1f} vs {m['index_bytes'] / mib:,.1f} MiB "
                   f"({'no larger' if t['storage_no_larger'] else 'LARGER'}), summed p95 {p['sum_p95_ms']:,.1f} vs "
                   f"{m['sum_p95_ms']:,.1f} ms ({p['sum_p95_ms'] / m['sum_p95_ms'] - 1:+.1%}): "
                   f"**{'met' if met else 'not met'}**")
    out += ["", "## postgres-mcp", ""]
    for i, run in enumerate(mc["runs"], 1):
        defs = [x["definition"] for x in run["indexes"]]
        out.append(f"- call {i} ({run['seconds']} s): {defs if defs else 'nothing'}"
                   + (f"; error: {run['error']}" if run["error"] else "")
                   + (f"; {run['no_recommendations']}" if run["no_recommendations"] else ""))
    out += ["", f"{mc['distinct_index_sets']} distinct set(s) over {MCP_RUNS} calls, each measured; real sizes:", "",
            "| set | index | estimated (postgres-mcp) | real MiB |", "| --- | --- | ---: | ---: |"]
    for peer in r["peers"]:
        answered = mc["runs"][int(peer.rsplit(" ", 1)[1]) - 1]["indexes"]
        for x, real in zip(answered, s[peer]["index_sizes"], strict=False):
            out.append(f"| {peer} | {x['definition']} | {x['estimated_size']} | {real / mib:,.1f} |")
    for a in arms:
        pm = r["pgmill"][a]
        out += ["", f"## {a}", "",
                f"- tune --apply with `tune: {pm['tune']}`: {len(pm['advisor_set'])} recommended, "
                f"{len(pm['ddls'])} kept; advisor {pm['advisor_seconds']} s ({pm['backend']}, {pm['explains']} "
                f"EXPLAINs, {pm['candidates']} candidates), {pm['tune_apply_seconds']} s in all", "",
                "| advisor's index | estimated MiB | real MiB (built by --apply) | serves | lean alternative |",
                "| --- | ---: | ---: | --- | --- |"]
        for x in pm["advisor_set"]:
            real = "-" if x["real_bytes"] is None else f"{x['real_bytes'] / mib:,.1f}"
            out.append(f"| {x['label']} | {x['estimated_bytes'] / mib:,.1f} | {real} | {', '.join(x['queries'])} | "
                       f"{x['lean'] or '-'} |")
        out += ["", "What --apply did (measured keep/drop):", ""]
        for o in pm["outcomes"]:
            size = "" if o["size_bytes"] is None else f", {o['size_bytes'] / mib:,.1f} MiB"
            out.append(f"- {o['status']}: {o['label']}{size} ({o['reason']})")
        out += ["", "| kept index | real MiB |", "| --- | ---: |"]
        for d, b in zip(s[a]["indexes"], s[a]["index_sizes"], strict=False):
            out.append(f"| {d} | {b / mib:,.1f} |")
    out += ["", "## Rerun", "", "```",
            "PYTHONPATH=$PWD/src .venv/bin/python bench/bench_tpch_peer.py"
            + (f" --rounds {r['rounds']}" if r["rounds"] != 5 else "") + f"  # SF{r['sf']:g}; --quick: SF 0.1 into "
            "bench/out/", "```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()

"""A mixed workload at TPC-H SF1 tuned from pg_stat_statements by postgres-mcp and by pgmill, measured alike.

    python bench/bench_mixed.py [--quick] [--sf N] [--rounds R] [--calls C] [--width3] [--full] [--sampled]

What it does, every run from scratch (issue 16, item 3):
  1. data and cluster from bench_tpch.py (tpchgen-cli, cached in bench/out/tpch-data; a fresh PostgreSQL 15
     with HypoPG and pg_stat_statements preloaded, under bench/out/mixed/pg15; primary keys only);
  2. the workload: 10 application queries on the TPC-H tables (bench/queries_mixed/, pgmill declared-query
     files: $n parameters, params_sql) and 6 TPC-H queries (bench/queries_tpch/: TPCH_PICK below, with
     literals, as a reporting tool sends them); pg_stat_statements reset, then the whole workload executed
     C times (default 50) as an app would, interleaved, the app queries cycling through their parameter sets;
     C = 50 because postgres-mcp's workload tool ignores statements seen fewer than 50 times (its default
     min_calls) or averaging under 5 ms (min_avg_time_ms);
  3. postgres-mcp 0.3.0 (its own venv, bench_peer.ensure_peer_venv): the MCP tool `analyze_workload_indexes`
     (`TextPresentation.analyze_workload` with its defaults: DTA, max_index_size_mb 10000, min_calls 50,
     min_avg_time_ms 5, limit 100), 3 calls, each a new process; the first call that gives indexes is measured;
  4. pgmill: a project (pgmill.yaml) on that database with `tune: {observed: 16}` and no queries/ folder,
     `run_tune(apply=True)`: advise from pg_stat_statements with HypoPG, create, measure, keep what helped.
     The advisor's own recommendation (before the measured keep/drop) is reported too. With --width3, a
     second pgmill arm with `tune.max_width: 3` (pg_stat_statements reset and the workload replayed first);
     with --full, a pgmill arm tuned from the whole mixed workload replayed (the 6 TPC-H queries as written
     too), the input postgres-mcp fails on; with --sampled, two pgmill arms tuned from the whole workload
     with `tune --sample` (the workload replayed on another connection while pgmill watches
     pg_stat_activity for the statements' constants), unlimited and with postgres-mcp's storage as budget;
  5. every set (none, postgres-mcp's, pgmill's kept set) built for real and measured R rounds (default 3),
     interleaved: app queries 10 warm-up runs then 30 timed executions over their parameter sets, TPC-H
     queries 1 warm-up then 5 timed; per-query p95/p50, summed p95 per set (median over rounds), real
     index storage (pg_relation_size), build time.

Target of issue 16: pgmill's index set no larger than postgres-mcp's for a summed p95 at least 10% lower.
Figures go to bench/RESULTS_mixed.md and bench/results.json (section "mixed"); quick runs to bench/out/.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peer import (  # noqa: E402
    PEER_VENV_NOTE,
    create_set,
    drop_set,
    mcp_indexes,
    measure_set,
    run_mcp,
    set_bytes,
    set_sizes,
    summarize,
)
from bench_tpch import loaded_cluster  # noqa: E402
from common import OUT_DIR, RESULTS_JSON, loadavg, log, machine, save, save_to  # noqa: E402

BENCH = Path(__file__).resolve().parent
APP = BENCH / "queries_mixed"
TPCH = BENCH / "queries_tpch"
# chosen among the TPC-H queries that run in about a second or two at SF1 on a primary-keys-only database
# and that a secondary index can speed up (bench/RESULTS_tpch.md: estimated cost with indexes 17-74% of
# none): Q4 (a 3-month o_orderdate range, then lineitem by order), Q8 (one p_type: lineitem by l_partkey),
# Q11 (one nation's suppliers: partsupp by ps_suppkey), Q14 (a 1-month l_shipdate range), Q19 (a few
# brands/containers: lineitem by l_partkey), Q22 (NOT EXISTS orders of a customer: orders by o_custkey).
# Left out: Q1/Q6/Q15/Q16 (indexes do not help: estimated 97-100%), Q9/Q18/Q21 (tens of seconds at SF1).
TPCH_PICK = ("q04", "q08", "q11", "q14", "q19", "q22")
# the same six with every column qualified by its table (or alias) and Q8's and Q22's derived tables folded
# into the query (the same results): postgres-mcp 0.3.0 fails on the TPC-H texts as written ("hypopg: column
# ... does not exist": it puts unqualified columns of multi-table queries, and a derived table's columns, on
# a table), so a second attempt replays the workload with these, as bench_peer.py qualifies columns. That
# fails too (postgres-mcp fills pg_stat_statements' $n placeholders of constants such as the 1 of
# `1 - l_discount` with 'sample_value'); the third attempt replays the application queries only
TPCH_QUALIFIED = APP / "tpch_qualified"
MD = BENCH / "RESULTS_mixed.md"
MCP_RUNS = 3
OBSERVED = 16  # pgmill's tune.observed: the 16 statements of the workload
MCP_MIN_CALLS, MCP_MIN_AVG_MS = 50, 5.0  # postgres-mcp's analyze_workload defaults (index/presentation.py)


# ---------------------------------------------------------------- workload


def app_queries(conn: Any) -> list[Any]:
    """The application queries, parsed as pgmill parses declared queries, their params_sql run here."""
    from psycopg.types.numeric import Int4

    from pgmill.tune.workload import parse_query_file

    out = []
    for path in sorted(APP.glob("*.sql")):
        q, params_sql = parse_query_file(path, 100.0)
        if params_sql:
            q.params.extend(list(r)[: q.n_params] for r in conn.execute(params_sql.encode()).fetchall())
        # integers as int4, the type of every TPC-H key: psycopg sends a Python int as int2 when it fits, and
        # pg_stat_statements keeps one entry per parameter type, which would split a query's calls in two
        # (below postgres-mcp's min_calls), as no app with typed parameters does
        q.params = [[Int4(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in p] for p in q.params]
        out.append(q)
    return out


def tpch_queries(folder: Path) -> list[Any]:
    from pgmill.tune.workload import parse_query_file

    return [parse_query_file(folder / f"{n}.sql", 100.0)[0] for n in TPCH_PICK]


def query_ids(conn: Any, workload: list[Any]) -> dict[int, str]:
    """pg_stat_statements' queryid of each workload query (EXPLAIN VERBOSE shows it) -> the query's name."""
    import psycopg

    out = {}
    for q in workload:
        with psycopg.RawCursor(conn) as cur:
            cur.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {q.sql}".encode(), q.param_sets()[0] or None)
            plan = cur.fetchone()[0][0]  # type: ignore[index]
        out[int(plan["Query Identifier"])] = q.name
    return out


def replay(conn: Any, workload: list[Any], calls: int) -> float:
    """pg_stat_statements reset, then every query executed `calls` times, interleaved, as an app would."""
    import psycopg

    conn.execute("SELECT pg_stat_statements_reset()")
    started = time.perf_counter()
    for i in range(calls):
        for q in workload:
            sets = q.param_sets()
            with psycopg.RawCursor(conn) as cur:
                cur.execute(q.sql.encode(), sets[i % len(sets)] or None)
                cur.fetchall()
    return time.perf_counter() - started


def observed_stats(conn: Any, ids: dict[int, str]) -> list[dict[str, Any]]:
    """What pg_stat_statements holds for the workload's statements after the replay."""
    rows = conn.execute("SELECT queryid, calls, mean_exec_time, total_exec_time FROM pg_stat_statements WHERE "
                        "dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel "
                        "ORDER BY total_exec_time DESC").fetchall()
    return [{"query": ids[int(qid)], "calls": int(calls), "mean_ms": round(float(mean), 2),
             "total_ms": round(float(total), 1),
             "seen_by_postgres_mcp": int(calls) >= MCP_MIN_CALLS and float(mean) >= MCP_MIN_AVG_MS}
            for qid, calls, mean, total in rows if int(qid) in ids]


def pgmill_name(queryid: int) -> str:
    """The name pgmill gives an observed statement (tune/workload.py)."""
    return f"observed_{queryid & 0xFFFFFFFFFFFF:012x}"


# ---------------------------------------------------------------- the tools


def postgres_mcp(url: str, texts: list[str] | None = None) -> dict[str, Any]:
    """MCP_RUNS postgres-mcp calls, each a new process: `analyze_workload_indexes` (pg_stat_statements), or with
    `texts`, `analyze_query_indexes` for those query texts."""
    runs = []
    for i in range(MCP_RUNS):
        log(f"bench: postgres-mcp {'analyze_workload_indexes' if texts is None else 'analyze_query_indexes'}, "
            f"call {i + 1} ...")
        ans = run_mcp(url, texts)
        idx = mcp_indexes(ans)
        res = ans["result"]
        runs.append({"seconds": round(ans["seconds"], 2), "indexes": idx, "error": res.get("error"),
                     "summary": res.get("summary"),
                     "no_recommendations": res.get("recommendations") if isinstance(res.get("recommendations"), str)
                     else None,
                     "queries_in_impact": [x.get("query") for x in res.get("query_impact") or []
                                           if isinstance(x, dict)],
                     "versions": {k: ans[k] for k in ("version", "pglast", "mcp")}})
        log(f"  {ans['seconds']:.1f} s, {len(idx)} indexes: {[x['definition'] for x in idx]} {res.get('error') or ''}")
    measured = next((r for r in runs if r["indexes"]), runs[0])
    return {"runs": runs, "measured_call": runs.index(measured) + 1, "gave_indexes": bool(measured["indexes"]),
            "ddls": [x["definition"] for x in measured["indexes"]],
            "distinct_index_sets": len({tuple(sorted(x["definition"] for x in r["indexes"])) for r in runs}),
            "install_note": PEER_VENV_NOTE}


def pgmill_arm(url: str, folder: Path, tune: dict[str, Any], conn: Any, ids: dict[int, str],
               during: list[Any] | None = None, calls: int = 0, declared: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A project on the database with these tune settings and, as queries/, copies of the `declared` query
    files (none by default): `run_tune(apply=True)`. With `during` (a workload), that workload is replayed
    `calls` times on its own connection while `pgmill tune --sample` watches it, for as long as the replay
    takes; the advice starts once the replay has ended."""
    import psycopg
    import yaml

    from pgmill.project import open_project
    from pgmill.tune.run import run_tune

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "pgmill.yaml").write_text(yaml.safe_dump({"database": {"url": url}, "pipelines": {}, "tune": tune}))
    if declared:
        (folder / "queries").mkdir()
        for path in declared:
            shutil.copy(path, folder / "queries" / path.name)
    ctx = open_project(folder)
    log(f"bench: pgmill tune --apply with tune {tune}{' --sample' if during else ''} ...")
    replay_s: list[float] = []
    if during:
        def app() -> None:
            with psycopg.connect(url, autocommit=True) as c:
                replay_s.append(replay(c, during, calls))
        with psycopg.connect(url, autocommit=True) as c:  # how long the replay takes: one pass, timed
            c.execute("SELECT pg_stat_statements_reset()")
            one = replay(c, during, 1)
        thread = threading.Thread(target=app, daemon=True)
        thread.start()
        sample_s = one * calls * 1.15 + 10  # the whole replay, and a margin
    t0 = time.perf_counter()
    report = run_tune(ctx, apply=True, sample_seconds=sample_s if during else 0.0)
    seconds = time.perf_counter() - t0
    if during:
        thread.join()
        assert replay_s and replay_s[0] < sample_s, (replay_s, sample_s)  # measured after the replay ended
    assert report.applied is not None
    by_pgmill = {pgmill_name(qid): name for qid, name in ids.items()}

    def rename(text: str) -> str:
        return re.sub(r"observed_[0-9a-f]{12}", lambda m: by_pgmill.get(m.group(0), m.group(0)), text)
    kept = [o for o in report.applied.outcomes if o.status == "kept"]
    built = {o.name: o.size_bytes for o in report.applied.outcomes}
    for o in kept:  # every set is built by this benchmark the same way
        drop_set(conn, o.table.split(".")[0], [o.name])
    adv = report.advice

    def named(qs: list[str]) -> list[str]:
        return [by_pgmill.get(q, q) for q in qs]

    return {
        "tune": tune, "tune_apply_seconds": round(seconds, 1), "advisor_seconds": round(adv.seconds, 2),
        "sampled": None if report.sampled is None else {**report.sampled.as_dict(), "seconds": round(sample_s, 1),
                                                        "replay_seconds": round(replay_s[0], 1), "calls": calls},
        "backend": adv.backend, "explains": adv.explains, "candidates": adv.candidates,
        "workload": [{"query": by_pgmill.get(q.name, q.name), "runnable": q.runnable, "param_sets": len(q.params),
                      "calls": q.calls, "cost_before": round(adv.cost_before.get(q.name, 0.0), 1),
                      "cost_after": round(adv.cost_after.get(q.name, 0.0), 1)} for q in adv.workload],
        "advisor_set": [{"label": r.label, "definition": r.definition, "estimated_bytes": r.size_bytes,
                         "real_bytes": built.get(r.name), "queries": named(r.queries),
                         "lean": None if r.lean is None else r.lean.label()} for r in adv.recommendations],
        "outcomes": [{"label": o.label, "status": o.status, "reason": rename(o.reason), "size_bytes": o.size_bytes,
                      "used_by": named(o.used_by), "improved": named(o.improved), "slowed": named(o.slowed)}
                     for o in report.applied.outcomes],
        "tune_latency_ms": {by_pgmill.get(k, k): [round(v.p95_ms, 2), round(report.applied.after[k].p95_ms, 2)]
                            for k, v in report.applied.before.items() if k in report.applied.after},
        "ddls": [o.definition for o in kept],
    }


# ---------------------------------------------------------------- measurement


def measure_sets(conn: Any, sets: dict[str, list[str]], app: list[Any], tpch: list[Any], rounds: int,
                 app_n: int, tpch_n: int) -> tuple[dict[str, Any], list[float]]:
    per_round: dict[str, list[dict[str, Any]]] = {k: [] for k in sets}
    sizes: dict[str, list[int]] = {}
    builds: dict[str, list[float]] = {k: [] for k in sets}
    loads = []
    for r in range(rounds):
        order = list(sets)[r % len(sets):] + list(sets)[:r % len(sets)]
        for name in order:
            t0 = time.perf_counter()
            names = create_set(conn, sets[name])
            builds[name].append(time.perf_counter() - t0)
            sizes[name] = set_sizes(conn, "public", names)
            conn.execute("CHECKPOINT")
            loads.append(loadavg()[0])
            log(f"bench: round {r + 1}, measuring {name} ({len(names)} indexes) ...")
            per = measure_set(conn, app, app_n) | measure_set(conn, tpch, tpch_n)
            per_round[name].append(summarize(per))
            drop_set(conn, "public", names)
    med = statistics.median
    out: dict[str, Any] = {}
    queries = [q.name for q in app + tpch]
    for name, rs in per_round.items():
        out[name] = {
            "p95_ms": {q: round(med([x["p95"][q] for x in rs]), 3) for q in queries},
            "p50_ms": {q: round(med([x["p50"][q] for x in rs]), 3) for q in queries},
            "sum_p95_ms": round(med([x["sum_p95"] for x in rs]), 1),
            "sum_p95_rounds": [round(x["sum_p95"], 1) for x in rs],
            "sum_p95_app_ms": round(med([sum(x["p95"][q.name] for q in app) for x in rs]), 1),
            "sum_p95_tpch_ms": round(med([sum(x["p95"][q.name] for q in tpch) for x in rs]), 1),
            "index_bytes": sum(sizes[name]), "index_sizes": sizes[name], "indexes": sets[name],
            "build_seconds": round(med(builds[name]), 1),
        }
    return out, loads


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="scale factor 0.1, results to bench/out/")
    ap.add_argument("--sf", type=float, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=MCP_MIN_CALLS, help="executions of each query in the replay")
    ap.add_argument("--app-executions", type=int, default=30)
    ap.add_argument("--tpch-executions", type=int, default=5)
    ap.add_argument("--width3", action="store_true", help="a second pgmill arm with tune.max_width: 3")
    ap.add_argument("--sampled", action="store_true", help="pgmill arms tuned from the whole mixed workload with "
                    "`tune --sample` (the statements' constants from pg_stat_activity): unlimited, and with "
                    "--sample-budget")
    ap.add_argument("--sample-budget", default=None, help="the storage budget of the second sampled arm "
                    "(default: the real size of postgres-mcp's measured set, built and dropped to size it)")
    ap.add_argument("--sample-calls", type=int, default=20, help="executions of each query while sampling")
    ap.add_argument("--full", action="store_true", help="a pgmill arm tuned from the whole mixed workload observed "
                    "(the 6 TPC-H queries as written replayed too), which postgres-mcp cannot tune")
    args = ap.parse_args()
    sf = args.sf if args.sf is not None else (0.1 if args.quick else 1.0)
    os.environ.pop("PGMILL_DATABASE_URL", None)

    import psycopg

    load_start = loadavg()
    base = OUT_DIR / "mixed"
    pg, url, loaded, version = loaded_cluster(sf, base, "mixed bench")
    try:
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        versions: dict[str, str] = dict(conn.execute("SELECT extname, extversion FROM pg_extension WHERE extname IN "
                                     "('hypopg', 'pg_stat_statements')").fetchall())
        app = app_queries(conn)
        attempts = []
        for label, folder in (("TPC-H queries as written (bench/queries_tpch/)", TPCH),
                              ("TPC-H queries with every column qualified, no derived tables "
                               "(bench/queries_mixed/tpch_qualified/)", TPCH_QUALIFIED),
                              ("the 10 application queries only (no TPC-H query replayed; all 16 measured)", None)):
            tpch = tpch_queries(folder) if folder is not None else []
            workload = app + tpch
            ids = query_ids(conn, workload)
            assert len(ids) == len(workload), "two workload queries share a queryid"
            log(f"mixed bench: {label}: replaying the workload, {args.calls} executions of each of "
                f"{len(workload)} queries ...")
            replay_s = replay(conn, workload, args.calls)
            observed = observed_stats(conn, ids)
            log(f"  {replay_s:.0f} s; postgres-mcp sees {sum(x['seen_by_postgres_mcp'] for x in observed)} of them")
            mcp = postgres_mcp(url)
            attempts.append({"workload": label, "replay_seconds": round(replay_s, 1), "observed": observed,
                             "postgres_mcp": mcp})
            if mcp["gave_indexes"]:
                break
        # pgmill tunes from the same pg_stat_statements contents as postgres-mcp's measured call
        arms = {"pgmill": pgmill_arm(url, base / "project", {"observed": OBSERVED}, conn, ids)}
        if args.width3:
            attempts[-1]["replay_seconds_width3"] = round(replay(conn, workload, args.calls), 1)
            arms["pgmill max_width 3"] = pgmill_arm(url, base / "project_w3", {"observed": OBSERVED, "max_width": 3},
                                                   conn, ids)
        if args.full:
            whole = app + tpch_queries(TPCH)
            whole_ids = query_ids(conn, whole)
            attempts[-1]["replay_seconds_full"] = round(replay(conn, whole, args.calls), 1)
            arms["pgmill, whole workload observed"] = pgmill_arm(url, base / "project_full", {"observed": OBSERVED},
                                                                 conn, whole_ids)
        if args.sampled:
            whole = app + tpch_queries(TPCH)
            whole_ids = query_ids(conn, whole)
            arms["pgmill, whole workload sampled"] = pgmill_arm(
                url, base / "project_sampled", {"observed": OBSERVED}, conn, whole_ids, whole, args.sample_calls)
            budget = args.sample_budget
            if budget is None:  # postgres-mcp's storage as pgmill's budget: the target's "no more storage"
                budget = f"{set_bytes(conn, mcp['ddls']) / 2**20:.1f}MB"
            whose = " (postgres-mcp's storage)" if args.sample_budget is None else ""
            arms[f"pgmill, whole workload sampled, budget {budget}{whose}"] = pgmill_arm(
                url, base / "project_sampled_budget", {"observed": OBSERVED, "budget": budget}, conn,
                whole_ids, whole, args.sample_calls)
        sets = {"none": [], "postgres-mcp": mcp["ddls"], **{k: v["ddls"] for k, v in arms.items()}}
        tpch = tpch or tpch_queries(TPCH)  # the app-only attempt: measure the TPC-H queries as written
        results, loads = measure_sets(conn, sets, app, tpch, args.rounds, args.app_executions, args.tpch_executions)
        conn.close()
        out: dict[str, Any] = {
            "sf": sf, "tpchgen": version, "server": pg.version(), "extensions": versions, "load": loaded,
            "app_queries": [q.name for q in app], "tpch_queries": [q.name for q in tpch],
            "calls": args.calls, "attempts": attempts, "replay_seconds": attempts[-1]["replay_seconds"],
            "observed": attempts[-1]["observed"], "workload_measured": attempts[-1]["workload"],
            "rounds": args.rounds, "app_executions": args.app_executions, "tpch_executions": args.tpch_executions,
            "sets": results, "postgres_mcp": mcp, "pgmill": arms,
            "loadavg_start": load_start, "loadavg_measuring": loads, "loadavg_end": loadavg(),
        }
        m = results["postgres-mcp"]
        out["targets"] = {k: {"storage_no_larger": results[k]["index_bytes"] <= m["index_bytes"],
                              "sum_p95_10pct_lower": results[k]["sum_p95_ms"] <= 0.9 * m["sum_p95_ms"]}
                          for k in arms}
    finally:
        pg.stop()
    text = render({**out, "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    if args.quick or sf != 1.0:
        where = OUT_DIR / "RESULTS_mixed.quick.md"
        where.write_text(text)
        save_to(OUT_DIR / "results.quick.json", "mixed", out)
    else:
        where = MD
        MD.write_text(text)
        save("mixed", out)
    log(text)
    log(f"written: {where} ({RESULTS_JSON.name if where == MD else 'results.quick.json'})")


# ---------------------------------------------------------------- report


def render(r: dict[str, Any]) -> str:
    mib = 2**20
    s, mc = r["sets"], r["postgres_mcp"]
    arms = list(r["pgmill"])
    cols = ["none", "postgres-mcp", *arms]
    vers = mc["runs"][0]["versions"]
    out = ["# pgmill vs postgres-mcp: a mixed workload at TPC-H SF" + f"{r['sf']:g}, tuned from pg_stat_statements",
           "",
           f"Generated by `bench/bench_mixed.py` on {r['measured_at']}. TPC-H at scale factor {r['sf']:g} "
           f"(`{r['tpchgen']}`, {r['load']['table_bytes'] / mib:,.0f} MiB of tables, primary keys only) in "
           f"PostgreSQL {r['server']} with HypoPG {r['extensions'].get('hypopg')} and pg_stat_statements "
           f"{r['extensions'].get('pg_stat_statements')}. The workload: {len(r['app_queries'])} application "
           f"queries (bench/queries_mixed/) and the TPC-H queries {', '.join(r['tpch_queries'])} "
           "(with literals); pg_stat_statements reset, then each query executed "
           f"{r['calls']} times, interleaved, the app queries cycling through their parameter sets "
           f"({r['replay_seconds']:.0f} s); measured and tuned: {r['workload_measured']}. Both tools tuned from what pg_stat_statements observed. Each index "
           f"set built by the benchmark and measured {r['rounds']} rounds, sets interleaved: app queries 10 "
           f"warm-up runs then {r['app_executions']} timed executions over their parameter sets, TPC-H queries "
           f"1 warm-up then {r['tpch_executions']} timed; medians of the rounds.", "",
           f"- machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, {r['machine']['memory_gb']} GB; "
           f"shared with other work: load average at start {r['loadavg_start']}, while measuring "
           f"{min(r['loadavg_measuring'])}-{max(r['loadavg_measuring'])}, at end {r['loadavg_end']}",
           f"- pgmill {r['machine']['pgmill']} (Python {r['machine']['python']}); postgres-mcp {vers['version']} "
           f"(pglast {vers['pglast']}, mcp {vers['mcp']}; {mc['install_note']})",
           "- postgres-mcp: its MCP tool `analyze_workload_indexes` (`TextPresentation.analyze_workload`) with "
           f"the tool's defaults: DTA, max_index_size_mb 10000, and statements with at least {MCP_MIN_CALLS} calls "
           f"and {MCP_MIN_AVG_MS:g} ms mean time only (hence {r['calls']} executions per query); {MCP_RUNS} calls, "
           f"each a new process; measured: call {mc['measured_call']}",
           f"- pgmill: a project with `tune: {{observed: {OBSERVED}}}` and no declared queries, `run_tune(apply="
           "True)`: advise (HypoPG), create, measure, keep only what helped", "",
           "## What each tool saw", "",
           "| query | calls | mean ms (no index) | postgres-mcp sees it | pgmill: in its workload | pgmill: "
           "runnable (parameters placed) |", "| --- | ---: | ---: | --- | --- | --- |"]
    pw = {w["query"]: w for w in r["pgmill"]["pgmill"]["workload"]}
    for x in r["observed"]:
        w = pw.get(x["query"])
        out.append(f"| {x['query']} | {x['calls']} | {x['mean_ms']:,.2f} | {'yes' if x['seen_by_postgres_mcp'] else 'no'}"
                   f" | {'yes' if w else 'no'} | {'-' if not w else ('yes' if w['runnable'] else 'no')} |")
    out += ["", "## Per query (ms, medians of the rounds)", "",
            "| query | " + " | ".join(f"p95 {c}" for c in cols) + " | " + " | ".join(f"p50 {c}" for c in cols) + " |",
            "| --- |" + " ---: |" * (2 * len(cols))]
    for q in r["app_queries"] + r["tpch_queries"]:
        out.append(f"| {q} | " + " | ".join(f"{s[c]['p95_ms'][q]:,.2f}" for c in cols) + " | "
                   + " | ".join(f"{s[c]['p50_ms'][q]:,.2f}" for c in cols) + " |")
    out += ["", "## Summary", "", "| | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    out.append("| summed p95, ms | " + " | ".join(f"{s[c]['sum_p95_ms']:,.1f}" for c in cols) + " |")
    out.append("| of which app queries | " + " | ".join(f"{s[c]['sum_p95_app_ms']:,.1f}" for c in cols) + " |")
    out.append("| of which TPC-H queries | " + " | ".join(f"{s[c]['sum_p95_tpch_ms']:,.1f}" for c in cols) + " |")
    out.append("| summed p95 per round, ms | " + " | ".join(str(s[c]["sum_p95_rounds"]) for c in cols) + " |")
    out.append("| indexes | " + " | ".join(str(len(s[c]["indexes"])) for c in cols) + " |")
    out.append("| index storage (real), MiB | " + " | ".join(f"{s[c]['index_bytes'] / mib:,.1f}" for c in cols) + " |")
    out.append("| build time, s (median) | " + " | ".join(f"{s[c]['build_seconds']}" for c in cols) + " |")
    m = s["postgres-mcp"]
    out += [""]
    for a in arms:
        p, t = s[a], r["targets"][a]
        met = t["storage_no_larger"] and t["sum_p95_10pct_lower"]
        if not mc["gave_indexes"]:
            out.append(f"- **target of issue 16** ({a}): not comparable: postgres-mcp gave no index set in any call")
            continue
        out.append(f"- **target of issue 16** ({a}): storage no larger than postgres-mcp's AND summed p95 at least "
                   f"10% lower: storage {p['index_bytes'] / mib:,.1f} vs {m['index_bytes'] / mib:,.1f} MiB "
                   f"({'no larger' if t['storage_no_larger'] else 'LARGER'}), summed p95 "
                   f"{p['sum_p95_ms']:,.1f} vs {m['sum_p95_ms']:,.1f} ms ({p['sum_p95_ms'] / m['sum_p95_ms'] - 1:+.1%}): "
                   f"**{'met' if met else 'not met'}**")
    out += ["", "## postgres-mcp", "",
            "Attempts in turn until a call gives indexes; each attempt resets pg_stat_statements and replays the "
            "workload, and pgmill tunes from the last attempt's replay (the same observed input):", ""]
    for att in r["attempts"]:
        out.append(f"- {att['workload']} (replay {att['replay_seconds']} s; statements postgres-mcp's filter lets "
                   f"through: {sum(x['seen_by_postgres_mcp'] for x in att['observed'])} of {len(att['observed'])}):")
        for i, run in enumerate(att["postgres_mcp"]["runs"], 1):
            defs = [x["definition"] for x in run["indexes"]]
            out.append(f"  - call {i} ({run['seconds']} s): {defs if defs else 'nothing'}"
                       + (f"; error: {run['error']}" if run["error"] else "")
                       + (f"; {run['no_recommendations']}" if run["no_recommendations"] else ""))
    out += [f"- last attempt: {mc['distinct_index_sets']} distinct set(s) over {MCP_RUNS} calls; measured: call "
            f"{mc['measured_call']}, real sizes:", "",
            "| index | estimated (postgres-mcp) | real MiB |", "| --- | ---: | ---: |"]
    measured = mc["runs"][mc["measured_call"] - 1]["indexes"]
    for x, real in zip(measured, s["postgres-mcp"]["index_sizes"], strict=False):
        out.append(f"| {x['definition']} | {x['estimated_size']} | {real / mib:,.1f} |")
    for a in arms:
        pm = r["pgmill"][a]
        out += ["", f"## {a}", "",
                f"- tune --apply with `tune: {pm['tune']}`: {len(pm['advisor_set'])} recommended, "
                f"{len(pm['ddls'])} kept; advisor {pm['advisor_seconds']} s ({pm['backend']}, {pm['explains']} "
                f"EXPLAINs, {pm['candidates']} candidates), {pm['tune_apply_seconds']} s in all",
                *([] if not pm.get("sampled") else [
                    f"- `--sample {pm['sampled']['seconds']}` while the whole workload was replayed "
                    f"{pm['sampled']['calls']} times on another connection ({pm['sampled']['replay_seconds']} s): "
                    f"{pm['sampled']['statements']} statements' literal texts from {pm['sampled']['seen']} running "
                    f"statements seen in {pm['sampled']['polls']} looks ({pm['sampled']['parameterized']} sent with "
                    f"parameters, {pm['sampled']['truncated']} truncated); runnable in pgmill's workload: "
                    f"{sum(1 for w in pm['workload'] if w['runnable'])} of {len(pm['workload'])}"]),
                "- the advisor's set (before the measured keep/drop):", "",
                "| index | estimated MiB | real MiB (built by --apply) | serves | lean alternative |",
                "| --- | ---: | ---: | --- | --- |"]
        for x in pm["advisor_set"]:
            real = "-" if x["real_bytes"] is None else f"{x['real_bytes'] / mib:,.1f}"
            out.append(f"| {x['label']} | {x['estimated_bytes'] / mib:,.1f} | {real} | {', '.join(x['queries'])} | "
                       f"{x['lean'] or '-'} |")
        est = sum(x["estimated_bytes"] for x in pm["advisor_set"])
        real_sum = sum(x["real_bytes"] or 0 for x in pm["advisor_set"])
        out += ["", f"- advisor's set: {est / mib:,.1f} MiB estimated, {real_sum / mib:,.1f} MiB real", "",
                "- what --apply did (measured keep/drop); the kept set, real sizes as measured here:", ""]
        for o in pm["outcomes"]:
            size = "" if o["size_bytes"] is None else f", {o['size_bytes'] / mib:,.1f} MiB"
            out.append(f"  - {o['status']}: {o['label']}{size} ({o['reason']})")
        out += ["", "| kept index | real MiB |", "| --- | ---: |"]
        for d, b in zip(s[a]["indexes"], s[a]["index_sizes"], strict=False):
            out.append(f"| {d} | {b / mib:,.1f} |")
    out += ["", "## Rerun", "", "```", "PYTHONPATH=$PWD/src .venv/bin/python bench/bench_mixed.py"
            + (" --width3" if any("max_width" in a for a in arms) else "")
            + (" --full" if any("observed" in a and "whole" in a for a in arms) else "")
            + (" --sampled" if any("sampled" in a for a in arms) else "") + f"  # SF{r['sf']:g}; --quick: SF 0.1 into bench/out/",
            "```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()

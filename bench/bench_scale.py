"""The 10x benchmark: the demo shop at 1x and 10x, plain and partitioned by month, loaded and queried.

    python bench/bench_scale.py [--quick] [--reps N]   # full: 1x and 10x, 3 loads (~15 min on 2 busy cores)
                                                       # quick: 1x and 2x, 1 load, into bench/out/ (3-7 min)
    python bench/bench_scale.py --render               # RESULTS_scale.md again from results_scale.json

Each scale writes the demo project once (pgmill.demo.write_demo_project) and a second project over the same
data whose time-ordered tables are range-partitioned by month: orders by ordered_at, events by occurred_at.
PostgreSQL needs the partition column in the primary key, so there the keys are (order_id, ordered_at) and
(event_id, occurred_at); nothing else differs. Each project is loaded `--reps` times (default 3,
interleaved plain / partitioned) with `pgmill run --json` on a fresh embedded database; then, on the last
load's database, storage per row, `pgmill tune --apply` on bench_tune.py's shop workload (its
queries, reused), every declared query's p95 after it, and EXPLAIN of time-bounded queries (pruning).

Goals (checked here, never in tests): load seconds per GB within 10% between 1x and 10x, peak RSS flat,
every declared query under 100 ms p95 at 10x and within 20% of 1x, a month-bounded query reading one
partition. Figures: bench/RESULTS_scale.md and bench/results_scale.json (which `pgmill validate` reads for
"query performance maintained with 10x data growth"); quick runs go to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tune import QUERIES  # noqa: E402
from common import OUT_DIR, loadavg, log, machine, median, run_project_json  # noqa: E402

BENCH = Path(__file__).resolve().parent
MD = BENCH / "RESULTS_scale.md"
JSON = BENCH / "results_scale.json"
VARIANTS = ("plain", "partitioned")
P95_MS = 100.0
# time-bounded queries for EXPLAIN: one month of orders, one day of events
PRUNING = {
    "orders": "SELECT count(*), sum(total) FROM shop.orders WHERE ordered_at >= date '2024-03-01' "
              "AND ordered_at < date '2024-04-01'",
    "events": "SELECT event_type, count(*) FROM shop.events WHERE occurred_at >= timestamptz '2024-03-10 00:00Z' "
              "AND occurred_at < timestamptz '2024-03-11 00:00Z' GROUP BY event_type",
}


def partitioned_contracts() -> dict[str, str]:
    """The demo's contracts for orders and events, partitioned by month (the key gains the time column)."""
    from pgmill.demo.project import CONTRACTS

    orders = CONTRACTS["orders"].replace(
        "  ordered_at:   {type: date, not_null: true}",
        "  ordered_at:   {type: date, not_null: true, primary_key: true}")
    events = CONTRACTS["events"].replace(
        "  occurred_at: {type: timestamptz, not_null: true}",
        "  occurred_at: {type: timestamptz, not_null: true, primary_key: true}")
    assert orders != CONTRACTS["orders"] and events != CONTRACTS["events"], "the demo's contracts changed"
    part = "partition: {{by: {col}, interval: month, premake: 2}}\n"
    return {"orders": orders + part.format(col="ordered_at"), "events": events + part.format(col="occurred_at")}


def write_projects(scale: float) -> tuple[dict[str, Path], Any]:
    """The plain demo project (with its data) and the partitioned one sharing that data."""
    from pgmill.db.embedded import EmbeddedServer
    from pgmill.demo.project import write_demo_project

    base = OUT_DIR / "scale" / f"shop_{scale:g}x"
    folders = {v: base / v for v in VARIANTS}
    for f in folders.values():
        if f.exists():
            EmbeddedServer(f / ".pgmill").destroy()
            shutil.rmtree(f)
    log(f"scale bench: writing the demo at {scale:g}x ...")
    manifest = write_demo_project(folders["plain"], scale, load_only=True)
    part = folders["partitioned"]
    (part / "contracts").mkdir(parents=True)
    (part / "data").symlink_to(folders["plain"] / "data", target_is_directory=True)
    shutil.copy(folders["plain"] / "pgmill.yaml", part / "pgmill.yaml")
    for f in (folders["plain"] / "contracts").glob("*.yaml"):
        shutil.copy(f, part / "contracts" / f.name)
    for name, text in partitioned_contracts().items():
        (part / "contracts" / f"{name}.yaml").write_text(text)
    return folders, manifest


def fresh_database(folder: Path) -> None:
    """A new embedded database for the project, with schema shop made (parallel pipelines race on it)."""
    from psycopg import sql

    from pgmill.db.embedded import EmbeddedServer
    from pgmill.demo.project import SCHEMA
    from pgmill.project import open_project

    EmbeddedServer(folder / ".pgmill").destroy()
    ctx = open_project(folder)
    ctx.target.ensure_running()
    with ctx.target.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.commit()


def load(folder: Path, source_bytes: int) -> dict[str, Any]:
    """`pgmill run --json` over the whole project, measured: seconds from the first load's start to the last
    one's end (the ledger's), the process's wall time and peak RSS."""
    fresh_database(folder)
    la = loadavg()
    m, loads = run_project_json(folder)
    start = min(datetime.fromisoformat(r["started_at"]) for r in loads)
    end = max(datetime.fromisoformat(r["finished_at"]) for r in loads)
    seconds = (end - start).total_seconds()
    return {"seconds": round(seconds, 3), "wall_seconds": round(m.seconds, 3),
            "seconds_per_gb": round(seconds / (source_bytes / 1e9), 2), "peak_rss_mb": round(m.peak_rss_mb, 1),
            "loadavg_1m": la[0], "rows_read": sum(r["rows_read"] for r in loads),
            "rows_inserted": sum(r["rows_inserted"] for r in loads)}


def storage(conn: Any) -> dict[str, Any]:
    """Rows and bytes (table, indexes, TOAST; over the partitions of a partitioned table) per table."""
    from psycopg import sql

    out = {}
    for (table,) in conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                 " WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                                 " ORDER BY 1").fetchall():
        rows = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("shop", table)))
                   .fetchone()[0])
        nbytes = int(conn.execute("SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
                                  " FROM pg_partition_tree(%s)), pg_total_relation_size(%s::regclass))",
                                  (f"shop.{table}", f"shop.{table}")).fetchone()[0])
        parts = int(conn.execute("SELECT count(*) FROM pg_partition_tree(%s) WHERE isleaf AND level > 0",
                                 (f"shop.{table}",)).fetchone()[0])
        out[table] = {"rows": rows, "bytes": nbytes, "bytes_per_row": round(nbytes / rows, 1) if rows else None,
                      "partitions": parts}
    return out


def _relations(plan: dict[str, Any]) -> list[str]:
    found = [plan["Relation Name"]] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += _relations(child)
    return found


def pruning(conn: Any) -> dict[str, Any]:
    out = {}
    for table, query in PRUNING.items():
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchone()[0][0]["Plan"]
        rels = sorted(set(_relations(plan)))
        started = time.perf_counter()
        conn.execute(query).fetchall()
        out[table] = {"query": query, "relations": rels, "ms": round((time.perf_counter() - started) * 1000, 2)}
    return out


def tune(folder: Path) -> dict[str, Any]:
    """bench_tune.py's shop workload declared in the project, `tune --apply`, each query's p95 after."""
    from pgmill.config.tune import TuneConfig
    from pgmill.project import open_project
    from pgmill.tune.run import run_tune

    (folder / "queries").mkdir(exist_ok=True)
    for f in sorted(QUERIES.glob("*.sql")):
        shutil.copy(f, folder / "queries" / f.name)
    ctx = open_project(folder)
    with ctx.target.connect(autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    la = loadavg()
    started = time.perf_counter()
    try:
        report = run_tune(ctx, cfg=TuneConfig(observed=0, executions=30), apply=True)
    except Exception as e:  # noqa: BLE001 - recorded as the figure: tuning a partitioned table may not be done yet
        return {"error": f"{type(e).__name__}: {e}", "loadavg_1m": la[0]}
    applied = report.applied
    if applied is None:
        return {"error": "tune --apply measured nothing", "loadavg_1m": la[0]}
    p95 = {name: round(a.p95_ms, 2) for name, a in sorted(applied.after.items())}
    worst = max(p95, key=lambda k: p95[k])
    return {"p95_after_ms": p95, "p95_before_ms": {n: round(b.p95_ms, 2) for n, b in sorted(applied.before.items())},
            "worst_ms": p95[worst], "worst_query": worst, "all_under_100ms": all(v < P95_MS for v in p95.values()),
            "kept": [o.label for o in applied.outcomes if o.status == "kept"],
            "not_kept": [f"{o.label}: {o.status} ({o.reason})" for o in applied.outcomes if o.status != "kept"],
            "seconds": round(time.perf_counter() - started, 1), "loadavg_1m": la[0]}


def run_scale(scale: float, reps: int) -> dict[str, Any]:
    from pgmill.project import open_project

    folders, manifest = write_projects(scale)
    loads: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for rep in range(reps):
        for v in VARIANTS:
            log(f"scale bench: {scale:g}x {v}, load {rep + 1} of {reps} ...")
            loads[v].append(load(folders[v], manifest.bytes))
            log(f"  {loads[v][-1]['seconds']} s, {loads[v][-1]['peak_rss_mb']} MB")
    variants: dict[str, Any] = {}
    for v in VARIANTS:
        ctx = open_project(folders[v])
        with ctx.target.connect(autocommit=True) as conn:
            server = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            tables = storage(conn)
            explain = pruning(conn)
        log(f"scale bench: {scale:g}x {v}, tune --apply ...")
        tuned = tune(folders[v])
        ls = loads[v]
        variants[v] = {
            "loads": ls, "seconds_median": median([x["seconds"] for x in ls]),
            "seconds_per_gb_median": median([x["seconds_per_gb"] for x in ls]),
            "peak_rss_mb_median": median([x["peak_rss_mb"] for x in ls]),
            "loadavg_1m_median": median([x["loadavg_1m"] for x in ls]),
            "tables": tables, "bytes_per_row": round(sum(t["bytes"] for t in tables.values())
                                                     / sum(t["rows"] for t in tables.values()), 1),
            "pruning": explain, "tune": tuned}
    return {"scale": scale, "server": server, "source_bytes": manifest.bytes, "source_rows": manifest.rows,
            "variants": variants}


def goals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each goal per variant, comparing the largest scale with the first."""
    small, big = results[0], results[-1]
    out: dict[str, Any] = {}
    for v in VARIANTS:
        s, b = small["variants"][v], big["variants"][v]
        spg = b["seconds_per_gb_median"] / s["seconds_per_gb_median"] - 1
        rss = b["peak_rss_mb_median"] / s["peak_rss_mb_median"] - 1
        g: dict[str, Any] = {"seconds_per_gb_change": round(spg, 4), "seconds_per_gb_within_10pct": abs(spg) <= 0.10,
                             "peak_rss_change": round(rss, 4), "peak_rss_flat_within_10pct": abs(rss) <= 0.10}
        if "p95_after_ms" in s["tune"] and "p95_after_ms" in b["tune"]:
            ratio = {q: round(b["tune"]["p95_after_ms"][q] / max(s["tune"]["p95_after_ms"][q], 1e-9), 2)
                     for q in b["tune"]["p95_after_ms"] if q in s["tune"]["p95_after_ms"]}
            g["p95_ratio_to_1x"] = ratio
            g["p95_under_100ms"] = b["tune"]["all_under_100ms"]
            g["p95_within_20pct"] = all(r <= 1.20 for r in ratio.values())
        if v == "partitioned":
            g["one_partition_per_month_query"] = len(b["pruning"]["orders"]["relations"]) == 1
        out[v] = g
    return out


def headline(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What `pgmill validate` reads: the worst declared p95 at 10x over the variants tuned there."""
    at10 = [r for r in results if r["scale"] == 10]
    if not at10:
        return None
    tuned = [(v, t["tune"]) for v, t in at10[0]["variants"].items() if "worst_ms" in t["tune"]]
    if not tuned:
        return None
    v, t = max(tuned, key=lambda x: x[1]["worst_ms"])
    return {"scale": 10, "worst_p95_ms": t["worst_ms"], "query": t["worst_query"], "variant": v,
            "queries": len(t["p95_after_ms"]), "threshold_ms": P95_MS,
            "worst_p95_ms_by_variant": {name: x["worst_ms"] for name, x in tuned}}


def render(doc: dict[str, Any]) -> str:
    m, results, g = doc["machine"], doc["scales"], doc["goals"]
    names = " and ".join(f"{r['scale']:g}x" for r in results)
    out = ["# Scaling: the demo shop at " + names + ", plain and partitioned by month", "",
           f"Generated by `bench/bench_scale.py{' --quick' if doc['quick'] else ''}` on {doc['measured_at']}. "
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Python {m['python']}, "
           f"pgmill {m['pgmill']}, psycopg {m['psycopg']}, polars {m['polars']}, pyarrow {m['pyarrow']}; "
           f"PostgreSQL {results[0]['server']} (embedded). The machine is shared: the 1-minute load average is "
           "beside each figure.", "",
           "Partitioned: orders by `ordered_at` and events by `occurred_at`, one partition a month "
           "(`partition: {by: ..., interval: month, premake: 2}`); their primary keys become "
           "(order_id, ordered_at) and (event_id, occurred_at), as PostgreSQL requires. Same data, same run.", "",
           f"## Loading (`pgmill run`, median of {len(results[0]['variants']['plain']['loads'])}, each on a fresh "
           "database)", "",
           "| scale | variant | source | rows loaded | seconds | s per GB | peak RSS | load avg | storage per row |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for v, x in r["variants"].items():
            out.append(f"| {r['scale']:g}x | {v} | {r['source_bytes'] / 1e6:.0f} MB | "
                       f"{x['loads'][-1]['rows_inserted']:,} | {x['seconds_median']:.1f} | "
                       f"{x['seconds_per_gb_median']:.0f} | {x['peak_rss_mb_median']:.0f} MB | "
                       f"{x['loadavg_1m_median']} | {x['bytes_per_row']:.0f} B |")
    out += ["", "Each load (seconds, peak RSS MB, load average):", ""]
    for r in results:
        for v, x in r["variants"].items():
            each = "; ".join(f"{a['seconds']} s, {a['peak_rss_mb']:.0f} MB, {a['loadavg_1m']}" for a in x["loads"])
            out.append(f"- {r['scale']:g}x {v}: {each}")
    out += ["", "## Storage per table (after the last load)", "",
            "| scale | variant | table | rows | MB | bytes per row | partitions |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        for v, x in r["variants"].items():
            out += [f"| {r['scale']:g}x | {v} | {t} | {s['rows']:,} | {s['bytes'] / 2**20:.1f} | {s['bytes_per_row']} | "
                    f"{s['partitions']} |" for t, s in x["tables"].items()]
    out += ["", "## Declared queries after `pgmill tune --apply` (bench_tune.py's shop workload, p95 ms over 30 "
            "executions)", ""]
    cols = [(r, v) for r in results for v in VARIANTS]
    queries = sorted({q for r, v in cols for q in r["variants"][v]["tune"].get("p95_after_ms", {})})
    out += ["| query | " + " | ".join(f"{r['scale']:g}x {v}" for r, v in cols) + " |",
            "| --- |" + " ---: |" * len(cols)]
    for q in queries:
        out.append(f"| {q} | " + " | ".join(str(r["variants"][v]["tune"].get("p95_after_ms", {}).get(q, "-"))
                                            for r, v in cols) + " |")
    out.append("")
    for r, v in cols:
        t = r["variants"][v]["tune"]
        if "error" in t:
            out.append(f"- {r['scale']:g}x {v}: tune --apply failed: {t['error']} (load avg {t['loadavg_1m']})")
        else:
            out.append(f"- {r['scale']:g}x {v}: worst {t['worst_ms']} ms ({t['worst_query']}); kept "
                       f"{len(t['kept'])} indexes: {', '.join(t['kept']) or 'none'}; tune --apply {t['seconds']} s "
                       f"(load avg {t['loadavg_1m']})")
    out += ["", "## Partition pruning (EXPLAIN of a time-bounded query, after the last load)", ""]
    for r in results:
        for v, x in r["variants"].items():
            for p in x["pruning"].values():
                out.append(f"- {r['scale']:g}x {v}, `{p['query']}`: reads {', '.join(p['relations'])} "
                           f"({p['ms']} ms once)")
    big = results[-1]["scale"]
    out += ["", f"## Goals ({big:g}x against {results[0]['scale']:g}x)", "",
            "| goal | plain | partitioned |", "| --- | --- | --- |"]

    def cell(v: str, key: str, change: str | None = None) -> str:
        x = g[v].get(key)
        if x is None:
            return "not measured"
        return ("met" if x else "NOT met") + (f" ({g[v][change]:+.1%})" if change else "")

    out += [f"| load seconds per GB within 10% | {cell('plain', 'seconds_per_gb_within_10pct', 'seconds_per_gb_change')}"
            f" | {cell('partitioned', 'seconds_per_gb_within_10pct', 'seconds_per_gb_change')} |",
            f"| peak RSS flat (within 10%) | {cell('plain', 'peak_rss_flat_within_10pct', 'peak_rss_change')} | "
            f"{cell('partitioned', 'peak_rss_flat_within_10pct', 'peak_rss_change')} |",
            f"| every declared query p95 < 100 ms at {big:g}x | {cell('plain', 'p95_under_100ms')} | "
            f"{cell('partitioned', 'p95_under_100ms')} |",
            f"| every declared query p95 within 20% of {results[0]['scale']:g}x | {cell('plain', 'p95_within_20pct')} | "
            f"{cell('partitioned', 'p95_within_20pct')} |",
            f"| a month of orders reads one partition | - | {cell('partitioned', 'one_partition_per_month_query')} |"]
    for v in VARIANTS:
        if "p95_ratio_to_1x" in g[v]:
            over = {q: r for q, r in g[v]["p95_ratio_to_1x"].items() if r > 1.2}
            out.append("")
            out.append(f"{v}: p95 at {big:g}x over {results[0]['scale']:g}x above 1.2: "
                       + (", ".join(f"{q} {r}x" for q, r in sorted(over.items())) or "none"))
    kept = {v: len(results[-1]["variants"][v]["tune"].get("kept", [])) for v in VARIANTS}
    out += ["", f"Tuning: at {big:g}x, `tune --apply` kept {kept['plain']} indexes on the plain project and "
            f"{kept['partitioned']} on the partitioned one. A partitioned table is one table to the advisor (its "
            "partitions' rows, size and inherited statistics); each index it keeps there is built ON ONLY the "
            "parent, CONCURRENTLY on each partition, then attached (README, Query tuning with proof)."]
    out += [f"\n{n}" for n in doc.get("notes", [])]
    h = doc.get("query_p95_at_10x")
    if h:
        by = ", ".join(f"{v} {x} ms" for v, x in sorted(h.get("worst_p95_ms_by_variant", {}).items()))
        out += ["", f"Read by `pgmill validate` (query performance at 10x): worst declared p95 at 10x "
                f"{h['worst_p95_ms']} ms ({h['query']}, {h['variant']}; worst per variant: {by}), threshold "
                f"{h['threshold_ms']:g} ms."]
    out += ["", "## Rerun", "", "```sh",
            "flock /tmp/pgmill-bench.lock .venv/bin/python bench/bench_scale.py            # 1x and 10x, 3 loads each",
            "flock /tmp/pgmill-bench.lock .venv/bin/python bench/bench_scale.py --quick    # 1x and 2x, 1 load, into bench/out/",
            "```"]
    return "\n".join(out) + "\n"


def keep_memory_section(text: str) -> str:
    """`text` with bench_memory.py's section of the current RESULTS_scale.md kept, before its Rerun."""
    old = MD.read_text() if MD.exists() else ""
    start = old.find("## Peak memory by phase")
    if start < 0:
        return text
    end = old.find("\n## ", start + 1)
    section = old[start:end + 1] if end >= 0 else old[start:] + "\n"
    at = text.find("## Rerun")
    return text[:at] + section + "\n" + text[at:] if at >= 0 else text + "\n" + section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="scales 1 and 2, results into bench/out/")
    ap.add_argument("--reps", type=int, default=None, help="loads per variant and scale, median reported "
                    "(default 3; --quick: 1)")
    ap.add_argument("--render", action="store_true", help="rewrite RESULTS_scale.md from results_scale.json")
    args = ap.parse_args()
    if args.render:
        doc = json.loads(JSON.read_text())
        doc.update(goals=goals(doc["scales"]), query_p95_at_10x=headline(doc["scales"]))
        JSON.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        MD.write_text(keep_memory_section(render(doc)))
        return
    scales = [1.0, 2.0] if args.quick else [1.0, 10.0]
    reps = args.reps or (1 if args.quick else 3)
    results = [run_scale(s, reps) for s in scales]
    doc = {"measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "quick": args.quick,
           "scales": results, "goals": goals(results), "query_p95_at_10x": headline(results)}
    text = keep_memory_section(render(doc))
    md, js = (OUT_DIR / "RESULTS_scale.quick.md", OUT_DIR / "results_scale.quick.json") if args.quick else (MD, JSON)
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    md.write_text(text)
    print(text)
    log(f"written: {md}, {js}")


if __name__ == "__main__":
    main()

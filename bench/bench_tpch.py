"""TPC-H benchmark of the index advisor: estimated workload cost after tuning as a share of the untuned cost.

    python bench/bench_tpch.py [--quick] [--sf N]    # quick: scale factor 0.1; full: scale factor 1

What it does, every run from scratch:
  1. data: `tpchgen-cli csv -s SF` from the PyPI package tpchgen-cli, installed into its own venv under
     bench/out/tpch-venv (not a project dependency; created here when missing); the files are cached in
     bench/out/tpch-data/sfN;
  2. a fresh PostgreSQL 15 cluster (/usr/lib/postgresql/15/bin, HypoPG from the Debian package
     postgresql-15-hypopg) under bench/out/tpch/pg15; the eight tables loaded with COPY, primary keys
     only, no secondary index, then VACUUM ANALYZE;
  3. the workload: bench/queries_tpch/*.sql, the 19 TPC-H queries other than Q2, Q17 and Q20, written
     from the public specification with its validation substitution parameters;
  4. pgmill's advisor (`advise_workload`, HypoPG what-if costing) at storage budgets of 0.25, 0.5, 1 and 2
     times the data size and unlimited; the figure is sum(EXPLAIN total cost) with the recommended indexes
     over the same sum with the primary keys only, and the advisor's runtime; the curve is drawn beside the
     Extend algorithm's published figure (from the paper, not measured here).

Index width. Three variants are measured and all are reported:
  - "strict3" (the headline): at most 3 columns in the whole index, keys and INCLUDE together
    (`tune.max_width: 3`, width as the index selection literature counts it), every budget;
  - "strict2": at most 2 columns, (a, b) or (a) INCLUDE (b), every budget;
  - "default": `max_columns=2` without `max_width`: up to 2 key columns plus up to 4 INCLUDE columns
    (unlimited budget only).

Figures go to bench/RESULTS_tpch.md and bench/results.json (section "tpch"); quick runs to bench/out/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT_DIR, RESULTS_JSON, loadavg, log, save, save_to  # noqa: E402

BENCH = Path(__file__).resolve().parent
QUERIES = BENCH / "queries_tpch"
MD = BENCH / "RESULTS_tpch.md"
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
TPCH_VENV = OUT_DIR / "tpch-venv"
BUDGETS = ["0.25x", "0.5x", "1x", "2x", "unlimited"]
WIDTHS = (3, 2)  # strict widths measured at every budget; the first is the headline
TARGET = 0.69  # issue 16: the estimated workload cost at or below 69% of no-index without a storage budget
REFERENCE = "published results for the Extend algorithm reach 69% at scale factor 10 with an unlimited budget"
# Extend's published figure (Schlosser, Kossmann, Boissier, ICDE 2019), from the paper, not measured here:
# TPC-H at scale factor 10 reaching about 69% of the no-index workload cost at its largest budgets
EXTEND_PUBLISHED = [("largest budgets (SF10)", 0.69)]

TABLES = {
    "region": "r_regionkey integer NOT NULL, r_name char(25) NOT NULL, r_comment varchar(152)",
    "nation": "n_nationkey integer NOT NULL, n_name char(25) NOT NULL, n_regionkey integer NOT NULL, "
              "n_comment varchar(152)",
    "part": "p_partkey integer NOT NULL, p_name varchar(55) NOT NULL, p_mfgr char(25) NOT NULL, "
            "p_brand char(10) NOT NULL, p_type varchar(25) NOT NULL, p_size integer NOT NULL, "
            "p_container char(10) NOT NULL, p_retailprice numeric(15,2) NOT NULL, p_comment varchar(23) NOT NULL",
    "supplier": "s_suppkey integer NOT NULL, s_name char(25) NOT NULL, s_address varchar(40) NOT NULL, "
                "s_nationkey integer NOT NULL, s_phone char(15) NOT NULL, s_acctbal numeric(15,2) NOT NULL, "
                "s_comment varchar(101) NOT NULL",
    "partsupp": "ps_partkey integer NOT NULL, ps_suppkey integer NOT NULL, ps_availqty integer NOT NULL, "
                "ps_supplycost numeric(15,2) NOT NULL, ps_comment varchar(199) NOT NULL",
    "customer": "c_custkey integer NOT NULL, c_name varchar(25) NOT NULL, c_address varchar(40) NOT NULL, "
                "c_nationkey integer NOT NULL, c_phone char(15) NOT NULL, c_acctbal numeric(15,2) NOT NULL, "
                "c_mktsegment char(10) NOT NULL, c_comment varchar(117) NOT NULL",
    "orders": "o_orderkey integer NOT NULL, o_custkey integer NOT NULL, o_orderstatus char(1) NOT NULL, "
              "o_totalprice numeric(15,2) NOT NULL, o_orderdate date NOT NULL, o_orderpriority char(15) NOT NULL, "
              "o_clerk char(15) NOT NULL, o_shippriority integer NOT NULL, o_comment varchar(79) NOT NULL",
    "lineitem": "l_orderkey integer NOT NULL, l_partkey integer NOT NULL, l_suppkey integer NOT NULL, "
                "l_linenumber integer NOT NULL, l_quantity numeric(15,2) NOT NULL, "
                "l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL, "
                "l_tax numeric(15,2) NOT NULL, l_returnflag char(1) NOT NULL, l_linestatus char(1) NOT NULL, "
                "l_shipdate date NOT NULL, l_commitdate date NOT NULL, l_receiptdate date NOT NULL, "
                "l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL, l_comment varchar(44) NOT NULL",
}
PRIMARY_KEYS = {"region": "r_regionkey", "nation": "n_nationkey", "part": "p_partkey", "supplier": "s_suppkey",
                "partsupp": "ps_partkey, ps_suppkey", "customer": "c_custkey", "orders": "o_orderkey",
                "lineitem": "l_orderkey, l_linenumber"}


# ---------------------------------------------------------------- a PostgreSQL 15 cluster with HypoPG


class Pg15:
    """A throwaway PostgreSQL 15 cluster on a Unix socket (run as an unprivileged user when we are root)."""

    def __init__(self, base: Path, shared_buffers: str = "1GB") -> None:
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.log = base / "postgres.log"
        self.shared_buffers = shared_buffers
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("embedded_postgres", "postgres"):
                try:
                    pwd.getpwnam(name)
                    self.user = name
                    break
                except KeyError:
                    continue
            if self.user is None:
                subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                                "embedded_postgres"], check=True)
                self.user = "embedded_postgres"

    def _run(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd="/tmp",
                              user=self.user, **kw)

    def _own(self, path: Path) -> None:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        for p in [path, *path.parents]:  # the server user must be able to reach its folder
            mode = p.stat().st_mode
            if os.geteuid() == 0 and mode & 0o011 != 0o011:
                p.chmod(mode | 0o011)

    def fresh(self) -> Pg15:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        for d in (self.data, self.sock):
            d.mkdir(mode=0o700)
            self._own(d)
        self._run([str(PG15_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                   "--encoding=UTF8", "--locale=C"])
        (self.data / "postgresql.auto.conf").write_text(
            "listen_addresses = ''\n"
            f"shared_buffers = {self.shared_buffers}\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_wal_size = 8GB\nmaintenance_work_mem = 512MB\n"
            "shared_preload_libraries = 'pg_stat_statements'\ntimezone = 'UTC'\n"
            "track_activity_query_size = 4096\n")  # whole TPC-H texts in pg_stat_activity (tune --sample)
        self.log.touch()
        self._own(self.log)
        self._run([str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                   "-o", f"-k {self.sock}", "start"], timeout=180)
        return self

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.sock}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self._run([str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], timeout=120)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            return str(c.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


# ---------------------------------------------------------------- data


def tpchgen(sf: float) -> tuple[Path, str]:
    """CSV files of all eight tables at scale factor `sf` (cached), and the generator's version."""
    exe = TPCH_VENV / "bin" / "tpchgen-cli"
    if not exe.exists():
        log("tpch bench: installing tpchgen-cli into its own venv ...")
        subprocess.run([sys.executable, "-m", "venv", str(TPCH_VENV)], check=True)
        subprocess.run([str(TPCH_VENV / "bin" / "pip"), "install", "-q", "tpchgen-cli"], check=True)
    version = subprocess.run([str(exe), "-V"], check=True, capture_output=True, text=True).stdout.strip()
    out = OUT_DIR / "tpch-data" / f"sf{sf:g}"
    if not all((out / f"{t}.csv").exists() for t in TABLES):
        shutil.rmtree(out, ignore_errors=True)
        log(f"tpch bench: generating SF {sf:g} ...")
        subprocess.run([str(exe), "csv", "-s", f"{sf:g}", f"--output-dir={out}"], check=True)
    return out, version


def load(url: str, data: Path) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for t, cols in TABLES.items():
            # column definitions are the fixed TPC-H DDL of this file (TABLES), not input
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(t), sql.SQL(cols)))  # type: ignore[arg-type]
            copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(sql.Identifier(t))
            with conn.cursor() as cur, cur.copy(copy) as cp, \
                    open(data / f"{t}.csv", "rb") as f:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
        for t, pk in PRIMARY_KEYS.items():
            keys = sql.SQL(", ").join(sql.Identifier(k.strip()) for k in pk.split(","))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(sql.Identifier(t), keys))
        conn.execute("VACUUM ANALYZE")
        # a VACUUM right after the load leaves the last-loaded tables out of the visibility map (orders and
        # customer with no all-visible page, lineitem 68-78%, on three loads; a second VACUUM sets them): the
        # planner then costs index-only scans as heap reads, and the advisor's estimate moved by 5 points.
        # VACUUM again until the map covers the tables, as autovacuum would by the time anyone tunes
        share_sql = ("SELECT sum(relallvisible)::float8 / greatest(sum(relpages), 1) FROM pg_class "
                     "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
        vacuums = 1
        while (share := float(conn.execute(share_sql).fetchone()[0])) < 0.99 and vacuums < 4:  # type: ignore[index]
            conn.execute("VACUUM")
            vacuums += 1
        rows = {t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])  # type: ignore[index]
                for t in TABLES}
        heap = int(conn.execute("SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' AND "
                                "c.relnamespace = 'public'::regnamespace").fetchone()[0])  # type: ignore[index]
        pk = int(conn.execute("SELECT sum(pg_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'i' AND "
                              "c.relnamespace = 'public'::regnamespace").fetchone()[0])  # type: ignore[index]
    return {"rows": rows, "table_bytes": heap, "pk_index_bytes": pk, "load_seconds": round(time.perf_counter() - started, 1),
            "all_visible_share": round(share, 4), "vacuums": vacuums}


def loaded_cluster(sf: float, base: Path, who: str) -> tuple[Pg15, str, dict[str, Any], str]:
    """TPC-H at `sf` loaded into a fresh PostgreSQL 15 under base/pg15: (cluster, URL, load facts, tpchgen's
    version). The caller stops the cluster; a failed load stops it here."""
    data, version = tpchgen(sf)
    pg = Pg15(base / "pg15").fresh()
    try:
        url = pg.create_db("tpch")
        log(f"{who}: loading SF {sf:g} into PostgreSQL {pg.version()} ...")
        loaded = load(url, data)
        log(f"{who}: loaded in {loaded['load_seconds']} s")
    except BaseException:
        pg.stop()
        raise
    return pg, url, loaded, version


# ---------------------------------------------------------------- advisor


def workload_project(dest: Path) -> Path:
    """A folder holding queries/ (the TPC-H query files), as `pgmill tune` reads a project's workload."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "queries").mkdir(parents=True)
    for f in sorted(QUERIES.glob("q*.sql")):
        shutil.copy(f, dest / "queries" / f.name)
    return dest


def config(variant: str) -> Any:
    from pgmill.config.tune import TuneConfig

    if variant.startswith("strict"):
        width = int(variant.removeprefix("strict"))
        return TuneConfig(observed=0, max_columns=width, max_width=width)
    return TuneConfig(observed=0, max_columns=2, max_width=None)


def run_advisor(url: str, project: Path, variant: str, budgets: list[str]) -> list[dict[str, Any]]:
    import psycopg

    from pgmill.tune.advisor import advise_workload, prepare_workload

    out = []
    cfg = config(variant)
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        catalog, workload = prepare_workload(conn, project, cfg)
        prep = time.perf_counter() - started
        unresolved = {q.name: sorted(map(str, q.analysis.unresolved)) for q in workload
                      if q.analysis and q.analysis.unresolved}
        for b in budgets:
            load = loadavg()[0]
            adv = advise_workload(conn, catalog, workload, cfg, budget=b, backend="hypopg")
            before, after = sum(adv.cost_before.values()), sum(adv.cost_after.values())
            widths = [len(r.candidate.keys) + len(r.candidate.include) for r in adv.recommendations]
            rec = {
                "variant": variant, "budget": b, "budget_bytes": adv.budget_bytes, "data_bytes": adv.data_bytes,
                "cost_before": round(before, 1), "cost_after": round(after, 1),
                "cost_share": round(after / before, 4), "indexes": len(adv.recommendations),
                "index_bytes_estimated": sum(r.size_bytes for r in adv.recommendations),
                "max_index_width": max(widths, default=0),
                "advisor_seconds": round(adv.seconds + prep, 2), "explains": adv.explains,
                "candidates": adv.candidates, "backend": adv.backend, "loadavg_1m": load,
                "recommendations": [{"label": r.label, "size_bytes": r.size_bytes, "queries": r.queries}
                                    for r in adv.recommendations],
                "per_query": {q.name: [round(adv.cost_before[q.name], 1), round(adv.cost_after[q.name], 1)]
                              for q in adv.workload},
                "unresolved_columns": unresolved,
            }
            log(f"tpch bench: {variant} budget {b}: {rec['cost_share']:.1%} of the untuned cost, "
                f"{rec['indexes']} indexes, {rec['index_bytes_estimated'] / 2**20:.0f} MB, "
                f"{rec['advisor_seconds']} s ({rec['explains']} EXPLAINs)")
            out.append(rec)
    return out


def verify_real(url: str, rec: dict[str, Any], project: Path) -> dict[str, Any]:
    """Build the recommended indexes for real and take the workload's EXPLAIN cost again (and real sizes)."""
    import psycopg
    from psycopg import sql

    from pgmill.tune.advisor import advise_workload, prepare_workload
    from pgmill.tune.whatif import explain_json

    cfg = config(rec["variant"])
    with psycopg.connect(url, autocommit=True) as conn:
        catalog, workload = prepare_workload(conn, project, cfg)
        adv = advise_workload(conn, catalog, workload, cfg, budget=rec["budget"], backend="hypopg")
        sizes = []
        started = time.perf_counter()
        for r in adv.recommendations:
            conn.execute(r.candidate.ddl(name=f"bench_{r.name}"))
            real = int(conn.execute("SELECT pg_relation_size(%s::regclass)", (f"bench_{r.name}",))
                       .fetchone()[0])  # type: ignore[index]
            sizes.append({"label": r.label, "estimated": r.size_bytes, "real": real})
        build = time.perf_counter() - started  # no ANALYZE: the base costs were taken with these statistics
        real_cost = {q.name: float(explain_json(conn, q, [])["Total Cost"]) for q in workload}
        for r in adv.recommendations:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"bench_{r.name}")))
    after = sum(real_cost.values())
    return {"variant": rec["variant"], "budget": rec["budget"], "cost_after_real_indexes": round(after, 1),
            "cost_share_real_indexes": round(after / rec["cost_before"], 4), "build_seconds": round(build, 1),
            "sizes": sizes, "index_bytes_real": sum(s["real"] for s in sizes),
            "index_bytes_estimated": sum(s["estimated"] for s in sizes)}


# ---------------------------------------------------------------- report

HEADLINE = f"strict{WIDTHS[0]}"


def chart(r: dict[str, Any]) -> list[str]:
    """An ASCII chart of cost share per budget, one bar per strict width, Extend's published figure beside."""
    out = ["```", "cost share of no-index (lower is better), 50% .. 100%"]
    bar = lambda share: "#" * max(0, round((share - 0.5) * 100))  # noqa: E731 - one char per point above 50%
    for b in BUDGETS:
        for w in WIDTHS:
            x = next(x for x in r["runs"] if x["variant"] == f"strict{w}" and x["budget"] == b)
            out.append(f"{b:>9} w{w} |{bar(x['cost_share']):<50}| {x['cost_share']:.1%}")
    for label, share in EXTEND_PUBLISHED:
        out.append(f"{'Extend':>9}    |{bar(share):<50}| about {share:.0%}: {label}, published, not measured here")
    out.append(f"{'target':>9}    |{'.' * round((TARGET - 0.5) * 100) + '^':<50}| {TARGET:.0%}")
    return [*out, "```"]


def render(r: dict[str, Any]) -> str:
    mb = 2**20
    out = ["# TPC-H index advisor benchmark", "",
           f"Generated by `bench/bench_tpch.py` on {r['measured_at']}: TPC-H at scale factor {r['sf']:g} "
           f"(`{r['tpchgen']}`), PostgreSQL {r['server']} with HypoPG {r['hypopg']}, primary keys only, no "
           "secondary indexes; the 19 queries other than Q2, Q17 and Q20 with the specification's validation "
           f"parameters (bench/queries_tpch/); index width at most {' or '.join(map(str, WIDTHS))}; pgmill's advisor with HypoPG what-if "
           "costing. The figure is the *estimated* workload cost: the sum of EXPLAIN total cost over the 19 "
           "queries with the recommended (hypothetical) indexes, as a share of the same sum with the primary "
           "keys only. Nothing is executed.", "",
           f"- machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, {r['machine']['memory_gb']} GB; "
           f"shared with other work, load average at start {r['loadavg_start']}, at end {r['loadavg_end']}",
           f"- pgmill {r['machine']['pgmill']}, Python {r['machine']['python']}, psycopg {r['machine']['psycopg']}",
           f"- data: {sum(r['load']['rows'].values()):,} rows, {r['load']['table_bytes'] / mb:.0f} MB of tables "
           f"(+ {r['load']['pk_index_bytes'] / mb:.0f} MB of primary keys), loaded in {r['load']['load_seconds']} s, "
           f"then VACUUM ANALYZE and {r['load'].get('vacuums', 1) - 1} more VACUUM: "
           f"{r['load'].get('all_visible_share', 0):.0%} of the table pages all-visible (index-only scans are costed "
           "as such); "
           f"the budgets are multiples of the advisor's data size, {r['data_bytes'] / mb:.0f} MB "
           "(pg_table_size of the tables the workload reads)",
           f"- reference for the reader: {REFERENCE}; that setup (scale, PostgreSQL version, planner settings, "
           "base configuration) is not this one, so the figures compare only roughly", ""]
    head = next(x for x in r["runs"] if x["variant"] == HEADLINE and x["budget"] == "unlimited")
    out += [f"**Target of issue 16** (estimated workload cost at or below {TARGET:.0%} of no-index without a storage "
            f"budget): {head['cost_share']:.1%} at width {WIDTHS[0]}, unlimited budget: "
            f"{'met' if head['cost_share'] <= TARGET else 'NOT met'}.", ""]
    out += ["## Cost against budget, beside Extend's published figure", "",
            "| budget | budget MB | " + " | ".join(f"width {w}: cost share | width {w}: index MB" for w in WIDTHS)
            + " | Extend (paper, SF10; not measured here) |",
            "| --- | ---: | " + " | ".join("---: | ---:" for _w in WIDTHS) + " | ---: |"]
    for b in BUDGETS:
        xs = [next(x for x in r["runs"] if x["variant"] == f"strict{w}" and x["budget"] == b) for w in WIDTHS]
        bmb = "-" if xs[0]["budget_bytes"] is None else f"{xs[0]['budget_bytes'] / mb:.0f}"
        ext = f"about {EXTEND_PUBLISHED[0][1]:.0%}" if b == "unlimited" else ""
        out.append(f"| {b} | {bmb} | " + " | ".join(f"{x['cost_share']:.1%} | {x['index_bytes_estimated'] / mb:.0f}"
                                                  for x in xs) + f" | {ext} |")
    out += ["", "Extend's figure is from the paper (Schlosser, Kossmann, Boissier, \"Efficient Scalable Multi-Attribute "
            "Index Selection Using Recursive Strategies\", ICDE 2019: TPC-H at scale factor 10, about 69% of the "
            "no-index workload cost at its largest budgets), not measured here; its setup differs (scale, "
            "PostgreSQL version, planner settings, width limits), so the comparison is rough.", "", *chart(r)]
    for w in WIDTHS:
        out += ["", f"## Estimated workload cost after tuning (strict width: at most {w} columns per index, "
                "keys + INCLUDE)", "",
                "| budget | budget MB | cost share | indexes | index MB (estimated) | advisor s | EXPLAINs | load 1m |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for x in r["runs"]:
            if x["variant"] != f"strict{w}":
                continue
            bmb = "-" if x["budget_bytes"] is None else f"{x['budget_bytes'] / mb:.0f}"
            out.append(f"| {x['budget']} | {bmb} | {x['cost_share']:.1%} | {x['indexes']} | "
                       f"{x['index_bytes_estimated'] / mb:.0f} | {x['advisor_seconds']} | {x['explains']} | "
                       f"{x['loadavg_1m']} |")
    default = [x for x in r["runs"] if x["variant"] == "default"]
    if default:
        out += ["", "## Wider: `max_columns=2` (2 key columns) plus up to 4 INCLUDE columns, no `max_width`", "",
                "| budget | cost share | indexes | widest index (columns) | index MB (estimated) | advisor s |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for x in default:
            out.append(f"| {x['budget']} | {x['cost_share']:.1%} | {x['indexes']} | {x['max_index_width']} | "
                       f"{x['index_bytes_estimated'] / mb:.0f} | {x['advisor_seconds']} |")
    if r.get("verify"):
        v = r["verify"]
        out += ["", f"## Check with real indexes ({v['variant']}, budget {v['budget']})", "",
                f"The same recommendations built for real: estimated cost share {v['cost_share_real_indexes']:.1%} "
                f"(HypoPG said {next(x['cost_share'] for x in r['runs'] if x['variant'] == v['variant'] and x['budget'] == v['budget']):.1%}); "
                f"index storage {v['index_bytes_real'] / mb:.0f} MB real vs {v['index_bytes_estimated'] / mb:.0f} MB "
                f"estimated; built in {v['build_seconds']} s.", "",
                "| index | estimated MB | real MB |", "| --- | ---: | ---: |"]
        for s in v["sizes"]:
            out.append(f"| {s['label']} | {s['estimated'] / mb:.1f} | {s['real'] / mb:.1f} |")
    unl = head
    out += ["", f"## Per query, width {WIDTHS[0]}, unlimited budget (EXPLAIN total cost)", "",
            "| query | before | after | share |", "| --- | ---: | ---: | ---: |"]
    for q, (b, a) in sorted(unl["per_query"].items()):
        out.append(f"| {q} | {b:,.0f} | {a:,.0f} | {a / b:.1%} |")
    out += ["", f"Recommended (width {WIDTHS[0]}, unlimited budget):", ""]
    for rec in unl["recommendations"]:
        out.append(f"- {rec['label']}: {rec['size_bytes'] / mb:.0f} MB est., serves {', '.join(rec['queries'])}")
    if unl["unresolved_columns"]:
        out += ["", f"Columns the analyzer could not resolve: {unl['unresolved_columns']}"]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="scale factor 0.1, results to bench/out/")
    ap.add_argument("--sf", type=float, default=None)
    ap.add_argument("--no-default", action="store_true", help="skip the as-shipped (INCLUDE) variant")
    ap.add_argument("--no-verify", action="store_true", help="skip building the unlimited set for real")
    args = ap.parse_args()
    sf = args.sf if args.sf is not None else (0.1 if args.quick else 1.0)
    load_start = loadavg()
    pg, url, loaded, version = loaded_cluster(sf, OUT_DIR / "tpch", "tpch bench")
    try:
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
            hypopg = str(c.execute("SELECT extversion FROM pg_extension WHERE extname = 'hypopg'").fetchone()[0])  # type: ignore[index]
        project = workload_project(OUT_DIR / "tpch" / "project")
        runs = [x for w in WIDTHS for x in run_advisor(url, project, f"strict{w}", BUDGETS)]
        if not args.no_default:
            runs += run_advisor(url, project, "default", ["unlimited"])
        verify = None
        if not args.no_verify:
            unl = next(x for x in runs if x["variant"] == HEADLINE and x["budget"] == "unlimited")
            verify = verify_real(url, unl, project)
            log(f"tpch bench: real indexes: {verify['cost_share_real_indexes']:.1%}")
        result = {"sf": sf, "tpchgen": version, "server": pg.version(), "hypopg": hypopg, "load": loaded,
                  "data_bytes": runs[0]["data_bytes"], "runs": runs, "verify": verify, "widths": list(WIDTHS),
                  "loadavg_start": load_start, "loadavg_end": loadavg(), "reference": REFERENCE}
    finally:
        pg.stop()
    from common import machine

    text = render({**result, "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    if args.quick or sf != 1.0:
        (OUT_DIR / "RESULTS_tpch.quick.md").write_text(text)
        save_to(OUT_DIR / "results.quick.json", "tpch", result)
        where = OUT_DIR / "RESULTS_tpch.quick.md"
    else:
        MD.write_text(text)
        save("tpch", result)
        where = MD
    log(text)
    log(f"written: {where} ({RESULTS_JSON.name if where == MD else 'results.quick.json'})")


if __name__ == "__main__":
    main()

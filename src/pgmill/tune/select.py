"""Choosing indexes: greedy by benefit per byte within a storage budget, write-heavy tables penalised.

Deterministic: candidates arrive sorted, scores are compared with their tie-breaks spelled out (higher
score, then smaller size, then the candidate's own order), so the same input gives the same indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgmill.tune.candidates import Candidate
from pgmill.tune.catalog import Catalog
from pgmill.tune.whatif import WhatIf
from pgmill.tune.workload import WorkloadQuery

SERVES = 0.02  # an index serves a query when it cuts that query's cost by at least 2% ...
SERVES_MIN = 1.0  # ... and by at least one cost unit (about a page read): not by the planner's rounding
MIN_GAIN = 0.05  # an index must cut the summed cost of the queries it speeds up by at least 5%


@dataclass
class Choice:
    """One chosen index, with what the costing says it does."""

    candidate: Candidate
    size: int
    benefit: float  # weighted cost saved when it was added
    penalty: float  # the write-load divisor applied to its score
    queries: list[str] = field(default_factory=list)


@dataclass
class Selection:
    chosen: list[Choice]
    base: dict[str, float]  # query -> cost with the existing indexes
    final: dict[str, float]  # query -> cost with the chosen indexes too
    budget: int | None
    used_bytes: int
    skipped_budget: list[Candidate]


def write_penalty(catalog: Catalog, c: Candidate, weight: float) -> float:
    """1 for a table that only takes reads; grows with writes beyond the initial load per live row."""
    t = catalog.tables[(c.schema, c.table)]
    return 1.0 + weight * min(t.churn, 10.0)


def _total(whatif: WhatIf, queries: list[WorkloadQuery], config: list[Candidate]) -> dict[str, float]:
    return {q.name: whatif.cost(q, config) for q in queries}


def greedy(whatif: WhatIf, catalog: Catalog, queries: list[WorkloadQuery], candidates: list[Candidate], *,
           budget: int | None, write_weight: float) -> Selection:
    """Add, one at a time, the candidate with the best weighted benefit per byte until none helps or fits."""
    weights = {q.name: q.weight for q in queries}
    users = {c: [q for q in queries if whatif.relevant(q, [c])] for c in candidates}
    pool = [c for c in candidates if users[c]]
    chosen: list[Choice] = []
    config: list[Candidate] = []
    current = _total(whatif, queries, [])
    base = dict(current)
    used = 0
    skipped: list[Candidate] = []
    while pool:
        best: tuple[float, int, Candidate] | None = None
        best_gain = 0.0
        for c in pool:
            costs = {q.name: whatif.cost(q, [*config, c]) for q in users[c]}
            gain = sum((current[n] - v) * weights[n] for n, v in costs.items())
            sped = sum(current[n] * weights[n] for n, v in costs.items() if v < current[n])
            if gain <= 0 or gain < MIN_GAIN * sped:
                continue
            size = whatif.size(c)
            score = gain / max(size, 1) / write_penalty(catalog, c, write_weight)
            key = (-score, size, c)
            if best is None or key < (-best[0], best[1], best[2]):
                best, best_gain = (score, size, c), gain
        if best is None:
            break
        _score, size, c = best
        pool.remove(c)
        if budget is not None and used + size > budget:
            skipped.append(c)
            continue
        config.append(c)
        used += size
        helped = [q.name for q in users[c] if _serves(whatif.cost(q, config), current[q.name])]
        for q in users[c]:
            current[q.name] = whatif.cost(q, config)
        chosen.append(Choice(c, size, best_gain, write_penalty(catalog, c, write_weight), helped))
        pool = [p for p in pool if not _same_keys_prefix(p, config)]
    chosen = _prune(whatif, queries, chosen)
    final = _total(whatif, queries, [ch.candidate for ch in chosen])
    return Selection(chosen, base, final, budget, sum(ch.size for ch in chosen), skipped)


def _serves(with_it: float, without: float) -> bool:
    return with_it < without * (1 - SERVES) and without - with_it >= SERVES_MIN


def _same_keys_prefix(c: Candidate, config: list[Candidate]) -> bool:
    """A chosen index with the same keys (or longer keys starting with these) makes `c` a near-duplicate."""
    for x in config:
        if (x.schema, x.table, x.where) == (c.schema, c.table, c.where) and x.keys[: len(c.keys)] == c.keys \
                and set(c.include) <= set(x.keys) | set(x.include):
            return True
    return False


def _prune(whatif: WhatIf, queries: list[WorkloadQuery], chosen: list[Choice]) -> list[Choice]:
    """Drop indexes that serve no query once the others are in place (a later, wider choice took their
    place), largest first, one at a time; then name the queries each remaining index serves."""

    def served(kept: list[Choice], ch: Choice) -> list[str]:
        config = [k.candidate for k in kept]
        rest = [k.candidate for k in kept if k is not ch]
        return [q.name for q in queries if whatif.relevant(q, [ch.candidate])
                and _serves(whatif.cost(q, config), whatif.cost(q, rest))]

    kept = list(chosen)
    while True:
        idle = [ch for ch in kept if not served(kept, ch)]
        if not idle:
            break
        kept.remove(max(idle, key=lambda ch: (ch.size, ch.candidate)))
    for ch in kept:
        ch.queries = served(kept, ch)
    return kept

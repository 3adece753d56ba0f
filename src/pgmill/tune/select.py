"""Choosing indexes: greedy by benefit per byte within a storage budget, write-heavy tables penalised.

Lean by rule, so that cheap queries do not collect wide covering indexes that buy nothing measurable:
  - an index is added only while its benefit per byte is worth it: at least `min_benefit` times the
    workload's estimated cost per byte of the data it reads (the knee of the benefit curve);
  - an index that extends a chosen one (same leading keys) replaces it, and is scored by the bytes it adds;
  - when the budget leaves indexes out, the greedy runs again with each of the best of them chosen first, and
    the set with the lowest estimated workload cost wins (one large index can be worth more than the small
    ones that filled the budget);
  - each chosen index is then replaced by the smallest narrower candidate (fewer keys, no INCLUDE, its
    INCLUDE columns as keys) that gives about the same cost: within LEAN, for every query;
  - last, indexes that later choices made (nearly) redundant are dropped, worst first: one whose removal
    costs less, per byte it frees, than the same floor (what it buys once the others are in place, not
    what it bought when it was added), or whose removal costs nothing at all.
`pgmill tune --apply` then measures whether the extra width of what remains pays (apply.py).

Deterministic: candidates arrive sorted, scores are compared with their tie-breaks spelled out (higher
score, then smaller size, then the candidate's own order), so the same input gives the same indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgmill.tune.candidates import Candidate
from pgmill.tune.snapshot import CatalogSnapshot
from pgmill.tune.whatif import WhatIf
from pgmill.tune.workload import WorkloadQuery

SERVES = 0.02  # an index serves a query when it cuts that query's cost by at least 2% ...
SERVES_MIN = 1.0  # ... and by at least one cost unit (about a page read): not by the planner's rounding
MIN_GAIN = 0.05  # an index must cut the summed cost of the queries it speeds up by at least 5%
LEAN_SIZE = 0.6  # a lean alternative worth measuring takes at most 60% of the room of the chosen index
LEAN = 0.05  # a narrower index replaces a chosen one when no query's cost rises by more than 5% (and a unit)
SEEDS = 3  # when the budget binds, the greedy is also run with each of this many left-out indexes taken first


@dataclass
class Choice:
    """One chosen index, with what the costing says it does."""

    candidate: Candidate
    size: int
    benefit: float  # weighted cost saved when it was added
    penalty: float  # the write-load divisor applied to its score
    queries: list[str] = field(default_factory=list)
    lean: Candidate | None = None  # a much smaller narrower index that still serves those queries, to measure


@dataclass
class Selection:
    chosen: list[Choice]
    base: dict[str, float]  # query -> cost with the existing indexes
    final: dict[str, float]  # query -> cost with the chosen indexes too
    budget: int | None
    skipped_budget: list[Candidate]


def write_penalty(catalog: CatalogSnapshot, c: Candidate, weight: float) -> float:
    """1 for a table that only takes reads; grows with writes beyond the initial load per live row."""
    t = catalog.tables[(c.schema, c.table)]
    return 1.0 + weight * min(t.churn, 10.0)


def _total(whatif: WhatIf, queries: list[WorkloadQuery], config: list[Candidate]) -> dict[str, float]:
    return {q.name: whatif.cost(q, config) for q in queries}


def greedy(whatif: WhatIf, catalog: CatalogSnapshot, queries: list[WorkloadQuery], candidates: list[Candidate], *,
           budget: int | None, write_weight: float, min_benefit: float = 0.0, data_bytes: int = 0) -> Selection:
    """Add, one at a time, the candidate with the best weighted benefit per byte until none helps enough or
    fits; then make each chosen index as lean as the costing allows and drop the ones left idle.

    When the budget leaves candidates out, the greedy can have filled it with small indexes worth less than
    one large index it no longer had room for (the knapsack case of ratio greedy): it is run again with each
    of the SEEDS best-scoring indexes the budget left out chosen first, and the set with the lowest weighted
    estimated workload cost, once made lean and trimmed, wins (ties: the unseeded run)."""
    weights = {q.name: q.weight for q in queries}
    users = {c: [q for q in queries if whatif.relevant(q, [c])] for c in candidates}
    base = _total(whatif, queries, [])
    floor = min_benefit * sum(base[n] * weights[n] for n in base) / data_bytes if data_bytes > 0 else 0.0
    grow = _Grow(whatif, catalog, weights, users, budget, write_weight, floor)
    usable = [c for c in candidates if users[c]]

    def finished(seed: Candidate | None) -> tuple[list[Choice], dict[str, float], list[Candidate]]:
        """One greedy run, made lean and trimmed: (chosen, each query's final cost, left out for the budget)."""
        chosen, _current, skipped = grow.run(usable, base, seed)
        chosen = _leaner(whatif, queries, candidates, chosen)
        chosen = _trim(whatif, catalog, queries, chosen, floor, write_weight)
        chosen = _prune(whatif, queries, chosen)
        return chosen, _total(whatif, queries, [ch.candidate for ch in chosen]), skipped

    chosen, final, skipped = finished(None)
    if budget is not None:
        best = sum(final[n] * weights[n] for n in final)
        for seed in [c for c in skipped if whatif.size(c) <= budget][:SEEDS]:
            trial, costs, left = finished(seed)
            total = sum(costs[n] * weights[n] for n in costs)
            if total < best:
                best, chosen, final, skipped = total, trial, costs, left
    for ch in chosen:
        ch.lean = _lean_alternative(whatif, queries, candidates, chosen, ch, base)
    in_set = {ch.candidate for ch in chosen}
    return Selection(chosen, base, final, budget, [c for c in skipped if c not in in_set])


@dataclass
class _Grow:
    """The greedy's add loop, for one starting point."""

    whatif: WhatIf
    catalog: CatalogSnapshot
    weights: dict[str, float]
    users: dict[Candidate, list[WorkloadQuery]]
    budget: int | None
    write_weight: float
    floor: float

    def run(self, pool: list[Candidate], base: dict[str, float],
            seed: Candidate | None) -> tuple[list[Choice], dict[str, float], list[Candidate]]:
        """(chosen, cost of each query with them, candidates left out for the budget); `seed`, when given, is
        taken first, if it earns its bytes as any choice must (else nothing is chosen: that run loses)."""
        whatif, weights = self.whatif, self.weights
        chosen: list[Choice] = []
        config: list[Candidate] = []
        current = dict(base)
        used = 0
        skipped: list[Candidate] = []
        while pool:
            best: tuple[float, int, Candidate] | None = None
            best_gain, best_ext = 0.0, None
            for c in pool if seed is None else [seed]:
                ext = _extended(c, config)  # a chosen index that `c` would make redundant: `c` replaces it
                trial = [*(x for x in config if x != ext), c]
                costs = {q.name: whatif.cost(q, trial) for q in self.users[c]}
                gain = sum((current[n] - v) * weights[n] for n, v in costs.items())
                sped = sum(current[n] * weights[n] for n, v in costs.items() if v < current[n])
                if gain <= 0 or gain < MIN_GAIN * sped:
                    continue
                size = whatif.size(c) - (whatif.size(ext) if ext is not None else 0)
                score = gain / max(size, 1) / write_penalty(self.catalog, c, self.write_weight)
                key = (-score, size, c)
                if best is None or key < (-best[0], best[1], best[2]):
                    best, best_gain, best_ext = (score, size, c), gain, ext
            if seed is not None:
                pool = [p for p in pool if p != seed]
                seed = None
                if best is None:
                    continue
            if best is None or best[0] < self.floor:
                break
            _score, size, c = best
            pool = [p for p in pool if p != c]
            if self.budget is not None and used + size > self.budget:
                skipped.append(c)
                continue
            if best_ext is not None:
                config.remove(best_ext)
                chosen = [ch for ch in chosen if ch.candidate != best_ext]
            config.append(c)
            used += size
            helped = [q.name for q in self.users[c] if _serves(whatif.cost(q, config), current[q.name])]
            for q in self.users[c]:
                current[q.name] = whatif.cost(q, config)
            chosen.append(Choice(c, whatif.size(c), best_gain, write_penalty(self.catalog, c, self.write_weight),
                                 helped))
            pool = [p for p in pool if not _same_keys_prefix(p, config)]
        return chosen, current, skipped


def _extended(c: Candidate, config: list[Candidate]) -> Candidate | None:
    """The chosen index `c` extends (Extend's move: same table and predicate, its keys a prefix of `c`'s, its
    INCLUDE columns in `c`), so that adding `c` means replacing it; None if there is none."""
    for x in config:
        if ((x.schema, x.table, x.where) == (c.schema, c.table, c.where) and c.keys[: len(x.keys)] == x.keys
                and x.desc == c.desc[: len(x.desc)] and set(x.include) <= set(c.keys) | set(c.include)):
            return x
    return None


def _narrower(c: Candidate, other: Candidate) -> bool:
    """`other` indexes a subset of `c`'s columns, on the same table with the same predicate."""
    return ((other.schema, other.table, other.where) == (c.schema, c.table, c.where) and other != c
            and set(other.keys) | set(other.include) <= set(c.keys) | set(c.include))


def _leaner(whatif: WhatIf, queries: list[WorkloadQuery], candidates: list[Candidate],
            chosen: list[Choice]) -> list[Choice]:
    """Replace each chosen index, in the order chosen, by the smallest narrower candidate with which no
    query costs more than LEAN (and SERVES_MIN) above what it costs with the chosen one."""
    out = list(chosen)
    for i, ch in enumerate(out):
        c = ch.candidate
        config = [x.candidate for x in out]
        users = [q for q in queries if whatif.relevant(q, [c])]
        now = {q.name: whatif.cost(q, config) for q in users}
        options = sorted((whatif.size(v), v) for v in candidates
                         if _narrower(c, v) and v not in config and whatif.size(v) < ch.size)
        for size, v in options:
            trial = [v if x == c else x for x in config]
            if all(whatif.cost(q, trial) <= now[q.name] * (1 + LEAN) + SERVES_MIN for q in users):
                out[i] = Choice(v, size, ch.benefit, ch.penalty, ch.queries)
                break
    return out


def _trim(whatif: WhatIf, catalog: CatalogSnapshot, queries: list[WorkloadQuery], chosen: list[Choice],
          floor: float, write_weight: float) -> list[Choice]:
    """Drop, one at a time, the chosen index whose removal costs the least per byte it frees, while that is
    below `floor` (weighted cost per byte, the greedy's own knee) or not positive; costs are re-taken after
    each drop, since the indexes that remain may then matter more."""
    weights = {q.name: q.weight for q in queries}
    kept = list(chosen)
    while kept:
        config = [k.candidate for k in kept]
        worst: tuple[float, int, Candidate] | None = None
        for ch in kept:
            users = [q for q in queries if whatif.relevant(q, [ch.candidate])]
            rest = [c for c in config if c != ch.candidate]
            loss = sum((whatif.cost(q, rest) - whatif.cost(q, config)) * weights[q.name] for q in users)
            score = loss / max(ch.size, 1) / write_penalty(catalog, ch.candidate, write_weight)
            key = (score, -ch.size, ch.candidate)
            if worst is None or key < worst:
                worst = key
        assert worst is not None
        if worst[0] > 0 and worst[0] >= floor:
            break
        kept = [k for k in kept if k.candidate != worst[2]]
    return kept


def _serves(with_it: float, without: float) -> bool:
    return with_it < without * (1 - SERVES) and without - with_it >= SERVES_MIN


def _same_keys_prefix(c: Candidate, config: list[Candidate]) -> bool:
    """A chosen index with the same keys (or longer keys starting with these) makes `c` a near-duplicate."""
    for x in config:
        if (x.schema, x.table, x.where) == (c.schema, c.table, c.where) and x.keys[: len(c.keys)] == c.keys \
                and set(c.include) <= set(x.keys) | set(x.include):
            return True
    return False


def _lean_alternative(whatif: WhatIf, queries: list[WorkloadQuery], candidates: list[Candidate],
                      chosen: list[Choice], ch: Choice, base: dict[str, float]) -> Candidate | None:
    """The smallest narrower candidate, at most LEAN_SIZE of `ch`'s size, that still serves every query
    `ch` serves (cheaper than before tuning by SERVES), with the other chosen indexes in place. The costing
    preferred `ch`; whether its extra width pays in latency is for measurement to say (apply.py)."""
    config = [x.candidate for x in chosen]
    c = ch.candidate
    served = [q for q in queries if q.name in ch.queries]
    options = sorted((whatif.size(v), v) for v in candidates
                     if _narrower(c, v) and v not in config and whatif.size(v) <= LEAN_SIZE * ch.size)
    for _size, v in options:
        trial = [v if x == c else x for x in config]
        if served and all(_serves(whatif.cost(q, trial), base[q.name]) for q in served):
            return v
    return None


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

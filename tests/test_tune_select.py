"""Selection with a scripted costing: the smaller of two equally good index sets wins, an index that a later
choice made nearly redundant is dropped (its removal costs less per byte than the floor), and within a budget
one large index beats the small ones that would otherwise fill it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import psycopg

from pgmill.tune.analyze import Analysis, TableAccess
from pgmill.tune.candidates import Candidate
from pgmill.tune.select import Selection, greedy
from pgmill.tune.snapshot import CatalogSnapshot, Column, Table
from pgmill.tune.whatif import WhatIf
from pgmill.tune.workload import WorkloadQuery

KEY = ("s", "t")
BASE = 100.0


class Scripted(WhatIf):
    """Costs from a table: a query's cost under a set is the lowest of its costs under each index alone."""

    def __init__(self, catalog: CatalogSnapshot, costs: Mapping[str, Mapping[Candidate, float]],
                 sizes: Mapping[Candidate, int]) -> None:
        super().__init__(cast(psycopg.Connection[Any], None), catalog)
        self.costs = costs
        self.sizes = dict(sizes)

    def _cost(self, q: WorkloadQuery, config: frozenset[Candidate]) -> float:
        return min([BASE, *(self.costs[q.name].get(c, BASE) for c in config)])

    def close(self) -> None:
        """Nothing to undo."""


def _catalog() -> CatalogSnapshot:
    cols = {n: Column(n, "integer", True, 4, 100.0, 0.0, True, "i") for n in ("a", "b", "c")}
    t = Table(1, *KEY, 10_000, 100, 100 * 8192, 10_000, 10_000, 0, 0, 0, 0, False, cols)
    return CatalogSnapshot({t.key: t}, ["s"], 150000)


def _query(name: str) -> WorkloadQuery:
    q = WorkloadQuery(name, "SELECT 1", [], 10.0, "declared")
    q.analysis = Analysis([TableAccess(KEY)], {}, set(), True, [])
    return q


def _index(*keys: str, include: tuple[str, ...] = ()) -> Candidate:
    return Candidate(*KEY, tuple(keys), (False,) * len(keys), include)


def _chosen(costs: Mapping[str, Mapping[Candidate, float]], sizes: Mapping[Candidate, int],
            min_benefit: float = 0.0, data_bytes: int = 0, budget: int | None = None) -> list[Candidate]:
    return [ch.candidate for ch in _select(costs, sizes, min_benefit, data_bytes, budget).chosen]


def _select(costs: Mapping[str, Mapping[Candidate, float]], sizes: Mapping[Candidate, int],
            min_benefit: float = 0.0, data_bytes: int = 0, budget: int | None = None) -> Selection:
    catalog = _catalog()
    whatif = Scripted(catalog, costs, sizes)
    queries = [_query(n) for n in costs]
    return greedy(whatif, catalog, queries, sorted(sizes), budget=budget, write_weight=0.0,
                  min_benefit=min_benefit, data_bytes=data_bytes)


def test_of_two_indexes_that_serve_the_query_as_well_the_smaller_wins() -> None:
    narrow, wide = _index("a"), _index("a", include=("b",))
    assert _chosen({"q1": {narrow: 10.0, wide: 10.0}}, {narrow: 1000, wide: 3000}) == [narrow]
    # the same when the wide one is a hair cheaper: its INCLUDE buys nothing worth its bytes
    assert _chosen({"q1": {narrow: 10.2, wide: 10.0}}, {narrow: 1000, wide: 3000}) == [narrow]


def test_an_index_a_later_choice_made_nearly_redundant_is_dropped() -> None:
    # `a` is chosen first (90 saved for 1000 bytes); `b` then serves q2 and almost all of q1 too: with it in
    # place `a` saves 2 cost units for its 1000 bytes, under the floor of 0.5 x 200 / 10,000 = 0.01 per byte
    a, b = _index("a"), _index("b", include=("c",))
    costs = {"q1": {a: 10.0, b: 12.0}, "q2": {b: 10.0}}
    sizes = {a: 1000, b: 2500}
    assert _chosen(costs, sizes, min_benefit=0.5, data_bytes=10_000) == [b]
    # without a floor `a` still earns its bytes (it saves something), so both stay
    assert _chosen(costs, sizes) == [a, b]


def test_within_a_budget_one_large_index_beats_the_small_ones_that_would_fill_it() -> None:
    # by benefit per byte `a` and `b` come first (20 saved per 100 bytes each, against `big`'s 70 per 400),
    # and then `big` no longer fits the 400-byte budget; yet `big` alone saves more than `a` and `b` together
    a, b, big = _index("a"), _index("b"), _index("c")
    costs = {"q1": {a: 80.0}, "q2": {b: 80.0}, "q3": {big: 30.0}}
    sizes = {a: 100, b: 100, big: 400}
    sel = _select(costs, sizes, budget=400)
    assert [ch.candidate for ch in sel.chosen] == [big]
    assert sum(sel.final.values()) == 100 + 100 + 30  # against 80 + 80 + 100 with the ratio greedy's pair
    assert sel.skipped_budget == [a, b]
    # with room for all three, all three, in the ratio order; when the small ones are worth more together
    # than the large one, they stay
    assert _chosen(costs, sizes, budget=600) == [a, b, big]
    assert _chosen({"q1": {a: 40.0}, "q2": {b: 40.0}, "q3": {big: 30.0}}, sizes, budget=400) == [a, b]

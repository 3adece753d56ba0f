"""The dependency graph of the models: resolution of names, cycles, selection, and text/DOT/Mermaid views.

Names resolve the way Postgres resolves them when the model runs: a qualified name is that relation; an
unqualified one is looked up along the database's search_path (pg_catalog first). At each step a model
that builds the relation wins over what the database holds, since the model will replace it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pgmill.errors import ConfigError
from pgmill.transform.models import Model
from pgmill.transform.relation import Relation


@dataclass(frozen=True)
class ExistingRelations:
    """What the database holds: the search_path and every relation (schema, name) there is."""

    search_path: tuple[str, ...] = ("public",)
    relations: frozenset[tuple[str, str]] = frozenset()


@dataclass
class Graph:
    """Models by key (schema.name), the models each reads, and the tables outside the project each reads."""

    models: dict[str, Model]
    parents: dict[str, set[str]]
    sources: dict[str, set[str]]  # model -> existing relations (not models) it reads
    missing: dict[str, set[str]] = field(default_factory=dict)  # model -> names that resolve to nothing
    order: list[str] = field(default_factory=list)  # topological; ties broken by key

    @property
    def children(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {k: set() for k in self.models}
        for k, ps in self.parents.items():
            for p in ps:
                out[p].add(k)
        return out

    def descendants(self, key: str) -> set[str]:
        kids = self.children
        seen: set[str] = set()
        todo = [key]
        while todo:
            for c in kids[todo.pop()]:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen

    def ancestors(self, key: str) -> set[str]:
        seen: set[str] = set()
        todo = [key]
        while todo:
            for p in self.parents[todo.pop()]:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    # ------------------------------------------------------------ selection

    def find(self, name: str) -> str:
        """The key of the model called `name` (schema.name, or a name only one schema has)."""
        if name in self.models:
            return name
        hits = [k for k, m in self.models.items() if m.name == name]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ConfigError(f"model name {name!r} is ambiguous: say which of {', '.join(sorted(hits))}")
        close = difflib.get_close_matches(name, [*self.models, *(m.name for m in self.models.values())], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"no model named {name!r}{hint}")

    def select(self, specs: Iterable[str] | None) -> list[str]:
        """`MODEL`, `MODEL+` (with descendants), `+MODEL` (with ancestors); None or nothing: every model."""
        items = [s.strip() for spec in (specs or ()) for s in spec.replace(",", " ").split() if s.strip()]
        if not items:
            return list(self.order)
        chosen: set[str] = set()
        for item in items:
            up, down = item.startswith("+"), item.endswith("+")
            key = self.find(item.strip("+"))
            chosen.add(key)
            if up:
                chosen |= self.ancestors(key)
            if down:
                chosen |= self.descendants(key)
        return [k for k in self.order if k in chosen]

    # ------------------------------------------------------------ views

    def to_text(self) -> str:
        lines = []
        for k in self.order:
            m = self.models[k]
            reads = sorted(self.parents[k]) + sorted(f"{s} (table)" for s in self.sources[k])
            reads += sorted(f"{s} (missing)" for s in self.missing.get(k, ()))
            lines.append(f"{k} [{m.materialized}] {m.file}")
            lines.extend(f"  <- {r}" for r in reads)
        return "\n".join(lines)

    def to_dot(self) -> str:
        lines = ["digraph pgmill {", "  rankdir=LR;", "  node [shape=box];"]
        for k in self.order:
            lines.append(f"  {_q(k)} [label={_q(k + chr(10) + self.models[k].materialized)}];")
        for s in sorted(self._externals()):
            lines.append(f"  {_q(s)} [shape=cylinder];")
        for k in self.order:
            for p in sorted(self.parents[k] | self.sources[k] | self.missing.get(k, set())):
                lines.append(f"  {_q(p)} -> {_q(k)};")
        lines.append("}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        ids = {k: f"m{i}" for i, k in enumerate(self.order)}
        ids.update({s: f"t{i}" for i, s in enumerate(sorted(self._externals()))})
        lines = ["graph LR"]
        for k in self.order:
            lines.append(f'  {ids[k]}["{_mq(k)}<br/>{self.models[k].materialized}"]')
        for s in sorted(self._externals()):
            lines.append(f'  {ids[s]}[("{_mq(s)}")]')
        for k in self.order:
            for p in sorted(self.parents[k] | self.sources[k] | self.missing.get(k, set())):
                lines.append(f"  {ids[p]} --> {ids[k]}")
        return "\n".join(lines)

    def _externals(self) -> set[str]:
        out: set[str] = set()
        for k in self.models:
            out |= self.sources[k] | self.missing.get(k, set())
        return out


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _mq(s: str) -> str:
    return s.replace('"', "#quot;")


def resolve(ref: Relation, models: dict[tuple[str, str], Model], catalog: ExistingRelations) -> tuple[str, str] | None:
    """The (schema, name) that `ref` means when the model runs, or None when nothing answers to it."""
    schemas = [ref.schema] if ref.schema else ["pg_catalog", *catalog.search_path]
    for schema in schemas:
        if (schema, ref.name) in models or (schema, ref.name) in catalog.relations:
            return schema, ref.name
    return None


def build_graph(models: list[Model], catalog: ExistingRelations, *, strict: bool = True) -> Graph:
    """Resolve every model's references; ConfigError for a cycle or (when strict) a missing relation."""
    by_rel = {(m.schema, m.name): m for m in models}
    parents: dict[str, set[str]] = {}
    sources: dict[str, set[str]] = {}
    missing: dict[str, set[str]] = {}
    errors: list[str] = []
    for m in models:
        parents[m.key], sources[m.key] = set(), set()
        for ref in m.refs:
            hit = resolve(ref, by_rel, catalog)
            if hit is None:
                missing.setdefault(m.key, set()).add(str(ref))
                errors.append(f"{m.file}: reads {ref}, which is neither a table or view in the database "
                              f"(search_path: {', '.join(catalog.search_path)}) nor built by a model")
            elif hit == (m.schema, m.name):
                continue  # reading its own previous contents (an incremental model may)
            elif hit in by_rel:
                parents[m.key].add(by_rel[hit].key)
            else:
                sources[m.key].add(f"{hit[0]}.{hit[1]}")
    if errors and strict:
        raise ConfigError("\n".join(errors))
    g = Graph({m.key: m for m in models}, parents, sources, missing)
    g.order = _toposort(g)
    return g


def _toposort(g: Graph) -> list[str]:
    """Kahn's algorithm, alphabetical among ready models so the order is stable; a cycle is an error."""
    indeg = {k: len(ps) for k, ps in g.parents.items()}
    kids = g.children
    ready = sorted(k for k, d in indeg.items() if d == 0)
    order: list[str] = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for c in sorted(kids[k]):
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
        ready.sort()
    if len(order) < len(g.models):
        left = {k for k in g.models if k not in order}
        cycle = _find_cycle(g, left)
        path = " -> ".join(g.models[k].file for k in cycle)
        raise ConfigError(f"dependency cycle: {path}")
    return order


def _find_cycle(g: Graph, left: set[str]) -> list[str]:
    """One cycle among `left` (models that never became ready), as a closed path of keys."""
    start = min(left)
    path: list[str] = []
    seen: dict[str, int] = {}
    k = start
    while k not in seen:
        seen[k] = len(path)
        path.append(k)
        k = min(p for p in g.parents[k] if p in left)  # every blocked model has a blocked parent
    # walking parents gives the cycle backwards; show it in the direction data flows
    return list(reversed([*path[seen[k]:], k]))

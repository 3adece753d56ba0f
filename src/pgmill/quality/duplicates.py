"""Near-duplicates: rows whose chosen text columns are equal or alike once case, spaces and accents are
normalized ('José  García' and 'jose garcia').

The table (or a random `sample:` of its rows) is read once into a temporary table of distinct normalized
values (with their row counts, a sample of keys and the raw spellings); alike values are paired there
(near_search.py: every pair, or only pairs sharing a blocking key, each verified with pg_trgm similarity or
levenshtein distance) and pairs are joined into groups in Python. Without the contrib extensions only equal
normalized values group. The temporary table lives in a transaction that is rolled back: the check writes
nothing. The rule's time is in its result's detail; past `max_seconds` it stops with status `skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.migrations import SAMPLE_SIZE
from pgmill.quality.near_search import (
    AUTO_EXACT_LIMIT,
    AUTO_EXACT_SECONDS,
    MAX_PAIRS,
    VALS,
    Budget,
    Measure,
    OverBudget,
    blocked_pairs,
    exact_pairs,
)
from pgmill.quality.results import RuleResult, broken, judged
from pgmill.quality.rules import Rule
from pgmill.quality.scan import T, col, sample_array, sample_names, sample_objects
from pgmill.quality.schema import ensure_extension
from pgmill.quality.table_info import TableInfo

# the fallback when unaccent is missing: accented letters of both cases to their lower-case base letter
# (lower() of a C-locale database only knows ASCII, so the upper-case ones are listed too)
_FOLD = {
    "a": "àáâãäåāăą", "c": "çćĉċč", "d": "ďđ", "e": "èéêëēĕėęě", "g": "ĝğġģ", "h": "ĥħ", "i": "ìíîïĩīĭįı",
    "j": "ĵ", "k": "ķ", "l": "ĺļľŀł", "n": "ñńņňŉ", "o": "òóôõöøōŏő", "r": "ŕŗř", "s": "śŝşš", "t": "ţťŧ",
    "u": "ùúûüũūŭůűų", "w": "ŵ", "y": "ýÿŷ", "z": "źżž",
}
_PAIRS = [(ch, base) for base, accented in _FOLD.items() for c in accented
          for ch in dict.fromkeys((c, c.upper())) if len(ch) == 1]
_ACCENTED = "".join(ch for ch, _ in _PAIRS)
_PLAIN = "".join(base for _, base in _PAIRS)


@dataclass
class Normalizer:
    """How text is normalized and compared, given the extensions the server has."""

    unaccent: str | None  # schema of unaccent
    trigram: str | None  # schema of pg_trgm
    fuzzy: str | None  # schema of fuzzystrmatch
    notes: list[str] = field(default_factory=list)

    @classmethod
    def detect(cls, conn: psycopg.Connection[Any], method: str) -> Normalizer:
        ua = ensure_extension(conn, "unaccent")
        trgm = ensure_extension(conn, "pg_trgm") if method == "trigram" else None
        fuzzy = ensure_extension(conn, "fuzzystrmatch") if method == "levenshtein" or trgm is None else None
        n = cls(ua, trgm, fuzzy)
        if ua is None:
            n.notes.append("unaccent is not available: accents are folded with a fixed table")
        if method == "trigram" and trgm is None:
            n.notes.append("pg_trgm is not available" + ("; compared by levenshtein" if fuzzy else ""))
        if trgm is None and fuzzy is None:
            n.notes.append("neither pg_trgm nor fuzzystrmatch is available: only equal normalized values group")
        return n

    def expr(self, columns: tuple[str, ...]) -> sql.Composable:
        text: sql.Composable = sql.SQL("concat_ws(' ', {})").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(col(c)) for c in columns))
        if self.unaccent:
            # the dictionary named with its schema: found whatever the search_path
            folded = sql.SQL("{}.unaccent({}::regdictionary, {})").format(
                sql.Identifier(self.unaccent), sql.Literal(f"{self.unaccent}.unaccent"), text)
        else:
            folded = sql.SQL("translate({}, {}, {})").format(text, sql.Literal(_ACCENTED), sql.Literal(_PLAIN))
        return sql.SQL("lower(btrim(regexp_replace({}, '\\s+', ' ', 'g')))").format(folded)

    @staticmethod
    def present(columns: tuple[str, ...]) -> sql.Composable:
        """Rows compared: a value in every chosen column (missing values are completeness's business)."""
        return sql.SQL(" AND ").join(
            sql.SQL("btrim({}::text) <> ''").format(col(c)) for c in columns)


def near_duplicates(conn: psycopg.Connection[Any], info: TableInfo, rule: Rule, n: int) -> RuleResult:
    """Groups of rows alike on the rule's columns; rows beyond the first of each group count as failing.
    The time it took is in the result's detail (`seconds`); past `max_seconds` it stops, status skipped."""
    method = str(rule.params["method"])
    budget = Budget(rule.params.get("max_seconds"))
    norm = Normalizer.detect(conn, method)
    if not conn.autocommit:
        conn.commit()
    sample = rule.params.get("sample")
    checked = min(n, int(sample)) if sample else n
    try:
        with conn.transaction(force_rollback=True):
            found = _groups(conn, info, rule, norm, budget)
    except OverBudget as over:
        values = f" ({over.values:,} distinct values)" if over.values else ""
        msg = (f"near-duplicate search stopped after {budget.elapsed:.1f} s while {over.phase}{values}: "
               f"over max_seconds ({budget.limit:g} s) for {checked:,} rows; bound it with `sample:`, "
               "`search: blocked` or a larger `max_seconds`")
        return RuleResult(info.name, rule.name, rule.kind, rule.columns, checked, 0, rule.threshold,
                          rule.severity, "skipped", msg,
                          detail={"seconds": round(budget.elapsed, 3), "stopped_while": over.phase,
                                  "values": over.values, "max_seconds": budget.limit})
    except psycopg.Error as exc:
        return broken(info.name, rule, f"near-duplicate search failed: {str(exc).strip()}")
    groups = found.groups
    extra = sum(g["rows"] - 1 for g in groups)
    groups.sort(key=lambda g: -g["rows"])
    how = (f"trigram similarity >= {rule.params['similarity']}" if norm.trigram
           else f"levenshtein distance <= {rule.params['max_distance']}" if norm.fuzzy else "equal")
    rows = f"{checked:,}" + (f" sampled of {n:,}" if checked < n else "")
    msg = (f"{len(groups):,} group{'s' if len(groups) != 1 else ''} of alike rows ({how} after normalizing): {extra:,} extra rows of {rows}"
           if groups else f"no near-duplicates in {rows} rows ({how} after normalizing)")
    detail = {"groups": len(groups), "method": how, "search": found.search, "values": found.values,
              "candidates": found.candidates, "common_keys": found.common_keys, "notes": norm.notes + found.notes,
              "pairs_truncated": found.truncated, "seconds": round(budget.elapsed, 3)}
    return judged(info.name, rule, checked, extra, msg, sample=groups[:SAMPLE_SIZE], detail=detail)


@dataclass
class Found:
    groups: list[dict[str, Any]]
    truncated: bool
    search: str  # exact | blocked
    values: int  # distinct normalized values compared
    candidates: int | None = None  # blocked: pairs verified in Postgres
    common_keys: int | None = None  # blocked: keys too common to pair through
    notes: list[str] = field(default_factory=list)


def read_values(conn: psycopg.Connection[Any], info: TableInfo, rule: Rule, norm: Normalizer,
                budget: Budget) -> int:
    """The temporary table of distinct normalized values of the rule's columns; returns how many."""
    names = sample_names(info, rule.columns)
    sample = rule.params.get("sample")
    source: sql.Composable = info.ident
    if sample:
        source = sql.SQL("(SELECT * FROM {} ORDER BY random() LIMIT {})").format(info.ident, sql.Literal(int(sample)))
    budget.run(conn, "reading values", sql.SQL(
        "CREATE TEMP TABLE {v} AS SELECT row_number() OVER () AS id, norm, rows, keys, spellings FROM ("
        " SELECT {e} AS norm, count(*) AS rows, ARRAY[min({key}), max({key})] AS keys,"
        "  (array_agg(DISTINCT concat_ws(' ', {raw})))[1:{cap}] AS spellings"
        " FROM {source} AS {t} WHERE {present} GROUP BY 1) AS d"
    ).format(v=VALS, e=norm.expr(rule.columns), key=sample_array(names), cap=sql.Literal(SAMPLE_SIZE),
             present=norm.present(rule.columns),
             raw=sql.SQL(", ").join(sql.SQL("{}::text").format(col(c)) for c in rule.columns),
             source=source, t=T))
    [(values,)] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(VALS)).fetchall()
    return int(values)


def search_pairs(conn: psycopg.Connection[Any], rule: Rule, norm: Normalizer, budget: Budget,
                 values: int) -> tuple[list[tuple[int, int]], Found]:
    """Pairs of alike value ids by the rule's search (auto: exact for few values, else blocked)."""
    measure = Measure(norm.trigram, norm.fuzzy, float(rule.params["similarity"]), int(rule.params["max_distance"]))
    measure.prepare(conn)
    search = str(rule.params.get("search") or "auto")
    found = Found([], False, search, values)
    try:
        if search == "auto" and values <= AUTO_EXACT_LIMIT:
            try:
                with conn.transaction():  # a cancelled statement rolls back to here, the index with it
                    found.search = "exact"
                    return exact_pairs(conn, measure, budget.part(AUTO_EXACT_SECONDS)), found
            except OverBudget:
                budget.check("comparing values")  # the rule's own budget, not the try's, is spent
                found.notes.append(f"the exact search did not finish in {AUTO_EXACT_SECONDS:g} s: blocked")
        if search == "exact":
            return exact_pairs(conn, measure, budget), found
        found.search = "blocked"
        blocked = blocked_pairs(conn, measure, budget)
    except OverBudget as over:
        over.values = values
        raise
    found.candidates, found.common_keys = blocked.candidates, blocked.common_keys
    return blocked.pairs, found


def _groups(conn: psycopg.Connection[Any], info: TableInfo, rule: Rule, norm: Normalizer,
            budget: Budget) -> Found:
    names = sample_names(info, rule.columns)
    pairs, found = search_pairs(conn, rule, norm, budget, read_values(conn, info, rule, norm, budget))
    found.truncated = len(pairs) > MAX_PAIRS
    parent = components(pairs[:MAX_PAIRS])
    # the paired ids joined, not `id = ANY(%s)`: a bound array is searched linearly for every value
    rows = conn.execute(sql.SQL(
        "SELECT id, norm, rows, keys, spellings FROM {v} WHERE rows > 1 UNION ALL"
        " SELECT v.id, v.norm, v.rows, v.keys, v.spellings FROM {v} AS v JOIN unnest(%s::bigint[]) AS p(id)"
        " ON v.id = p.id WHERE v.rows = 1"
    ).format(v=VALS), (list(parent),)).fetchall()
    clusters: dict[int, dict[str, Any]] = {}
    for vid, text, count, keys, spellings in rows:
        g = clusters.setdefault(parent.get(int(vid), int(vid)),
                                {"rows": 0, "normalized": [], "spellings": [], "keys": []})
        g["rows"] += int(count)
        g["normalized"].append(text)
        g["spellings"] += [s for s in spellings if s not in g["spellings"]]
        g["keys"] += [k for k in sample_objects(names, list(keys or [])) if k not in g["keys"]]
    for g in clusters.values():
        if g["rows"] > 1:
            g["normalized"] = sorted(g["normalized"])[:SAMPLE_SIZE]
            g["spellings"] = g["spellings"][:SAMPLE_SIZE]
            g["keys"] = g["keys"][:SAMPLE_SIZE]
            found.groups.append(g)
    return found


def components(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """Each value id that is in a pair, to the id that stands for its group (union-find)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return {x: find(x) for x in parent}

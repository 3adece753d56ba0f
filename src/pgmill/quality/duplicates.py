"""Near-duplicates: rows whose chosen text columns are equal or alike once case, spaces and accents are
normalized ('José  García' and 'jose garcia').

The table is read once into a temporary table of distinct normalized values (with their row counts, a
sample of keys and the raw spellings); similar values are paired there with an index (pg_trgm's `%`
operator over a GiST trigram index), or by levenshtein distance within blocks of the same first letter,
and pairs are joined into groups in Python. Without the contrib extensions only equal normalized values
group. The temporary table lives in a transaction that is rolled back: the check writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.migrations import SAMPLE_SIZE
from pgmill.quality.results import RuleResult, broken, judged
from pgmill.quality.rules import Rule
from pgmill.quality.scan import T, col, sample_array, sample_names, sample_objects
from pgmill.quality.schema import ensure_extension
from pgmill.quality.table_info import TableInfo

#: similar pairs read back at most; a column where more values than this are alike is not a name column
MAX_PAIRS = 200_000
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
    """Groups of rows alike on the rule's columns; rows beyond the first of each group count as failing."""
    method = str(rule.params["method"])
    norm = Normalizer.detect(conn, method)
    if not conn.autocommit:
        conn.commit()
    try:
        with conn.transaction(force_rollback=True):
            groups, truncated = _groups(conn, info, rule, norm)
    except psycopg.Error as exc:
        return broken(info.name, rule, f"near-duplicate search failed: {str(exc).strip()}")
    extra = sum(g["rows"] - 1 for g in groups)
    groups.sort(key=lambda g: -g["rows"])
    how = (f"trigram similarity >= {rule.params['similarity']}" if norm.trigram
           else f"levenshtein distance <= {rule.params['max_distance']}" if norm.fuzzy else "equal")
    msg = (f"{len(groups):,} group{'s' if len(groups) != 1 else ''} of alike rows ({how} after normalizing): {extra:,} extra rows of {n:,}"
           if groups else f"no near-duplicates in {n:,} rows ({how} after normalizing)")
    detail = {"groups": len(groups), "method": how, "notes": norm.notes, "pairs_truncated": truncated}
    return judged(info.name, rule, n, extra, msg, sample=groups[:SAMPLE_SIZE], detail=detail)


def _groups(conn: psycopg.Connection[Any], info: TableInfo, rule: Rule,
            norm: Normalizer) -> tuple[list[dict[str, Any]], bool]:
    vals = sql.Identifier("pgmill_near_dup_values")
    names = sample_names(info, rule.columns)
    key = sample_array(names)
    conn.execute(sql.SQL(
        "CREATE TEMP TABLE {v} AS SELECT row_number() OVER () AS id, norm, rows, keys, spellings FROM ("
        " SELECT {e} AS norm, count(*) AS rows, ARRAY[min({key}), max({key})] AS keys,"
        "  (array_agg(DISTINCT concat_ws(' ', {raw})))[1:{cap}] AS spellings"
        " FROM {table} AS {t} WHERE {present} GROUP BY 1) AS d"
    ).format(v=vals, e=norm.expr(rule.columns), key=key, cap=sql.Literal(SAMPLE_SIZE),
             present=norm.present(rule.columns),
             raw=sql.SQL(", ").join(sql.SQL("{}::text").format(col(c)) for c in rule.columns),
             table=info.ident, t=T))
    pairs_q: sql.Composed | None = None
    if norm.trigram:
        s = sql.Identifier(norm.trigram)
        conn.execute(sql.SQL("CREATE INDEX ON {} USING gist (norm {}.gist_trgm_ops)").format(vals, s))
        conn.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)",
                     (str(rule.params["similarity"]),))
        pairs_q = sql.SQL("SELECT a.id, b.id FROM {v} a JOIN {v} b ON a.norm OPERATOR({s}.%) b.norm"
                          " AND a.id < b.id LIMIT {lim}").format(v=vals, s=s, lim=sql.Literal(MAX_PAIRS + 1))
    elif norm.fuzzy:
        d = sql.Literal(int(rule.params["max_distance"]))
        pairs_q = sql.SQL(
            "SELECT a.id, b.id FROM {v} a JOIN {v} b ON left(a.norm, 1) = left(b.norm, 1) AND a.id < b.id"
            " AND abs(length(a.norm) - length(b.norm)) <= {d}"
            " AND length(a.norm) <= 255 AND length(b.norm) <= 255"  # levenshtein's own limit
            " AND {s}.levenshtein_less_equal(a.norm, b.norm, {d}) <= {d} LIMIT {lim}"
        ).format(v=vals, d=d, s=sql.Identifier(norm.fuzzy), lim=sql.Literal(MAX_PAIRS + 1))
    pairs = [(int(a), int(b)) for a, b in conn.execute(pairs_q).fetchall()] if pairs_q is not None else []
    truncated = len(pairs) > MAX_PAIRS
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs[:MAX_PAIRS]:
        parent[find(a)] = find(b)
    ids = list(parent)
    rows = conn.execute(
        sql.SQL("SELECT id, norm, rows, keys, spellings FROM {} WHERE rows > 1 OR id = ANY(%s)").format(vals),
        (ids,),
    ).fetchall()
    clusters: dict[int, dict[str, Any]] = {}
    for vid, text, count, keys, spellings in rows:
        g = clusters.setdefault(find(int(vid)), {"rows": 0, "normalized": [], "spellings": [], "keys": []})
        g["rows"] += int(count)
        g["normalized"].append(text)
        g["spellings"] += [s for s in spellings if s not in g["spellings"]]
        g["keys"] += [k for k in sample_objects(names, list(keys or [])) if k not in g["keys"]]
    out = []
    for g in clusters.values():
        if g["rows"] > 1:
            g["normalized"] = sorted(g["normalized"])[:SAMPLE_SIZE]
            g["spellings"] = g["spellings"][:SAMPLE_SIZE]
            g["keys"] = g["keys"][:SAMPLE_SIZE]
            out.append(g)
    return out, truncated

"""The workload: declared queries (queries/*.sql) and observed ones (pg_stat_statements).

A declared query file starts with a YAML header in `--` comments, then one SELECT with `$1, $2 ...`
parameters:

    -- name: orders_of_customer
    -- target_ms: 50              # p95 target (default: tune.target_ms, 100 ms)
    -- params: [[17], [4242]]     # parameter sets; or:
    -- params_sql: SELECT customer_id FROM shop.customers ORDER BY customer_id LIMIT 40
    SELECT * FROM shop.orders WHERE customer_id = $1 ORDER BY ordered_at DESC LIMIT 20
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml
from pglast.parser import ParseError, fingerprint
from psycopg import sql

from pgmill.db.catalog import extension_schema
from pgmill.errors import ConfigError
from pgmill.tune.analyze import Analysis, analyze
from pgmill.tune.snapshot import CatalogSnapshot

_PARAM = re.compile(r"\$(\d+)")
# pg_stat_statements writes a typed literal's constant as a parameter (`date '1995-01-01'` -> `date $2`), which
# PostgreSQL does not parse; `$2::date` means the same (an interval with a field after it is left as it is)
_TYPED_PARAM = re.compile(r"\b(date|time|timestamp|timestamptz|interval)\s+\$(\d+)\b"
                          r"(?!\s*(?:year|month|day|hour|minute|second)\b)", re.IGNORECASE)
_KEY = re.compile(r"^([A-Za-z_]+):(\s|$)")
_HEADER_KEYS = {"name", "target_ms", "params", "params_sql", "weight"}
_SAMPLES = 40  # parameter sets sampled for an observed statement


@dataclass
class WorkloadQuery:
    """One query of the workload, with the parameter sets it is costed and measured with."""

    name: str
    sql: str
    params: list[list[Any]]
    target_ms: float
    source: Literal["declared", "observed"]
    weight: float = 1.0
    calls: int | None = None
    mean_ms: float | None = None
    analysis: Analysis | None = field(default=None, repr=False)
    helper_fingerprints: set[str] = field(default_factory=set, repr=False)  # its params_sql, run by pgmill

    @property
    def n_params(self) -> int:
        return max((int(m) for m in _PARAM.findall(self.sql)), default=0)

    @property
    def runnable(self) -> bool:
        """It can be executed (and so measured): it has values for its parameters."""
        return self.n_params == 0 or bool(self.params)

    @property
    def fingerprint(self) -> str:
        return str(fingerprint(self.sql))

    def param_sets(self) -> list[list[Any]]:
        return self.params if self.n_params else [[]]


def _split_header(text: str) -> tuple[list[str], str]:
    header: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) and (lines[i].startswith("--") or not lines[i].strip()):
        if lines[i].startswith("--"):
            header.append(lines[i][2:].removeprefix(" "))
        i += 1
    return header, "\n".join(lines[i:]).strip().rstrip(";").strip()


def _header_yaml(path: Path, lines: list[str]) -> str:
    """The header's `key: value` lines (and their indented continuations); other comment lines are prose."""
    keep: list[str] = []
    in_key = False
    for line in lines:
        m = _KEY.match(line)
        if m and m.group(1) in _HEADER_KEYS:
            keep.append(line)
            in_key = True
        elif in_key and line[:1] in (" ", "\t") and line.strip():
            keep.append(line)
        else:
            in_key = False
            near = difflib.get_close_matches(m.group(1), sorted(_HEADER_KEYS), 1, 0.75) if m else []
            if near:
                raise ConfigError(f"{path}: unknown header key {m.group(1)!r}; did you mean {near[0]!r}?")  # type: ignore[union-attr]
    return "\n".join(keep)


def parse_query_file(path: Path, default_target_ms: float) -> tuple[WorkloadQuery, str | None]:
    """One queries/*.sql file; returns the query and its `params_sql` (run later, against the database)."""
    lines, body = _split_header(path.read_text(encoding="utf-8"))
    head = _header_yaml(path, lines)
    try:
        meta = yaml.safe_load(head) if head.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: the header comment is not YAML: {exc}") from exc
    if meta is None or not isinstance(meta, dict):
        meta = {}  # an ordinary comment, not a header
    if not body:
        raise ConfigError(f"{path}: no SQL after the header")
    try:
        fingerprint(body)
    except ParseError as exc:
        raise ConfigError(f"{path}: the SQL does not parse: {exc}") from exc
    raw = meta.get("params") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: params must be a list of parameter sets")
    params = [list(p) if isinstance(p, list) else [p] for p in raw]
    q = WorkloadQuery(str(meta.get("name") or path.stem), body, params,
                      float(meta.get("target_ms") or default_target_ms), "declared", float(meta.get("weight", 1.0)))
    bad = [p for p in params if len(p) != q.n_params]
    if bad:
        raise ConfigError(f"{path}: parameter set {bad[0]} has {len(bad[0])} values; the SQL uses {q.n_params}")
    params_sql = meta.get("params_sql")
    return q, str(params_sql) if params_sql else None


def declared(project_dir: Path | None, conn: psycopg.Connection[Any], default_target_ms: float) -> list[WorkloadQuery]:
    """queries/*.sql of the project, in file-name order, their `params_sql` run against the database."""
    if project_dir is None or not (project_dir / "queries").is_dir():
        return []
    out: list[WorkloadQuery] = []
    for path in sorted((project_dir / "queries").glob("*.sql")):
        q, params_sql = parse_query_file(path, default_target_ms)
        if params_sql:
            try:
                rows = conn.execute(params_sql.encode()).fetchall()
            except psycopg.Error as exc:
                conn.rollback()
                raise ConfigError(f"{path}: params_sql failed: {str(exc).strip()}") from exc
            q.params.extend(list(r)[: q.n_params] for r in rows)
            q.helper_fingerprints.add(str(fingerprint(params_sql)))
        out.append(q)
    names = [q.name for q in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"queries/: query names must be unique; repeated: {dupes}")
    return out


def find_query(project_dir: Path | None, conn: psycopg.Connection[Any], name_or_sql: str,
               default_target_ms: float) -> WorkloadQuery:
    """The declared query of that name; otherwise the text itself, as SQL (what `pgmill explain` takes)."""
    named = {q.name: q for q in declared(project_dir, conn, default_target_ms)}
    return named.get(name_or_sql) or WorkloadQuery("query", name_or_sql.strip().rstrip(";"), [], default_target_ms,
                                                   "declared")


# ---------------------------------------------------------------- observed


def has_pg_stat_statements(conn: psycopg.Connection[Any]) -> bool:
    """pg_stat_statements is loaded and its view exists (created here when the library is preloaded)."""
    if extension_schema(conn, "pg_stat_statements") is not None:
        return True
    preload = str(conn.execute("SHOW shared_preload_libraries").fetchone()[0])  # type: ignore[index]
    if "pg_stat_statements" not in preload:
        return False
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.commit()
    except psycopg.Error:
        conn.rollback()
        return False
    return True


def observed(conn: psycopg.Connection[Any], catalog: CatalogSnapshot, top: int, min_calls: int,
             target_ms: float, literals: dict[int, str] | None = None) -> list[WorkloadQuery]:
    """Top SELECTs by total time from pg_stat_statements, with parameters sampled from the tables; a
    statement with a literal text in `literals` (by queryid, sampled from pg_stat_activity) runs as that text,
    so that constants pg_stat_statements replaced by `$n` need no filling."""
    if top <= 0 or not has_pg_stat_statements(conn):
        return []
    rows = conn.execute(
        "SELECT queryid, query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls >= %s"
        " ORDER BY total_exec_time DESC, queryid LIMIT %s", (min_calls, top * 5)).fetchall()
    out: list[WorkloadQuery] = []
    for queryid, text, calls, _total, mean in rows:
        text = executable_text(str(text))
        try:
            a = analyze(text, catalog)
        except ParseError:
            continue
        if not a.is_select or not a.accesses or a.unresolved:
            continue
        literal = _literal(literals or {}, int(queryid), catalog)
        if literal is not None:
            text, a = literal
        q = WorkloadQuery(f"observed_{int(queryid) & 0xFFFFFFFFFFFF:012x}", text.strip().rstrip(";"), [],
                          target_ms, "observed", float(calls), int(calls), float(mean), a)
        if q.n_params:
            q.params = sample_params(conn, q.n_params, a)
        out.append(q)
        if len(out) >= top:
            break
    return out


def _literal(literals: dict[int, str], queryid: int, catalog: CatalogSnapshot) -> tuple[str, Analysis] | None:
    """The sampled literal text of a statement, if it is a SELECT pgmill can run as it is (no `$n`)."""
    text = literals.get(queryid)
    if text is None or has_params(text):
        return None
    try:
        a = analyze(text, catalog)
    except ParseError:
        return None
    return (text, a) if a.is_select and a.accesses and not a.unresolved else None


def has_params(text: str) -> bool:
    """The statement has `$n` placeholders (a value pgmill would have to supply)."""
    return _PARAM.search(text) is not None


def executable_text(text: str) -> str:
    """A statement as pg_stat_statements wrote it, in a form PostgreSQL parses: `date $2` -> `$2::date`."""
    return _TYPED_PARAM.sub(r"$\2::\1", text)


def sample_params(conn: psycopg.Connection[Any], n: int, a: Analysis) -> list[list[Any]]:
    """Real values for `$1..$n` from the columns they are compared with (none when one cannot be placed)."""
    columns: dict[int, list[Any]] = {}
    for i in range(1, n + 1):
        if i in a.limit_params:
            columns[i] = [10]
            continue
        where = a.params.get(i)
        if where is None:
            return []
        (schema, table), col, _role = where
        # evenly spread distinct values: deterministic for the same data, unlike TABLESAMPLE
        q = sql.SQL(
            "SELECT v FROM (SELECT v, row_number() OVER (ORDER BY v) AS r, count(*) OVER () AS n"
            " FROM (SELECT DISTINCT {c} AS v FROM {s}.{t} WHERE {c} IS NOT NULL) d) x"
            " WHERE r %% greatest(n / %s, 1) = 0 ORDER BY r LIMIT %s"
        ).format(c=sql.Identifier(col), s=sql.Identifier(schema), t=sql.Identifier(table))
        columns[i] = [r[0] for r in conn.execute(q, (_SAMPLES, _SAMPLES)).fetchall()]
        if not columns[i]:
            return []
    sets: list[list[Any]] = []
    for k in range(_SAMPLES):
        row = [columns[i][(k * 7 + i) % len(columns[i])] for i in range(1, n + 1)]
        for lo in range(1, n + 1):  # a `lo` and `hi` bound on one column: keep them in order
            info = a.params.get(lo)
            if info is None or info[2] != "lo":
                continue
            for hi in range(1, n + 1):
                other = a.params.get(hi)
                if other is not None and other[2] == "hi" and other[:2] == info[:2] and row[lo - 1] > row[hi - 1]:
                    row[lo - 1], row[hi - 1] = row[hi - 1], row[lo - 1]
        sets.append(row)
    return sets


def load_workload(conn: psycopg.Connection[Any], catalog: CatalogSnapshot, project_dir: Path | None, *,
                  target_ms: float, observed_top: int, observed_min_calls: int,
                  literals: dict[int, str] | None = None) -> list[WorkloadQuery]:
    """Declared queries first, then observed ones that are not a declared query again."""
    decl = declared(project_dir, conn, target_ms)
    for q in decl:
        q.analysis = analyze(q.sql, catalog)
    # pgmill's own statements are no workload: the declared queries it measures, the params_sql it runs
    seen = {q.fingerprint for q in decl} | {f for q in decl for f in q.helper_fingerprints}
    obs = [q for q in observed(conn, catalog, observed_top, observed_min_calls, target_ms, literals)
           if q.fingerprint not in seen]
    conn.commit()
    return decl + obs

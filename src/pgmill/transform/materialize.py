"""Building one model, in one transaction on the caller's connection.

view:        CREATE OR REPLACE VIEW; when the columns change (Postgres refuses to drop, rename or retype
             a view's columns) the view is dropped and created again.
table:       CREATE TABLE name__pgmill_new AS ..., declared indexes built on it, then in the same
             transaction the old table is dropped and the new one renamed into place. Readers wait on
             the old table's lock for the moment of the swap and then read the new table, so they see the
             old rows or the new ones, never a half-built table or a missing one. If views depend on the
             old table (and the columns are unchanged) it is refilled in place instead, which keeps the
             views valid and is just as atomic.
incremental: the first build is a table build; later runs add only the rows whose cursor is newer than the
             newest cursor already in the table (appended, or merged on `unique_key`). Columns the SELECT
             gained are added to the table; columns it lost stay, filled with NULL from then on.

Dropping a relation that other views depend on (a view whose columns changed, a view becoming a table)
cascades only when every dependent is a model this run rebuilds afterwards; otherwise it is an error
that names them.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from pgmill.config.transform import IndexSpec
from pgmill.db import catalog
from pgmill.db.settings import set_local
from pgmill.errors import DatabaseError
from pgmill.transform.models import Model

Conn = psycopg.Connection[Any]
NEW_SUFFIX = "__pgmill_new"
_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}


@dataclass
class Built:
    """What building a model did: rows written (None for a view) and facts for the ledger."""

    rows: int | None
    detail: dict[str, Any] = field(default_factory=dict)


def build(conn: Conn, model: Model, rebuilt_later: frozenset[str] = frozenset(),
          full_refresh: bool = False, settings: dict[str, str] | None = None) -> Built:
    """Build `model` in one transaction; `rebuilt_later`: keys of models this run builds after it;
    `settings`: server settings for this transaction only (set_config(..., is_local => true))."""
    with conn.transaction():
        # two runs building the same model would race on name__pgmill_new: the second waits
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"pgmill model {model.key}",))
        set_local(conn, settings or {})
        kind = relkind(conn, model.schema, model.name)
        if model.materialized == "view":
            return _view(conn, model, kind, rebuilt_later)
        if model.materialized == "incremental" and kind in ("r", "p") and not full_refresh:
            return _incremental(conn, model)
        return _table(conn, model, kind, rebuilt_later)


def relkind(conn: Conn, schema: str, name: str) -> str | None:
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    return str(row[0]) if row else None


# ---------------------------------------------------------------- view


def _view(conn: Conn, model: Model, kind: str | None, rebuilt_later: frozenset[str]) -> Built:
    create = sql.SQL("CREATE VIEW {} AS {}").format(model.ident(), sql.SQL(model.query))
    if kind == "v":
        # the columns changed when these are raised: only drop and create (below) can do that
        with contextlib.suppress(pgerr.InvalidTableDefinition, pgerr.DatatypeMismatch, pgerr.FeatureNotSupported):
            with conn.transaction():
                conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(
                    model.ident(), sql.SQL(model.query)))
            return Built(None, {"materialized": "view"})
    if kind is not None:
        _drop(conn, model, kind, rebuilt_later)
    conn.execute(create)
    return Built(None, {"materialized": "view", "recreated": kind is not None})


# ---------------------------------------------------------------- table


def _table(conn: Conn, model: Model, kind: str | None, rebuilt_later: frozenset[str]) -> Built:
    new = model.ident(NEW_SUFFIX)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
    cur = conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(new, sql.SQL(model.query)))
    rows = cur.rowcount
    specs = _declared(model)
    for spec in specs:
        conn.execute(_index_sql(model, spec, new, building=True))
    detail: dict[str, Any] = {"materialized": model.materialized, "swap": "rename"}
    if kind in ("r", "p"):
        detail.update(_swap(conn, model, new, specs, rebuilt_later))
    else:
        if kind is not None:
            _drop(conn, model, kind, rebuilt_later)
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(model.name)))
        _rename_indexes(conn, model, specs)
    return Built(rows, detail)


def _swap(conn: Conn, model: Model, new: sql.Identifier, specs: list[IndexSpec],
          rebuilt_later: frozenset[str]) -> dict[str, Any]:
    old = model.ident()
    facts = _swap_facts(conn, model)
    if facts.dependents and facts.same_columns:
        # views hold the old table's identity: keep it, swap its contents (TRUNCATE locks out readers
        # until commit, so they still see all old or all new rows)
        conn.execute(sql.SQL("TRUNCATE {}").format(old))
        cur = conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(old, new))
        conn.execute(sql.SQL("DROP TABLE {}").format(new))
        for spec in specs:
            conn.execute(_index_sql(model, spec, old, building=False, if_not_exists=True))
        return {"swap": "refill", "rows_refilled": cur.rowcount}
    declared = {_index_name(model, s) for s in specs}
    _drop(conn, model, "r", rebuilt_later, facts.dependents)
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(model.name)))
    _rename_indexes(conn, model, specs)
    for grant in _grants(model, facts.grants):
        conn.execute(grant)
    kept, lost = 0, []
    for iname, idef in facts.indexes:
        if iname in declared:
            continue
        # indexes made outside the model (by hand, by the index advisor) come back with the table
        try:
            with conn.transaction():
                conn.execute(idef.encode())  # pg_indexes gives complete, quoted DDL
            kept += 1
        except (pgerr.UndefinedColumn, pgerr.UndefinedObject, pgerr.DatatypeMismatch):
            lost.append(iname)
    out: dict[str, Any] = {"swap": "rename", "indexes_kept": kept}
    if lost:
        out["indexes_dropped"] = lost  # their columns are gone from the model
    return out


@dataclass(frozen=True)
class _SwapFacts:
    same_columns: bool  # the new table's columns (names, types, order) are the old one's
    dependents: list[tuple[str, str]]  # views reading the old table (see _dependents)
    indexes: list[tuple[str, str]]  # the old table's indexes: (name, CREATE INDEX ...)
    grants: list[tuple[str | None, str, bool]]  # (grantee, privilege, grantable); grantee None: PUBLIC


_SWAP_FACTS = """
WITH rel AS (
  SELECT to_regclass(format('%%I.%%I', %(schema)s::text, %(name)s::text)) AS old,
         to_regclass(format('%%I.%%I', %(schema)s::text, %(new)s::text)) AS new)
SELECT
  (SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)] ORDER BY a.attnum)
     FROM pg_attribute a, rel WHERE a.attrelid = rel.old AND a.attnum > 0 AND NOT a.attisdropped)
  IS NOT DISTINCT FROM
  (SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)] ORDER BY a.attnum)
     FROM pg_attribute a, rel WHERE a.attrelid = rel.new AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT coalesce(jsonb_agg(jsonb_build_array(indexname, indexdef)), '[]') FROM pg_indexes
    WHERE schemaname = %(schema)s AND tablename = %(name)s),
  (SELECT coalesce(jsonb_agg(jsonb_build_array(CASE WHEN a.grantee = 0 THEN NULL
            ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable)), '[]')
     FROM rel, pg_class c, aclexplode(c.relacl) a WHERE c.oid = rel.old AND a.grantee <> c.relowner)
"""


def _swap_facts(conn: Conn, model: Model) -> _SwapFacts:
    """What the swap must know about the old table and its new build, in one round trip."""
    row = conn.execute(_SWAP_FACTS, {"schema": model.schema, "name": model.name,
                                     "new": model.sibling(NEW_SUFFIX)}).fetchone()
    assert row is not None
    return _SwapFacts(bool(row[0]), _dependents(conn, model.schema, model.name),
                      [(str(n), str(d)) for n, d in row[1]],
                      [(g, str(p), bool(w)) for g, p, w in row[2]])


def _grants(model: Model, rows: list[tuple[str | None, str, bool]]) -> list[sql.Composed]:
    """GRANTs that give the new table the privileges others held on the old one: one per grantee."""
    by_grantee: dict[tuple[str | None, bool], list[str]] = {}
    for role, priv, grantable in rows:
        if priv in _PRIVILEGES:
            by_grantee.setdefault((role, grantable), []).append(priv)
    return [sql.SQL("GRANT {} ON TABLE {} TO {}{}").format(
        sql.SQL(", ").join(sql.SQL(p) for p in sorted(privs)), model.ident(),
        sql.Identifier(role) if role is not None else sql.SQL("PUBLIC"),
        sql.SQL(" WITH GRANT OPTION" if grantable else "")) for (role, grantable), privs in by_grantee.items()]


# ---------------------------------------------------------------- incremental


def _incremental(conn: Conn, model: Model) -> Built:
    assert model.cursor is not None
    target, cursor = model.ident(), sql.Identifier(model.cursor)
    # appended rows must be strictly newer, or the newest ones would come again; merged rows may share
    # the newest cursor value (rows that arrived late in the same instant) since the key dedupes them
    op = sql.SQL(">=") if model.unique_key else sql.SQL(">")
    stage_name = f"pgmill_incr_{hashlib.sha1(model.key.encode()).hexdigest()[:12]}"
    stage = sql.Identifier(stage_name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
    conn.execute(sql.SQL(
        "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT * FROM ({body}\n) AS m"
        " WHERE (SELECT max({c}) FROM {t}) IS NULL OR m.{c} {op} (SELECT max({c}) FROM {t})"
    ).format(stage=stage, body=sql.SQL(model.query), c=cursor, t=target, op=op))
    have = catalog.columns(conn, model.schema, model.name)
    incoming = list(catalog.columns(conn, "pg_temp", stage_name).items())
    added = []
    for name, typ in incoming:
        if name not in have:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                target, sql.Identifier(name), sql.SQL(typ)))
            added.append(name)
    for spec in _declared(model):
        conn.execute(_index_sql(model, spec, target, building=False, if_not_exists=True))
    cols = sql.SQL(", ").join(sql.Identifier(n) for n, _ in incoming)
    insert = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {}").format(target, cols, cols, stage)
    if model.unique_key:
        rest = [sql.Identifier(n) for n, _ in incoming if n not in model.unique_key]
        # rows seen before (the newest cursor value comes again) are rewritten only if they changed
        action: sql.Composable = sql.SQL("DO NOTHING") if not rest else sql.SQL(
            "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(n) for n in rest),
            sql.SQL(", ").join(sql.SQL("t.{}").format(n) for n in rest),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(n) for n in rest))
        insert = sql.SQL("{} ON CONFLICT ({}) {}").format(
            insert, sql.SQL(", ").join(map(sql.Identifier, model.unique_key)), action)
    cur = conn.execute(insert)
    detail: dict[str, Any] = {"materialized": "incremental", "mode": "merge" if model.unique_key else "append"}
    if added:
        detail["added_columns"] = added
    return Built(cur.rowcount, detail)


# ---------------------------------------------------------------- helpers


def _declared(model: Model) -> list[IndexSpec]:
    """Declared indexes, plus what incremental runs need: the key (for ON CONFLICT) and the cursor (max)."""
    specs = list(model.indexes)
    if model.materialized == "incremental":
        if model.unique_key and not any(s.unique and s.columns == model.unique_key for s in specs):
            specs.append(IndexSpec(columns=model.unique_key, unique=True))
        if model.cursor and not any(s.columns[0] == model.cursor for s in specs):
            specs.append(IndexSpec(columns=[model.cursor]))
    return specs


def _index_name(model: Model, spec: IndexSpec, building: bool = False) -> str:
    cols = re.sub(r"[^a-z0-9_]+", "_", "_".join(spec.columns).lower()).strip("_")
    name = f"{model.name}__{cols}_{'uidx' if spec.unique else 'idx'}"
    if len(name.encode()) > 55:  # room for the build suffix; a hash keeps cut names distinct
        digest = hashlib.sha1(f"{model.key}|{spec.model_dump_json()}".encode()).hexdigest()[:8]
        name = name.encode()[:46].decode(errors="ignore") + "_" + digest
    return name + ("__n" if building else "")


def _index_sql(model: Model, spec: IndexSpec, table: sql.Identifier, *, building: bool,
               if_not_exists: bool = False) -> sql.Composed:
    return sql.SQL("CREATE {}INDEX {}{} ON {} USING {} ({})").format(
        sql.SQL("UNIQUE ") if spec.unique else sql.SQL(""),
        sql.SQL("IF NOT EXISTS ") if if_not_exists else sql.SQL(""),
        sql.Identifier(_index_name(model, spec, building)), table, sql.SQL(spec.using),
        sql.SQL(", ").join(map(sql.Identifier, spec.columns)))


def _rename_indexes(conn: Conn, model: Model, specs: list[IndexSpec]) -> None:
    for spec in specs:
        conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(model.schema, _index_name(model, spec, building=True)),
            sql.Identifier(_index_name(model, spec))))


def _dependents(conn: Conn, schema: str, name: str) -> list[tuple[str, str]]:
    """Views (and materialized views) that read the relation, directly or through other views."""
    rows = conn.execute(
        "WITH RECURSIVE dep(oid) AS ("
        "  SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid"
        "  UNION"
        "  SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN dep ON d.refobjid = dep.oid"
        "  WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.refobjid)"
        " SELECT n.nspname, c.relname FROM dep JOIN pg_class c ON c.oid = dep.oid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE dep.oid <> to_regclass(format('%%I.%%I', %s::text, %s::text))::oid ORDER BY 1, 2",
        (schema, name, schema, name)).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _drop(conn: Conn, model: Model, kind: str, rebuilt_later: frozenset[str],
          deps: list[tuple[str, str]] | None = None) -> None:
    """Drop the model's current relation; cascade only onto models this run builds again afterwards.
    `deps`: its dependents (see _dependents), when already known."""
    deps = _dependents(conn, model.schema, model.name) if deps is None else deps
    blocked = [f"{s}.{n}" for s, n in deps if f"{s}.{n}" not in rebuilt_later]
    if blocked:
        raise DatabaseError(
            f"{model.file}: cannot replace {model.key}: other views depend on it ({', '.join(blocked)}) and "
            f"this run does not rebuild them; run `pgmill transform --select {model.name}+`")
    what = {"v": "VIEW", "m": "MATERIALIZED VIEW", "r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE"}.get(kind)
    if what is None:
        raise DatabaseError(f"{model.file}: {model.key} exists and is not a table or view (relkind {kind!r})")
    conn.execute(sql.SQL("DROP {} {}{}").format(
        sql.SQL(what), model.ident(), sql.SQL(" CASCADE" if deps else "")))

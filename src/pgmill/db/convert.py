"""An existing plain table converted into a range-partitioned one (`pgmill partition TABLE`).

The plan runs in ONE transaction, so a failure anywhere (a refusal found under the lock, a full disk, a
cancelled command) leaves the plain table exactly as it was:

1. `LOCK` the table `IN SHARE ROW EXCLUSIVE MODE`, waiting at most `lock_timeout`: reads go on, writes
   (loads, UPDATE, DELETE) wait until the commit. No NULL in the partition column (checked under the lock).
2. Create `<name>__pgmill_part` `PARTITION BY RANGE`, `LIKE` the table (defaults, NOT NULL, checks,
   generated columns, comments), with a partition for each period that has rows and `premake` after
   max(newest row, now), named as pgmill names them (`<name>_pYYYYMM`); no default partition.
3. Copy in one `INSERT ... SELECT` that PostgreSQL routes to the partitions (one scan of the table); the
   count copied must equal the count read under the lock.
4. Build the primary key, unique constraints and indexes on the copy (after it: one sort per index, not a
   b-tree insert per row), under temporary names; add the outgoing foreign keys.
5. Carry over the owner, the grants (`pgmill_reader`, `pgmill_loader`, anyone's) and the table's comment.
6. `LOCK ... IN ACCESS EXCLUSIVE MODE` (the only moment readers wait: catalog changes, milliseconds), hand
   owned sequences to the new table, `DROP` the old one, rename the new one and its constraints and indexes
   to the old names. `COMMIT`.

Why writers wait for the copy rather than going on during it: a copy taken while rows are updated and
deleted can only be caught up under the final lock by comparing the whole table again (rows newer than
the last copied are not enough: an UPDATE or DELETE of an already copied row leaves no such trace), so
the final lock would last as long as the copy anyway. Readers are never blocked but for step 6.

Refused, before anything changes: a table already partitioned or itself a partition; a primary key,
unique constraint or unique index without the partition column (PostgreSQL cannot enforce it across
partitions); an exclusion constraint; NULLs in the partition column; what a swap would silently break or
lose (views or foreign keys of other tables referencing it, triggers, row security, identity columns,
column grants).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmill.config.spec import PartitionSpec
from pgmill.db import partition
from pgmill.db.catalog import qualified, split_table
from pgmill.errors import ConfigError, ContractError, PipelineLocked

#: rows copied per second with indexes built after (bench/bench_partition_convert.py, 2 vCPU), for the
#: dry run's estimate of how long writers would wait
COPY_ROWS_PER_S = 200_000
_TYPES = {"date": "date", "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz"}


@dataclass
class PlannedPartition:
    name: str
    start: str
    end: str
    rows: int


@dataclass
class ConversionPlan:
    """What `pgmill partition` does (or, dry, would do) to one table, and how long it held its locks."""

    table: str
    by: str
    interval: str
    dry_run: bool
    rows: int = 0
    bytes: int = 0
    partitions: list[PlannedPartition] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # carried over, by name
    indexes: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)  # "grantee: PRIVILEGE"
    estimated_write_wait_s: float = 0.0
    write_wait_s: float | None = None  # measured: writers waited this long (SHARE ROW EXCLUSIVE held)
    exclusive_s: float | None = None  # measured: readers waited at most this long (ACCESS EXCLUSIVE held)

    @property
    def steps(self) -> list[str]:
        new = f"{self.table}__pgmill_part"
        return [
            f"LOCK {self.table} IN SHARE ROW EXCLUSIVE MODE (reads go on, writes wait until the commit, "
            f"about {self.estimated_write_wait_s:.1f} s)",
            f"check that no row has NULL in {self.by}",
            f"CREATE TABLE {new} (LIKE {self.table} ...) PARTITION BY RANGE ({self.by}) with "
            f"{len(self.partitions)} partition(s) of one {self.interval}, no default partition",
            f"copy {self.rows:,} row(s) in one INSERT ... SELECT routed to the partitions, the count checked",
            f"build {len(self.constraints)} constraint(s) and {len(self.indexes)} index(es) on {new}",
            f"carry over the owner, {len(self.grants)} grant(s) and the comment",
            f"LOCK {self.table} IN ACCESS EXCLUSIVE MODE (reads wait too: catalog changes only), DROP it, "
            f"rename {new} to it, its constraints and indexes to their old names; COMMIT",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": self.steps}


@dataclass
class _Table:
    """What the catalog says about the plain table."""

    oid: int
    qname: str  # schema.name as quote_ident writes it (as in pg_get_indexdef)
    column_type: str
    constraints: list[tuple[int, str, str, str]]  # oid, name, contype, definition
    indexes: list[tuple[int, str, str]]  # oid, name, definition
    grants: list[tuple[str | None, str]]  # grantee (None: PUBLIC), privilege
    owner: str
    comment: str | None
    sequences: list[tuple[str, str]]  # owned sequence (regclass text), column


def convert(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, *, dry_run: bool = False,
            today: dt.date | None = None, lock_timeout_s: float = 10.0) -> ConversionPlan:
    """Convert `table` (schema.name) into a table range-partitioned as `spec` says; `conn` in autocommit."""
    plan = ConversionPlan(table, spec.by, spec.period, dry_run)
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")  # periods of timestamptz rows cut in UTC, like the bounds
        info = _inspect(conn, table, spec)
        if not dry_run:
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (f"{int(lock_timeout_s * 1000)}ms",))
            try:
                conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(qualified(table)))
            except psycopg.errors.LockNotAvailable as exc:
                raise PipelineLocked(f"{table} is busy: writers held it for more than {lock_timeout_s:g} s; "
                                     "try again (or with a longer --lock-timeout)") from exc
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', '0', true)")
            info = _inspect(conn, table, spec)  # again, now that no one can change it
        locked = time.monotonic()
        _plan(conn, table, spec, info, plan, today)
        if dry_run:
            raise psycopg.Rollback  # leaves the transaction (which changed nothing) rolled back
        new = _build(conn, table, spec, info, plan)
        t0 = time.monotonic()
        _swap(conn, table, new, info)
    if dry_run:
        return plan
    done = time.monotonic()
    plan.write_wait_s, plan.exclusive_s = round(done - locked, 3), round(done - t0, 3)
    return plan


def _inspect(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec) -> _Table:
    schema, rel = split_table(table)
    row = conn.execute(
        "SELECT c.oid, c.relkind, c.relispartition, c.relrowsecurity, pg_catalog.pg_get_userbyid(c.relowner),"
        " pg_catalog.format('%%I.%%I', n.nspname, c.relname), pg_catalog.obj_description(c.oid, 'pg_class')"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))",
        (schema, rel),
    ).fetchone()
    if row is None:
        raise ConfigError(f"{table} does not exist: nothing to convert (a run creates it partitioned)")
    oid, kind, is_part, rls, owner, qname, comment = row
    if kind == "p":
        raise ConfigError(f"{table} is already partitioned: nothing to convert")
    if kind != "r" or is_part:
        raise ConfigError(f"{table} is not a plain table ({'a partition' if is_part else f'relkind {kind}'}): "
                          "pgmill converts only plain tables")
    if not partition.name_fits(table):
        raise ConfigError(f"table name {table!r} is too long for partition names (_pYYYYMMDD)")
    cols = dict(conn.execute(
        "SELECT attname, pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,)).fetchall())
    if spec.by not in cols:
        raise ConfigError(f"{table} has no column {spec.by}, the contract's partition column")
    if cols[spec.by] not in _TYPES:
        raise ConfigError(f"{table}.{spec.by} is {cols[spec.by]}: a partition column must be date, timestamp "
                          "or timestamptz")
    _refuse_what_a_swap_breaks(conn, table, oid, bool(rls))
    constraints = [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in conn.execute(
        "SELECT c.oid, c.conname, c.contype, pg_catalog.pg_get_constraintdef(c.oid),"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.conrelid AND a.attname = %s"
        "         AND a.attnum = ANY (c.conkey))"
        " FROM pg_catalog.pg_constraint c WHERE c.conrelid = %s AND c.contype IN ('p', 'u', 'x', 'f')"
        " ORDER BY c.contype DESC, c.conname", (spec.by, oid)).fetchall() if _keyed(table, spec.by, r)]
    indexes = conn.execute(
        "SELECT i.indexrelid, c.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisunique,"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = %s"
        "         AND a.attnum = ANY (i.indkey::int2[]))"
        " FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k"
        "  WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid) ORDER BY c.relname",
        (spec.by, oid)).fetchall()
    for _, name, _, unique, has in indexes:
        if unique and not has:
            raise ConfigError(f"unique index {name} of {table} lacks the partition column {spec.by}: PostgreSQL "
                              "cannot enforce it across partitions; add the column to it (or drop it) first")
    grants = [(r[0], str(r[1])) for r in conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type"
        " FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a WHERE c.oid = %s AND a.grantee <> c.relowner"
        " ORDER BY 1, 2", (oid,)).fetchall()]
    sequences = [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT d.objid::regclass::text, a.attname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a"
        " ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.refobjid = %s AND d.deptype = 'a'"
        " AND d.classid = 'pg_catalog.pg_class'::regclass"
        " AND d.objid IN (SELECT oid FROM pg_catalog.pg_class WHERE relkind = 'S')", (oid,)).fetchall()]
    return _Table(int(oid), str(qname), _TYPES[cols[spec.by]], constraints,
                  [(int(i[0]), str(i[1]), str(i[2])) for i in indexes], grants, str(owner),
                  None if comment is None else str(comment), sequences)


def _keyed(table: str, by: str, con: tuple[Any, ...]) -> bool:
    """Refuse a key the partitioned table cannot enforce; True to keep the constraint in the list."""
    _, name, kind, _, has = con
    what = {"p": "primary key", "u": "unique constraint"}.get(kind)
    if kind == "x":
        raise ConfigError(f"exclusion constraint {name} of {table} cannot be carried to a partitioned table: "
                          "drop it first")
    if what and not has:
        raise ConfigError(f"the {what} {name} of {table} lacks the partition column {by}: PostgreSQL cannot "
                          f"enforce it across partitions; add {by} to it first (and to the contract's key)")
    return True


def _refuse_what_a_swap_breaks(conn: psycopg.Connection[Any], table: str, oid: int, rls: bool) -> None:
    checks = [
        ("views depend on it", "SELECT DISTINCT r.ev_class::regclass::text FROM pg_catalog.pg_depend d"
         " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid WHERE d.refobjid = %(o)s AND r.ev_class <> %(o)s"),
        ("foreign keys of other tables reference it", "SELECT conname || ' of ' || conrelid::regclass::text"
         " FROM pg_catalog.pg_constraint WHERE confrelid = %(o)s AND contype = 'f'"),
        ("it has triggers", "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = %(o)s AND NOT tgisinternal"),
        ("it has identity columns", "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %(o)s"
         " AND attidentity <> '' AND NOT attisdropped"),
        ("it has column grants", "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %(o)s"
         " AND attacl IS NOT NULL AND NOT attisdropped"),
        ("it is a parent of inheritance", "SELECT inhrelid::regclass::text FROM pg_catalog.pg_inherits"
         " WHERE inhparent = %(o)s"),
    ]
    for why, query in checks:
        names = [str(r[0]) for r in conn.execute(query, {"o": oid}).fetchall()]
        if names:
            raise ConfigError(f"{table} is not converted: {why} ({', '.join(sorted(names))}), which the swap "
                              "would break or lose; remove them, convert, then re-create them")
    if rls:
        raise ConfigError(f"{table} is not converted: it has row level security, which the swap would lose")


def _plan(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, info: _Table, plan: ConversionPlan,
          today: dt.date | None) -> None:
    by = sql.Identifier(spec.by)
    counts = conn.execute(sql.SQL("SELECT pg_catalog.date_trunc({}, {})::date, count(*) FROM {} GROUP BY 1")
                          .format(sql.Literal(spec.period), by, qualified(table))).fetchall()
    nulls = sum(int(n) for start, n in counts if start is None)
    if nulls:
        raise ContractError(f"{table}: {nulls:,} row(s) have NULL in the partition column {spec.by}: they would "
                            f"have no partition; set {spec.by} on them (or delete them) first")
    per = {start: int(n) for start, n in counts}
    starts = set(per) | set(partition.ahead(spec, today, newest=max(per, default=None)))
    schema, _ = split_table(table)
    names = {partition.partition_name(table, s, spec.period): s for s in starts}
    clash = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = %s::regnamespace"
                         " AND relname = ANY (%s)", (schema, list(names))).fetchall()
    if clash:
        raise ConfigError(f"{table} is not converted: {', '.join(sorted(str(r[0]) for r in clash))} already "
                          "exist(s), the name(s) its partitions would take")
    plan.partitions = [PlannedPartition(n, s.isoformat(), partition.period_end(s, spec.period).isoformat(),
                                        per.get(s, 0)) for n, s in sorted(names.items(), key=lambda kv: kv[1])]
    plan.rows = sum(per.values())
    size = conn.execute("SELECT pg_catalog.pg_total_relation_size(%s)", (info.oid,)).fetchone()
    plan.bytes = int(size[0]) if size else 0
    plan.constraints = [name for _, name, _, _ in info.constraints]
    plan.indexes = [name for _, name, _ in info.indexes]
    plan.grants = [f"{grantee or 'PUBLIC'}: {priv}" for grantee, priv in info.grants]
    plan.estimated_write_wait_s = round(plan.rows / COPY_ROWS_PER_S, 1)


def _build(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, info: _Table,
           plan: ConversionPlan) -> sql.Identifier:
    schema, rel = split_table(table)
    old, new = qualified(table), sql.Identifier(schema, f"{rel}__pgmill_part")
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED"
                         " INCLUDING COMMENTS) PARTITION BY RANGE ({})").format(new, old, sql.Identifier(spec.by)))
    cols = sql.SQL(", ").join(sql.Identifier(str(r[0])) for r in conn.execute(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum", (info.oid,)).fetchall())
    for p in plan.partitions:
        partition.create_partition(conn, new, sql.Identifier(schema, p.name), dt.date.fromisoformat(p.start),
                                   spec.period, info.column_type)
    # one scan routed to the partitions (measured at 1M rows: a scan per partition's range took 13.9 s, this 4.8)
    cur = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(new, cols, cols, old))
    if cur.rowcount != plan.rows:  # cannot happen under the lock; a guard, not a branch anyone expects
        raise ContractError(f"{table}: copied {cur.rowcount} rows, expected {plan.rows}")
    for coid, _, _, definition in info.constraints:
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(new, sql.Identifier(_temp_name(coid)))
                     + sql.SQL(definition))  # the server's own text
    for ioid, name, definition in info.indexes:
        conn.execute(_index_on(definition, info.qname, name, new, sql.Identifier(_temp_name(ioid)), conn))
    if info.owner != _current_user(conn):
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(new, sql.Identifier(info.owner)))
    for grantee, priv in info.grants:
        conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(
            sql.SQL(priv), new, sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)))
    if info.comment is not None:
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(info.comment)))
    return new


def _swap(conn: psycopg.Connection[Any], table: str, new: sql.Identifier, info: _Table) -> None:
    schema, rel = split_table(table)
    old = qualified(table)
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(old))
    for seq, column in info.sequences:
        conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
            sql.SQL(seq), sql.Identifier(schema, f"{rel}__pgmill_part", column)))
    conn.execute(sql.SQL("DROP TABLE {}").format(old))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(rel)))
    for coid, name, _, _ in info.constraints:
        conn.execute(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
            old, sql.Identifier(_temp_name(coid)), sql.Identifier(name)))
    for ioid, name, _ in info.indexes:
        conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(schema, _temp_name(ioid)), sql.Identifier(name)))


def _temp_name(oid: int) -> str:
    """A constraint's or index's name on the copy until the swap (names of indexes are unique per schema)."""
    return f"pgmill_conv_{oid}"


def _index_on(definition: str, qold: str, name: str, new: sql.Identifier, temp: sql.Identifier,
              conn: psycopg.Connection[Any]) -> sql.Composed:
    """pg_get_indexdef's `CREATE [UNIQUE] INDEX name ON schema.table USING ...` moved to `new`, named `temp`."""
    qname = conn.execute("SELECT pg_catalog.quote_ident(%s)", (name,)).fetchone()
    unique = definition.startswith("CREATE UNIQUE INDEX ")
    head = f"CREATE {'UNIQUE ' if unique else ''}INDEX {qname[0] if qname else name} ON {qold} USING "
    if not definition.startswith(head):
        raise ConfigError(f"cannot carry over index {name}: unexpected definition {definition!r}")
    return sql.SQL("CREATE {}INDEX {} ON {} USING ").format(
        sql.SQL("UNIQUE " if unique else ""), temp, new) + sql.SQL(definition[len(head):])


def _current_user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""

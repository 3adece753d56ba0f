"""A table or a SELECT on another PostgreSQL database, read incrementally by a cursor column.

The read is one READ ONLY REPEATABLE READ transaction on the source: the column check and the read see
the same snapshot, and nothing pgmill sends can change the source. Rows come through a server-side cursor,
a fetch at a time, so memory holds one batch, not the result.

Incremental reads and ties. With a cursor column the rows come ordered by it (NULLs first), and the rerun
reads only rows whose cursor is strictly greater than the last one committed. `>` is exact only if a run of
equal cursor values is never split between two batches: if batch n ended in the middle of the rows at
value v, its checkpoint would say v, and the rerun after a crash would skip the rest of them. So a batch
always ends at a change of cursor value: the rows that share the last value are held back for the next
batch (and when one value alone has more than `batch_rows` rows, that batch grows to hold all of them).
Every checkpoint is then a resume point that neither repeats nor skips a row, whatever the load mode, so
append loads exactly once too. The price, common to every cursor-based load: a row that appears later with
a cursor value at or below the committed one (a transaction that commits late, a NULL cursor) is not
read; give the cursor a value that only grows at commit, or reset the pipeline's state to reload.

The resume value comes from this source's own checkpoint (the cursor of the last row *read*), not from
pgmill.state.cursor_value (the newest *loaded*): a batch whose last rows were quarantined must not be read,
and quarantined, again.

Types. int, float, bool, text, date, timestamp and timestamptz come typed (timestamps in UTC); every other
type (numeric, uuid, json, arrays, intervals, enums...) is cast to text by the source, which keeps its exact
value (numeric digits, JSON as written) for the contract to check. A date or timestamp Python cannot hold
(infinity, years BC) arrives as its text, so the contract quarantines that row instead of the read failing.

A `table` is 'name' or 'schema.name', taken literally (case-sensitive, no quotes needed). A row is named
"postgres:<table or query>:row n", n counting the rows of this read, in cursor order when there is one.

Partitions as units (`partitions: true` on a partitioned `table`): one stream per leaf partition, each read
as above from the partition itself, with its own resume point (checkpoint key "postgres:<partition>"), so
partitions load in parallel and one that fails resumes alone. A partition with no resume point of its own
starts from the whole table's (a pipeline that read the table as one stream before), else from the start:
never from the newest cursor value loaded, which another partition may have reached first. Its rows are
named "postgres:<partition>:row n". A limit of that fallback: a partition attached after the switch, holding
rows at or below the whole table's resume point, is read from there on; load such rows with a pipeline of
their own.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import psycopg
import pyarrow as pa
from psycopg import abc, sql
from psycopg.adapt import Loader
from psycopg.pq import Format

from pgmill.config.spec import PostgresSource
from pgmill.db.connect import Target
from pgmill.errors import DatabaseError, DatabaseUnavailable, SourceError
from pgmill.ingest.sources.base import RawBatch, SourceState, Stream, StreamRequest
from pgmill.redact import redact
from pgmill.retry import describe, is_transient

CHECKPOINT_KEY = "postgres"

_BOOL = 16
_INTS = {20, 21, 23, 26}  # int8, int2, int4, oid
_FLOATS = {700, 701}
_TEXTS = {19, 25, 1042, 1043}  # name, text, bpchar, varchar
_DATE, _TIMESTAMP, _TIMESTAMPTZ = 1082, 1114, 1184
_NUMERIC = 1700
_TYPED = {_BOOL, _DATE, _TIMESTAMP, _TIMESTAMPTZ} | _INTS | _FLOATS | _TEXTS
_ARROW: dict[int, pa.DataType] = {
    _BOOL: pa.bool_(),
    **{o: pa.int64() for o in _INTS},
    **{o: pa.float64() for o in _FLOATS},
    **{o: pa.string() for o in _TEXTS},
    _DATE: pa.date32(),
    _TIMESTAMP: pa.timestamp("us"),
    _TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
}


def read_postgres(spec: PostgresSource, state: SourceState, cursor: str | None, batch_rows: int,
                  partition: tuple[str, str] | None = None, snapshot: str | None = None) -> Iterator[RawBatch]:
    """Batches of the rows of `spec` (or of its `partition`, schema and name) not loaded yet: all of them
    without a cursor, else those after the committed cursor value, in cursor order, each batch ending at a
    change of cursor value. `snapshot`: read in this exported snapshot (a replication slot's, for CDC)."""
    source, origin = _source_sql(spec)
    key = CHECKPOINT_KEY
    if partition is not None:
        source, origin, key = sql.Identifier(*partition), f"postgres:{'.'.join(partition)}", f"postgres:{'.'.join(partition)}"
    conn = connect_source(source_url(spec.url_env, origin), spec.url_env)
    try:
        if snapshot is not None:  # the transaction's first statement: its reads see the slot's starting point
            try:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            except psycopg.Error as exc:
                raise_for(origin, exc)
        yield from _read(conn, spec, source, origin, state, cursor, batch_rows, key)
    finally:
        conn.close()


def source_url(url_env: str, origin: str) -> str:
    """The source database URL from environment variable `url_env`; a SourceError saying so if unset."""
    url = os.environ.get(url_env)
    if not url:
        raise SourceError(
            f"{origin}: environment variable {url_env} is not set; it must hold the source database URL "
            "(postgresql://user@host:port/dbname; the password in it or in PGPASSWORD)"
        )
    return url


def _partitions(spec: PostgresSource) -> list[tuple[str, str]]:
    """The leaf partitions of the source table, (schema, name), in the order of their bounds."""
    source, origin = _source_sql(spec)
    assert spec.table is not None  # the spec requires a table with partitions: true
    conn = connect_source(source_url(spec.url_env, origin), spec.url_env)
    try:
        rows = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_partition_tree(%s::regclass) t"
            " JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE t.isleaf ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname",
            (source.as_string(conn),)).fetchall()
        conn.rollback()
    except psycopg.Error as exc:
        raise_for(origin, exc)
    finally:
        conn.close()
    if not rows or (len(rows) == 1 and rows[0][1] == spec.table.split(".")[-1] and rows[0][2] == "r"):
        raise SourceError(f"{origin}: partitions: true, but the table is not partitioned (or has no partitions)")
    return [(r[0], r[1]) for r in rows]


# ---------------------------------------------------------------- what to read


def _source_sql(spec: PostgresSource) -> tuple[sql.Composable, str]:
    """The FROM item for the source (a table, or the user's SELECT as a subquery) and its label."""
    if spec.table is not None:
        parts = spec.table.split(".")
        if len(parts) > 2 or not all(parts):
            raise SourceError(f"source table {spec.table!r} must be 'name' or 'schema.name'")
        return sql.Identifier(*parts), f"postgres:{spec.table}"
    assert spec.query is not None  # the model requires one of the two
    text = single_select(spec.query)
    # psycopg reads % as a placeholder once parameters are passed, and they always are (see _read)
    return sql.SQL("(\n{}\n)").format(sql.SQL(text.replace("%", "%%"))), "postgres:query"


def single_select(query: str) -> str:
    """The text of `query` if it is exactly one plain SELECT (no INTO, no row locks, no writing CTE);
    raise SourceError saying what it is otherwise. The text is cut to the statement, without `;`."""
    import pglast
    from pglast import ast, visitors

    try:
        stmts = pglast.parse_sql(query)
    except pglast.parser.ParseError as exc:
        raise SourceError(f"source query does not parse: {exc}") from exc
    if len(stmts) != 1:
        raise SourceError(f"source query must be one SELECT statement, it has {len(stmts)} statements")
    raw = stmts[0]
    stmt = raw.stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise SourceError(f"source query must be a SELECT, not {type(stmt).__name__.removesuffix('Stmt')}")
    found: list[str] = []

    class _Find(visitors.Visitor):
        def visit(self, ancestors: Any, node: Any) -> None:
            if isinstance(node, ast.IntoClause):
                found.append("SELECT ... INTO creates a table")
            elif isinstance(node, ast.LockingClause):
                found.append("FOR UPDATE/SHARE locks rows of the source")
            elif isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
                found.append(f"it contains {type(node).__name__.removesuffix('Stmt').upper()}")

    _Find()(stmt)
    if found:
        raise SourceError(f"source query must be a plain SELECT: {found[0]}")
    start = raw.stmt_location or 0
    return query[start : start + raw.stmt_len] if raw.stmt_len else query[start:]


# ---------------------------------------------------------------- connection


def _lenient(base: type[abc.Loader]) -> type[Loader]:
    """A loader that hands back the text of a value `base` cannot turn into a Python object."""

    class Lenient(Loader):
        def __init__(self, oid: int, context: abc.AdaptContext | None = None) -> None:
            super().__init__(oid, context)
            self._inner = base(oid, context)

        def load(self, data: abc.Buffer) -> Any:
            try:
                return self._inner.load(data)
            except psycopg.DataError:  # infinity, years BC: let the contract judge the text
                return bytes(data).decode("utf-8", "replace")

    return Lenient


def connect_source(url: str, env: str) -> psycopg.Connection[Any]:
    try:
        conn: psycopg.Connection[Any] = Target(url).connect(application_name="pgmill source")
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"source database ({env}): {exc}") from exc
    except DatabaseError as exc:
        raise SourceError(f"source database ({env}): {exc}") from exc
    try:
        # the loaders below parse ISO text; float text must round-trip exactly on servers before 12 too
        conn.execute("SET DateStyle = 'ISO, YMD'")
        conn.execute("SET extra_float_digits = 3")
        conn.commit()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for oid in (_DATE, _TIMESTAMP, _TIMESTAMPTZ):
            base = conn.adapters.get_loader(oid, Format.TEXT)
            if base is not None:
                conn.adapters.register_loader(oid, _lenient(base))
    except BaseException:
        conn.close()
        raise
    return conn


# ---------------------------------------------------------------- reading


def _read(conn: psycopg.Connection[Any], spec: PostgresSource, source: sql.Composable, origin: str,
          state: SourceState, cursor: str | None, batch_rows: int, ckey: str) -> Iterator[RawBatch]:
    try:
        columns = _describe(conn, source, origin)
    except psycopg.Error as exc:
        raise_for(origin, exc)
    names = [n for n, _ in columns]
    if cursor is not None and cursor not in names:
        raise SourceError(
            f"{origin}: the cursor column {cursor!r} is not in the source's columns ({', '.join(names)}); "
            "the source must return the pipeline's `cursor` column under that name"
        )
    select = sql.SQL(", ").join(
        sql.SQL("src.{}").format(sql.Identifier(n)) if oid in _TYPED
        else sql.SQL("src.{0}::text AS {0}").format(sql.Identifier(n))
        for n, oid in columns
    )
    query = sql.SQL("SELECT {} FROM {} AS src").format(select, source)
    params: list[str] = []
    cursor_oid = 0
    if cursor is not None:
        cursor_oid = dict(columns)[cursor]
        col = sql.Identifier(cursor)
        after, nulls_done = _resume_point(state, cursor, ckey)
        if after is not None:
            query = sql.SQL("{} WHERE src.{} > %s").format(query, col)
            params.append(after)
        elif nulls_done:
            query = sql.SQL("{} WHERE src.{} IS NOT NULL").format(query, col)
        query = sql.SQL("{} ORDER BY src.{} NULLS FIRST").format(query, col)
    key = _tie_key(cursor_oid)
    cursor_at = names.index(cursor) if cursor is not None else -1
    oids = [oid for _, oid in columns]
    fetch = max(1, min(spec.batch_rows, batch_rows))
    row_no = 0
    try:
        # no `with`: when the consumer abandons the read, closing the connection (in read_postgres)
        # drops the cursor and the transaction; a polite CLOSE could fail on a connection already gone
        cur = conn.cursor(name="pgmill_source")
        cur.execute(query, params)
        buf: list[Sequence[Any]] = []
        keys: list[Any] = []  # tie key of the cursor of each row of buf
        done = False
        while not done or buf:
            if not done:
                rows = cur.fetchmany(fetch)
                done = len(rows) < fetch
                buf.extend(rows)
                if cursor_at >= 0:
                    keys.extend(key(r[cursor_at]) for r in rows)
            while buf:
                if cursor_at >= 0:
                    n = _cut(keys, batch_rows, done)
                else:
                    n = min(len(buf), batch_rows) if done or len(buf) >= batch_rows else None
                if n is None:
                    break
                out, buf, keys = buf[:n], buf[n:], keys[n:]
                checkpoint = None
                if cursor_at >= 0:
                    # NULLs come first and a value's rows are never split: all NULLs are behind us
                    checkpoint = {ckey: {"cursor": cursor, "nulls_done": True,
                                         "last_cursor": _as_text(out[-1][cursor_at])}}
                table = _to_arrow(names, oids, out)
                positions = list(range(row_no + 1, row_no + n + 1))
                row_no += n
                yield RawBatch(table, origin, positions, [], int(table.nbytes), checkpoint=checkpoint,
                               position_word="row")
        cur.close()
        conn.rollback()
    except psycopg.Error as exc:
        raise_for(origin, exc)


def _describe(conn: psycopg.Connection[Any], source: sql.Composable, origin: str) -> list[tuple[str, int]]:
    """(name, type oid) of every column the source returns; LIMIT 0 stops before any row is produced."""
    cur = conn.execute(sql.SQL("SELECT * FROM {} AS src LIMIT 0").format(source), [])
    cols = [(d.name, int(d.type_code)) for d in cur.description or []]
    names = [n for n, _ in cols]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError(f"{origin}: the source returns more than one column named {', '.join(dupes)}; alias them apart")
    return cols


def _resume_point(state: SourceState, cursor: str, key: str = CHECKPOINT_KEY) -> tuple[str | None, bool]:
    """(the cursor value to read after, whether NULL cursors were read): this stream's checkpoint (`key`)
    when it was made for the same cursor column; for a partition, else the whole table's; else, for the
    table, the newest cursor value the runner committed (a partition starts from the beginning)."""
    for k in dict.fromkeys((key, CHECKPOINT_KEY)):
        mine = state.checkpoint.get(k)
        if isinstance(mine, dict) and mine.get("cursor") == cursor:
            last = mine.get("last_cursor")
            return (str(last) if last is not None else None), bool(mine.get("nulls_done"))
    if key != CHECKPOINT_KEY:
        return None, False
    return state.cursor_value, state.cursor_value is not None


def _cut(keys: list[Any], batch_rows: int, done: bool) -> int | None:
    """How many rows of the buffer to hand over now: about `batch_rows`, ending at a change of cursor
    value; None when that cannot be known without fetching more."""
    n = len(keys)
    if n == 0:
        return None
    if n <= batch_rows:
        return n if done else None
    last = keys[batch_rows - 1]
    if keys[batch_rows] != last:
        return batch_rows
    start = batch_rows - 1
    while start > 0 and keys[start - 1] == last:
        start -= 1
    if start > 0:
        return start
    # one cursor value fills the whole batch: the batch grows to the end of that value's rows
    for i in range(batch_rows + 1, n):
        if keys[i] != last:
            return i
    return n if done else None


def _tie_key(oid: int) -> Callable[[Any], Any]:
    """Equality as PostgreSQL orders the cursor: 1.0 = 1.00 for numeric, NaN = NaN."""
    if oid == _NUMERIC:
        def numeric(v: Any) -> Any:
            if v is None:
                return None
            try:
                d = Decimal(v)
            except InvalidOperation:
                return v
            return "NaN" if d.is_nan() else d
        return numeric
    if oid in _FLOATS:
        return lambda v: "NaN" if isinstance(v, float) and v != v else v
    return lambda v: v


def _as_text(v: Any) -> str | None:
    """The cursor value as text PostgreSQL reads back as the same value of the column's type."""
    if v is None:
        return None
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _to_arrow(names: list[str], oids: list[int], rows: list[Sequence[Any]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values, oid in zip(cols, oids, strict=True):
        typ = _ARROW.get(oid, pa.string())
        if oid in (_DATE, _TIMESTAMP, _TIMESTAMPTZ) and any(isinstance(v, str) for v in values):
            arrays.append(pa.array([v.isoformat() if isinstance(v, date) else v for v in values], pa.string()))
        else:
            arrays.append(pa.array(values, typ))
    return pa.table(arrays, names=names)


def raise_for(origin: str, exc: psycopg.Error) -> NoReturn:
    """A lost connection stays retryable; anything else the source refused is permanent."""
    if is_transient(exc):
        raise exc
    raise SourceError(redact(f"{origin}: {describe(exc)}")) from exc


def streams(spec: PostgresSource, request: StreamRequest) -> list[Stream]:
    """One stream: the rows after the committed cursor value (all of them without a cursor); with
    `partitions`, one such stream per partition of the table."""
    if spec.partitions:
        label = f"{spec.table} partition "
        named = request.only[len(label):].split(".") if request.only and request.only.startswith(label) else []
        # a unit knows its partition from its label: no round trips to the source to list them again
        parts = [(named[0], named[1])] if len(named) == 2 else _partitions(spec)
        return [Stream(label + ".".join(p),
                       functools.partial(read_postgres, spec, request.state, request.cursor, request.batch_rows, p),
                       None)
                for p in parts]
    return [Stream(spec.table or "query",
                   lambda: read_postgres(spec, request.state, request.cursor, request.batch_rows), None)]

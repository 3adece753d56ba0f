"""The one GROUP BY scan: every unique key and whole-row duplicates, as GROUPING SETS of a single query.

Uniqueness is `GROUP BY key HAVING count(*) > 1` (not COUNT(DISTINCT), which sorts and says nothing about
which keys repeat); several keys share one read of the table through GROUPING SETS, and GROUPING() tells
the sets apart. A key already made unique by an index is not scanned for at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmill.quality.results import RuleResult, judged
from pgmill.quality.rules import Rule
from pgmill.quality.scan import T, col
from pgmill.quality.table_info import TableInfo


@dataclass
class GroupScan:
    query: sql.Composed | None  # None: every rule was settled by an index
    sets: list[Rule]  # grouping set i checks sets[i]
    settled: list[tuple[Rule, str]]  # rule -> the unique index that proves it


def compile_groups(info: TableInfo, rules: list[Rule]) -> GroupScan:
    sets: list[Rule] = []
    settled: list[tuple[Rule, str]] = []
    for rule in rules:
        proof = info.key_is_unique(rule.columns) if rule.kind == "unique" else info.rows_are_unique()
        if proof:
            settled.append((rule, proof))
        else:
            sets.append(rule)
    if not sets:
        return GroupScan(None, [], settled)
    # every distinct grouping expression once; a whole row groups as its text (json columns have no '=')
    exprs: list[sql.Composable] = []
    index: dict[str, int] = {}

    def expr_of(key: str, e: sql.Composable) -> int:
        if key not in index:
            index[key] = len(exprs)
            exprs.append(e)
        return index[key]

    members: list[list[int]] = []
    for rule in sets:
        if rule.kind == "unique":
            members.append([expr_of(c, col(c)) for c in rule.columns])
        else:
            # the row as text: groups like the row itself at half the cost of to_jsonb, and reads as a sample
            members.append([expr_of("\x00row", sql.SQL("{}::text").format(T))])
    m = len(exprs)
    # GROUPING(e0..em) has bit (m-1-i) set when e_i is not grouped in the current set
    masks = [sum(1 << (m - 1 - i) for i in range(m) if i not in mem) for mem in members]
    grouping = sql.SQL("GROUPING({})").format(sql.SQL(", ").join(exprs))
    which = sql.SQL("CASE {} {} END").format(grouping, sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(mask), sql.Literal(i)) for i, mask in enumerate(masks)))
    cols = [sql.SQL("{} AS {}").format(e, sql.Identifier(f"e{i}")) for i, e in enumerate(exprs)]
    gsets = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(exprs[i] for i in mem)) for mem in members)
    inner = sql.SQL(
        "SELECT {which} AS grp, count(*) AS n, {cols} FROM {table} AS {t}"
        " GROUP BY GROUPING SETS ({gsets}) HAVING count(*) > 1"
    ).format(which=which, cols=sql.SQL(", ").join(cols), table=info.ident, t=T, gsets=gsets)
    # rows with a NULL in a key are not compared (as a UNIQUE constraint), and their sample names the key
    keep, sample = [], []
    for i, (rule, mem) in enumerate(zip(sets, members, strict=True)):
        if rule.kind == "unique":
            keep.append(sql.SQL("WHEN {} THEN {}").format(sql.Literal(i), sql.SQL(" AND ").join(
                sql.SQL("g.{} IS NOT NULL").format(sql.Identifier(f"e{j}")) for j in mem)))
            obj = sql.SQL("jsonb_build_object({}, 'rows', g.n)").format(sql.SQL(", ").join(
                sql.SQL("{}, g.{}").format(sql.Literal(c), sql.Identifier(f"e{j}"))
                for c, j in zip(rule.columns, mem, strict=True)))
        else:
            obj = sql.SQL("jsonb_build_object('row', g.{}, 'rows', g.n)").format(sql.Identifier(f"e{mem[0]}"))
        sample.append(sql.SQL("WHEN {} THEN {}").format(sql.Literal(i), obj))
    keep_sql = sql.SQL("CASE g.grp {} ELSE true END").format(sql.SQL(" ").join(keep)) if keep else sql.SQL("true")
    query = sql.SQL(
        "SELECT g.grp, count(*), coalesce(sum(g.n - 1), 0), pgmill.quality_sample(CASE g.grp {sample} END)"
        " FROM ({inner}) AS g WHERE {keep} GROUP BY g.grp"
    ).format(sample=sql.SQL(" ").join(sample), inner=inner, keep=keep_sql)
    return GroupScan(query, sets, settled)


def run_groups(conn: psycopg.Connection[Any], info: TableInfo, scan: GroupScan, n: int) -> list[RuleResult]:
    """Execute the scan (inside the caller's snapshot) and judge each rule; `n` is the table's row count."""
    found: dict[int, tuple[int, int, list[Any]]] = {}
    if scan.query is not None:
        for grp, groups, extra, sample in conn.execute(scan.query).fetchall():
            found[int(grp)] = (int(groups), int(extra), list(sample or []))
    out: list[RuleResult] = []
    for i, rule in enumerate(scan.sets):
        groups, extra, sample = found.get(i, (0, 0, []))
        what = ("key value" if rule.kind == "unique" else "distinct row") + ("s appear" if groups != 1 else " appears")
        msg = (f"{groups:,} {what} more than once: {extra:,} extra rows of {n:,}"
               if groups else f"no duplicates in {n:,} rows")
        out.append(judged(info.name, rule, n, extra, msg, sample=sample, detail={"groups": groups}))
    for rule, proof in scan.settled:
        out.append(judged(info.name, rule, n, 0, f"guaranteed by a unique index on ({proof})",
                          detail={"groups": 0, "index": proof}))
    return out

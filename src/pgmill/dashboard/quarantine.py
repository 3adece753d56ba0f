"""The quarantine page's data: rows quarantined per target table per day (UTC) over the last 30 days, the
rules broken most often, and the newest quarantined rows with where they came from and what they broke;
and the replay the page offers when the server allows writes.

pgmill.quarantine can hold millions of rows, so every query is bounded: the day counts read
pgmill.quarantine_days (kept by triggers on pgmill.quarantine: one row per day, pipeline and table); the top
rules are counted over the newest RULES_OVER rows of the window; samples are the newest SAMPLES rows (with a
rule filter, among the newest RULE_SCAN rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgmill.ingest.replay import replay
from pgmill.project import ProjectContext

Conn = psycopg.Connection[Any]
DAYS = 30
RULES_OVER = 10_000  # the top broken rules are counted over this many of the newest rows of the window
TOP_RULES = 20
SAMPLES = 20
RULE_SCAN = 10_000  # a rule filter looks for its samples among this many of the newest rows
SHOWN_CHARS = 4_000  # of a record or a raw line


@dataclass(frozen=True)
class RuleCount:
    pipeline: str
    table: str
    column: str
    rule: str
    rows: int


@dataclass(frozen=True)
class Sample:
    id: int
    run_id: int
    pipeline: str
    table: str
    location: str  # source file and line (or the source's own address)
    record: str | None  # the parsed record as indented JSON; None when the row never parsed
    raw_text: str | None
    violations: list[dict[str, Any]]
    quarantined_at: datetime


@dataclass
class Quarantine:
    as_of: datetime
    since: datetime  # the window's start: midnight UTC, DAYS - 1 days before today
    pipeline: str | None  # the filters in force
    rule: str | None
    pipelines: list[str]  # the project's pipelines, for the filter and the replay forms
    days: list[date]  # every day of the window, oldest first
    tables: list[str]  # target tables with rows in the window
    counts: dict[tuple[date, str], int]  # (day, table) -> rows quarantined
    by_pipeline: dict[str, int]  # rows quarantined in the window per pipeline
    rules: list[RuleCount]
    rules_counted_over: int  # rows the rule counts were taken from (the window's newest, at most RULES_OVER)
    samples: list[Sample] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def day_total(self, day: date) -> int:
        return sum(n for (d, _), n in self.counts.items() if d == day)

    def table_total(self, table: str) -> int:
        return sum(n for (_, t), n in self.counts.items() if t == table)

    @property
    def busy_days(self) -> list[date]:
        """The days with quarantined rows, newest first (the table's rows)."""
        return sorted({d for d, _ in self.counts}, reverse=True)


def quarantine(conn: Conn, ctx: ProjectContext, now: datetime, pipeline: str | None = None,
               rule: str | None = None) -> Quarantine:
    """The quarantine as of `now` (the database's clock), optionally for one pipeline and one broken rule."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=DAYS - 1)
    since = datetime.combine(first, time(), UTC)
    counts: dict[tuple[date, str], int] = {}
    by_pipeline: dict[str, int] = {}
    for pipe, table, day, n in conn.execute(
            "SELECT pipeline, target_table, day, rows FROM pgmill.quarantine_days WHERE day >= %(first)s"
            " AND rows > 0 AND (%(p)s::text IS NULL OR pipeline = %(p)s)", {"first": first, "p": pipeline}).fetchall():
        counts[(day, table)] = counts.get((day, table), 0) + int(n)
        by_pipeline[pipe] = by_pipeline.get(pipe, 0) + int(n)
    rules, over = _top_rules(conn, since, pipeline)
    return Quarantine(
        as_of=now, since=since, pipeline=pipeline, rule=rule, pipelines=list(ctx.config.pipelines),
        days=[first + timedelta(days=i) for i in range(DAYS)], tables=sorted({t for _, t in counts}),
        counts=counts, by_pipeline=by_pipeline, rules=rules, rules_counted_over=over,
        samples=samples(conn, pipeline, rule))


def _top_rules(conn: Conn, since: datetime, pipeline: str | None) -> tuple[list[RuleCount], int]:
    """The rules broken most often among the newest RULES_OVER rows of the window (a backward scan of the
    primary key, or of (pipeline, id)), and how many rows that was."""
    recent = sql.SQL(
        "SELECT pipeline, target_table, violations FROM pgmill.quarantine WHERE quarantined_at >= %(since)s"
        " AND (%(p)s::text IS NULL OR pipeline = %(p)s) ORDER BY id DESC LIMIT %(n)s")
    args = {"since": since, "p": pipeline, "n": RULES_OVER}
    rows = conn.execute(sql.SQL(
        "WITH q AS MATERIALIZED ({})"
        " SELECT (SELECT count(*) FROM q), q.pipeline, q.target_table, coalesce(v->>'column', ''), v->>'rule',"
        "  count(*) FROM q, jsonb_array_elements(q.violations) v GROUP BY 2, 3, 4, 5"
        " ORDER BY 6 DESC, 2, 3, 4, 5 LIMIT %(top)s").format(recent), {**args, "top": TOP_RULES}).fetchall()
    if not rows:
        return [], 0
    return [RuleCount(str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5])) for r in rows], int(rows[0][0])


def samples(conn: Conn, pipeline: str | None = None, rule: str | None = None) -> list[Sample]:
    """The newest quarantined rows (of `pipeline`; that broke `rule`)."""
    newest = sql.SQL("SELECT * FROM pgmill.quarantine WHERE (%(p)s::text IS NULL OR pipeline = %(p)s)"
                     " ORDER BY id DESC LIMIT %(scan)s")
    rows = conn.execute(sql.SQL(
        "SELECT id, run_id, pipeline, target_table, source_location, left(jsonb_pretty(record), %(chars)s),"
        " left(raw_text, %(chars)s), violations, quarantined_at FROM ({}) q"
        " WHERE (%(rule)s::text IS NULL OR violations @> jsonb_build_array(jsonb_build_object('rule', %(rule)s::text)))"
        " ORDER BY id DESC LIMIT %(n)s").format(newest),
        {"p": pipeline, "rule": rule, "scan": RULE_SCAN if rule else SAMPLES, "n": SAMPLES,
         "chars": SHOWN_CHARS}).fetchall()
    return [Sample(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], list(r[7]), r[8]) for r in rows]


def replay_rows(ctx: ProjectContext, pipeline: str, ids: list[int] | None = None) -> str:
    """Replay the quarantined rows of `pipeline` (or just `ids`) and say what happened; a pipeline that is
    not in pgmill.yaml is refused with nothing done."""
    if pipeline not in ctx.config.pipelines:
        known = ", ".join(sorted(ctx.config.pipelines)) or "none"
        return f"nothing replayed: pgmill.yaml has no pipeline named {json.dumps(pipeline)} (pipelines: {known})"
    res = replay(ctx, pipeline, ids)
    what = f"{len(ids)} chosen rows" if ids else "the quarantined rows"
    text = (f"replayed {res.candidates:,} rows of {pipeline} ({what}, run {res.run_id}): {res.loaded:,} loaded,"
            f" {res.still_failing:,} still quarantined")
    if res.not_replayable:
        text += f", {res.not_replayable:,} unparsed lines kept as they are"
    return text

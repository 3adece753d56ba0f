"""Quarantine replay: re-check quarantined rows against the current contract and load those that pass.

The rows that now pass are written to the target and removed from quarantine in one transaction; the
replay is recorded in the ledger as a run of mode `replay`, with the same accounting identity as a load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from psycopg.types.json import Jsonb

from pgmill.db import ddl
from pgmill.db.migrations import migrate
from pgmill.ingest.lock import take
from pgmill.ingest.pipeline import PipelinePlan
from pgmill.ingest.writer import TableWriter, dedupe
from pgmill.observe import ledger
from pgmill.observe.ledger import Counts
from pgmill.project import ProjectContext


@dataclass(frozen=True)
class ReplayResult:
    run_id: int
    candidates: int
    loaded: int
    still_failing: int
    not_replayable: int  # rows quarantined before parsing (no record, only raw text)


def replay(ctx: ProjectContext, pipeline: str, ids: list[int] | None = None) -> ReplayResult:
    """Replay the quarantined rows of `pipeline` (or just `ids`)."""
    pipe = PipelinePlan(ctx, pipeline)
    mode = "merge" if pipe.key else "append"
    with ctx.target.connect(autocommit=True) as lock_conn, ctx.target.connect() as conn:
        migrate(lock_conn)
        take(lock_conn, pipeline, wait=True)
        ddl.ensure_table(conn, pipe.spec.table, pipe.contract)
        conn.commit()
        run_id = ledger.start_run(conn, pipeline, "replay", pipe.spec.table)
        with conn.transaction():
            rows = conn.execute(
                "SELECT id, record FROM pgmill.quarantine WHERE pipeline = %s AND (%s::bigint[] IS NULL OR id = ANY(%s))"
                " ORDER BY id FOR UPDATE",
                (pipeline, ids, ids),
            ).fetchall()
            replayable = [(int(r[0]), r[1]) for r in rows if r[1] is not None]
            not_replayable = len(rows) - len(replayable)
            counts = Counts(rows_read=len(replayable))
            loaded = 0
            if replayable:
                table = _records_table([rec for _, rec in replayable], pipe.source_columns)
                v = pipe.compiled.validate(table)
                good_ids = [replayable[i][0] for i in v.good_rows.to_list()]
                good, kept = dedupe(v.good, pipe.key, pipe.spec.cursor)
                writer = TableWriter(conn, pipe.spec.table, pipe.columns, pipe.key, mode, pipe.spec.cursor,
                                     pipe.partition)
                res = writer.write(good)
                rejected = {good_ids[int(kept[i])] if kept is not None else good_ids[i] for i, _ in res.rejected}
                passed = [i for i in good_ids if i not in rejected]
                conn.execute("DELETE FROM pgmill.quarantine WHERE id = ANY(%s)", (passed,))
                for pos, viols in v.bad:
                    conn.execute(
                        "UPDATE pgmill.quarantine SET violations = %s WHERE id = %s",
                        (Jsonb([x.as_dict() for x in viols]), replayable[pos][0]),
                    )
                loaded = len(passed)
                counts.rows_inserted, counts.rows_updated, counts.rows_unchanged = res.inserted, res.updated, res.unchanged
                counts.rows_duplicate = (len(good_ids) - good.height) + res.duplicate
                counts.rows_quarantined = len(replayable) - loaded
                counts.batches = 1
            ledger.add_counts(conn, run_id, counts)
        ledger.finish_run(conn, run_id, "succeeded")
        return ReplayResult(run_id, len(replayable), loaded, len(replayable) - loaded, not_replayable)


def _records_table(records: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    names = list(dict.fromkeys([*columns, *(k for r in records for k in r)]))
    data = {n: [None if r.get(n) is None else str(r[n]) for r in records] for n in names}
    return pa.table({n: pa.array(v, pa.string()) for n, v in data.items()})

"""Applying with proof: kept indexes are measured faster; failed builds leave nothing; rollback restores."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from pgmill.config.spec import Project
from pgmill.config.tune import TuneConfig
from pgmill.db.connect import Target
from pgmill.db.embedded import EmbeddedServer
from pgmill.project import ProjectContext
from pgmill.tune import store
from pgmill.tune.advisor import advise
from pgmill.tune.apply import apply_advice
from pgmill.tune.run import rollback_run, run_tune
from tests.helpers import connect, query
from tests.pg15 import seeded
from tests.test_tune_advisor import SHAPES, write_queries


def index_set(url: str) -> set[tuple[str, str]]:
    rows = query(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'app'")
    return {(str(a), str(b)) for a, b in rows}


def invalid(url: str) -> list[str]:
    rows = query(url, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
    return [str(r[0]) for r in rows]


def test_apply_keeps_only_measured_wins_and_rollback_restores(pg_server: EmbeddedServer, tmp_path: Path) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, SHAPES)
    before = index_set(url)
    report = run_tune(ProjectContext(root, Project(), Target(url)), cfg=TuneConfig(observed=0, executions=10),
                      apply=True)
    applied = report.applied
    assert applied is not None and report.advice.recommendations
    kept = [o for o in applied.outcomes if o.status == "kept"]
    assert kept, [o.as_dict() for o in applied.outcomes]
    for o in kept:
        assert o.improved and not o.slowed
    assert not applied.slower
    now = index_set(url)
    assert {n for n, _ in now - before} == {o.name for o in kept}
    actions = query(url, "SELECT action, index_name FROM pgmill.index_actions WHERE run_id = %s",
                    (report.run_id,))
    assert {n for a, n in actions if a == "keep"} == {o.name for o in kept}
    assert {n for a, n in actions if a == "create"} == {o.name for o in applied.outcomes if o.status != "failed"}

    result = rollback_run(Target(url), TuneConfig(), report.run_id)
    assert sorted(result["dropped"]) == sorted(f"app.{o.name}" for o in kept)
    assert index_set(url) == before


def test_failed_concurrent_build_leaves_no_invalid_index(pg_server: EmbeddedServer, tmp_path: Path) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"point_lookup": SHAPES["point_lookup"]})
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = advise(conn, root, TuneConfig(observed=0))
        run_id = store.start_run(conn, "apply", advice.backend)
    assert advice.recommendations
    blocker = psycopg.connect(url)
    # an open writer: CREATE INDEX CONCURRENTLY must wait for it after its catalog entry exists, and
    # lock_timeout makes that wait fail, leaving an INVALID index unless pgmill drops it
    blocker.execute("UPDATE app.customers SET country = country WHERE id = 1")
    release = threading.Timer(3.0, blocker.commit)
    release.start()
    try:
        applied = apply_advice(lambda: connect(url), advice, run_id, executions=5,
                               lock_timeout="300ms")
    finally:
        release.join()
        blocker.close()
    failed = [o for o in applied.outcomes if o.status == "failed"]
    assert failed, [o.as_dict() for o in applied.outcomes]
    assert query(url, "SELECT count(*) FROM pgmill.index_actions WHERE run_id = %s AND action = 'failed'",
                 (run_id,)) == [(len(failed),)]
    assert invalid(url) == []
    assert not any(n.startswith("pgmill_") for n, _ in index_set(url))


def test_determinism_of_apply_recommendations(pg_server: EmbeddedServer, tmp_path: Path) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, SHAPES)
    seen = []
    for _ in range(3):
        r = run_tune(ProjectContext(root, Project(), Target(url)), cfg=TuneConfig(observed=0))
        seen.append([x.definition for x in r.advice.recommendations])
        time.sleep(0)
    assert seen[0] and seen[0] == seen[1] == seen[2]


def test_retune_after_run_only_when_workload_or_size_changed(pg_server: EmbeddedServer, tmp_path: Path) -> None:
    from pgmill.tune.run import retune_after_run

    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"point_lookup": SHAPES["point_lookup"]})
    cfg = TuneConfig(observed=0, auto="recommend")
    first = retune_after_run(Target(url), root, cfg)
    assert first is not None and first.mode == "auto" and first.applied is None
    assert retune_after_run(Target(url), root, cfg) is None
    with connect(url) as conn:
        conn.execute("INSERT INTO app.customers SELECT g, 'new' || g || '@example.com', 'US'"
                     " FROM generate_series(10001, 20000) g")
        conn.execute("VACUUM ANALYZE app.customers")
    again = retune_after_run(Target(url), root, cfg)
    assert again is not None
    assert query(url, "SELECT count(*) FROM pgmill.tuning_runs"
                      " WHERE mode = 'auto' AND report IS NOT NULL") == [(2,)]
    assert retune_after_run(Target(url), root, TuneConfig(observed=0, auto="off")) is None

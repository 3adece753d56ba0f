"""Atomic swap: readers of a table model see the old version or the new one, never an error or a partial table."""

from __future__ import annotations

import threading

import psycopg

from pgmill.project import open_project
from pgmill.transform import run_transforms
from tests.helpers import ProjectDir


def test_reader_sees_only_complete_versions_during_rebuilds(project: ProjectDir) -> None:
    project.config()
    with project.connect() as c:
        c.execute("CREATE TABLE src (g int)")
        c.execute("INSERT INTO src SELECT g FROM generate_series(1, 20000) g")
    # the source flips between 20000 and 15000 rows, so every count a reader sees must be one of the two
    project.write("models/big.sql", "-- pgmill: {materialized: table, indexes: [g]}\n"
                  "SELECT g, md5(g::text) AS h FROM src")
    ctx = open_project(project.path)
    assert run_transforms(ctx).status == "succeeded"

    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with project.connect() as c:
            while not stop.is_set():
                try:
                    seen.append(int(c.execute("SELECT count(*) FROM big").fetchone()[0]))  # type: ignore[index]
                except psycopg.Error as exc:
                    errors.append(str(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        sizes = {20000}
        for i in range(12):
            with project.connect() as c:
                if i % 2 == 0:
                    c.execute("DELETE FROM src WHERE g > 15000")
                    sizes.add(15000)
                else:
                    c.execute("INSERT INTO src SELECT g FROM generate_series(15001, 20000) g")
            res = run_transforms(ctx)
            assert res.status == "succeeded", res.as_dict()
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert len(seen) > 12  # the reader really ran throughout
    assert set(seen) <= sizes, sorted(set(seen) - sizes)
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'big__pgmill_new%'") == 0

"""A file never seen before is hashed while it loads; nothing of it commits before its digest is known."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pgmill.ingest import state
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources import files
from pgmill.project import open_project
from tests.helpers import ProjectDir, orders_csv, run_one


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [(i, 100 + i, "F", f"{i}.00", "2024-01-01", "2024-02-01T00:00:00Z") for i in range(1, n + 1)]


def test_first_load_commits_only_once_the_digest_is_known(project: ProjectDir,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project.orders_pipeline(mode="append", path="data/*.csv", batch_rows=50)
    path = project.write("data/a.csv", orders_csv(_rows(600)))  # ~40 KB: about ten batches
    release, waiting = threading.Event(), threading.Event()
    real_sha, real_digest_of = files.file_sha256, state.digest_of

    def slow_sha(p: Path, chunk: int = 8 << 20) -> str:
        release.wait(30)
        return real_sha(p, chunk)

    def watched_digest_of(d: Any) -> str:
        if files.digest_pending(d):
            waiting.set()  # the last batch is written and its checkpoint now needs the digest
        return real_digest_of(d)

    monkeypatch.setattr(files, "file_sha256", slow_sha)
    monkeypatch.setattr(state, "digest_of", watched_digest_of)
    runs: list[Any] = []
    loader = threading.Thread(target=lambda: runs.extend(run_pipelines(open_project())))
    loader.start()
    try:
        assert waiting.wait(30), "the load never reached its last checkpoint"
        time.sleep(0.2)
        # every batch has been written, none committed: the table is still empty to everyone else
        assert project.scalar("SELECT count(*) FROM orders") == 0
        assert project.scalar("SELECT count(*) FROM pgmill.files") == 0
    finally:
        release.set()
        loader.join(60)
    [run] = runs
    assert run.status == "succeeded" and run.counts.balanced()
    assert run.counts.batches > 5 and run.counts.rows_inserted == 600
    assert project.scalar("SELECT count(*) FROM orders") == 600
    assert project.query("SELECT path, sha256, complete FROM pgmill.files") == [
        ("data/a.csv", hashlib.sha256(path.read_bytes()).hexdigest(), True)]


def test_a_path_seen_before_is_hashed_first_and_skipped_when_unchanged(project: ProjectDir,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project.orders_pipeline(mode="append", path="data/*.csv", batch_rows=50)
    project.write("data/a.csv", orders_csv(_rows(120)))
    first = run_one()
    assert first.counts.rows_inserted == 120

    def no_background_digest(path: Path) -> None:
        raise AssertionError(f"{path} was seen before: its digest decides, so it is computed up front")

    monkeypatch.setattr(files, "Digest", no_background_digest)
    again = run_one()
    assert again.status == "succeeded" and again.counts.rows_read == 0
    # same path, new content: a new file, loaded whole (its digest differs from the one remembered)
    project.write("data/a.csv", orders_csv(_rows(130)))
    changed = run_one()
    assert changed.counts.rows_read == 130 and changed.counts.rows_duplicate == 120

"""`pgmill validate`'s criteria read from benchmarks: "query performance maintained with 10x data growth"
from the 10x benchmark's results file (bench/bench_scale.py's results_scale.json) and "parallel processing
improves throughput by 3x" from the executor benchmark's (bench/bench_executor.py's results_executor.json),
by default in the project's bench/ folder, or from the file validate is pointed at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pgmill.cli import app
from pgmill.project import open_project
from pgmill.validate import validate
from pgmill.validate.performance import parallel_throughput, scale_10x
from tests.helpers import ProjectDir
from tests.test_metrics import connect

runner = CliRunner()


def results_file(path: Path, head: dict[str, Any] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"measured_at": "2026-12-03 18:50", "quick": head is None, "scales": [],
                                "query_p95_at_10x": head}))
    return path


HEAD = {"scale": 10, "worst_p95_ms": 42.5, "query": "revenue_week", "variant": "partitioned", "queries": 14,
        "threshold_ms": 100.0}


def test_a_benchmark_under_100ms_at_10x_passes_and_names_its_file(tmp_path: Path) -> None:
    path = results_file(tmp_path / "results_scale.json", HEAD)
    c = scale_10x(path)
    assert c.status == "pass" and c.value == 42.5
    assert c.figure == "42.5 ms worst (revenue_week, partitioned) of 14 declared queries at 10x"
    assert str(path) in c.source and c.window == "benchmark of 2026-12-03 18:50"
    assert c.detail["worst_p95_ms"] == 42.5 and c.detail["file"] == str(path)


def test_over_100ms_fails(tmp_path: Path) -> None:
    c = scale_10x(results_file(tmp_path / "r.json", {**HEAD, "worst_p95_ms": 100.0}))
    assert c.status == "fail" and c.value == 100.0


def test_no_file_a_quick_run_or_a_broken_file_is_not_measured(tmp_path: Path) -> None:
    c = scale_10x(tmp_path / "missing.json")
    assert c.status == "not_measured" and c.value is None and "no 10x benchmark found at" in c.note
    c = scale_10x(results_file(tmp_path / "quick.json", None))
    assert c.status == "not_measured" and "holds no figure at 10x" in c.note
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    c = scale_10x(bad)
    assert c.status == "not_measured" and c.note.startswith(f"{bad} could not be read")


def test_validate_reads_the_projects_bench_file_or_the_one_given(project: ProjectDir, tmp_path: Path) -> None:
    project.config({})
    ctx = open_project(project.path)
    with connect(project.db_url) as conn:
        got = {c.key: c for c in validate(conn, ctx).criteria}["query_p95_at_10x"]
        assert got.status == "not_measured"
        results_file(project.path / "bench" / "results_scale.json", HEAD)
        got = {c.key: c for c in validate(conn, ctx).criteria}["query_p95_at_10x"]
        assert got.status == "pass" and got.value == 42.5
        other = results_file(tmp_path / "elsewhere" / "s.json", {**HEAD, "worst_p95_ms": 250.0})
        got = {c.key: c for c in validate(conn, ctx, scale_results=other).criteria}["query_p95_at_10x"]
        assert got.status == "fail" and got.value == 250.0
    res = runner.invoke(app, ["validate", "--json"])  # the project's bench file: the criterion passes
    assert res.exit_code == 0, res.output
    [c] = [c for c in json.loads(res.stdout)["criteria"] if c["key"] == "query_p95_at_10x"]
    assert c["status"] == "pass" and c["value"] == 42.5


PARALLEL = {"workers": 8, "speedups": {"HTTP": 5.1, "PostgreSQL": 3.4}, "worst": 3.4, "cpu_bound": 0.9,
            "threshold": 3.0}


def executor_file(path: Path, head: dict[str, Any] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"measured_at": "2026-12-03 22:00", "parallel_throughput": head}))
    return path


def test_parallel_throughput_from_the_executor_benchmark(tmp_path: Path) -> None:
    c = parallel_throughput(executor_file(tmp_path / "results_executor.json", PARALLEL))
    assert c.status == "pass" and c.value == 3.4
    assert c.figure == "3.40x, the lower of HTTP 5.10x, PostgreSQL 3.40x (8 Dask workers against 1)"
    assert "0.90x with 2 processes against 1" in c.note and c.window == "benchmark of 2026-12-03 22:00"
    c = parallel_throughput(executor_file(tmp_path / "slow.json", {**PARALLEL, "worst": 2.5}))
    assert c.status == "fail" and c.value == 2.5
    c = parallel_throughput(tmp_path / "missing.json")
    assert c.status == "not_measured" and f"no results of the executor benchmark found at {tmp_path}" in c.note
    c = parallel_throughput(executor_file(tmp_path / "empty.json", None))
    assert c.status == "not_measured" and "serial baseline" in c.note


def test_validate_reads_the_projects_executor_results(project: ProjectDir) -> None:
    project.config({})
    ctx = open_project(project.path)
    with connect(project.db_url) as conn:
        assert {c.key: c for c in validate(conn, ctx).criteria}["parallel_throughput"].status == "not_measured"
        executor_file(project.path / "bench" / "results_executor.json", PARALLEL)
        got = {c.key: c for c in validate(conn, ctx).criteria}["parallel_throughput"]
    assert got.status == "pass" and got.value == 3.4 and got.detail["speedups"] == PARALLEL["speedups"]

"""The critical path: the build heading the longest remaining chain (by the recent runs' durations) is planned
with parallel workers made cheap, for its own transaction only; the others keep the server's settings."""

from __future__ import annotations

import pytest
from psycopg import sql

from pgmill.errors import ConfigError
from pgmill.project import open_project
from pgmill.transform import run_transforms
from pgmill.transform.critical import LEAD_SETTINGS, leads, tails
from tests.helpers import ProjectDir

# each model's table records the planner setting its build ran with (setup_cost)
_MODELS = {
    "slow": "SELECT current_setting('parallel_setup_cost') AS setup_cost FROM (SELECT pg_sleep(0.4)) s",
    "after_slow": "SELECT s.setup_cost AS upstream, current_setting('parallel_setup_cost') AS setup_cost"
                  " FROM cp.slow s, (SELECT pg_sleep(0.1)) p",
    "quick": "SELECT current_setting('parallel_setup_cost') AS setup_cost",
    "z_after_quick": "SELECT current_setting('parallel_setup_cost') AS setup_cost FROM cp.quick",
}


def test_tails_add_the_longest_chain_after_each_model() -> None:
    order = ["a", "b", "c", "d", "e"]
    children = {"a": {"b", "c"}, "b": {"d"}, "c": set(), "d": set(), "e": set()}
    durations = {"a": 1.0, "b": 2.0, "c": 5.0, "d": 0.5, "e": 3.0}
    assert tails(order, children, durations) == {"a": 6.0, "b": 2.5, "c": 5.0, "d": 0.5, "e": 3.0}
    # a model never built counts as the median of the known ones; children outside the selection do not count
    assert tails(["a", "b", "c"], children, {"a": 1.0, "c": 3.0}) == {"a": 4.0, "b": 2.0, "c": 3.0}
    assert tails(order, children, {}) == {}  # no history: no critical path


def test_leads_are_the_ready_models_no_other_chain_outlasts() -> None:
    tail = {"a": 6.0, "b": 2.5, "c": 5.0, "e": 3.0}
    assert leads(["a", "e"], [], tail) == {"a"}
    assert leads(["b", "c"], ["e"], tail) == {"c"}
    assert leads(["b"], ["c"], tail) == set()  # a running build heads a longer chain
    assert leads(["b", "e"], [], {"b": 3.0, "e": 3.0}) == {"b", "e"}
    assert leads(["a"], [], {}) == set()


def _project(project: ProjectDir, **models: object) -> None:
    project.config(models={"schema": "cp", "threads": 1, **models})
    for name, text in _MODELS.items():
        project.write(f"models/{name}.sql", text)


def _recorded(project: ProjectDir) -> dict[str, str]:
    return {m: str(project.scalar(sql.SQL("SELECT setup_cost FROM {}").format(sql.Identifier("cp", m))))
            for m in _MODELS}


def _leads(res: object) -> list[str]:
    return sorted(m.model for m in res.models if m.detail.get("critical_path"))  # type: ignore[attr-defined]


def test_the_build_heading_the_longest_chain_gets_cheap_parallel_workers(project: ProjectDir) -> None:
    _project(project)
    default = str(project.scalar("SELECT current_setting('parallel_setup_cost')"))
    assert default != LEAD_SETTINGS["parallel_setup_cost"]
    ctx = open_project(project.path)
    first = run_transforms(ctx)
    assert first.status == "succeeded" and _leads(first) == []  # no durations yet
    assert set(_recorded(project).values()) == {default}

    second = run_transforms(ctx)
    assert second.status == "succeeded"
    # slow heads the longest chain from the start; after_slow is all that is left once it is done
    assert _leads(second) == ["cp.after_slow", "cp.slow"]
    lead = LEAD_SETTINGS["parallel_setup_cost"]
    # one thread, one session: z_after_quick is built after slow on the same connection and still has the
    # server's setting, so the lead's settings ended with its transaction
    assert _recorded(project) == {"slow": lead, "after_slow": lead, "quick": default, "z_after_quick": default}
    steps = project.query("SELECT name, detail->'critical_path' FROM pgmill.run_steps WHERE run_id = %s"
                          " ORDER BY name", (second.run_id,))
    assert steps == [("cp.after_slow", True), ("cp.quick", None), ("cp.slow", True), ("cp.z_after_quick", None)]


def test_critical_path_parallel_can_be_turned_off(project: ProjectDir) -> None:
    _project(project, critical_path_parallel=False)
    ctx = open_project(project.path)
    run_transforms(ctx)
    again = run_transforms(ctx)
    assert again.status == "succeeded" and _leads(again) == []
    assert set(_recorded(project).values()) == {str(project.scalar("SELECT current_setting('parallel_setup_cost')"))}


def test_critical_path_parallel_is_a_boolean(project: ProjectDir) -> None:
    project.config(models={"critical_path_parallel": "sometimes"})
    with pytest.raises(ConfigError, match="critical_path_parallel"):
        open_project(project.path)

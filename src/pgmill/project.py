"""An opened project: its folder, its parsed pgmill.yaml and the database it works on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pgmill.config.load import find_project_dir, load_project
from pgmill.config.spec import Project
from pgmill.db.catalog import table_key
from pgmill.db.connect import ENV_URL, Target, resolve_target
from pgmill.errors import ConfigError


@dataclass
class ProjectContext:
    dir: Path
    config: Project
    target: Target

    @property
    def state_dir(self) -> Path:
        return self.dir / ".pgmill"

    @property
    def tables(self) -> list[str]:
        """The tables the project's pipelines load, as schema.name, sorted."""
        return sorted({table_key(p.table) for p in self.config.pipelines.values()})


@dataclass
class DatabaseContext:
    """A database named by PGMILL_DATABASE_URL alone, with no project folder: pgmill's default settings."""

    target: Target
    config: Project = field(default_factory=Project)
    dir: None = None


def open_project(path: Path | str | None = None) -> ProjectContext:
    """Open the project at `path` (or found from the current folder upwards)."""
    project_dir = find_project_dir(Path(path) if path else None)
    config = load_project(project_dir)
    return ProjectContext(project_dir, config, resolve_target(project_dir, config.database.url))


def open_project_or_database(path: Path | str | None = None) -> ProjectContext | DatabaseContext:
    """The project, as `open_project`; or, when no `path` is given, none is found and PGMILL_DATABASE_URL
    is set, just that database: tuning, index health and plans need no project."""
    url = os.environ.get(ENV_URL)
    if not path and url:
        try:
            find_project_dir()
        except ConfigError:
            return DatabaseContext(Target(url))
    # a project that is found but broken is an error, not a reason to ignore it
    return open_project(path)

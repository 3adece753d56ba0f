"""An opened project: its folder, its parsed pgmill.yaml and the database it works on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgmill.config.load import find_project_dir, load_project
from pgmill.config.spec import Project
from pgmill.db.connect import Target, resolve_target


@dataclass
class ProjectContext:
    dir: Path
    config: Project
    target: Target

    @property
    def state_dir(self) -> Path:
        return self.dir / ".pgmill"


def open_project(path: Path | str | None = None) -> ProjectContext:
    """Open the project at `path` (or found from the current folder upwards)."""
    project_dir = find_project_dir(Path(path) if path else None)
    config = load_project(project_dir)
    return ProjectContext(project_dir, config, resolve_target(project_dir, config.database.url))

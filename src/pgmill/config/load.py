"""Reading pgmill.yaml and contracts: errors name the file, the line and the field, and suggest a fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pgmill.config.spec import SOURCE_SPECS, Contract, Project
from pgmill.errors import ConfigError

PROJECT_FILE = "pgmill.yaml"
M = TypeVar("M", bound=BaseModel)


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding pgmill.yaml: `start` or the nearest parent that has one."""
    here = (start or Path.cwd()).resolve()
    for d in [here, *here.parents]:
        if (d / PROJECT_FILE).is_file():
            return d
    raise ConfigError(
        f"no {PROJECT_FILE} in {here} or any parent folder; run `pgmill init` to create a project, "
        "or pass --project DIR"
    )


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The YAML node for a pydantic error location, as deep as the document goes."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v if not _is_last(loc, part) else k
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _is_last(loc: tuple[int | str, ...], part: int | str) -> bool:
    return loc[-1] is part


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model whose field set an `extra_forbidden` error at `loc` was checked against."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                # a tagged-union branch (a source kind), or else a dict key (the model stays the same)
                current = SOURCE_SPECS.get(str(part)) or current
                continue
            current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    import typing

    args = typing.get_args(annotation)
    if not args:
        return annotation
    for a in reversed(args):
        inner = _unwrap(a)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _format(path: Path, model: type[BaseModel], exc: ValidationError, root: yaml.Node | None) -> str:
    lines = [f"{path}: invalid {model.__name__.lower()} file"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        node = _node_at(root, loc)
        where = f"{path}:{node.start_mark.line + 1}" if node is not None else str(path)
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc)
            known = list(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
            msg = f"unknown field {loc[-1]!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            if known:
                msg += f" (valid: {', '.join(known)})"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown source kind; {err['msg'].split('Input tag')[-1].strip()}"
        lines.append(f"  {where}: {field}: {msg}")
    return "\n".join(lines)


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read `path` and validate it as `model`; ConfigError names the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of settings, found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(path, model, exc, root)) from exc


def load_project(project_dir: Path) -> Project:
    return load_yaml_model(project_dir / PROJECT_FILE, Project)


def load_contract(project_dir: Path, relpath: str) -> Contract:
    return load_yaml_model(project_dir / relpath, Contract)

"""Write docs/cli.md from the CLI's own --help (a test checks that the file is up to date)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from pgmill.cli import app


def render() -> str:
    root = typer.main.get_command(app)
    runner = CliRunner()
    parts = ["# pgmill command reference", "", "Generated from `--help` by `scripts/gen_cli_docs.py`; do not edit.", ""]

    def walk(cmd: object, path: list[str]) -> None:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100", "TERM": "dumb"})
        title = " ".join(["pgmill", *path])
        body = "\n".join(line.rstrip() for line in res.output.strip("\n ").splitlines())
        parts.extend([f"## `{title}`", "", "```", body, "```", ""])
        subcommands = getattr(cmd, "commands", {})
        for name in sorted(subcommands):
            walk(subcommands[name], [*path, name])

    walk(root, [])
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text() == text else 1)
    target.write_text(text)

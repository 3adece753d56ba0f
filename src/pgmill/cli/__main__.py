"""`python -m pgmill.cli` runs the CLI (as `python -m pgmill` does, without the launcher's start-up)."""

from pgmill.cli import main

main()

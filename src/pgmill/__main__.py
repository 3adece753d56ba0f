"""`python -m pgmill` runs the CLI."""

from pgmill.cli import main

main()

"""`python -m pgmill` runs the CLI."""

from pgmill._launch import main

main()

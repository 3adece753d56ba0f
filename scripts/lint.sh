#!/usr/bin/env bash
# Lint, one command (test.sh and so CI run it too):
#   ruff (style), mypy strict (types), import-linter (the layer order of docs/architecture.md),
#   vulture (dead code), deptry (dependencies declared vs imported).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache | sed -n '/^Contracts/,$p'
.venv/bin/vulture
.venv/bin/deptry src

#!/usr/bin/env bash
# The whole test suite: install (idempotent), lint, type-check, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-dev.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q -n 2 "$@"

#!/usr/bin/env bash
# The whole test suite: install (idempotent), lint (scripts/lint.sh), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-dev.sh
bash scripts/lint.sh
.venv/bin/python -m pytest -q -n 2 "$@"

#!/usr/bin/env bash
# Install pgmill with its development tools into .venv (and the Debian packages the tests use, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! dpkg -s postgresql-15-hypopg >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-hypopg >/dev/null) \
      || echo "warning: could not install postgresql-15-hypopg (the tuning tests will need it)" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

#!/usr/bin/env bash
# Install pgmill with its development tools into .venv, and (as root) the Debian packages the tests use:
# postgresql-15-hypopg (index advisor tests on a PostgreSQL 15 cluster) and chromium (HTML report tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  dpkg -s postgresql-15-hypopg >/dev/null 2>&1 || missing+=(postgresql-15-hypopg)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

#!/usr/bin/env bash
# The ingest benchmarks, one command: bash scripts/bench.sh [--quick] [--sections ingest,memory,parallel,http] [--reps N]
#   full:    5M orders (~1 GB) and 15M (~3 GB) for memory, 3 interleaved reps; writes bench/results.json and
#            bench/RESULTS.md (~20-30 minutes on 2 cores)
#   --quick: 500k orders, 1 rep (~2-3 minutes); writes bench/out/results.quick.json and RESULTS.quick.md
# Data files are generated once into bench/data/ (git-ignored) and reused; each benchmark gets a fresh
# embedded PostgreSQL under bench/out/ (git-ignored). PGMILL_BENCH_SRC=/path/to/src measures another tree.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=/work/venv/bin/python; fi
exec "$PY" bench/run_all.py "$@"

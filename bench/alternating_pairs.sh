#!/usr/bin/env bash
# Before/after refresh throughput on a noisy machine: alternating single runs of two trees,
# each with its own .venv, so drift hits both alike. Prints one JSON line per run, prefixed
# with "base N" or "head N"; compare medians (docs/performance.md).
#   bench/alternating_pairs.sh /path/to/base-worktree [pairs] [connections]
set -euo pipefail
base=${1:?a worktree of the commit to compare against, with its own .venv}
pairs=${2:-5}
connections=${3:-5000}
head=$(cd "$(dirname "$0")/.." && pwd)
for i in $(seq 1 "$pairs"); do
  for tree in base head; do
    dir=$base; [ "$tree" = head ] && dir=$head
    (cd "$dir" && .venv/bin/python -m bench.refresh_throughput --connections "$connections" \
      --runs 1 --only pipeline raw 2>/dev/null | tail -1 | sed "s/^/$tree $i /")
  done
done

#!/usr/bin/env bash
# Byte and object miss ratios of the edge's cache policy against LRU, LFU, ARC, S3-FIFO,
# W-TinyLFU and the offline Belady bound, at 0.1%, 1% and 10% of each trace's unique bytes:
# the published CDN trace (../shared/traces) and synthetic audio workloads (three seeds).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CTL="$ROOT/.build/release/edgectl"
[ -x "$CTL" ] || (cd "$ROOT" && swift build -c release >/dev/null)
TRACE="$ROOT/../shared/traces/adaptsize-cdn.csv"
if [ -f "$TRACE" ]; then echo "== published CDN trace (AdaptSize sample)"; "$CTL" cachesim "$TRACE"; echo; fi
for seed in 1 2 3; do
    out=$(mktemp); "$CTL" tracegen --seed "$seed" --out "$out"
    echo "== synthetic audio workload, seed $seed"; "$CTL" cachesim "$out"; echo
    rm -f "$out"
done

#!/usr/bin/env bash
# Every benchmark table on MLX's default device, appended to one markdown file.
#   bash benchmarks/run_all.sh [OUT.md]      (default: benchmarks/tables-$(date +%F).md)
#   BENCHES="bench_optim bench_homography" bash benchmarks/run_all.sh    (a subset)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/tables-$(date +%F).md}"
py="${PYTHON:-python3}"
: > "$out"
for b in ${BENCHES:-bench_linalg bench_lie bench_camera bench_homography bench_optim bench_compiled bench_epipolar bench_ba bench_calibration}; do
  echo "== $b" >&2
  timeout "${BENCH_TIMEOUT:-900}" "$py" "benchmarks/$b.py" --out "$out" >/dev/null 2>"/tmp/$b.err" \
    || echo "$b failed: $(tail -n 3 "/tmp/$b.err")" | tee -a "$out" >&2
done
echo "tables in $out" >&2

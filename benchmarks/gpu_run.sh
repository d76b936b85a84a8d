#!/usr/bin/env bash
# Every GPU result in one go, on the accelerator machine (see ../shared/gpu/README.md for
# installing MLX's CUDA build into /tmp/site first). From the project root:
#
#   bash benchmarks/gpu_run.sh tests    # the test suite on the GPU, one process per test file
#   bash benchmarks/gpu_run.sh bench    # every benchmark table, GPU sizes, PyTorch peers
#
# Optional peers (kornia, PyPose, mlx3d) are installed from wheels in .whl/ when present.
# Results go to $OUT (or ./gpu-out): gpu_tests.log, gpu_tables.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" MLXGEOM_DEVICE=gpu PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
python3 -c "import mlx.core as mx; assert mx.cuda.is_available(), 'MLX CUDA backend missing'; print('mlx', mx.__version__, mx.default_device())"

case "${1:-tests}" in
  tests)
    # Fresh process per module: MLX's CUDA backend has been seen to fail after many custom kernels.
    status=0
    for f in tests/test_*.py; do
      [ "$f" = tests/test_docs.py ] && continue
      line=$(timeout 300 python3 -m pytest -q -p no:cacheprovider -x "$f" 2>&1 | tee -a "$out/gpu_tests.log" | tail -n 1)
      echo "$f: $line" | tee -a "$out/gpu_summary.log"
      case "$line" in *failed*|*error*) status=1 ;; esac
    done
    exit $status
    ;;
  bench)
    BENCH_TIMEOUT=240 bash benchmarks/run_all.sh "$out/gpu_tables.md"
    cat "$out/gpu_tables.md"
    ;;
esac

#!/usr/bin/env bash
# Every GPU result in one go, on the accelerator machine (see ../shared/gpu/README.md for
# installing MLX's CUDA build into /tmp/site first). From the project root:
#
#   bash benchmarks/gpu_run.sh tests    # the test suite on the GPU, one process per test file
#   bash benchmarks/gpu_run.sh bench    # every benchmark table (BENCHES=... for some), GPU sizes, PyTorch peers
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
    # Fresh process per module (MLX's CUDA backend has been seen to fail after many custom
    # kernels), JOBS modules at a time: NVRTC compiles on the host cores.
    run_one() {
      log=$(mktemp)
      timeout "${FILE_TIMEOUT:-500}" python3 -m pytest -p no:cacheprovider "$1" >"$log" 2>&1
      echo "$1: $(tail -n 1 "$log")"
      flock "$out/gpu_tests.log" cat "$log" >>"$out/gpu_tests.log"
      rm -f "$log"
    }
    export -f run_one
    export out
    # Largest files first (the longest runs); test_docs builds the docs site (no GPU code),
    # test_robustness_harness holds no tests; "mlxgeom" is the docstring examples.
    { ls -S ${FILES:-tests/test_*.py} | grep -vE "tests/test_(docs|robustness_harness).py"; [ -n "${FILES:-}" ] || echo mlxgeom; } \
      | xargs -P "${JOBS:-8}" -I{} bash -c 'run_one {}' | tee "$out/gpu_summary.log"
    # each line must end in pytest's closing "N passed ... in Ts" with nothing failed
    ! grep -vE ": [0-9]+ passed[^,]*(, [0-9]+ (skipped|xfailed|deselected|warnings?))* in " "$out/gpu_summary.log"
    ;;
  bench)
    BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}" bash benchmarks/run_all.sh "$out/gpu_tables.md"
    cat "$out/gpu_tables.md"
    ;;
esac

#!/usr/bin/env bash
# Every GPU result in one go, on the accelerator machine (see ../shared/gpu/README.md for
# installing MLX's CUDA build into /tmp/site first). From the project root:
#
#   bash benchmarks/gpu_run.sh tests    # the test suite on the GPU (pytest -n JOBS)
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
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
python3 -c "import mlx.core as mx; assert mx.cuda.is_available(), 'MLX CUDA backend missing'; print('mlx', mx.__version__, mx.default_device())"

case "${1:-tests}" in
  tests)
    # One pytest over the suite and the docstring examples, JOBS xdist workers sharing the GPU
    # (NVRTC compiles on the host cores, so the workers mostly wait on the CPU). -v (pyproject's -q
    # dropped) streams a line per test into the log, so a run cut short still says what passed.
    # test_docs builds the docs site (no GPU code).
    # SIGINT at the time limit: pytest then still prints every failure's traceback and its summary.
    timeout -s INT -k 30 "${TESTS_TIMEOUT:-3000}" python3 -m pytest -p no:cacheprovider -o addopts=--doctest-modules -n "${JOBS:-16}" -v \
      --ignore tests/test_docs.py ${FILES:-tests mlxgeom} 2>&1 | tee "$out/gpu_tests.log" | grep -E "FAILED|ERROR|passed|failed"
    tail -n 1 "$out/gpu_tests.log" | grep -qE "passed" && ! tail -n 1 "$out/gpu_tests.log" | grep -qE "failed|error"
    ;;
  bench)
    BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}" bash benchmarks/run_all.sh "$out/gpu_tables.md"
    cat "$out/gpu_tables.md"
    ;;
esac

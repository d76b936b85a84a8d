// Device helpers of every mlxgeom CUDA kernel (mlxgeom/_cuda.py puts this file first in each header).
// Element kernels (one small matrix, tangent or point per thread) pass a block's inputs and outputs
// through shared memory with coalesced loads and stores (rows padded to K + 1 words against bank
// conflicts). Without MLXGEOM_GPU (the g++ harness of tests/test_kernel_bodies.py runs one thread at a
// time) an element is read and written directly, and a warp has one lane (WARP = 1).
#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#define MLXGEOM_GPU 1
#endif

// r = this thread's element of src (K entries per element, `total` elements); SINGLE: src has one
// element, read by every thread (it broadcasts).
template <int K, int TB, bool SINGLE = false>
__device__ inline void stage_in(const float* src, long long total, float* tile, float* r) {
  if (SINGLE) {
#pragma unroll
    for (int j = 0; j < K; ++j) r[j] = src[j];
    return;
  }
#ifdef MLXGEOM_GPU
  const long long base = (long long)blockIdx.x * TB;
  const int tid = threadIdx.x;
  for (int j = tid; j < TB * K; j += TB) {
    const long long g = base * K + j;
    tile[(j / K) * (K + 1) + j % K] = g < total * K ? src[g] : 0.0f;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < K; ++j) r[j] = tile[tid * (K + 1) + j];
  __syncthreads();
#else
  const long long i = (long long)blockIdx.x * TB + threadIdx.x;
  for (int j = 0; j < K; ++j) r[j] = i < total ? src[i * K + j] : 0.0f;
#endif
}

template <int K, int TB>
__device__ inline void stage_out(const float* r, long long total, float* tile, float* dst) {
#ifdef MLXGEOM_GPU
  const long long base = (long long)blockIdx.x * TB;
  const int tid = threadIdx.x;
#pragma unroll
  for (int j = 0; j < K; ++j) tile[tid * (K + 1) + j] = r[j];
  __syncthreads();
  for (int j = tid; j < TB * K; j += TB) {
    const long long g = base * K + j;
    if (g < total * K) dst[g] = tile[(j / K) * (K + 1) + j % K];
  }
#else
  const long long i = (long long)blockIdx.x * TB + threadIdx.x;
  if (i < total) for (int j = 0; j < K; ++j) dst[i * K + j] = r[j];
#endif
}

// Every lane's v[0:K] replaced by its sum over the warp (butterfly shuffles).
template <int WARP, int K>
__device__ inline void warp_sum(float* v) {
#ifdef MLXGEOM_GPU
#pragma unroll
  for (int j = 0; j < K; ++j) {
#pragma unroll
    for (int off = WARP / 2; off > 0; off /= 2) v[j] += __shfl_xor_sync(0xffffffffu, v[j], off);
  }
#endif
}

// sum_k c[k] x^k, highest power first (as lie/_scalar.horner).
template <int NT>
__device__ inline float horner(const float* c, float x) {
  float acc = c[NT - 1];
#pragma unroll
  for (int k = NT - 2; k >= 0; --k) acc = acc * x + c[k];
  return acc;
}

__host__ __device__ constexpr int imax(int a, int b) { return a > b ? a : b; }
__host__ __device__ constexpr long long lmax(long long a, long long b) { return a > b ? a : b; }

// Device helpers shared by our kernels: loads/stores that widen fp16 to float, and the launch grid.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#ifdef OPS_HOST_EMULATION
// Test-only host build (tests/test_ops_cuda_build.py): a single "thread" whose grid-stride loop visits every
// element, so the kernel bodies can be checked against the reference on machines without a GPU.
#include <cmath>
#ifndef __global__
#define __global__
#endif
#ifndef __device__
#define __device__
#endif
#undef __forceinline__
#define __forceinline__ inline
struct OpsDim3 { unsigned int x; };
static const OpsDim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
template <typename T> inline T __ldg(const T* p) { return *p; }
#define OPS_LAUNCH(kernel, blocks, threads, stream, arg) kernel(arg)
#define OPS_LAST_ERROR() cudaSuccess
#else
#define OPS_LAUNCH(kernel, blocks, threads, stream, arg) kernel<<<blocks, threads, 0, stream>>>(arg)
#define OPS_LAST_ERROR() cudaGetLastError()
#endif

template <typename T> struct AccType { typedef float type; };
template <> struct AccType<double> { typedef double type; };

__device__ __forceinline__ float ops_load(const float* p, int64_t i) { return __ldg(p + i); }
__device__ __forceinline__ double ops_load(const double* p, int64_t i) { return __ldg(p + i); }
__device__ __forceinline__ float ops_load(const __half* p, int64_t i) { return __half2float(p[i]); }

__device__ __forceinline__ void ops_store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ops_store(double* p, int64_t i, double v) { p[i] = v; }
__device__ __forceinline__ void ops_store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

static inline unsigned int ops_num_blocks(int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    const int64_t cap = 65535LL * 16;  // grid-stride loops cover the rest
    return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

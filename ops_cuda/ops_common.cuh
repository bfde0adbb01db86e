// Device helpers shared by our kernels: loads/stores that widen fp16 to float, and the launch grid.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

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

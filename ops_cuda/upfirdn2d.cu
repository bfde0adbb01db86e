// upfirdn2d kernel: zero-insertion upsampling, zero padding (negative crops), FIR filter, decimation -- fused.
// Each thread computes one output pixel and visits only the filter taps that land on real (non-inserted) input
// samples, i.e. the polyphase form. Includes only CUDA headers and our parameter struct.

#include "ops_common.cuh"
#include "ops_params.h"

namespace {

// First tap k >= 0 with (base + k) divisible by `up` (base may be negative).
__device__ __forceinline__ int first_phase(int base, int up) {
    int r = base % up;
    if (r < 0) r += up;
    return r == 0 ? 0 : up - r;
}

template <typename T>
__global__ void upfirdn2d_kernel(Upfirdn2dParams p) {
    typedef typename AccType<T>::type A;
    const T* x = static_cast<const T*>(p.x);
    T* y = static_cast<T*>(p.y);
    const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)blockDim.x * gridDim.x) {
        // Thread order follows the output's memory order so that stores coalesce.
        int64_t rest = idx;
        int c, ox, oy, n;
        if (p.channels_last) {
            c = (int)(rest % p.c); rest /= p.c;
            ox = (int)(rest % p.out_w); rest /= p.out_w;
            oy = (int)(rest % p.out_h); n = (int)(rest / p.out_h);
        } else {
            ox = (int)(rest % p.out_w); rest /= p.out_w;
            oy = (int)(rest % p.out_h); rest /= p.out_h;
            c = (int)(rest % p.c); n = (int)(rest / p.c);
        }
        // Tap (ky, kx) of the correlation window reads upsampled row base_y + ky = upy * iy.
        const int base_y = oy * p.downy - p.pady0;
        const int base_x = ox * p.downx - p.padx0;
        const T* xc = x + n * p.sx_n + c * p.sx_c;
        A acc = A(0);
        for (int ky = first_phase(base_y, p.upy); ky < p.fh; ky += p.upy) {
            const int iy = (base_y + ky) / p.upy;
            if (iy < 0 || iy >= p.in_h) continue;
            // Correlation tap ky of the convolution filter f is f[fh - 1 - ky] unless the filter is flipped.
            const int fy = p.flip ? ky : p.fh - 1 - ky;
            for (int kx = first_phase(base_x, p.upx); kx < p.fw; kx += p.upx) {
                const int ix = (base_x + kx) / p.upx;
                if (ix < 0 || ix >= p.in_w) continue;
                const int fx = p.flip ? kx : p.fw - 1 - kx;
                acc += A(ops_load(xc, iy * p.sx_h + ix * p.sx_w)) * A(__ldg(p.f + fy * p.fw + fx));
            }
        }
        ops_store(y, n * p.sy_n + c * p.sy_c + oy * p.sy_h + ox * p.sy_w, acc * A(p.gain));
    }
}

template <typename T> cudaError_t launch_typed(const Upfirdn2dParams& p, cudaStream_t stream) {
    const int threads = 256;
    const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
    OPS_LAUNCH(upfirdn2d_kernel<T>, ops_num_blocks(total, threads), threads, stream, p);
    return OPS_LAST_ERROR();
}

}  // namespace

cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, int dtype, cudaStream_t stream) {
    if ((int64_t)p.n * p.c * p.out_h * p.out_w == 0) return cudaSuccess;
    switch (dtype) {
        case OPS_FLOAT32: return launch_typed<float>(p, stream);
        case OPS_FLOAT16: return launch_typed<__half>(p, stream);
        case OPS_FLOAT64: return launch_typed<double>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

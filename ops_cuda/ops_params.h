// Plain parameter structs and launcher declarations shared by the kernels (.cu) and the binding (.cpp).
// Only CUDA runtime types appear here, so both nvcc and the host C++ compiler can include it without torch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// Element types the kernels are instantiated for.
enum OpsDtype { OPS_FLOAT32 = 0, OPS_FLOAT16 = 1, OPS_FLOAT64 = 2 };

// Activations, numbered as in torch_utils/ops/bias_act.py (cuda_idx).
enum OpsAct {
    ACT_LINEAR = 0, ACT_RELU = 1, ACT_LRELU = 2, ACT_TANH = 3, ACT_SIGMOID = 4,
    ACT_ELU = 5, ACT_SELU = 6, ACT_SOFTPLUS = 7, ACT_SWISH = 8
};

struct BiasActParams {
    const void* g;      // mode 0: x; mode 1: incoming gradient dy; mode 2: incoming gradient d(dx)
    const void* b;      // bias (size_b entries) or nullptr
    const void* xref;   // modes 1, 2: the forward input x (before the bias)
    const void* dy;     // mode 2: the first-order incoming gradient
    void* out;
    int64_t n;          // number of elements (all tensors dense with the same strides)
    int64_t stride_b;   // memory stride of the bias dimension
    int64_t size_b;     // extent of the bias dimension (0 = no bias)
    int mode;           // 0 = forward, 1 = first derivative, 2 = second derivative
    int act;
    float alpha;
    float gain;
    float clamp;        // < 0 disables clamping
};

struct Upfirdn2dParams {
    const void* x;
    const float* f;     // [fh, fw] row-major, always float32
    void* y;
    int n, c, in_h, in_w, out_h, out_w;
    int64_t sx_n, sx_c, sx_h, sx_w;  // input strides (elements)
    int64_t sy_n, sy_c, sy_h, sy_w;  // output strides (elements)
    int upx, upy, downx, downy;
    int padx0, pady0;
    int fw, fh;
    int flip;           // 0: true convolution, 1: correlation
    float gain;
    int channels_last;  // thread order: 1 = channel fastest (matches a channels_last output)
};

cudaError_t bias_act_launch(const BiasActParams& p, int dtype, cudaStream_t stream);
cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, int dtype, cudaStream_t stream);

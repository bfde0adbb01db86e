// Python binding of our CUDA kernels: argument checks, output allocation, and the launch on the caller's stream.
// Uses only torch/extension.h and the CUDA runtime API (no ATen/cuda or c10/cuda headers): the device guard is
// taken in Python and the stream handle arrives as an integer.

#include <cuda_runtime_api.h>
#include <torch/extension.h>

#include "ops_params.h"

namespace {

int ops_dtype(const torch::Tensor& t) {
    switch (t.scalar_type()) {
        case torch::kFloat32: return OPS_FLOAT32;
        case torch::kFloat16: return OPS_FLOAT16;
        case torch::kFloat64: return OPS_FLOAT64;
        default: TORCH_CHECK(false, "comodgan ops: unsupported dtype ", t.scalar_type(), " (float16/32/64 only)");
    }
    return -1;
}

void check_like(const torch::Tensor& t, const torch::Tensor& ref, const char* name) {
    TORCH_CHECK(t.device() == ref.device(), "bias_act: ", name, " must be on ", ref.device());
    TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "bias_act: ", name, " must have dtype ", ref.scalar_type());
    TORCH_CHECK(t.sizes() == ref.sizes(), "bias_act: ", name, " must have the input's shape");
    // Strides of size-1 dimensions are arbitrary; every other stride must agree (one linear index for all).
    for (int64_t d = 0; d < t.dim(); ++d) {
        TORCH_CHECK(t.size(d) == 1 || t.stride(d) == ref.stride(d), "bias_act: ", name,
                    " must have the same memory layout as the input");
    }
}

cudaStream_t as_stream(int64_t handle) { return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(handle)); }

torch::Tensor bias_act(torch::Tensor g, torch::Tensor b, torch::Tensor xref, torch::Tensor dy, int64_t mode,
                       int64_t dim, int64_t act, double alpha, double gain, double clamp, int64_t stream) {
    TORCH_CHECK(g.is_cuda(), "bias_act: input must be a CUDA tensor");
    TORCH_CHECK(g.is_non_overlapping_and_dense(), "bias_act: input must be dense (contiguous or channels_last)");
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0, 1 or 2");
    TORCH_CHECK(act >= ACT_LINEAR && act <= ACT_SWISH, "bias_act: unknown activation index ", act);
    const int dtype = ops_dtype(g);
    int64_t size_b = 0, stride_b = 1;
    if (b.numel() > 0) {
        TORCH_CHECK(dim >= 0 && dim < g.dim(), "bias_act: dim out of range");
        TORCH_CHECK(b.dim() == 1 && b.is_contiguous() && b.size(0) == g.size(dim),
                    "bias_act: bias must be contiguous 1-D with x.shape[dim] entries");
        TORCH_CHECK(b.device() == g.device() && b.scalar_type() == g.scalar_type(),
                    "bias_act: bias must match the input's device and dtype");
        size_b = b.size(0);
        stride_b = g.stride(dim);
    }
    if (mode >= 1) check_like(xref, g, "x (reference input)");
    if (mode == 2) check_like(dy, g, "dy");
    torch::Tensor out = torch::empty_like(g);
    BiasActParams p;
    p.g = g.data_ptr();
    p.b = size_b > 0 ? b.data_ptr() : nullptr;
    p.xref = mode >= 1 ? xref.data_ptr() : nullptr;
    p.dy = mode == 2 ? dy.data_ptr() : nullptr;
    p.out = out.data_ptr();
    p.n = g.numel();
    p.stride_b = stride_b;
    p.size_b = size_b;
    p.mode = static_cast<int>(mode);
    p.act = static_cast<int>(act);
    p.alpha = static_cast<float>(alpha);
    p.gain = static_cast<float>(gain);
    p.clamp = static_cast<float>(clamp);
    cudaError_t err = bias_act_launch(p, dtype, as_stream(stream));
    TORCH_CHECK(err == cudaSuccess, "bias_act: kernel launch failed: ", cudaGetErrorString(err));
    return out;
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                        int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain,
                        int64_t stream) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d: x must be a 4-D CUDA tensor");
    TORCH_CHECK(f.device() == x.device() && f.scalar_type() == torch::kFloat32 && f.dim() == 2 && f.is_contiguous(),
                "upfirdn2d: filter must be a contiguous 2-D float32 tensor on x's device");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: factors must be >= 1");
    const int dtype = ops_dtype(x);
    const int64_t fh = f.size(0), fw = f.size(1);
    const int64_t span_h = x.size(2) * upy + pady0 + pady1 - fh;
    const int64_t span_w = x.size(3) * upx + padx0 + padx1 - fw;
    TORCH_CHECK(span_h >= 0 && span_w >= 0, "upfirdn2d: padded image is smaller than the filter");
    const int64_t out_h = span_h / downy + 1, out_w = span_w / downx + 1;
    const bool channels_last = x.size(1) > 1 && x.stride(1) == 1;
    auto fmt = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
    torch::Tensor y = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(fmt));
    Upfirdn2dParams p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    p.n = static_cast<int>(x.size(0));
    p.c = static_cast<int>(x.size(1));
    p.in_h = static_cast<int>(x.size(2));
    p.in_w = static_cast<int>(x.size(3));
    p.out_h = static_cast<int>(out_h);
    p.out_w = static_cast<int>(out_w);
    p.sx_n = x.stride(0); p.sx_c = x.stride(1); p.sx_h = x.stride(2); p.sx_w = x.stride(3);
    p.sy_n = y.stride(0); p.sy_c = y.stride(1); p.sy_h = y.stride(2); p.sy_w = y.stride(3);
    p.upx = static_cast<int>(upx); p.upy = static_cast<int>(upy);
    p.downx = static_cast<int>(downx); p.downy = static_cast<int>(downy);
    p.padx0 = static_cast<int>(padx0); p.pady0 = static_cast<int>(pady0);
    p.fw = static_cast<int>(fw); p.fh = static_cast<int>(fh);
    p.flip = flip ? 1 : 0;
    p.gain = static_cast<float>(gain);
    p.channels_last = channels_last ? 1 : 0;
    cudaError_t err = upfirdn2d_launch(p, dtype, as_stream(stream));
    TORCH_CHECK(err == cudaSuccess, "upfirdn2d: kernel launch failed: ", cudaGetErrorString(err));
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "comodgan-pytorch CUDA kernels: fused bias + activation, upfirdn2d";
    m.def("bias_act", &bias_act, "bias + activation + gain + clamp and its derivatives (mode 0/1/2)");
    m.def("upfirdn2d", &upfirdn2d, "upsample, pad, FIR filter, downsample");
}

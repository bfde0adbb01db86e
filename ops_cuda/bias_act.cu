// bias_act kernels: y = clamp(gain * f(x + b)) and its first / second derivatives (modes 0, 1, 2).
// Includes only CUDA headers and our parameter struct, so it compiles with a runtime-only CUDA toolkit.

#include "ops_common.cuh"
#include "ops_params.h"

namespace {

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSoftplusThreshold = 20.0;  // as torch.nn.functional.softplus: linear above it

template <typename A> __device__ __forceinline__ A sigmoid_(A v) { return A(1) / (A(1) + exp(-v)); }

// Activation value f(v).
template <typename A> __device__ __forceinline__ A act_f(int act, A v, A alpha) {
    switch (act) {
        case ACT_RELU: return v > A(0) ? v : A(0);
        case ACT_LRELU: return v > A(0) ? v : v * alpha;
        case ACT_TANH: return tanh(v);
        case ACT_SIGMOID: return sigmoid_(v);
        case ACT_ELU: return v > A(0) ? v : exp(v) - A(1);
        case ACT_SELU: return v > A(0) ? A(kSeluScale) * v : A(kSeluScale * kSeluAlpha) * (exp(v) - A(1));
        case ACT_SOFTPLUS: return v > A(kSoftplusThreshold) ? v : log1p(exp(v));
        case ACT_SWISH: return v * sigmoid_(v);
        default: return v;
    }
}

// First derivative f'(v), with the same conventions at the kinks as PyTorch's autograd.
template <typename A> __device__ __forceinline__ A act_d1(int act, A v, A alpha) {
    switch (act) {
        case ACT_RELU: return v > A(0) ? A(1) : A(0);
        case ACT_LRELU: return v > A(0) ? A(1) : alpha;
        case ACT_TANH: { A t = tanh(v); return A(1) - t * t; }
        case ACT_SIGMOID: { A s = sigmoid_(v); return s * (A(1) - s); }
        case ACT_ELU: return v > A(0) ? A(1) : exp(v);
        case ACT_SELU: return v > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * exp(v);
        case ACT_SOFTPLUS: return v > A(kSoftplusThreshold) ? A(1) : sigmoid_(v);
        case ACT_SWISH: { A s = sigmoid_(v); return s * (A(1) + v * (A(1) - s)); }
        default: return A(1);
    }
}

// Second derivative f''(v) (zero for the piecewise-linear activations).
template <typename A> __device__ __forceinline__ A act_d2(int act, A v) {
    switch (act) {
        case ACT_TANH: { A t = tanh(v); return A(-2) * t * (A(1) - t * t); }
        case ACT_SIGMOID: { A s = sigmoid_(v); return s * (A(1) - s) * (A(1) - A(2) * s); }
        case ACT_ELU: return v > A(0) ? A(0) : exp(v);
        case ACT_SELU: return v > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * exp(v);
        case ACT_SOFTPLUS: { if (v > A(kSoftplusThreshold)) return A(0); A s = sigmoid_(v); return s * (A(1) - s); }
        case ACT_SWISH: { A s = sigmoid_(v); return s * (A(1) - s) * (A(2) + v * (A(1) - A(2) * s)); }
        default: return A(0);
    }
}

template <typename T>
__global__ void bias_act_kernel(BiasActParams p) {
    typedef typename AccType<T>::type A;
    const T* g = static_cast<const T*>(p.g);
    const T* b = static_cast<const T*>(p.b);
    const T* xref = static_cast<const T*>(p.xref);
    const T* dy = static_cast<const T*>(p.dy);
    T* out = static_cast<T*>(p.out);
    const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < p.n; i += (int64_t)blockDim.x * gridDim.x) {
        A bias = A(0);
        if (p.size_b > 0) bias = A(ops_load(b, (i / p.stride_b) % p.size_b));
        if (p.mode == 0) {
            A y = act_f<A>(p.act, A(ops_load(g, i)) + bias, alpha) * gain;
            if (clamp >= A(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
            ops_store(out, i, y);
            continue;
        }
        const A v = A(ops_load(xref, i)) + bias;
        // Like torch.clamp's backward: no gradient where the clamp was active.
        if (clamp >= A(0) && fabs(act_f<A>(p.act, v, alpha) * gain) > clamp) {
            ops_store(out, i, A(0));
            continue;
        }
        A r = A(ops_load(g, i)) * gain;
        if (p.mode == 1) r *= act_d1<A>(p.act, v, alpha);
        else r *= act_d2<A>(p.act, v) * A(ops_load(dy, i));
        ops_store(out, i, r);
    }
}

template <typename T> cudaError_t launch_typed(const BiasActParams& p, cudaStream_t stream) {
    const int threads = 256;
    OPS_LAUNCH(bias_act_kernel<T>, ops_num_blocks(p.n, threads), threads, stream, p);
    return OPS_LAST_ERROR();
}

}  // namespace

cudaError_t bias_act_launch(const BiasActParams& p, int dtype, cudaStream_t stream) {
    if (p.n == 0) return cudaSuccess;
    switch (dtype) {
        case OPS_FLOAT32: return launch_typed<float>(p, stream);
        case OPS_FLOAT16: return launch_typed<__half>(p, stream);
        case OPS_FLOAT64: return launch_typed<double>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

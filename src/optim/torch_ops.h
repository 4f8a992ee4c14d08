/* The rounding of the tensor operations torch.optim 1.13 is written in, element by element,
 * so the baselines (and the methods that must reduce to them bit for bit) follow torch's
 * trajectories to the last bit rather than to a tolerance. Measured on Debian's
 * python3-torch (CPU capability AVX2), where ATen's kernels fuse a multiply-add:
 *   self.add(other, alpha=s)         fma(other, s, self)
 *   self.addcmul(t1, t2, value=s)    fma(s * t1, t2, self)
 *   self.addcdiv(t1, t2, value=s)    self + (s * t1) / t2     (the division blocks fusion)
 *   self.mul(s), self.add(s), self/s one IEEE operation, s rounded to float
 * Python-side scalars such as 1 - beta are formed in double and rounded once to float:
 * 1.0f - (float)beta differs from that by up to 2e-4 relative for beta = 0.9999.
 * Without hardware FMA, torch's own kernels multiply and add separately, and so do these. */
#ifndef CO_OPTIM_TORCH_OPS_H
#define CO_OPTIM_TORCH_OPS_H

#include <math.h>

/* The same functions serve the CUDA kernels (src/cuda), which must round exactly as the C
 * loops of the same build do: nvcc compiles them with -fmad=false (no contraction, as C17
 * has none), IEEE division and square root, and CO_CUDA_TORCH_FMA set by CMake to what
 * FP_FAST_FMAF is for the C compiler and flags of the build (co_optim_new_on checks both
 * sides agree). */
#if defined(__CUDACC__)
#define CO_HD __host__ __device__
#else
#define CO_HD
#endif

#if defined(__CUDA_ARCH__) ? defined(CO_CUDA_TORCH_FMA) && CO_CUDA_TORCH_FMA : defined(FP_FAST_FMAF)
#define CO_TORCH_MADD(a, b, c) fmaf(a, b, c)
#define CO_TORCH_USES_FMA 1
#else
#define CO_TORCH_MADD(a, b, c) ((a) * (b) + (c))
#define CO_TORCH_USES_FMA 0
#endif

CO_HD static inline float co_torch_add(float self, float other, float alpha)
{
    return CO_TORCH_MADD(other, alpha, self);
}

CO_HD static inline float co_torch_addcmul(float self, float t1, float t2, float value)
{
    return CO_TORCH_MADD(value * t1, t2, self);
}

CO_HD static inline float co_torch_addcdiv(float self, float t1, float t2, float value)
{
    return self + value * t1 / t2;
}

/* Adam's moments and step (torch.optim.Adam's _single_tensor_adam), shared by every
 * Adam-based method that must reproduce Adam exactly when its own terms vanish.
 * one_minus_b1/b2 are (float)(1.0 - beta) formed in double. */
CO_HD static inline float co_adam_first_moment(float m, float g, float b1, float one_minus_b1)
{
    return co_torch_add(m * b1, g, one_minus_b1);
}

CO_HD static inline float co_adam_second_moment(float v, float g, float b2, float one_minus_b2)
{
    return co_torch_addcmul(v * b2, g, g, one_minus_b2);
}

/* p - step_size * m / denom with denom = sqrt(v) / sqrt(1 - b2^t) + eps. */
CO_HD static inline float co_adam_param(float p, float m, float v, float bc2_sqrt, float eps, float step_size)
{
    return co_torch_addcdiv(p, m, sqrtf(v) / bc2_sqrt + eps, -step_size);
}

#endif

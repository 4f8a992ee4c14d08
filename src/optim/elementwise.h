/* The per-coordinate updates of the methods that have one, written once for the C loops
 * (src/optim) and the CUDA kernels (src/cuda/optim_kernels.cu): both call these functions,
 * so a step on the GPU rounds exactly as the same step on the CPU (torch_ops.h says how).
 * Each method's scalars for one group are computed on the host, in double where torch
 * forms them in Python, then rounded to float once; they travel to the GPU as they are. */
#ifndef CO_OPTIM_ELEMENTWISE_H
#define CO_OPTIM_ELEMENTWISE_H

#include "torch_ops.h"

/* Every method's per-group scalars fit in this many floats (one slot of the kernels'
 * per-group table). */
#define CO_ELEM_NSCALAR 12

/* ------------------------------------------------------------ SGD (torch.optim.SGD) */

typedef struct co_sgd_scalars {
    float lr, mu, keep, wd; /* keep = 1 - dampening, formed in double */
    float momentum, first, nesterov; /* flags (0/1) for the kernels; first: the buffer is d */
} co_sgd_scalars;

/* The flags come as arguments besides s so that a C loop can pass constants: GCC keeps a
 * loop vectorised only when no flag is tested inside it. momentum = 0: buf is not touched. */
CO_HD static inline float co_sgd_update(float p, float g, float *buf, co_sgd_scalars s, int momentum, int first,
                                        int nesterov)
{
    float d = co_torch_add(g, p, s.wd);
    if (!momentum) return co_torch_add(p, d, -s.lr);
    float b = first ? d : co_torch_add(*buf * s.mu, d, s.keep);
    *buf = b;
    float u = nesterov ? co_torch_add(d, b, s.mu) : b;
    return co_torch_add(p, u, -s.lr);
}

/* ------------------------------------------------------------ Adam, AdamW, AMSGrad */

typedef struct co_adam_scalars {
    float b1, a1, b2, a2; /* a = 1 - b, formed in double */
    float eps, l2, decay; /* l2: Adam's weight_decay; decay: AdamW's 1 - lr wd */
    float step_size, bc2_sqrt; /* lr / (1 - b1^t), sqrt(1 - b2^t) */
    float amsgrad;
} co_adam_scalars;

CO_HD static inline float co_adam_update(float p, float g, float *m, float *v, float *vmax, co_adam_scalars s,
                                         int amsgrad)
{
    float gi = co_torch_add(g, p, s.l2);
    float pi = p * s.decay;
    float mi = co_adam_first_moment(*m, gi, s.b1, s.a1);
    float vi = co_adam_second_moment(*v, gi, s.b2, s.a2);
    *m = mi;
    *v = vi;
    if (amsgrad) {
        vi = *vmax > vi ? *vmax : vi;
        *vmax = vi;
    }
    return co_adam_param(pi, mi, vi, s.bc2_sqrt, s.eps, s.step_size);
}

/* ------------------------------------------------------------ RMSprop */

typedef struct co_rmsprop_scalars {
    float lr, alpha, a, eps, wd, mu; /* a = 1 - alpha, formed in double */
    float centered, momentum;        /* flags (0/1) for the kernels; momentum: mu > 0 */
} co_rmsprop_scalars;

/* RMSprop's denominator sqrt(v) + eps of a (not centred) second moment: what
 * co_rmsprop_denom returns, for a caller that recomputes it from the stored v instead of
 * keeping it. */
CO_HD static inline float co_rmsprop_den(float sq, float eps) { return sqrtf(sq) + eps; }

/* avg is read only when centered, buf only with momentum. */
/* The second moment of gi (and its mean when centered) moved on, and the denominator
 * sqrt(v) + eps; a = 1 - alpha. DA-RMSprop's scaling is this too (da_rmsprop.c, pass 1). */
CO_HD static inline float co_rmsprop_denom(float gi, float *sq, float *avg, float alpha, float a, float eps, int centered)
{
    float v = co_torch_addcmul(*sq * alpha, gi, gi, a);
    *sq = v;
    if (centered) {
        float m = co_torch_add(*avg * alpha, gi, a);
        *avg = m;
        v = co_torch_addcmul(v, m, m, -1.0f);
    }
    return co_rmsprop_den(v, eps);
}

CO_HD static inline float co_rmsprop_update(float p, float g, float *sq, float *avg, float *buf, co_rmsprop_scalars s,
                                            int centered, int momentum)
{
    float gi = co_torch_add(g, p, s.wd);
    float d = co_rmsprop_denom(gi, sq, avg, s.alpha, s.a, s.eps, centered);
    if (momentum) {
        float b = co_torch_addcdiv(*buf * s.mu, gi, d, 1.0f);
        *buf = b;
        return co_torch_add(p, b, -s.lr);
    }
    return co_torch_addcdiv(p, gi, d, -s.lr);
}

/* ------------------------------------------------------------ Adagrad */

typedef struct co_adagrad_scalars {
    float clr, wd, eps; /* clr = lr / (1 + (t - 1) lr_decay) */
} co_adagrad_scalars;

CO_HD static inline float co_adagrad_update(float p, float g, float *sum, co_adagrad_scalars s)
{
    float gi = co_torch_add(g, p, s.wd);
    float si = co_torch_addcmul(*sum, gi, gi, 1.0f);
    *sum = si;
    return co_torch_addcdiv(p, gi, sqrtf(si) + s.eps, -s.clr);
}

/* ------------------------------------------------------------ L2 as a pass of its own */

/* g += wd p on the gradient itself, for the methods that add the penalty before their update
 * rather than inside it (co_apply_l2). One IEEE multiply and add, no fused multiply-add. */
CO_HD static inline float co_l2_grad(float g, float p, float wd)
{
    return g + wd * p;
}

typedef struct co_l2_scalars {
    float wd, on; /* on: wd != 0 in double (a group whose wd is 0 is not touched at all) */
} co_l2_scalars;

/* ------------------------------------------------------------ ogr-asgd, ogr-asgdc (ogr_asgd.c) */

/* Duda's coordinate-wise rates. a = 1.0f - beta, formed in float (as the C loops always did). */
typedef struct co_ogr_asgd_scalars {
    float beta, a, alpha, eps, delta;
    float growth, rmax; /* rate_growth and rate_max as the step uses them (0: off) */
} co_ogr_asgd_scalars;

/* Algorithm 8: the central moments of theta and g, then p - alpha rate g with
 * rate = max(sqrt(var_t / (var_g + eps)), delta), capped by the safeguards. Their flags
 * (rate_max: s.rmax > 0, rate_growth: s.growth > 0) come as arguments so that a C loop can
 * pass constants; ra is read and written only with rate_growth. */
CO_HD static inline float co_ogr_asgd_update(float p, float g, float *mt, float *vt, float *mg, float *vg,
                                             float *ra, co_ogr_asgd_scalars s, int rate_max, int rate_growth)
{
    float dt = p - *mt, dg = g - *mg;
    *mt += s.a * dt;
    *mg += s.a * dg;
    float var_t = s.beta * (*vt + s.a * dt * dt);
    float var_g = s.beta * (*vg + s.a * dg * dg);
    *vt = var_t;
    *vg = var_g;
    float rate = sqrtf(var_t / (var_g + s.eps));
    rate = rate > s.delta ? rate : s.delta;
    if (rate_max) rate = rate < s.rmax ? rate : s.rmax;
    if (rate_growth) {
        float cap = s.growth * *ra;
        rate = rate < cap ? rate : cap;
        *ra = s.beta * *ra + s.a * rate;
    }
    return p - s.alpha * rate * g;
}

typedef struct co_ogr_asgdc_scalars {
    float beta, a, alpha, gamma, lambda_min;
    float growth, rmax; /* as in co_ogr_asgd_scalars */
} co_ogr_asgdc_scalars;

/* Algorithm 9: the regression slope lambda = cov / var_t, the residual noise nu, then
 * p - alpha g / h with h = max(|lambda| + gamma sqrt(nu / var_t), lambda_min); flags and ra as
 * in co_ogr_asgd_update (the rate is 1/h). */
CO_HD static inline float co_ogr_asgdc_update(float p, float g, float *mt, float *vt, float *mg, float *cv,
                                              float *nu, float *ra, co_ogr_asgdc_scalars s, int rate_max,
                                              int rate_growth)
{
    float dt = p - *mt, dg = g - *mg;
    float m_t = *mt + s.a * dt, m_g = *mg + s.a * dg;
    *mt = m_t;
    *mg = m_g;
    float var_t = s.beta * (*vt + s.a * dt * dt);
    float cov = s.beta * (*cv + s.a * dt * dg);
    *vt = var_t;
    *cv = cov;
    /* A position that never moved (its variance decayed to 0) has no slope to offer. */
    float lambda = var_t > 0 ? cov / var_t : 0.0f;
    float r = g - m_g - lambda * (p - m_t);
    float nv = s.beta * *nu + s.a * r * r;
    *nu = nv;
    float noise = var_t > 0 ? sqrtf(nv / var_t) : (nv > 0 ? INFINITY : 0.0f);
    float h = fabsf(lambda) + s.gamma * noise;
    h = h > s.lambda_min ? h : s.lambda_min;
    if (rate_max) h = h > 1.0f / s.rmax ? h : 1.0f / s.rmax;
    if (rate_growth) {
        float h_min = 1.0f / (s.growth * *ra);
        h = h > h_min ? h : h_min;
        *ra = s.beta * *ra + s.a / h;
    }
    return p - s.alpha * g / h;
}

#endif

/* The optimizer on a GPU: which methods can run there, the step driver's maximize and
 * clipping on the device, and the fused multi-tensor step of the per-coordinate methods
 * (one table of every group's tensors and slots, built at the first step, one launch per
 * step). The arithmetic is the CPU's (elementwise.h); only where it runs changes. */
#include "optim_impl.h"
#include "elementwise.h"

#include <math.h>
#include <string.h>

co_device co_optim_device(const co_optim *o) { return o->device; }
void co_optim_set_stream(co_optim *o, void *stream) { o->stream = stream; }

co_status co_optim_device_check(const co_optim_info *info, co_device dev, co_error *err)
{
    if (dev != CO_DEVICE_CUDA) return co_error_set(err, CO_EINVAL, "unknown device %d", (int)dev);
    if (!info->ops->step_cuda) {
        char names[256] = "";
        for (int i = 0; i < co_optim_count(); i++) {
            const co_optim_info *m = co_optim_info_at(i);
            if (!m->ops->step_cuda) continue;
            if (names[0]) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, m->name, sizeof names - strlen(names) - 1);
        }
        return co_error_set(err, CO_EINVAL, "%s has no CUDA step yet (on CUDA: %s)", info->name, names);
    }
    co_status st = co_cuda_check(err);
    if (st != CO_OK) return st;
    /* The kernels must round as this build's C loops do (torch_ops.h). */
    if (co_cuda_torch_fma() != CO_TORCH_USES_FMA)
        return co_error_set(err, CO_EINVAL,
                            "this build's CUDA kernels %s fused multiply-adds and its C loops %s: reconfigure "
                            "with the same flags (CO_CUDA_TORCH_FMA)",
                            co_cuda_torch_fma() ? "use" : "do not use", CO_TORCH_USES_FMA ? "do" : "do not");
    return CO_OK;
}

/* The table of (param, grad, slots) of every tensor, built at the first step: the pointers
 * stay until co_optim_rebind, which drops it. The step driver's scaling may build one before
 * the method names its slots (slots NULL); the method's first step then builds it again. */
static co_status ensure_plan(co_optim *o, co_slots *const slots[CO_MT_MAX_SLOTS], co_error *err)
{
    if (o->mt && (!slots || memcmp(o->mt_slots, slots, sizeof o->mt_slots) == 0)) return CO_OK;
    co_mt_plan_free(o->mt);
    o->mt = NULL;
    int n = 0;
    for (int g = 0; g < o->ngroups; g++) n += o->groups[g].ntensors;
    co_mt_tensor *t = calloc((size_t)n, sizeof *t);
    if (!t) return co_error_set(err, CO_ENOMEM, "out of memory");
    int i = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int k = 0; k < o->groups[g].ntensors; k++, i++) {
            t[i].p = o->groups[g].param[k];
            t[i].g = o->groups[g].grad[k];
            for (int j = 0; j < CO_MT_MAX_SLOTS; j++) t[i].s[j] = slots && slots[j] ? co_slot(slots[j], g, k) : NULL;
            t[i].n = o->groups[g].size[k];
            t[i].group = g;
        }
    o->mt = co_mt_plan_new(t, n, err);
    free(t);
    for (int j = 0; j < CO_MT_MAX_SLOTS; j++) o->mt_slots[j] = slots ? slots[j] : NULL;
    return o->mt ? CO_OK : (err ? err->code : CO_ENOMEM);
}

static float *group_scalars(const co_optim *o, co_group_scalars_fn fn, co_error *err)
{
    float *sc = calloc((size_t)o->ngroups * CO_ELEM_NSCALAR, sizeof *sc);
    if (!sc) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    for (int g = 0; g < o->ngroups; g++) fn(o, g, sc + (size_t)g * CO_ELEM_NSCALAR);
    return sc;
}

co_status co_optim_mt_step(co_optim *o, co_mt_kind kind, co_slots *const slots[CO_MT_MAX_SLOTS],
                           co_group_scalars_fn scalars, co_error *err)
{
    co_status st = ensure_plan(o, slots, err);
    if (st != CO_OK) return st;
    float *sc = group_scalars(o, scalars, err);
    if (!sc) return CO_ENOMEM;
    st = co_mt_launch(o->mt, kind, sc, o->ngroups, o->stream, err);
    free(sc);
    return st;
}

/* g *= factor[group] over every group's gradients (groups whose factor is 1 untouched). */
static co_status scale_grads(co_optim *o, const float *factor, co_error *err)
{
    float *sc = calloc((size_t)o->ngroups * CO_ELEM_NSCALAR, sizeof *sc);
    if (!sc) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (int g = 0; g < o->ngroups; g++) sc[(size_t)g * CO_ELEM_NSCALAR] = factor[g];
    co_status st = co_mt_launch(o->mt, CO_MT_SCALE, sc, o->ngroups, o->stream, err);
    free(sc);
    return st;
}

co_status co_optim_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    if (c && c->eval)
        return co_error_set(err, CO_EINVAL, "%s on CUDA: closures are not supported there yet", o->info->name);
    co_status st = ensure_plan(o, NULL, err);
    if (st != CO_OK) return st;
    /* sign: -1 where a group maximizes (the negation is exact, and undone after the step);
     * clip: the clipping factor, the same for every group. */
    float *sign = malloc(2 * (size_t)o->ngroups * sizeof *sign), *clip = sign + o->ngroups;
    if (!sign) return co_error_set(err, CO_ENOMEM, "out of memory");
    int maximize = 0;
    for (int g = 0; g < o->ngroups; g++) {
        sign[g] = co_optim_maximizes(o, g) ? -1.0f : 1.0f;
        maximize |= sign[g] != 1.0f;
    }
    if (maximize) st = scale_grads(o, sign, err);
    if (st == CO_OK && o->clip_norm > 0) {
        double sumsq = 0;
        st = co_mt_grad_sumsq(o->mt, o->stream, &sumsq, err);
        float f = co_clip_factor(o->clip_norm, sqrt(sumsq));
        if (st == CO_OK && f != 1.0f) {
            for (int g = 0; g < o->ngroups; g++) clip[g] = f;
            st = scale_grads(o, clip, err);
        }
    }
    if (st == CO_OK) {
        o->t++;
        st = o->info->ops->step_cuda(o, c, err);
    }
    if (st == CO_OK && maximize) st = scale_grads(o, sign, err);
    free(sign);
    return st;
}

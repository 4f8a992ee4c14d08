/* The optimizer framework as seen by the methods: the optimizer object, the method
 * vtable, hyperparameter access, per-parameter state slots and the state visitor that
 * serves save and load with one enumeration (so the two can never disagree). */
#ifndef CO_OPTIM_IMPL_H
#define CO_OPTIM_IMPL_H

#include "curvopt.h"
#include "../core/alloc.h"
#include "../cuda/cuda_api.h"

/* Visits every piece of state as a named blob; the same walk writes a checkpoint
 * (read from data) or loads one (write into data). */
typedef struct co_state_visitor co_state_visitor;
struct co_state_visitor {
    void (*blob)(co_state_visitor *v, const char *name, void *data, size_t bytes);
};

/* Methods fill it with designated initializers (.init = ..., .step = ...) so optional
 * members can be added without touching every method. */
struct co_optim_ops {
    /* Allocates method state; hyperparameters are set already (init may validate them). */
    co_status (*init)(co_optim *o, co_error *err);
    /* One update; o->t has been incremented and gradients clipped. */
    co_status (*step)(co_optim *o, const co_closure *c, co_error *err);
    /* Enumerates method state for save/load. */
    void (*visit)(co_optim *o, co_state_visitor *v);
    void (*free)(co_optim *o);
    /* Optional (CO_NEEDS_EPOCH). */
    co_status (*epoch_end)(co_optim *o, int epoch, double val_loss, co_error *err);
    int needs;
    /* Optional: what the current state still needs (a subset of needs); TSO-ALRA's second
     * stage is plain SGD and no longer reads captures. */
    int (*needs_now)(const co_optim *o);
    /* Optional: named diagnostics (e.g. LAMA-Adam's "layer_trace"); returns the count
     * written to out (at most max), or -1 if the name is unknown. */
    int (*diagnostic)(const co_optim *o, const char *name, double *out, int max);
    /* Optional, distributed runs (o->coll): a method whose ranks hold shares of its state
     * makes rank 0's complete (collect, collective) and takes its share of a complete state
     * every rank loaded (share). */
    co_status (*collect)(co_optim *o, co_error *err);
    void (*share)(co_optim *o);
    /* Optional: the step of an optimizer created on CO_DEVICE_CUDA (its groups' buffers and
     * its slots live on the GPU); a method without one cannot be created there. */
    co_status (*step_cuda)(co_optim *o, const co_closure *c, co_error *err);
};

struct co_optim {
    const co_optim_info *info;
    int ngroups;
    co_group *groups;
    int nhp;
    double *hp; /* ngroups x nhp: the method's hyperparameters, then the common ones */
    int created; /* init has run: CO_HP_FIXED values can no longer change */
    double lr_scale;
    double clip_norm;
    uint64_t t; /* completed steps; incremented before ops->step */
    co_rng rng; /* CO_STREAM_OPTIM */
    const co_collective *coll; /* distributed run (size > 1), or NULL */
    int faithful_hp; /* index of the method's `faithful` switch, -1 when it has none */
    void *state; /* owned by the method */
    co_device device; /* where the groups' buffers and the slots live */
    void *stream;     /* CUDA stream of the steps (NULL: the calling thread's default stream) */
    co_mt_plan *mt; /* the fused kernels' table of tensors (optim_device.c), or NULL */
    struct co_slots *mt_slots[CO_MT_MAX_SLOTS]; /* the slots that table holds */
    co_status device_status; /* a GPU copy that failed while the state was visited */
    float *group_scalars; /* ngroups x CO_ELEM_NSCALAR: this step's (co_optim_foreach) */
};

static inline double co_hp(const co_optim *o, int g, int i) { return o->hp[(size_t)g * o->nhp + i]; }
/* Effective learning rate of group g: hyperparameter 0 times the schedule's scale. */
static inline double co_lr(const co_optim *o, int g) { return co_hp(o, g, 0) * o->lr_scale; }

/* A safeguard hyperparameter (CO_HP_SAFEGUARD) of group g as the method must use it: 0 (off)
 * while the method's `faithful` switch is on, its value otherwise. */
static inline double co_guard(const co_optim *o, int g, int i)
{
    return o->faithful_hp >= 0 && co_hp(o, g, o->faithful_hp) != 0 ? 0.0 : co_hp(o, g, i);
}

/* A CO_HP_DEPARTURE hyperparameter of group g as the method must use it: the paper's value
 * while the method's `faithful` switch is on, its value otherwise. */
static inline double co_departure(const co_optim *o, int g, int i, double paper_value)
{
    return o->faithful_hp >= 0 && co_hp(o, g, o->faithful_hp) != 0 ? paper_value : co_hp(o, g, i);
}

/* One float buffer per (group, tensor), shaped like the parameters, zero-initialised. */
typedef struct co_slots {
    int ngroups;
    co_device device;
    float *base;
    float *at[]; /* ngroups * CO_GROUP_MAX_TENSORS, NULL where a group has fewer tensors */
} co_slots;
co_slots *co_slots_new(const co_optim *o, co_error *err);
void co_slots_free(co_slots *s);
static inline float *co_slot(const co_slots *s, int g, int k)
{
    return s->at[g * CO_GROUP_MAX_TENSORS + k];
}
/* Sets every slot of group g to value (on the slots' device). */
co_status co_slots_fill_group(co_slots *s, const co_optim *o, int g, float value, co_error *err);
/* Visits every tensor of the slots as "<name>/<group>/<tensor>" (through a host copy when
 * they live on the GPU: the state's bytes do not depend on the device). */
void co_slots_visit(co_slots *s, co_optim *o, co_state_visitor *v, const char *name);

/* ------------------------------------------------------------ the CUDA step (optim_device.c) */

/* Writes group g's scalars (CO_ELEM_NSCALAR floats at most) for the step under way. */
typedef void (*co_group_scalars_fn)(const co_optim *o, int g, float *out);

/* A per-coordinate step on the CPU, co_optim_mt_step's counterpart: fn(p, g, slot, n, sc)
 * updates n elements of one tensor's parameters p and gradients g, slot[j] being the same
 * elements of slots[j] (NULL where slots has fewer), sc the tensor's group's row of
 * o->group_scalars, which scalars fills first (once a step; with scalars NULL the method has
 * filled the rows itself). With more than one OpenMP thread and more than CO_FOREACH_PAR_MIN parameters in
 * all, the tensors laid end to end are cut into one contiguous range per thread (within a
 * tensor at cache-line multiples), the same every step: one parallel region a step rather
 * than one per large tensor, and each thread keeps its share of the method's state in its
 * own cache. fn runs on several threads at once over ranges that never overlap; per
 * coordinate, so no result depends on the cut. */
typedef void co_range_fn(float *p, float *g, float *const *slot, size_t n, const float *sc);
#define CO_FOREACH_PAR_MIN 16384
void co_optim_foreach(co_optim *o, co_slots *const slots[CO_MT_MAX_SLOTS], co_group_scalars_fn scalars,
                      co_range_fn *fn);

/* One step of a per-coordinate method over every group of a CUDA optimizer, in one launch
 * where the groups fit the kernel's table (asynchronous on o->stream). slots: the method's
 * slots in the kernel's order, NULL where it has fewer (always CO_MT_MAX_SLOTS entries); NULL
 * for a kind that reads no slot (CO_MT_L2), which runs over whichever table is there. */
co_status co_optim_mt_step(co_optim *o, co_mt_kind kind, co_slots *const slots[CO_MT_MAX_SLOTS],
                           co_group_scalars_fn scalars, co_error *err);
/* CO_OK when method info can run on dev (a CUDA build, a GPU, a CUDA step). */
co_status co_optim_device_check(const co_optim_info *info, co_device dev, co_error *err);
/* Group g maximizes (the common hyperparameter "maximize"). */
int co_optim_maximizes(const co_optim *o, int g);
/* co_optim_step of a CUDA optimizer: maximize and clipping on the GPU, then the method's
 * step_cuda. */
co_status co_optim_step_cuda(co_optim *o, const co_closure *c, co_error *err);
/* torch.nn.utils.clip_grad_norm_'s factor max_norm / (norm + 1e-6) as the float the
 * gradients are multiplied by; exactly 1 when no clipping is due. */
float co_clip_factor(double max_norm, double norm);

/* co_optim_state_read for a state that must end the stream: trailing bytes are refused
 * before anything is applied (checkpoints keep the optimizer state last). */
co_status co_optim_state_read_whole(co_optim *o, FILE *f, co_error *err);

/* Total number of parameters of group g and of the whole optimizer. */
size_t co_group_numel(const co_group *g);
size_t co_optim_numel(const co_optim *o);

/* Generic weight decay for methods that do not fuse it: L2 adds wd * p to the
 * gradient (torch's `weight_decay`); decoupled scales p by 1 - lr * wd (AdamW). */
void co_apply_l2(co_optim *o, int g, double wd);
void co_apply_decoupled_decay(co_optim *o, int g, double lr, double wd);

#endif

/* The optimizer framework as seen by the methods: the optimizer object, the method
 * vtable, hyperparameter access, per-parameter state slots and the state visitor that
 * serves save and load with one enumeration (so the two can never disagree). */
#ifndef CO_OPTIM_IMPL_H
#define CO_OPTIM_IMPL_H

#include "curvopt.h"
#include "../core/alloc.h"

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
    float *base;
    float *at[]; /* ngroups * CO_GROUP_MAX_TENSORS, NULL where a group has fewer tensors */
} co_slots;
co_slots *co_slots_new(const co_optim *o, co_error *err);
void co_slots_free(co_slots *s);
static inline float *co_slot(const co_slots *s, int g, int k)
{
    return s->at[g * CO_GROUP_MAX_TENSORS + k];
}
void co_slots_fill(co_slots *s, const co_optim *o, float value);
/* Visits every tensor of the slots as "<name>/<group>/<tensor>". */
void co_slots_visit(co_slots *s, const co_optim *o, co_state_visitor *v, const char *name);

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

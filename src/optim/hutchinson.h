/* Hutchinson's estimator of the trace of each layer's diagonal Hessian block,
 * tr(H_ll) ~ (1/K) sum_k v_l'(H v)_l with Rademacher probes v, and Hessian-vector products
 * by a forward difference of gradients on the same minibatch (LAMA-Adam, paper 002 eq. 7):
 *     H v ~ (grad L(theta + delta v) - grad L(theta)) / delta.
 *
 * One probe perturbs every group at once and costs one closure evaluation for all of them.
 * It is still unbiased for each diagonal block: (H v)_l = sum_k H_lk v_k and, the probe's
 * entries being independent with mean 0, E[v_l' H_lk v_k] = 0 for k != l, so
 * E[v_l'(H v)_l] = tr(H_ll). The cross blocks only add variance (per probe,
 * Var = 2 sum_{i!=j in l} H_ij^2 + sum_{i in l, j not in l} H_ij^2).
 *
 * The one-sided difference has no O(delta) bias in expectation either: the next term,
 * (delta/2) T[v, v, v] of the third derivative, has E[v_i v_j v_k] = 0 for Rademacher v;
 * the bias is O(delta^2). */
#ifndef CO_OPTIM_HUTCHINSON_H
#define CO_OPTIM_HUTCHINSON_H

#include "curvopt.h"

typedef struct co_hutchinson {
    int ngroups;
    size_t n;               /* parameters over all groups */
    float *theta0, *grad0;  /* copies restored bit for bit after the probes */
    float *gbase;           /* grad L(theta) re-evaluated (base_from_closure) */
    double *mean, *m2, *cur; /* per group: running mean, sum of squared deviations, this probe */
    /* Distributed run (borrowed, may be NULL): with a closure that has eval_whole, the probes
     * are shared among the ranks and the estimate is bit for bit the one-process one. */
    const co_collective *coll;
} co_hutchinson;

co_status co_hutchinson_init(co_hutchinson *h, const co_group *groups, int ngroups, co_error *err);
void co_hutchinson_free(co_hutchinson *h);

/* Estimates tr(H_ll) for every group l with `probes` Rademacher probes drawn from rng
 * (bit j of one 64-bit draw is the sign of element i0 + j of a tensor; draws in group,
 * tensor, element order, each tensor starting a fresh draw). The closure re-evaluates the
 * gradients into the groups' grad buffers. base_from_closure: evaluate grad L(theta)
 * through the closure first (one more evaluation) instead of taking it from the grad
 * buffers - needed when those were modified (clipped) after the closure produced them.
 * On return, parameters and gradients are exactly what they were on entry, whatever the
 * outcome. trace[l] gets the mean, stderr_out[l] (may be NULL) the standard error of the
 * mean over probes (0 for a single probe). A non-finite loss or probe value gives
 * CO_ENUMERIC. */
co_status co_hutchinson_trace(co_hutchinson *h, const co_group *groups, int ngroups, const co_closure *c,
                              co_rng *rng, int probes, double delta, int base_from_closure, double *trace,
                              double *stderr_out, co_error *err);

#endif

/* Per-layer Hutchinson trace with finite-difference Hessian-vector products (hutchinson.h). */
#include "hutchinson.h"
#include "../core/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rademacher signs: bit j of one 64-bit draw gives the sign of element i0 + j of a tensor
 * (each tensor starts a fresh draw). The probe is regenerated from a copy of the generator
 * after the evaluation instead of being stored. */
static inline float sign_of(uint64_t bits, size_t j, float d)
{
    return ((bits >> j) & 1u) ? d : -d;
}

co_status co_hutchinson_init(co_hutchinson *h, const co_group *groups, int ngroups, co_error *err)
{
    memset(h, 0, sizeof *h);
    h->ngroups = ngroups;
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) h->n += groups[g].size[k];
    h->theta0 = co_falloc(h->n);
    h->grad0 = co_falloc(h->n);
    h->gbase = co_falloc(h->n);
    h->mean = co_dalloc((size_t)ngroups);
    h->m2 = co_dalloc((size_t)ngroups);
    h->cur = co_dalloc((size_t)ngroups);
    if (!h->theta0 || !h->grad0 || !h->gbase || !h->mean || !h->m2 || !h->cur) {
        co_hutchinson_free(h);
        return co_error_set(err, CO_ENOMEM, "out of memory for the Hutchinson estimator (%zu parameters)", h->n);
    }
    return CO_OK;
}

void co_hutchinson_free(co_hutchinson *h)
{
    free(h->theta0);
    free(h->grad0);
    free(h->gbase);
    free(h->mean);
    free(h->m2);
    free(h->cur);
    memset(h, 0, sizeof *h);
}

/* dir 0: buffers -> copy; 1: copy -> buffers. */
static void copy_all(const co_group *groups, int ngroups, float *flat, int params, int dir)
{
    size_t off = 0;
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) {
            float *buf = params ? groups[g].param[k] : groups[g].grad[k];
            size_t n = groups[g].size[k];
            if (dir == 0) memcpy(flat + off, buf, n * sizeof(float));
            else memcpy(buf, flat + off, n * sizeof(float));
            off += n;
        }
}

static void restore(co_hutchinson *h, const co_group *groups, int ngroups)
{
    copy_all(groups, ngroups, h->theta0, 1, 1);
    copy_all(groups, ngroups, h->grad0, 0, 1);
}

/* Parameters theta0 + d v for the next probe v drawn from rng. */
static void perturb(const co_hutchinson *h, const co_group *groups, int ngroups, co_rng *rng, float d)
{
    size_t off = 0;
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) {
            float *par = groups[g].param[k];
            const float *t0 = h->theta0 + off;
            size_t n = groups[g].size[k];
            for (size_t i0 = 0; i0 < n; i0 += 64) {
                uint64_t bits = co_rng_u64(rng);
                size_t len = n - i0 < 64 ? n - i0 : 64;
#pragma omp simd
                for (size_t j = 0; j < len; j++) par[i0 + j] = t0[i0 + j] + sign_of(bits, j, d);
            }
            off += n;
        }
}

/* rng past one probe's draws (a probe another rank evaluates). */
static void skip_probe(const co_group *groups, int ngroups, co_rng *rng)
{
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++)
            for (size_t i0 = 0; i0 < groups[g].size[k]; i0 += 64) (void)co_rng_u64(rng);
}

/* x[l] = v_l'(grad - base)_l / delta for the probe that `again` (the generator as it was
 * before the probe) draws again. */
static void probe_values(const co_group *groups, int ngroups, co_rng *again, const float *base, double inv_delta,
                         double *x)
{
    size_t off = 0;
    for (int g = 0; g < ngroups; g++) {
        double acc = 0;
        for (int k = 0; k < groups[g].ntensors; k++) {
            const float *gr = groups[g].grad[k], *g0 = base + off;
            size_t n = groups[g].size[k];
            for (size_t i0 = 0; i0 < n; i0 += 64) {
                uint64_t bits = co_rng_u64(again);
                size_t len = n - i0 < 64 ? n - i0 : 64;
                double part = 0;
#pragma omp simd reduction(+ : part)
                for (size_t j = 0; j < len; j++)
                    part += (double)sign_of(bits, j, 1.0f) * ((double)gr[i0 + j] - (double)g0[i0 + j]);
                acc += part;
            }
            off += n;
        }
        x[g] = acc * inv_delta;
    }
}

/* Welford over probes: the spread can be small next to the mean. */
static void welford_add(co_hutchinson *h, int p, const double *x)
{
    for (int g = 0; g < h->ngroups; g++) {
        double dm = x[g] - h->mean[g];
        h->mean[g] += dm / (p + 1);
        h->m2[g] += dm * (x[g] - h->mean[g]);
    }
}

static co_status check_probe(const co_hutchinson *h, int p, double loss, const double *x, double delta, co_error *err)
{
    if (!isfinite(loss))
        return co_error_set(err, CO_ENUMERIC, "Hutchinson: non-finite loss at probe %d (delta %g)", p + 1, delta);
    for (int g = 0; g < h->ngroups; g++)
        if (!isfinite(x[g]))
            return co_error_set(err, CO_ENUMERIC, "Hutchinson: non-finite v'Hv in group %d at probe %d", g, p + 1);
    return CO_OK;
}

/* The probes shared among the ranks: probe p is evaluated whole on rank p mod size, the
 * other ranks only draw past it, so every rank's generator ends where one process's does.
 * Each rank fills its probes' rows of (loss, x[0..ngroups)) and -0.0 elsewhere; the sum over
 * ranks is then every row exactly, and the rows are folded in probe order as one process
 * folds them. */
static co_status probes_split(co_hutchinson *h, const co_group *groups, int ngroups, const co_closure *c, co_rng *rng,
                              int probes, double delta, const float *base, co_error *err)
{
    const co_collective *coll = h->coll;
    size_t width = (size_t)ngroups + 1;
    double *rows = malloc((size_t)probes * width * sizeof *rows);
    if (!rows) return co_error_set(err, CO_ENOMEM, "out of memory for %d Hutchinson probes", probes);
    for (size_t i = 0; i < (size_t)probes * width; i++) rows[i] = -0.0;
    for (int p = 0; p < probes; p++) {
        if (p % coll->size != coll->rank) {
            skip_probe(groups, ngroups, rng);
            continue;
        }
        co_rng again = *rng;
        perturb(h, groups, ngroups, rng, (float)delta);
        double *row = rows + (size_t)p * width;
        row[0] = c->eval_whole(c->ctx);
        probe_values(groups, ngroups, &again, base, 1.0 / delta, row + 1);
    }
    co_status st = coll->allreduce_sum(coll->ctx, NULL, 0, rows, (size_t)probes * width, err);
    for (int p = 0; p < probes && st == CO_OK; p++) {
        const double *row = rows + (size_t)p * width;
        if ((st = check_probe(h, p, row[0], row + 1, delta, err)) == CO_OK) welford_add(h, p, row + 1);
    }
    free(rows);
    return st;
}

co_status co_hutchinson_trace(co_hutchinson *h, const co_group *groups, int ngroups, const co_closure *c,
                              co_rng *rng, int probes, double delta, int base_from_closure, double *trace,
                              double *stderr_out, co_error *err)
{
    if (ngroups != h->ngroups) return co_error_set(err, CO_EINVAL, "Hutchinson: %d groups, set up for %d", ngroups, h->ngroups);
    if (!c || !c->eval) return co_error_set(err, CO_EINVAL, "Hutchinson trace needs a closure that re-evaluates gradients");
    if (probes < 1 || !(delta > 0) || !isfinite(delta))
        return co_error_set(err, CO_EINVAL, "Hutchinson: probes %d must be >= 1 and delta %g > 0", probes, delta);
    copy_all(groups, ngroups, h->theta0, 1, 0);
    copy_all(groups, ngroups, h->grad0, 0, 0);
    /* grad0 is what the caller gets back; base is what the difference subtracts. */
    const float *base = h->grad0;
    if (base_from_closure) {
        double l = c->eval(c->ctx);
        if (!isfinite(l)) {
            restore(h, groups, ngroups);
            return co_error_set(err, CO_ENUMERIC, "Hutchinson: non-finite loss re-evaluating the gradient");
        }
        copy_all(groups, ngroups, h->gbase, 0, 0);
        base = h->gbase;
    }
    for (int g = 0; g < ngroups; g++) h->mean[g] = h->m2[g] = 0;
    co_status st = CO_OK;
    if (h->coll && h->coll->size > 1 && c->eval_whole) {
        st = probes_split(h, groups, ngroups, c, rng, probes, delta, base, err);
    } else {
        for (int p = 0; p < probes && st == CO_OK; p++) {
            co_rng again = *rng;
            perturb(h, groups, ngroups, rng, (float)delta);
            double l = c->eval(c->ctx);
            if (isfinite(l)) probe_values(groups, ngroups, &again, base, 1.0 / delta, h->cur);
            if ((st = check_probe(h, p, l, h->cur, delta, err)) == CO_OK) welford_add(h, p, h->cur);
        }
    }
    restore(h, groups, ngroups);
    if (st) return st;
    for (int g = 0; g < ngroups; g++) {
        trace[g] = h->mean[g];
        if (stderr_out) stderr_out[g] = probes > 1 ? sqrt(h->m2[g] / (probes - 1) / probes) : 0.0;
    }
    return CO_OK;
}

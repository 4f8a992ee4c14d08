/* co_optim_foreach, the CPU step of every per-coordinate method: over tensors of odd sizes in
 * several groups, each element is handed out exactly once, within its tensor, cut at cache-line
 * multiples, the same ranges every step; and every per-coordinate method (weight decay,
 * momentum, Nesterov, centering, AMSGrad, maximize) gives the same parameters bit for bit
 * at 1, 2, 3 and 5 threads, with a model below and above the size where the threads share
 * the step. */
#include "test_util.h"
#include "optim/optim_impl.h"

#include <curvopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum { MAXG = 4, RANGES = 64 };

typedef struct {
    int ngroups, ntensors[MAXG];
    size_t size[MAXG][CO_GROUP_MAX_TENSORS];
} layout;

/* Above CO_FOREACH_PAR_MIN in all (17,059), and below it (17,059 - 12,001). */
static const layout big = {3, {2, 1, 3}, {{5000, 33}, {17}, {12001, 1, 7}}};
static const layout small = {3, {2, 1, 2}, {{5000, 33}, {17}, {1, 7}}};

typedef struct {
    float *param, *grad;
    co_group groups[MAXG];
    size_t total;
} model;

static void model_new(model *m, const layout *l, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    for (int g = 0; g < l->ngroups; g++)
        for (int k = 0; k < l->ntensors[g]; k++) m->total += l->size[g][k];
    m->param = calloc(m->total, sizeof(float));
    m->grad = calloc(m->total, sizeof(float));
    co_rng r;
    co_rng_seed(&r, seed, 3);
    for (size_t i = 0; i < m->total; i++) m->param[i] = (float)(2 * co_rng_uniform(&r) - 1);
    size_t off = 0;
    for (int g = 0; g < l->ngroups; g++) {
        co_group *gr = &m->groups[g];
        gr->kind = CO_GROUP_DENSE;
        gr->ntensors = l->ntensors[g];
        for (int k = 0; k < gr->ntensors; k++) {
            gr->param[k] = m->param + off;
            gr->grad[k] = m->grad + off;
            gr->size[k] = l->size[g][k];
            off += l->size[g][k];
        }
    }
}

static void model_free(model *m)
{
    free(m->param);
    free(m->grad);
}

/* ---------------------------------------------------------------- the ranges */

typedef struct {
    int g, k, thread;
    size_t i0, n;
} range;

static range seen[RANGES];
static int nseen;
static const model *marking; /* the model and optimizer test_ranges hands to mark */
static const co_optim *marking_opt;
static co_slots *marking_slots;

/* Writes the thread's number + 1 into every gradient element it is handed and records the
 * range, found from where p points; the slot it is handed must be the same elements. */
static void mark(float *p, float *g, float *const *slot, size_t n, const float *sc)
{
    (void)sc;
    int t = omp_get_thread_num();
    for (size_t i = 0; i < n; i++) g[i] += (float)(t + 1);
    size_t at = (size_t)(p - marking->param), off = 0;
    range r = {-1, -1, t, 0, n};
    for (int gi = 0; gi < marking_opt->ngroups && r.g < 0; gi++)
        for (int k = 0; k < marking->groups[gi].ntensors && r.g < 0; k++) {
            size_t len = marking->groups[gi].size[k];
            if (at >= off && at < off + len) r = (range){gi, k, t, at - off, n};
            off += len;
        }
    int slot_ok = r.g >= 0 && g == marking->grad + at && slot[0] == co_slot(marking_slots, r.g, r.k) + r.i0;
    for (int j = 1; j < CO_MT_MAX_SLOTS; j++) slot_ok &= slot[j] == NULL;
    if (!slot_ok) r.g = -1;
    int i;
#pragma omp atomic capture
    i = nseen++;
    if (i < RANGES) seen[i] = r;
}

static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->g != y->g) return x->g - y->g;
    if (x->k != y->k) return x->k - y->k;
    return x->i0 < y->i0 ? -1 : x->i0 > y->i0;
}

static void test_ranges(const layout *l, int threads)
{
    model m;
    model_new(&m, l, 1);
    co_error err = {0};
    co_optim *o = co_optim_new("sgd", m.groups, l->ngroups, "", 0, &err);
    CHECK(o != NULL, "%s", err.msg);
    if (!o) return;
    co_slots *slots = co_slots_new(o, &err);
    marking = &m;
    marking_opt = o;
    marking_slots = slots;
    omp_set_num_threads(threads);
    range first[RANGES];
    int nfirst = 0;
    for (int call = 0; call < 2; call++) {
        memset(m.grad, 0, m.total * sizeof(float));
        nseen = 0;
        co_optim_foreach(o, (co_slots *const[CO_MT_MAX_SLOTS]){slots}, NULL, mark);
        CHECK(nseen <= RANGES, "at most %d ranges (%d)", RANGES, nseen);
        qsort(seen, (size_t)nseen, sizeof *seen, range_cmp);
        int ok = 1, used = 0;
        for (size_t i = 0; i < m.total; i++) ok &= m.grad[i] >= 1.0f && m.grad[i] <= (float)threads;
        for (int i = 0; i < nseen; i++) {
            const range *r = &seen[i];
            used |= 1 << r->thread;
            ok &= r->g >= 0; /* found in the model, its gradient and slot the same elements */
            if (r->g < 0) continue;
            ok &= r->n > 0 && r->i0 + r->n <= l->size[r->g][r->k];
            /* Consecutive ranges of one tensor touch; a cut inside a tensor is on a cache line. */
            if (i > 0 && seen[i - 1].g == r->g && seen[i - 1].k == r->k) ok &= seen[i - 1].i0 + seen[i - 1].n == r->i0;
            else ok &= r->i0 == 0;
            if (r->i0 > 0) ok &= r->i0 % 16 == 0;
        }
        /* Each element exactly once: exactly one thread's number landed in it. */
        size_t marked = 0;
        for (int i = 0; i < nseen; i++)
            for (size_t j = seen[i].i0; j < seen[i].i0 + seen[i].n && seen[i].g >= 0; j++)
                marked += o->groups[seen[i].g].grad[seen[i].k][j] == (float)(seen[i].thread + 1);
        CHECK(ok && marked == m.total, "%zu parameters, %d threads: every element once, within its tensor (%zu marked)",
              m.total, threads, marked);
        int expect_threads = m.total > CO_FOREACH_PAR_MIN ? threads : 1;
        CHECK(used == (1 << expect_threads) - 1, "%zu parameters, %d threads: %d threads share the step", m.total,
              threads, expect_threads);
        if (call == 0) {
            memcpy(first, seen, (size_t)nseen * sizeof *seen);
            nfirst = nseen;
        } else {
            CHECK(nfirst == nseen && memcmp(first, seen, (size_t)nseen * sizeof *seen) == 0,
                  "%d threads: the same ranges on the same threads every step", threads);
        }
    }
    co_slots_free(slots);
    co_optim_free(o);
    model_free(&m);
}

/* ---------------------------------------------------------------- the methods */

static float *train(const layout *l, const char *name, const char *hp, int threads)
{
    omp_set_num_threads(threads);
    model m;
    model_new(&m, l, 2);
    co_error err = {0};
    co_optim *o = co_optim_new(name, m.groups, l->ngroups, hp, 5, &err);
    CHECK(o != NULL, "%s %s: %s", name, hp, err.msg);
    if (!o) {
        model_free(&m);
        return NULL;
    }
    co_rng r;
    co_rng_seed(&r, 9, 4);
    for (int step = 0; step < 5; step++) {
        for (size_t i = 0; i < m.total; i++) m.grad[i] = (float)(m.param[i] * 0.5 + (co_rng_uniform(&r) - 0.5));
        CHECK(co_optim_step(o, NULL, &err) == CO_OK, "%s: %s", name, err.msg);
    }
    co_optim_free(o);
    free(m.grad);
    return m.param;
}

static void test_methods(const layout *l)
{
    static const char *const cases[][2] = {
        {"sgd", "momentum=0.9,nesterov=1,weight_decay=0.01"},
        {"sgd", "momentum=0.9,dampening=0.1,maximize=1"},
        {"adagrad", "lr_decay=0.01,weight_decay=0.01"},
        {"rmsprop", ""},
        {"rmsprop", "centered=1,momentum=0.5,weight_decay=0.01"},
        {"adam", "weight_decay=0.01"},
        {"adamw", ""},
        {"amsgrad", ""},
        {"ogr-asgd", "weight_decay=0.01"},
        {"ogr-asgdc", ""},
    };
    size_t total = 0;
    for (int g = 0; g < l->ngroups; g++)
        for (int k = 0; k < l->ntensors[g]; k++) total += l->size[g][k];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        float *ref = train(l, cases[c][0], cases[c][1], 1);
        model m0;
        model_new(&m0, l, 2);
        CHECK(ref && memcmp(ref, m0.param, total * sizeof(float)) != 0, "%s %s moves the parameters", cases[c][0],
              cases[c][1]);
        model_free(&m0);
        const int threads[] = {2, 3, 5};
        for (size_t t = 0; t < sizeof threads / sizeof *threads && ref; t++) {
            float *got = train(l, cases[c][0], cases[c][1], threads[t]);
            CHECK(got && memcmp(ref, got, total * sizeof(float)) == 0, "%s %s, %zu parameters: %d threads = 1 bit for bit",
                  cases[c][0], cases[c][1], total, threads[t]);
            free(got);
        }
        free(ref);
    }
}

int main(void)
{
    int threads = omp_get_max_threads();
    const int counts[] = {1, 2, 3, 5};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        test_ranges(&big, counts[i]);
        test_ranges(&small, counts[i]);
    }
    test_methods(&big);
    test_methods(&small);
    omp_set_num_threads(threads);
    return co_test_finish();
}

/* K-FAC factors shared among ranks, eigendecompositions spread over them (kfac_dist.h). */
#include "kfac_dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

co_status co_kfac_dist_init(co_kfac_dist *d, int ngroups, co_error *err)
{
    memset(d, 0, sizeof *d);
    d->ngroups = ngroups;
    d->have = calloc((size_t)ngroups, 1);
    d->finite = calloc((size_t)ngroups, 1);
    d->owner = malloc(2 * (size_t)ngroups * sizeof *d->owner);
    d->counts = calloc(1 + 3 * (size_t)ngroups, sizeof *d->counts);
    if (!d->have || !d->finite || !d->owner || !d->counts) {
        co_kfac_dist_free(d);
        return co_error_set(err, CO_ENOMEM, "out of memory for distributed K-FAC");
    }
    for (int i = 0; i < 2 * ngroups; i++) d->owner[i] = -1;
    return CO_OK;
}

void co_kfac_dist_free(co_kfac_dist *d)
{
    free(d->have);
    free(d->finite);
    free(d->owner);
    free(d->counts);
    free(d->pack);
    memset(d, 0, sizeof *d);
}

static void *scratch(co_kfac_dist *d, size_t bytes)
{
    if (bytes > d->pack_bytes) {
        free(d->pack);
        d->pack = malloc(bytes ? bytes : 1);
        d->pack_bytes = d->pack ? bytes : 0;
    }
    return d->pack;
}

co_status co_kfac_dist_stats(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_closure *c,
                             const co_collective *coll, co_error *err)
{
    int G = ngroups;
    double *batch = d->counts, *rows = d->counts + 1, *has = rows + G, *bad = has + G;
    for (int i = 0; i < 1 + 3 * G; i++) d->counts[i] = -0.0;
    for (int g = 0; g < G; g++) {
        co_kfac *k = &kfac[g];
        co_capture cap;
        if (k->rows == 0) continue;
        if (!c || !c->capture || !c->capture(c->ctx, g, &cap)) {
            co_kfac_stats(k, NULL, NULL, 0, 1.0, 1.0f, 0.0f); /* zeros, should others have rows */
            continue;
        }
        /* An empty shard captures no rows; it still takes part with zero statistics. */
        int n = cap.n > 0 && cap.a_dim == k->cols && cap.g_dim == k->rows ? cap.n : 0;
        /* Unscaled sums: the whole minibatch's counts are known only after the allreduce. */
        co_kfac_stats(k, cap.a, cap.g, n, 1.0, 1.0f, 0.0f);
        has[g] = 1;
        rows[g] = n;
        if (n) batch[0] = cap.batch;
        bad[g] = !co_kfac_stats_finite(k);
    }
    co_status st = coll->allreduce_sum(coll->ctx, NULL, 0, d->counts, 1 + 3 * (size_t)G, err);
    if (st) return st;
    for (int g = 0; g < G; g++) {
        co_kfac *k = &kfac[g];
        /* A rank that captured nothing (it never ran a forward) adds zero statistics. */
        d->have[g] = has[g] > 0;
        d->finite[g] = bad[g] == 0;
        if (!d->have[g] || !d->finite[g] || rows[g] == 0) continue;
        size_t m = (size_t)k->m, n = (size_t)k->rows;
        for (size_t i = 0; i < m * m; i++) k->batch_a[i] = (float)(k->batch_a[i] / rows[g]);
        /* The bias corner is 1 in the whole minibatch's A: rank 0's share carries it. */
        k->batch_a[(size_t)k->cols * m + k->cols] = coll->rank == 0 ? 1.0f : 0.0f;
        /* cap.g are gradients of the whole minibatch's mean loss (B's scale, kfac.h). */
        float scale = (float)batch[0];
        for (size_t i = 0; i < n * n; i++) k->batch_b[i] *= scale;
    }
    return CO_OK;
}

/* Upper triangles of a symmetric row-major n x n matrix, packed row by row. */
static size_t tri(size_t n) { return n * (n + 1) / 2; }

static double *pack_tri(double *dst, const double *x, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) *dst++ = x[(size_t)i * n + j];
    return dst;
}

static const double *unpack_tri(double *x, const double *src, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) x[(size_t)i * n + j] = x[(size_t)j * n + i] = *src++;
    return src;
}

static double *factor_of(co_kfac *k, int which) { return which ? k->B : k->A; }
static int factor_size(const co_kfac *k, int which) { return which ? k->rows : k->m; }

/* Sums factors (list: group g and which, 2g + which) into root's buffers; the others zero
 * theirs. One reduce per call. */
static co_status reduce_factors(co_kfac_dist *d, co_kfac *kfac, const int *list, int nlist, int root,
                                const co_collective *coll, co_error *err)
{
    size_t total = 0;
    for (int i = 0; i < nlist; i++) total += tri((size_t)factor_size(&kfac[list[i] / 2], list[i] % 2));
    if (total == 0) return CO_OK;
    double *buf = scratch(d, total * sizeof(double));
    if (!buf) return co_error_set(err, CO_ENOMEM, "out of memory packing K-FAC factors");
    double *p = buf;
    for (int i = 0; i < nlist; i++) {
        co_kfac *k = &kfac[list[i] / 2];
        p = pack_tri(p, factor_of(k, list[i] % 2), factor_size(k, list[i] % 2));
    }
    co_status st = coll->reduce_sum(coll->ctx, buf, total, root, err);
    if (st) return st;
    const double *q = buf;
    for (int i = 0; i < nlist; i++) {
        co_kfac *k = &kfac[list[i] / 2];
        int which = list[i] % 2, n = factor_size(k, which);
        if (coll->rank == root) q = unpack_tri(factor_of(k, which), q, n);
        else memset(factor_of(k, which), 0, (size_t)n * n * sizeof(double));
    }
    return CO_OK;
}

static int job_cost_desc(const void *a, const void *b)
{
    const int *x = a, *y = b; /* {size, id} */
    if (x[0] != y[0]) return x[0] < y[0] ? 1 : -1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* A factor's id, the same on every rank: 2 group + which. */
static int job_id(const co_kfac_job *j, const co_kfac *kfac) { return (int)(j->k - kfac) * 2 + j->which; }

/* Jobs in factor order, every rank alike (co_kfac_refresh_jobs reorders the ones it runs). */
static void sort_jobs(co_kfac_job *jobs, int njobs, co_kfac *kfac)
{
    for (int i = 1; i < njobs; i++) {
        co_kfac_job j = jobs[i];
        int k = i - 1;
        while (k >= 0 && job_id(&jobs[k], kfac) > job_id(&j, kfac)) {
            jobs[k + 1] = jobs[k];
            k--;
        }
        jobs[k + 1] = j;
    }
}

/* A low-rank root's rank (co_kfac_set_rank; 0: the full root). */
static int low_rank(const co_kfac_job *j) { return j->mode == CO_KFAC_DAMP_FACTORS ? j->k->rank[j->which] : 0; }

/* What a refresh leaves for the others: status, eigenvalues, and the root (upper triangle,
 * float), a low-rank root's basis (rank x n, float; its eigenvalues then end with the
 * discarded ones' mean) or, with the damping on the eigenvalue products, the float
 * eigenbasis (full). */
static size_t result_bytes(const co_kfac_job *j)
{
    size_t n = (size_t)factor_size(j->k, j->which);
    size_t root = low_rank(j) ? (size_t)low_rank(j) * n : j->mode == CO_KFAC_DAMP_FACTORS ? tri(n) : n * n;
    return sizeof(double) * (1 + n) + sizeof(float) * root;
}

static unsigned char *pack_result(unsigned char *p, const co_kfac_job *j)
{
    co_kfac *k = j->k;
    int n = factor_size(k, j->which);
    double status = j->st;
    memcpy(p, &status, sizeof status);
    p += sizeof status;
    memcpy(p, j->which ? k->lb : k->la, (size_t)n * sizeof(double));
    p += (size_t)n * sizeof(double);
    const float *r = j->which ? k->rb : k->ra;
    if (low_rank(j)) {
        memcpy(p, r, (size_t)low_rank(j) * n * sizeof(float));
        p += (size_t)low_rank(j) * n * sizeof(float);
    } else if (j->mode == CO_KFAC_DAMP_FACTORS) {
        for (int i = 0; i < n; i++) {
            memcpy(p, r + (size_t)i * n + i, (size_t)(n - i) * sizeof(float));
            p += (size_t)(n - i) * sizeof(float);
        }
    } else {
        memcpy(p, r, (size_t)n * n * sizeof(float));
        p += (size_t)n * n * sizeof(float);
    }
    return p;
}

static const unsigned char *unpack_result(const unsigned char *p, co_kfac_job *j)
{
    co_kfac *k = j->k;
    int n = factor_size(k, j->which);
    double status;
    memcpy(&status, p, sizeof status);
    j->st = (co_status)(int)status;
    p += sizeof status;
    memcpy(j->which ? k->lb : k->la, p, (size_t)n * sizeof(double));
    p += (size_t)n * sizeof(double);
    float *r = j->which ? k->rb : k->ra;
    if (low_rank(j)) {
        memcpy(r, p, (size_t)low_rank(j) * n * sizeof(float));
        p += (size_t)low_rank(j) * n * sizeof(float);
    } else if (j->mode == CO_KFAC_DAMP_FACTORS) {
        for (int i = 0; i < n; i++) {
            memcpy(r + (size_t)i * n + i, p, (size_t)(n - i) * sizeof(float));
            p += (size_t)(n - i) * sizeof(float);
            for (int c = i + 1; c < n; c++) r[(size_t)c * n + i] = r[(size_t)i * n + c];
        }
    } else {
        memcpy(r, p, (size_t)n * n * sizeof(float));
        p += (size_t)n * n * sizeof(float);
    }
    return p;
}

co_status co_kfac_dist_refresh(co_kfac_dist *d, co_kfac_job *jobs, int njobs, co_kfac *kfac,
                               const co_collective *coll, co_error *err)
{
    int P = coll->size;
    int *order = malloc((size_t)njobs * 2 * sizeof *order), *list = malloc((size_t)njobs * sizeof *list);
    double *load = calloc((size_t)P, sizeof *load);
    co_status st = CO_OK;
    if (!order || !list || !load) {
        st = co_error_set(err, CO_ENOMEM, "out of memory assigning K-FAC factors to ranks");
        goto done;
    }
    /* Owners (in d->owner, by factor id): largest factor first to the least loaded rank (ties:
     * the lower rank), the order fixed by (size, id) so that every rank draws the same. */
    sort_jobs(jobs, njobs, kfac);
    for (int i = 0; i < njobs; i++) {
        order[2 * i] = factor_size(jobs[i].k, jobs[i].which);
        order[2 * i + 1] = job_id(&jobs[i], kfac);
    }
    qsort(order, (size_t)njobs, 2 * sizeof *order, job_cost_desc);
    for (int i = 0; i < njobs; i++) {
        int best = 0;
        for (int r = 1; r < P; r++)
            if (load[r] < load[best]) best = r;
        double n = order[2 * i];
        load[best] += n * n * n;
        d->owner[order[2 * i + 1]] = best;
    }
    /* The factors summed into their owners, one reduce per owner. */
    for (int r = 0; r < P && st == CO_OK; r++) {
        int nlist = 0;
        for (int j = 0; j < njobs; j++)
            if (d->owner[job_id(&jobs[j], kfac)] == r) list[nlist++] = job_id(&jobs[j], kfac);
        st = reduce_factors(d, kfac, list, nlist, r, coll, err);
    }
    if (st) goto done;
    /* Each rank decomposes its own factors (its threads spread over them): those first. */
    int nmine = 0;
    for (int j = 0; j < njobs; j++)
        if (d->owner[job_id(&jobs[j], kfac)] == coll->rank) {
            co_kfac_job tmp = jobs[nmine];
            jobs[nmine++] = jobs[j];
            jobs[j] = tmp;
        }
    if (nmine) {
        co_error local = {0};
        (void)co_kfac_refresh_jobs(jobs, nmine, &local); /* statuses stay in jobs[].st */
    }
    sort_jobs(jobs, njobs, kfac);
    /* Results from every owner to everyone, packed in factor order. */
    for (int r = 0; r < P && st == CO_OK; r++) {
        size_t bytes = 0;
        for (int j = 0; j < njobs; j++)
            if (d->owner[job_id(&jobs[j], kfac)] == r) bytes += result_bytes(&jobs[j]);
        if (bytes == 0) continue;
        unsigned char *buf = scratch(d, bytes);
        if (!buf) {
            st = co_error_set(err, CO_ENOMEM, "out of memory for K-FAC roots");
            break;
        }
        unsigned char *p = buf;
        if (r == coll->rank)
            for (int j = 0; j < njobs; j++)
                if (d->owner[job_id(&jobs[j], kfac)] == r) p = pack_result(p, &jobs[j]);
        if ((st = coll->broadcast(coll->ctx, buf, bytes, r, err))) break;
        const unsigned char *q = buf;
        for (int j = 0; j < njobs; j++)
            if (d->owner[job_id(&jobs[j], kfac)] == r) {
                if (r != coll->rank) q = unpack_result(q, &jobs[j]);
                else q += result_bytes(&jobs[j]);
            }
    }
    if (st) goto done;
    /* As co_kfac_refresh_jobs: a layer has its roots when all of its jobs succeeded; the
     * first failure in factor order is reported, the same on every rank. */
    for (int j = 0; j < njobs; j++) jobs[j].k->have_roots = 1;
    int first = -1;
    for (int j = 0; j < njobs; j++)
        if (jobs[j].st) {
            jobs[j].k->have_roots = 0;
            if (first < 0) first = j;
        }
    if (first >= 0) {
        int n = factor_size(jobs[first].k, jobs[first].which);
        st = co_error_set(err, CO_ENUMERIC, "K-FAC factor eigendecomposition failed (%d x %d)", n, n);
    }
done:
    free(order);
    free(list);
    free(load);
    return st;
}

co_status co_kfac_dist_collect(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_collective *coll,
                               co_error *err)
{
    int *list = calloc(2 * (size_t)ngroups + 1, sizeof *list), nlist = 0;
    if (!list) return co_error_set(err, CO_ENOMEM, "out of memory collecting K-FAC factors");
    for (int g = 0; g < ngroups; g++)
        if (kfac[g].rows > 0) {
            list[nlist++] = 2 * g;
            list[nlist++] = 2 * g + 1;
        }
    co_status st = reduce_factors(d, kfac, list, nlist, 0, coll, err);
    free(list);
    /* The eigenvectors live where they were computed: rank 0 needs them to save the state. */
    for (int g = 0; g < ngroups && st == CO_OK; g++)
        for (int which = 0; which < 2 && st == CO_OK; which++) {
            int o = d->owner[2 * g + which];
            if (kfac[g].rows == 0 || o <= 0) continue;
            int n = factor_size(&kfac[g], which);
            st = coll->broadcast(coll->ctx, which ? kfac[g].ub : kfac[g].ua, (size_t)n * n * sizeof(double), o, err);
            d->owner[2 * g + which] = -1;
        }
    return st;
}

void co_kfac_dist_share(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_collective *coll)
{
    for (int g = 0; g < ngroups; g++) {
        d->owner[2 * g] = d->owner[2 * g + 1] = -1;
        if (kfac[g].rows == 0 || coll->rank == 0) continue;
        memset(kfac[g].A, 0, (size_t)kfac[g].m * kfac[g].m * sizeof(double));
        memset(kfac[g].B, 0, (size_t)kfac[g].rows * kfac[g].rows * sizeof(double));
    }
}

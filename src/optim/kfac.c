#include "kfac.h"
#include "../core/blas.h"
#include "../core/alloc.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Single-precision SSYEVD for the factors: it runs at about twice DSYEVD's speed (the
 * Householder reduction streams the matrix from memory once per column, half the bytes
 * in float, and the rest is BLAS 3 at twice the width), which on AlexNet's 3457 x 3457
 * factor is seconds per refresh. The roots it gives are those of a factor perturbed by
 * about FLT_EPSILON x its largest eigenvalue (LAPACK's backward error), against the
 * damping added to every eigenvalue; docs/optimizers/tso-alra.md has the measured effect.
 * Workspaces come from LAPACK's documented minimums (1 + 6n + 2n^2 and 3 + 5n): the
 * workspace query returns the size as a float, which rounds below the minimum from
 * n = 2897 on. */
static int eig_init(co_kfac_eig *e, int n)
{
    memset(e, 0, sizeof *e);
    double nwork = 1.0 + 6.0 * n + 2.0 * (double)n * n;
    if (nwork > (double)INT32_MAX) return -1;
    e->n = n;
    e->nwork = (lapack_int)nwork;
    e->niwork = 3 + 5 * (lapack_int)n;
    e->x = co_falloc((size_t)n * n);
    e->w = co_falloc((size_t)n);
    e->work = co_falloc((size_t)e->nwork);
    e->iwork = calloc((size_t)e->niwork, sizeof *e->iwork);
    return e->x && e->w && e->work && e->iwork ? 0 : -1;
}

static void eig_free(co_kfac_eig *e)
{
    free(e->x);
    free(e->w);
    free(e->work);
    free(e->iwork);
    memset(e, 0, sizeof *e);
}

co_status co_kfac_init(co_kfac *k, int rows, int cols, int has_bias, co_error *err)
{
    memset(k, 0, sizeof *k);
    k->rows = rows;
    k->cols = cols;
    k->m = cols + 1;
    k->has_bias = has_bias;
    size_t m = (size_t)k->m, n = (size_t)rows;
    k->A = co_dalloc(m * m);
    k->B = co_dalloc(n * n);
    k->ua = co_dalloc(m * m);
    k->ub = co_dalloc(n * n);
    k->la = co_dalloc(m);
    k->lb = co_dalloc(n);
    k->ra = co_falloc(m * m);
    k->rb = co_falloc(n * n);
    k->batch_a = co_falloc(m * m);
    k->batch_b = co_falloc(n * n);
    k->g = co_falloc(n * m);
    k->t = co_falloc(n * m);
    k->colsum = co_dalloc(m);
    int eig_bad = eig_init(&k->ea, k->m) | eig_init(&k->eb, rows);
    if (eig_bad || !k->A || !k->B || !k->ua || !k->ub || !k->la || !k->lb || !k->ra || !k->rb || !k->batch_a ||
        !k->batch_b || !k->g || !k->t || !k->colsum) {
        co_kfac_free(k);
        return co_error_set(err, CO_ENOMEM, "out of memory for K-FAC factors of a %d x %d layer", rows, cols);
    }
    return CO_OK;
}

void co_kfac_free(co_kfac *k)
{
    free(k->A);
    free(k->B);
    free(k->ua);
    free(k->ub);
    free(k->la);
    free(k->lb);
    free(k->ra);
    free(k->rb);
    free(k->batch_a);
    free(k->batch_b);
    free(k->g);
    free(k->t);
    free(k->colsum);
    free(k->p);
    eig_free(&k->ea);
    eig_free(&k->eb);
    memset(k, 0, sizeof *k);
}

int co_kfac_low_rank(int d, int rank) { return rank > 0 && d > 2 * rank ? rank : 0; }

/* Columns the subspace iteration carries for k eigenpairs: a few more than k, so that the
 * k-th converges at the rate lambda_(p+1) / lambda_k rather than lambda_(k+1) / lambda_k. */
static int lowrank_cols(int d, int k)
{
    int p = k + (k / 4 > 8 ? k / 4 : 8);
    return p < d ? p : d;
}

enum { QR_BLOCK = 32 }; /* SGEQRF / SORGQR workspace: QR_BLOCK columns' worth per column */

/* Floats of eig->work the low-rank refresh uses: the basis and X times it (d x p each), the
 * p x p projection, SSYEVD's workspace for it, Householder scalars and the QR workspace. */
static double lowrank_work(int d, int k)
{
    double p = lowrank_cols(d, k);
    return 2.0 * d * p + p * p + (1.0 + 6.0 * p + 2.0 * p * p) + p + QR_BLOCK * p;
}

static int grow_work(co_kfac_eig *e, int k)
{
    double need = lowrank_work(e->n, k);
    if (need <= (double)e->nwork) return 0;
    if (need > (double)INT32_MAX) return -1;
    float *w = co_falloc((size_t)need);
    if (!w) return -1;
    free(e->work);
    e->work = w;
    e->nwork = (lapack_int)need;
    return 0;
}

co_status co_kfac_set_rank(co_kfac *k, int rank, co_error *err)
{
    k->rank[0] = co_kfac_low_rank(k->m, rank);
    k->rank[1] = co_kfac_low_rank(k->rows, rank);
    if (!k->rank[0] && !k->rank[1]) return CO_OK;
    size_t left = (size_t)k->rank[1] * k->m, right = (size_t)k->rows * k->rank[0];
    /* The apply's product with U_k, then the k coefficients. */
    free(k->p);
    k->p = co_falloc((left > right ? left : right) + (size_t)rank);
    if (!k->p || grow_work(&k->ea, k->rank[0]) || grow_work(&k->eb, k->rank[1]))
        return co_error_set(err, CO_ENOMEM, "out of memory for rank-%d K-FAC roots of a %d x %d layer", rank,
                            k->rows, k->cols);
    return CO_OK;
}

/* Passes over whole factors (n^2 elements) run on the threads from this size: on one thread
 * they were a fifth of an alexnet-28 statistics step at two threads (its 3457-wide A). */
#define FACTOR_PAR_MIN 262144

/* Copies the triangle SSYRK wrote to the other one, in tiles so both sides stay in cache:
 * from the row-major upper triangle (x[i ld + j], j > i) when from_upper, else from the
 * lower one. */
static void symmetrize(float *x, int n, int ld, int from_upper)
{
    enum { T = 64 };
    int nb = (n + T - 1) / T;
    /* Tile rows own disjoint entries; dynamic: the triangle's rows are uneven. */
#pragma omp parallel for schedule(dynamic, 1) if ((size_t)n * n > FACTOR_PAR_MIN)
    for (int b = 0; b < nb; b++)
        for (int i0 = b * T, j0 = i0; j0 < n; j0 += T) {
            int i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (int i = i0; i < i1; i++)
                for (int j = j0 > i + 1 ? j0 : i + 1; j < j1; j++) {
                    if (from_upper) x[(size_t)j * ld + i] = x[(size_t)i * ld + j];
                    else x[(size_t)i * ld + j] = x[(size_t)j * ld + i];
                }
        }
}

/* One factor's batch statistics (which 0: A, 1: B); co_kfac_stats's arithmetic over rows
 * 0, stride, 2 stride, ... of a and g (rows of them). */
static void stats_one(co_kfac *k, int which, const float *a, const float *g, int rows, int stride, double div_a,
                      float scale_b, float corner)
{
    int m = k->m, c = k->cols, n = k->rows;
    if (rows <= 0) {
        if (which == 0) {
            memset(k->batch_a, 0, (size_t)m * m * sizeof(float));
            k->batch_a[(size_t)c * m + c] = corner;
        } else {
            memset(k->batch_b, 0, (size_t)n * n * sizeof(float));
        }
        return;
    }
    if (which == 1) {
        co_syrk_upper(n, rows, scale_b, g, n * stride, k->batch_b, n);
        symmetrize(k->batch_b, n, n, 1);
        return;
    }
    /* E[a a^T] over the captured rows, with the constant 1 appended for the bias. SSYRK
     * computes one triangle: half the FLOPs of the SGEMM that gives both. */
    co_syrk_upper(c, rows, 1.0f / (float)div_a, a, c * stride, k->batch_a, m);
    /* Column sums row by row (contiguous reads; each column's terms in the same order as
     * a column-wise pass). */
    double *sum = k->colsum;
    for (int j = 0; j < c; j++) sum[j] = 0;
    for (int r = 0; r < rows; r++) {
        const float *ar = a + (size_t)r * stride * c;
        for (int j = 0; j < c; j++) sum[j] += ar[j];
    }
    for (int j = 0; j < c; j++) k->batch_a[(size_t)j * m + c] = (float)(sum[j] / div_a);
    k->batch_a[(size_t)c * m + c] = corner;
    symmetrize(k->batch_a, m, m, 1);
}

void co_kfac_stats(co_kfac *k, const float *a, const float *g, int rows, double div_a, float scale_b, float corner)
{
    stats_one(k, 0, a, g, rows, 1, div_a, scale_b, corner);
    stats_one(k, 1, a, g, rows, 1, div_a, scale_b, corner);
}

typedef struct {
    int layer, which;
    double madds;
} stats_job;

static int larger_first(const void *pa, const void *pb)
{
    const stats_job *a = pa, *b = pb;
    if (a->madds != b->madds) return a->madds < b->madds ? 1 : -1;
    return a->layer != b->layer ? a->layer - b->layer : a->which - b->which;
}

co_kfac_rows co_kfac_sample_rows(int rows, int max_rows, uint64_t phase)
{
    if (max_rows <= 0 || rows <= max_rows) return (co_kfac_rows){0, 1, rows};
    int stride = (int)(((int64_t)rows + max_rows - 1) / max_rows), first = (int)(phase % (uint64_t)stride);
    return (co_kfac_rows){first, stride, (rows - first + stride - 1) / stride};
}

/* One factor of co_kfac_update's statistics from a capture, over the rows `use` names: the
 * mean of a a^T over them, and B's sum rescaled by rows / used (unbiased for the sum over
 * every row). */
static void update_stats(co_kfac *k, int which, const co_capture *cap, co_kfac_rows use)
{
    float scale_b = use.used == cap->n ? (float)cap->batch : (float)((double)cap->batch * cap->n / use.used);
    stats_one(k, which, cap->a + (size_t)use.first * cap->a_dim, cap->g + (size_t)use.first * cap->g_dim, use.used,
              use.stride, (double)use.used, scale_b, 1.0f);
}

/* co_kfac_update over the rows `use` names. */
static void update_from(co_kfac *k, const co_capture *cap, double gamma, co_kfac_rows use)
{
    update_stats(k, 0, cap, use);
    update_stats(k, 1, cap, use);
    co_kfac_fold(k, gamma, co_kfac_stats_finite(k));
}

/* Below this many multiply-adds in all, the fork costs more than running side by side saves. */
#define STATS_PAR_MIN_MADDS 1e6

void co_kfac_update_many(co_kfac *const *ks, const co_capture *caps, const double *gammas, int n, int max_rows,
                         uint64_t phase)
{
    stats_job *jobs = malloc((size_t)(n > 0 ? 2 * n : 1) * sizeof *jobs);
    if (!jobs) {
        for (int i = 0; i < n; i++)
            update_from(ks[i], &caps[i], gammas[i], co_kfac_sample_rows(caps[i].n, max_rows, phase));
        return;
    }
    /* Factors whose product spreads its own tiles over the threads run one after another;
     * the narrow ones (one BLAS call each) side by side, largest first. */
    int nsmall = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        co_kfac_rows use = co_kfac_sample_rows(caps[i].n, max_rows, phase);
        for (int w = 0; w < 2; w++) {
            int d = w ? ks[i]->rows : ks[i]->cols;
            if (co_syrk_is_parallel(d, use.used)) {
                update_stats(ks[i], w, &caps[i], use);
            } else {
                jobs[nsmall++] = (stats_job){i, w, (double)d * d * use.used};
                total += (double)d * d * use.used;
            }
        }
    }
    qsort(jobs, (size_t)nsmall, sizeof *jobs, larger_first);
    int saved = co_blas_serial_begin();
#pragma omp parallel for schedule(dynamic, 1) if (nsmall > 1 && total > STATS_PAR_MIN_MADDS)
    for (int j = 0; j < nsmall; j++) {
        int i = jobs[j].layer;
        update_stats(ks[i], jobs[j].which, &caps[i], co_kfac_sample_rows(caps[i].n, max_rows, phase));
    }
    co_blas_serial_end(saved);
    free(jobs);
    for (int i = 0; i < n; i++) co_kfac_fold(ks[i], gammas[i], co_kfac_stats_finite(ks[i]));
}

static int all_finite(const float *x, size_t n)
{
    int finite = 1;
#pragma omp parallel for simd schedule(static) reduction(& : finite) if (n > FACTOR_PAR_MIN)
    for (size_t i = 0; i < n; i++) finite &= isfinite(x[i]) != 0;
    return finite;
}

int co_kfac_stats_finite(const co_kfac *k)
{
    size_t m = (size_t)k->m, n = (size_t)k->rows;
    return all_finite(k->batch_a, m * m) && all_finite(k->batch_b, n * n);
}

/* x = keep x + add b, element by element. */
static void fold_into(double *restrict x, const float *restrict b, size_t n, double keep, double add)
{
#pragma omp parallel for schedule(static) if (n > FACTOR_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = keep * x[i] + add * b[i];
}

void co_kfac_fold(co_kfac *k, double gamma, int finite)
{
    /* Statistics that overflowed float (gradients near 1e20) would poison the averages for
     * good: such a batch is left out (counted), the factors keep their last finite value. */
    if (!finite) {
        k->skipped++;
        return;
    }
    size_t m = (size_t)k->m, n = (size_t)k->rows;
    double keep = k->updates == 0 ? 0.0 : 1.0 - gamma, add = k->updates == 0 ? 1.0 : gamma;
    fold_into(k->A, k->batch_a, m * m, keep, add);
    fold_into(k->B, k->batch_b, n * n, keep, add);
    k->updates++;
}

void co_kfac_update(co_kfac *k, const co_capture *cap, double gamma)
{
    update_from(k, cap, gamma, co_kfac_sample_rows(cap->n, 0, 0));
}

static double trace(const double *x, int n)
{
    double t = 0;
    for (int i = 0; i < n; i++) t += x[(size_t)i * n + i];
    return t;
}

double co_kfac_trace(const co_kfac *k, int which)
{
    return which ? trace(k->B, k->rows) : trace(k->A, k->m);
}

double co_kfac_drift(const co_kfac *k, int which)
{
    return co_kfac_drift_at(k, which, co_kfac_trace(k, which));
}

double co_kfac_drift_at(const co_kfac *k, int which, double now)
{
    double then = k->root_trace[which];
    if (!(now > 0) || !(then > 0)) return INFINITY;
    return (now > then ? now / then : then / now) - 1.0;
}

/* Eigenpairs of a symmetric factor into e->x (column-major) and l; eigenvalues clamped at
 * 0 (the factors are PSD in exact arithmetic, rounding can make the smallest slightly
 * negative). */
static int eigen(co_kfac_eig *e, double *l, const double *x)
{
    int n = e->n;
    for (size_t i = 0; i < (size_t)n * n; i++) e->x[i] = (float)x[i];
    if (LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'U', n, e->x, n, e->w, e->work, e->nwork, e->iwork, e->niwork) !=
        0)
        return -1;
    for (int i = 0; i < n; i++) l[i] = e->w[i] > 0 ? (double)e->w[i] : 0.0;
    return 0;
}

/* r = U diag((l + damping)^-1/2) U^T = W W^T with W = U diag((l + damping)^-1/4): one
 * SSYRK. The eigenvectors in e->x become W, and u (the state's copy, column-major double)
 * receives it. Row-major float out (symmetric, layout is moot). */
static void inv_root(float *r, co_kfac_eig *e, double *u, const double *l, double damping)
{
    int n = e->n;
    for (int j = 0; j < n; j++) {
        float s = (float)pow(l[j] + damping, -0.25);
        for (int i = 0; i < n; i++) e->x[(size_t)j * n + i] *= s; /* column j of column-major U */
    }
    for (size_t i = 0; i < (size_t)n * n; i++) u[i] = e->x[i];
    /* Column-major upper = row-major lower. */
    cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, n, n, 1.0f, e->x, n, 0.0f, r, n);
    symmetrize(r, n, n, 0);
}

/* The top r eigenpairs of a symmetric d x d factor x by subspace iteration (Halko, Martinsson
 * & Tropp 2011, alg. 4.4 with Rayleigh-Ritz): p = lowrank_cols(d, r) columns, started from
 * the previous U_r (warm: the factors move little between refreshes, one pass suffices) and
 * pseudo-random columns (a fixed stream: the result is a pure function of the factor and the
 * previous basis), orthonormalised by Householder QR after each product with x. ut receives
 * U_r^T (r x d row-major, i.e. U_r column-major), l the r eigenvalues descending, clamped at
 * 0, and l[r] the mean of the other d - r, (tr x - sum of the r) / (d - r), clamped too. */
static int eigen_top(co_kfac_eig *e, double *l, float *ut, int r, int warm, const double *x)
{
    int d = e->n, p = lowrank_cols(d, r);
    for (size_t i = 0; i < (size_t)d * d; i++) e->x[i] = (float)x[i];
    float *q = e->work, *z = q + (size_t)d * p, *t = z + (size_t)d * p, *ev = t + (size_t)p * p;
    lapack_int nev = 1 + 6 * p + 2 * p * p;
    float *tau = ev + nev, *qr = tau + p;
    co_rng rng;
    co_rng_seed(&rng, (uint64_t)d, CO_STREAM_OPTIM);
    size_t from = warm ? (size_t)d * r : 0;
    if (warm) memcpy(z, ut, (size_t)d * r * sizeof(float));
    for (size_t i = from; i < (size_t)d * p; i++) z[i] = (float)(co_rng_uniform(&rng) - 0.5);
    int passes = warm ? 1 : 3;
    for (int it = 0; it < passes; it++) {
        cblas_ssymm(CblasColMajor, CblasLeft, CblasUpper, d, p, 1.0f, e->x, d, z, d, 0.0f, q, d);
        if (LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, d, p, q, d, tau, qr, QR_BLOCK * p) ||
            LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, d, p, p, q, d, tau, qr, QR_BLOCK * p))
            return -1;
        if (it + 1 < passes) memcpy(z, q, (size_t)d * p * sizeof(float));
    }
    /* Rayleigh-Ritz: T = Q^T X Q, its eigenvectors V, U = Q V. */
    cblas_ssymm(CblasColMajor, CblasLeft, CblasUpper, d, p, 1.0f, e->x, d, q, d, 0.0f, z, d);
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, p, p, d, 1.0f, q, d, z, d, 0.0f, t, p);
    if (LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'U', p, t, p, e->w, ev, nev, e->iwork, e->niwork) != 0)
        return -1;
    /* Largest first: SSYEVD's last r columns, reversed. */
    for (int j = 0; j < r; j++)
        memcpy(z + (size_t)j * p, t + (size_t)(p - 1 - j) * p, (size_t)p * sizeof(float));
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, d, r, p, 1.0f, q, d, z, p, 0.0f, ut, d);
    double kept = 0;
    for (int j = 0; j < r; j++) {
        float w = e->w[p - 1 - j];
        l[j] = w > 0 ? (double)w : 0.0;
        kept += l[j];
    }
    double rest = (trace(x, d) - kept) / (d - r);
    l[r] = rest > 0 ? rest : 0.0;
    return 0;
}

static co_status refresh_factor(co_kfac_job *j)
{
    co_kfac *k = j->k;
    co_kfac_eig *e = j->which ? &k->eb : &k->ea;
    double *u = j->which ? k->ub : k->ua, *l = j->which ? k->lb : k->la;
    float *r = j->which ? k->rb : k->ra;
    int n = e->n;
    const double *f = j->which ? k->B : k->A;
    k->root_trace[j->which] = trace(f, n);
    int rank = k->rank[j->which];
    if (rank && j->mode == CO_KFAC_DAMP_FACTORS) {
        if (eigen_top(e, l, r, rank, k->have_roots, f)) return CO_ENUMERIC;
        /* The state's copy of the basis (what a distributed run collects for a checkpoint). */
        for (size_t i = 0; i < (size_t)n * rank; i++) u[i] = r[i];
        return CO_OK;
    }
    if (eigen(e, l, f)) return CO_ENUMERIC;
    if (j->mode == CO_KFAC_DAMP_FACTORS) {
        inv_root(r, e, u, l, j->damping);
    } else {
        /* Damping on the eigenvalue products needs the bases themselves: float U, row-major
         * (LAPACK's column-major eigenvectors transposed), kept in the root buffer. */
        for (size_t i = 0; i < (size_t)n * n; i++) u[i] = e->x[i];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < n; c++) r[(size_t)i * n + c] = e->x[(size_t)c * n + i];
    }
    return CO_OK;
}

static int job_size(const co_kfac_job *j) { return j->which ? j->k->rows : j->k->m; }

static int by_size_desc(const void *a, const void *b)
{
    int x = job_size(a), y = job_size(b);
    return (x < y) - (x > y);
}

co_status co_kfac_refresh_jobs(co_kfac_job *jobs, int njobs, co_error *err)
{
    /* Largest first, so the dynamic schedule ends with the small ones. */
    qsort(jobs, (size_t)njobs, sizeof *jobs, by_size_desc);
    /* Each decomposition on one BLAS thread: SSYEVD's threaded BLAS 2 kernels split their
     * sums by the thread count, which moves float eigenvectors by rounding and would make
     * the run depend on OPENBLAS_NUM_THREADS. The threads go to separate factors instead
     * (OpenMP); OpenBLAS's own count is put back afterwards. */
    int blas_threads = co_blas_serial_begin();
#pragma omp parallel for schedule(dynamic, 1) if (njobs > 1 && omp_get_max_threads() > 1)
    for (int i = 0; i < njobs; i++) jobs[i].st = refresh_factor(&jobs[i]);
    co_blas_serial_end(blas_threads);
    co_status st = CO_OK;
    for (int i = 0; i < njobs; i++)
        if (jobs[i].st && !st)
            st = co_error_set(err, CO_ENUMERIC, "K-FAC factor eigendecomposition failed (%d x %d)", job_size(&jobs[i]),
                              job_size(&jobs[i]));
    for (int i = 0; i < njobs; i++) jobs[i].k->have_roots = 1;
    for (int i = 0; i < njobs; i++)
        if (jobs[i].st) jobs[i].k->have_roots = 0;
    return st;
}

co_status co_kfac_refresh(co_kfac *k, double damping, co_kfac_damping mode, co_error *err)
{
    co_kfac_job jobs[2] = {{k, 0, damping, mode, CO_OK}, {k, 1, damping, mode, CO_OK}};
    return co_kfac_refresh_jobs(jobs, 2, err);
}

/* A low-rank root's coefficients (lambda_j + eps)^-1/2 - c on its r directions, after the
 * product buffer; returns c = (mean discarded eigenvalue + eps)^-1/2. */
static float lowrank_coef(co_kfac *k, const double *l, int r, size_t at, double damping)
{
    double c = 1.0 / sqrt(l[r] + damping);
    for (int j = 0; j < r; j++) k->p[at + (size_t)j] = (float)(1.0 / sqrt(l[j] + damping) - c);
    return (float)c;
}

/* Row passes over a layer's rows x m matrices (the apply's copies and scalings) run on the
 * threads from this many elements: on one thread they were a fifth of alexnet-28's plain
 * step at two threads. Per element, so the same bits. */
#define APPLY_PAR_MIN 65536
/* Rows of c per piece of the apply's products with the n x r side of a low-rank root: the
 * default tile (256) left those products in one piece, on one thread. */
#define LOWRANK_ROW_TILE 64

/* One side of the direction with a low-rank root: B^-1/2 in = c in + U (coef (U^T in)) for B
 * (which = 1, from the left), in A^-1/2 = c in + ((in U) coef) U^T for A (which = 0, from the
 * right); O(rows m r) instead of rows^2 m or rows m^2. in and out are rows x m. */
static void lowrank_apply(co_kfac *k, int which, double damping, const float *in, float *out)
{
    int n = k->rows, m = k->m, r = k->rank[which];
    const float *ut = which ? k->rb : k->ra;
    int pr = which ? r : n, pc = which ? m : r; /* the product with U: r x m or n x r */
    size_t at = (size_t)pr * pc;
    float c = lowrank_coef(k, which ? k->lb : k->la, r, at, damping), *p = k->p;
    if (which) co_gemm(0, 0, r, m, n, 1.0f, ut, n, in, m, 0.0f, p, m, 0);
    else co_gemm(0, 1, n, r, m, 1.0f, in, m, ut, m, 0.0f, p, r, LOWRANK_ROW_TILE);
#pragma omp parallel for schedule(static) if ((size_t)pr * pc > APPLY_PAR_MIN)
    for (int i = 0; i < pr; i++)
        for (int j = 0; j < pc; j++) p[(size_t)i * pc + j] *= p[at + (size_t)(which ? i : j)];
    co_copy(out, in, (size_t)n * m);
    if (which) co_gemm(1, 0, n, m, r, 1.0f, ut, n, p, m, c, out, m, 0);
    else co_gemm(0, 0, n, m, r, 1.0f, p, r, ut, m, c, out, m, 0);
}

void co_kfac_apply(co_kfac *k, const float *dw, const float *db, float *out_w, float *out_b, double damping,
                   co_kfac_damping mode)
{
    int n = k->rows, c = k->cols, m = k->m;
#pragma omp parallel for schedule(static) if ((size_t)n * m > APPLY_PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(k->g + (size_t)i * m, dw + (size_t)i * c, (size_t)c * sizeof(float));
        k->g[(size_t)i * m + c] = db ? db[i] : 0.0f;
    }
    if (mode == CO_KFAC_DAMP_FACTORS) {
        /* B^-1/2 G A^-1/2 */
        if (k->rank[1]) lowrank_apply(k, 1, damping, k->g, k->t);
        else co_gemm(0, 0, n, m, n, 1.0f, k->rb, n, k->g, m, 0.0f, k->t, m, 0);
        if (k->rank[0]) lowrank_apply(k, 0, damping, k->t, k->g);
        else co_gemm(0, 0, n, m, m, 1.0f, k->t, m, k->ra, m, 0.0f, k->g, m, 0);
    } else {
        /* In the eigenbases: U_B^T G U_A, divided by sqrt(lb_i la_j + damping), rotated back. */
        const float *ua = k->ra, *ub = k->rb;
        co_gemm(1, 0, n, m, n, 1.0f, ub, n, k->g, m, 0.0f, k->t, m, 0);
        co_gemm(0, 0, n, m, m, 1.0f, k->t, m, ua, m, 0.0f, k->g, m, 0);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) k->g[(size_t)i * m + j] /= (float)sqrt(k->lb[i] * k->la[j] + damping);
        co_gemm(0, 0, n, m, n, 1.0f, ub, n, k->g, m, 0.0f, k->t, m, 0);
        co_gemm(0, 1, n, m, m, 1.0f, k->t, m, ua, m, 0.0f, k->g, m, 0);
    }
#pragma omp parallel for schedule(static) if ((size_t)n * m > APPLY_PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(out_w + (size_t)i * c, k->g + (size_t)i * m, (size_t)c * sizeof(float));
        if (out_b) out_b[i] = k->g[(size_t)i * m + c];
    }
}

double co_kfac_apply_madds(const co_kfac *k, co_kfac_damping mode)
{
    double n = k->rows, m = k->m;
    if (mode != CO_KFAC_DAMP_FACTORS) return 2 * (n * n * m + n * m * m);
    return (k->rank[1] ? 2 * n * m * k->rank[1] : n * n * m) + (k->rank[0] ? 2 * n * m * k->rank[0] : n * m * m);
}

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
    eig_free(&k->ea);
    eig_free(&k->eb);
    memset(k, 0, sizeof *k);
}

/* Copies the triangle SSYRK wrote to the other one, in tiles so both sides stay in cache:
 * from the row-major upper triangle (x[i ld + j], j > i) when from_upper, else from the
 * lower one. */
static void symmetrize(float *x, int n, int ld, int from_upper)
{
    enum { T = 64 };
    for (int i0 = 0; i0 < n; i0 += T)
        for (int j0 = i0; j0 < n; j0 += T) {
            int i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (int i = i0; i < i1; i++)
                for (int j = j0 > i + 1 ? j0 : i + 1; j < j1; j++) {
                    if (from_upper) x[(size_t)j * ld + i] = x[(size_t)i * ld + j];
                    else x[(size_t)i * ld + j] = x[(size_t)j * ld + i];
                }
        }
}

void co_kfac_stats(co_kfac *k, const float *a, const float *g, int rows, double div_a, float scale_b, float corner)
{
    int m = k->m, c = k->cols, n = k->rows;
    if (rows <= 0) {
        memset(k->batch_a, 0, (size_t)m * m * sizeof(float));
        memset(k->batch_b, 0, (size_t)n * n * sizeof(float));
        k->batch_a[(size_t)c * m + c] = corner;
        return;
    }
    /* E[a a^T] over the captured rows, with the constant 1 appended for the bias. SSYRK
     * computes one triangle: half the FLOPs of the SGEMM that gives both. */
    co_syrk_upper(c, rows, 1.0f / (float)div_a, a, c, k->batch_a, m);
    /* Column sums row by row (contiguous reads; each column's terms in the same order as
     * a column-wise pass). */
    double *sum = k->colsum;
    for (int j = 0; j < c; j++) sum[j] = 0;
    for (int r = 0; r < rows; r++) {
        const float *ar = a + (size_t)r * c;
        for (int j = 0; j < c; j++) sum[j] += ar[j];
    }
    for (int j = 0; j < c; j++) k->batch_a[(size_t)j * m + c] = (float)(sum[j] / div_a);
    k->batch_a[(size_t)c * m + c] = corner;
    symmetrize(k->batch_a, m, m, 1);
    co_syrk_upper(n, rows, scale_b, g, n, k->batch_b, n);
    symmetrize(k->batch_b, n, n, 1);
}

int co_kfac_stats_finite(const co_kfac *k)
{
    size_t m = (size_t)k->m, n = (size_t)k->rows;
    for (size_t i = 0; i < m * m; i++)
        if (!isfinite(k->batch_a[i])) return 0;
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(k->batch_b[i])) return 0;
    return 1;
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
    for (size_t i = 0; i < m * m; i++) k->A[i] = keep * k->A[i] + add * k->batch_a[i];
    for (size_t i = 0; i < n * n; i++) k->B[i] = keep * k->B[i] + add * k->batch_b[i];
    k->updates++;
}

void co_kfac_update(co_kfac *k, const co_capture *cap, double gamma)
{
    co_kfac_stats(k, cap->a, cap->g, cap->n, (double)cap->n, (float)cap->batch, 1.0f);
    co_kfac_fold(k, gamma, co_kfac_stats_finite(k));
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

static co_status refresh_factor(co_kfac_job *j)
{
    co_kfac *k = j->k;
    co_kfac_eig *e = j->which ? &k->eb : &k->ea;
    double *u = j->which ? k->ub : k->ua, *l = j->which ? k->lb : k->la;
    float *r = j->which ? k->rb : k->ra;
    int n = e->n;
    const double *f = j->which ? k->B : k->A;
    k->root_trace[j->which] = trace(f, n);
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

void co_kfac_apply(co_kfac *k, const float *dw, const float *db, float *out_w, float *out_b, double damping,
                   co_kfac_damping mode)
{
    int n = k->rows, c = k->cols, m = k->m;
    for (int i = 0; i < n; i++) {
        memcpy(k->g + (size_t)i * m, dw + (size_t)i * c, (size_t)c * sizeof(float));
        k->g[(size_t)i * m + c] = db ? db[i] : 0.0f;
    }
    if (mode == CO_KFAC_DAMP_FACTORS) {
        /* B^-1/2 G A^-1/2 */
        co_gemm(0, 0, n, m, n, 1.0f, k->rb, n, k->g, m, 0.0f, k->t, m, 0);
        co_gemm(0, 0, n, m, m, 1.0f, k->t, m, k->ra, m, 0.0f, k->g, m, 0);
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
    for (int i = 0; i < n; i++) {
        memcpy(out_w + (size_t)i * c, k->g + (size_t)i * m, (size_t)c * sizeof(float));
        if (out_b) out_b[i] = k->g[(size_t)i * m + c];
    }
}

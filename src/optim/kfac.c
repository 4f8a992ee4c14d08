#include "kfac.h"
#include "../core/alloc.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    size_t big = m > n ? m : n;
    double q1 = 0, q2 = 0;
    lapack_int i1 = 0, i2 = 0;
    if (k->ua && k->la && k->ub && k->lb) {
        /* Divide and conquer (dsyevd): several times faster than dsyev on large factors. */
        LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (int)m, k->ua, (int)m, k->la, &q1, -1, &i1, -1);
        LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (int)n, k->ub, (int)n, k->lb, &q2, -1, &i2, -1);
    }
    k->nlwork = (int)fmax(fmax(q1, q2), 3.0 * (double)big) + 1;
    k->lwork = co_dalloc((size_t)k->nlwork);
    k->nliwork = (i1 > i2 ? i1 : i2) + 1;
    k->liwork = calloc((size_t)k->nliwork, sizeof *k->liwork);
    k->scratch = co_dalloc(big * big);
    if (!k->A || !k->B || !k->ua || !k->ub || !k->la || !k->lb || !k->ra || !k->rb || !k->batch_a || !k->batch_b ||
        !k->g || !k->t || !k->lwork || !k->liwork || !k->scratch) {
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
    free(k->lwork);
    free(k->liwork);
    free(k->scratch);
    memset(k, 0, sizeof *k);
}

void co_kfac_update(co_kfac *k, const co_capture *cap, double gamma)
{
    int m = k->m, c = k->cols, n = k->rows, rows = cap->n;
    /* E[a a^T] over the captured rows, with the constant 1 appended for the bias. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, c, rows, 1.0f / (float)rows, cap->a, c, cap->a, c, 0.0f,
                k->batch_a, m);
    for (int j = 0; j < c; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++) s += cap->a[(size_t)r * c + j];
        k->batch_a[(size_t)j * m + c] = k->batch_a[(size_t)c * m + j] = (float)(s / rows);
    }
    k->batch_a[(size_t)c * m + c] = 1.0f;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, rows, (float)cap->batch, cap->g, n, cap->g, n, 0.0f,
                k->batch_b, n);
    /* Statistics that overflowed float (gradients near 1e20) would poison the averages for
     * good: such a batch is left out (counted), the factors keep their last finite value. */
    for (size_t i = 0; i < (size_t)m * m; i++)
        if (!isfinite(k->batch_a[i])) goto skip;
    for (size_t i = 0; i < (size_t)n * n; i++)
        if (!isfinite(k->batch_b[i])) goto skip;
    double keep = k->updates == 0 ? 0.0 : 1.0 - gamma, add = k->updates == 0 ? 1.0 : gamma;
    for (size_t i = 0; i < (size_t)m * m; i++) k->A[i] = keep * k->A[i] + add * k->batch_a[i];
    for (size_t i = 0; i < (size_t)n * n; i++) k->B[i] = keep * k->B[i] + add * k->batch_b[i];
    k->updates++;
    return;
skip:
    k->skipped++;
}

/* Eigenpairs of a symmetric factor; eigenvalues clamped at 0 (the factors are PSD in exact
 * arithmetic, rounding can make the smallest slightly negative). */
static co_status eigen(co_kfac *k, double *u, double *l, const double *x, int n, co_error *err)
{
    memcpy(u, x, (size_t)n * n * sizeof(double));
    if (LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', n, u, n, l, k->lwork, k->nlwork, k->liwork, k->nliwork) != 0)
        return co_error_set(err, CO_ENUMERIC, "K-FAC factor eigendecomposition failed (%d x %d)", n, n);
    for (int i = 0; i < n; i++)
        if (!(l[i] > 0)) l[i] = 0;
    return CO_OK;
}

/* r = U diag((l + damping)^-1/2) U^T = W W^T with W = U diag((l + damping)^-1/4): one
 * DSYRK. u is overwritten by W (the eigenvectors are kept only as far as the roots need
 * them); work holds n x n doubles. Row-major float out (symmetric, layout is moot). */
static void inv_root(float *r, double *u, const double *l, int n, double damping, double *work)
{
    for (int e = 0; e < n; e++) {
        double s = pow(l[e] + damping, -0.25);
        for (int i = 0; i < n; i++) u[(size_t)e * n + i] *= s; /* column e of column-major U */
    }
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, n, n, 1.0, u, n, 0.0, work, n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i <= j; i++) r[(size_t)i * n + j] = r[(size_t)j * n + i] = (float)work[(size_t)j * n + i];
}

co_status co_kfac_refresh(co_kfac *k, double damping, co_kfac_damping mode, co_error *err)
{
    co_status st = eigen(k, k->ua, k->la, k->A, k->m, err);
    if (!st) st = eigen(k, k->ub, k->lb, k->B, k->rows, err);
    if (st) return st;
    if (mode == CO_KFAC_DAMP_FACTORS) {
        inv_root(k->ra, k->ua, k->la, k->m, damping, k->scratch);
        inv_root(k->rb, k->ub, k->lb, k->rows, damping, k->scratch);
    } else {
        /* Damping on the eigenvalue products needs the bases themselves: float U, row-major
         * (LAPACK's column-major eigenvectors transposed), kept in the root buffers. */
        int m = k->m, n = k->rows;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) k->ra[(size_t)i * m + j] = (float)k->ua[(size_t)j * m + i];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) k->rb[(size_t)i * n + j] = (float)k->ub[(size_t)j * n + i];
    }
    k->have_roots = 1;
    return CO_OK;
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m, n, 1.0f, k->rb, n, k->g, m, 0.0f, k->t, m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m, m, 1.0f, k->t, m, k->ra, m, 0.0f, k->g, m);
    } else {
        /* In the eigenbases: U_B^T G U_A, divided by sqrt(lb_i la_j + damping), rotated back. */
        const float *ua = k->ra, *ub = k->rb;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, m, n, 1.0f, ub, n, k->g, m, 0.0f, k->t, m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m, m, 1.0f, k->t, m, ua, m, 0.0f, k->g, m);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) k->g[(size_t)i * m + j] /= (float)sqrt(k->lb[i] * k->la[j] + damping);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m, n, 1.0f, ub, n, k->g, m, 0.0f, k->t, m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, m, 1.0f, k->t, m, ua, m, 0.0f, k->g, m);
    }
    for (int i = 0; i < n; i++) {
        memcpy(out_w + (size_t)i * c, k->g + (size_t)i * m, (size_t)c * sizeof(float));
        if (out_b) out_b[i] = k->g[(size_t)i * m + c];
    }
}

#include "sketch.h"
#include "../core/alloc.h"
#include "../core/blas.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

co_status co_fd_init(co_fd_sketch *s, int n, int rows, co_error *err)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->rows = rows;
    if (rows <= 0) return CO_OK;
    if (rows > CO_SKETCH_MAX_ROWS) return co_error_set(err, CO_EINVAL, "a sketch of %d rows (at most %d)", rows, CO_SKETCH_MAX_ROWS);
    s->b = co_falloc((size_t)rows * n);
    s->gram = co_dalloc((size_t)rows * rows);
    s->evec = co_dalloc((size_t)rows * rows);
    s->eval = co_dalloc((size_t)rows);
    s->work = co_dalloc((size_t)rows);
    s->gram_f = co_falloc((size_t)rows * rows);
    s->coef = co_falloc((size_t)rows * rows);
    double query = 0;
    if (s->gram && s->work &&
        LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', rows, s->gram, rows, s->work, &query, -1) == 0) {
        s->nlwork = (int)query + 1;
        s->lwork = co_dalloc((size_t)s->nlwork);
    }
    if (!s->b || !s->gram || !s->evec || !s->eval || !s->work || !s->lwork || !s->gram_f || !s->coef) {
        co_fd_free(s);
        return co_error_set(err, CO_ENOMEM, "out of memory for a %d x %d sketch", rows, n);
    }
    return CO_OK;
}

void co_fd_free(co_fd_sketch *s)
{
    free(s->b);
    free(s->gram);
    free(s->evec);
    free(s->eval);
    free(s->work);
    free(s->lwork);
    free(s->gram_f);
    free(s->coef);
    memset(s, 0, sizeof *s);
}

/* Eigen-decomposition of B B^T (rows x rows), eigenvalues descending and >= 0. */
static co_status decompose(co_fd_sketch *s, co_error *err)
{
    int R = s->rows, n = s->n;
    /* One SGEMM: B B^T in float (blocked FMA accumulation), then double for LAPACK. */
    co_gemm(0, 1, R, R, n, 1.0f, s->b, n, s->b, n, 0.0f, s->gram_f, R, 0);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) s->gram[(size_t)i * R + j] = 0.5 * ((double)s->gram_f[i * R + j] + s->gram_f[j * R + i]);
    memcpy(s->evec, s->gram, (size_t)R * R * sizeof(double));
    /* dsyev returns ascending eigenvalues: reverse into descending order below. */
    /* Column-major (LAPACKE's row-major path allocates a transposed copy); the Gram matrix
     * is symmetric, so only the eigenvectors need transposing back. */
    int blas_threads = co_blas_serial_begin();
    int info = LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', R, s->evec, R, s->work, s->lwork, s->nlwork);
    co_blas_serial_end(blas_threads);
    if (info != 0) return co_error_set(err, CO_ENUMERIC, "sketch eigendecomposition failed");
    for (int i = 0; i < R; i++)
        for (int j = i + 1; j < R; j++) {
            double t = s->evec[(size_t)i * R + j];
            s->evec[(size_t)i * R + j] = s->evec[(size_t)j * R + i];
            s->evec[(size_t)j * R + i] = t;
        }
    for (int i = 0; i < R / 2; i++) {
        double t = s->work[i];
        s->work[i] = s->work[R - 1 - i];
        s->work[R - 1 - i] = t;
        for (int r = 0; r < R; r++) {
            double *a = &s->evec[(size_t)r * R + i], *b = &s->evec[(size_t)r * R + (R - 1 - i)];
            double u = *a;
            *a = *b;
            *b = u;
        }
    }
    for (int i = 0; i < R; i++) s->eval[i] = s->work[i] > 0 ? s->work[i] : 0;
    return CO_OK;
}

/* B <- diag(sqrt(max(eval - shift, 0))) V^T with V = B^T W diag(eval)^-1/2: the sketch
 * rewritten in its own singular basis, computed in place column by column as B <- C^T B
 * (C in the Gram buffer, which the decomposition no longer needs; work holds one column). */
static void rebuild(co_fd_sketch *s, double shift)
{
    int R = s->rows, n = s->n, kept = 0;
    double *c = s->gram;
    memset(c, 0, (size_t)R * R * sizeof(double));
    for (int i = 0; i < R; i++) {
        double lam = s->eval[i], keep = lam - shift;
        if (lam <= 0 || keep <= 0) continue;
        double scale = sqrt(keep / lam);
        for (int j = 0; j < R; j++) c[(size_t)j * R + kept] = s->evec[(size_t)j * R + i] * scale;
        kept++;
    }
    /* A chunk of columns at a time, each new entry's terms in j order as a scalar loop
     * would add them, along the rows so that the loops vectorise; a chunk is read whole
     * before it is overwritten. */
    enum { CHUNK = 32 };
    double out[CO_SKETCH_MAX_ROWS * CHUNK];
    for (int k0 = 0; k0 < n; k0 += CHUNK) {
        int len = n - k0 < CHUNK ? n - k0 : CHUNK;
        for (int i = 0; i < kept; i++) {
            double *o = out + (size_t)i * CHUNK;
            for (int k = 0; k < len; k++) o[k] = 0;
            for (int j = 0; j < R; j++) {
                double cji = c[(size_t)j * R + i];
                const float *bj = s->b + (size_t)j * n + k0;
                for (int k = 0; k < len; k++) o[k] += cji * bj[k];
            }
        }
        for (int i = 0; i < R; i++)
            for (int k = 0; k < len; k++) s->b[(size_t)i * n + k0 + k] = i < kept ? (float)out[(size_t)i * CHUNK + k] : 0.0f;
    }
    s->used = kept;
}

co_status co_fd_update(co_fd_sketch *s, const float *u, double decay, co_error *err)
{
    if (s->rows <= 0) return CO_OK;
    int n = s->n;
    co_status st;
    if (s->used == s->rows) {
        if ((st = decompose(s, err))) return st;
        /* Frequent Directions: subtract the median squared singular value. */
        rebuild(s, s->eval[s->rows / 2]);
    }
    float a = (float)sqrt(decay), c = (float)sqrt(1.0 - decay);
    for (size_t i = 0; i < (size_t)s->used * n; i++) s->b[i] *= a;
    float *row = s->b + (size_t)s->used * n;
    for (int k = 0; k < n; k++) row[k] = c * u[k];
    s->used++;
    return decompose(s, err);
}

void co_fd_top(const co_fd_sketch *s, int r, float *q, double *mu)
{
    int R = s->rows, n = s->n;
    if (r > R) r = R;
    /* q_i = B^T w_i / sqrt(lambda_i): coefficients (r x R) times B, one SGEMM. */
    for (int i = 0; i < r; i++) {
        int live = s->eval[i] > 1e-30;
        mu[i] = live ? s->eval[i] : 0;
        double inv = live ? 1.0 / sqrt(s->eval[i]) : 0;
        for (int j = 0; j < R; j++) s->coef[i * R + j] = (float)(s->evec[(size_t)j * R + i] * inv);
    }
    if (r > 0) co_gemm(0, 0, r, n, R, 1.0f, s->coef, R, s->b, n, 0.0f, q, n, 0);
}

double co_fd_tail(const co_fd_sketch *s, int r)
{
    double t = 0;
    for (int i = r; i < s->rows; i++) t += s->eval[i] * s->eval[i];
    return sqrt(t);
}

double co_power_iteration(void (*matvec)(const double *x, double *y, void *ctx), void *ctx, int n, int iters,
                          co_rng *rng, double *work)
{
    double *v = work, *w = work + n;
    double norm = 0;
    for (int i = 0; i < n; i++) {
        v[i] = co_rng_normal(rng);
        norm += v[i] * v[i];
    }
    norm = sqrt(norm);
    if (norm == 0) return 0;
    for (int i = 0; i < n; i++) v[i] /= norm;
    double lambda = 0;
    for (int k = 0; k < iters; k++) {
        matvec(v, w, ctx);
        double nw = 0;
        for (int i = 0; i < n; i++) nw += w[i] * w[i];
        nw = sqrt(nw);
        lambda = nw; /* ||A v_k|| with ||v_k|| = 1 */
        if (nw == 0) return 0;
        for (int i = 0; i < n; i++) v[i] = w[i] / nw;
    }
    return lambda;
}

void co_woodbury_apply(float *y, const float *x, const float *q, const double *mu, int n, int r, double delta,
                       double *proj)
{
    for (int i = 0; i < r; i++) proj[i] = co_dot_d(q + (size_t)i * n, x, (size_t)n) * (mu[i] / (delta + mu[i]));
    /* y = (x - Q^T proj) / delta, each element's terms in direction order as one scalar loop
     * would add them, a chunk of elements at a time so the loops run along the vectors. */
    double inv = 1.0 / delta;
    enum { CHUNK = 512 };
    double c[CHUNK];
    for (int k0 = 0; k0 < n; k0 += CHUNK) {
        int len = n - k0 < CHUNK ? n - k0 : CHUNK;
        for (int k = 0; k < len; k++) c[k] = 0;
        for (int i = 0; i < r; i++) {
            const float *qi = q + (size_t)i * n + k0;
            double pi = proj[i];
            for (int k = 0; k < len; k++) c[k] += pi * qi[k];
        }
        for (int k = 0; k < len; k++) y[k0 + k] = (float)((x[k0 + k] - c[k]) * inv);
    }
}

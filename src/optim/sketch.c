#include "sketch.h"
#include "../core/alloc.h"
#include "../core/blas.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Gram entries are summed in CO_DOT_LANES lanes (element k in lane k mod CO_DOT_LANES) in
 * float within a block of GRAM_BLOCK columns and in double across blocks: a block's lane
 * holds 64 terms (the sketch's entries are whitened gradients, |u| < 1 / sqrt(1 - beta2),
 * rescaled), and float lanes run twice as wide with no conversions. */
#define GRAM_BLOCK 2048

/* Columns of the sketch rewritten per SGEMM when it is shrunk. */
#define REBUILD_COLS 8192 /* a multiple of GRAM_BLOCK */
/* Sketch passes over fewer products than this run on one thread. */
#define SKETCH_PAR_MIN 65536

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
    s->eig = co_dalloc((size_t)rows * rows);
    s->eval = co_dalloc((size_t)rows);
    s->work = co_dalloc((size_t)rows);
    s->raw = co_dalloc((size_t)rows * rows);
    s->coef = co_falloc((size_t)rows * rows);
    s->tmp = co_falloc((size_t)(rows / 2 > 0 ? rows / 2 : 1) * REBUILD_COLS);
    s->scale = 1;
    int half = rows / 2 > 0 ? rows / 2 : 1;
    size_t pairs = (size_t)half * (half + 1) / 2;
    s->lanes = co_dalloc(CO_DOT_LANES * (pairs > (size_t)rows ? pairs : (size_t)rows));
    s->block_lanes = co_falloc((size_t)rows * CO_DOT_LANES * (((size_t)n + GRAM_BLOCK - 1) / GRAM_BLOCK));
    double query = 0;
    if (s->gram && s->work &&
        LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', rows, s->gram, rows, s->work, &query, -1) == 0) {
        s->nlwork = (int)query + 1;
        s->lwork = co_dalloc((size_t)s->nlwork);
    }
    if (!s->b || !s->gram || !s->evec || !s->eig || !s->eval || !s->work || !s->lwork || !s->raw || !s->coef || !s->tmp || !s->lanes || !s->block_lanes) {
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
    free(s->eig);
    free(s->eval);
    free(s->work);
    free(s->lwork);
    free(s->raw);
    free(s->coef);
    free(s->tmp);
    free(s->lanes);
    free(s->block_lanes);
    memset(s, 0, sizeof *s);
}

/* Eigen-decomposition of B B^T (rows x rows), eigenvalues descending and >= 0. The Gram
 * matrix of the stored rows is kept up to date as rows change (raw), so
 * this costs no pass over B: B B^T = scale^2 raw. */
static co_status decompose(co_fd_sketch *s, co_error *err)
{
    int R = s->rows, m = s->used;
    double s2 = s->scale * s->scale;
    for (int i = 0; i < R * R; i++) s->gram[i] = s2 * s->raw[i];
    /* Rows past `used` are zero: B B^T is its leading used x used block padded with zeros,
     * so LAPACK decomposes only that block (dsyev's cost on these small matrices is
     * mostly per-call overhead that grows with the size) and the zero rows get eigenvalue
     * 0 and unit vectors. The block is symmetric, so column-major needs no transpose going
     * in (LAPACKE's row-major path would allocate a transposed copy). */
    double *a = s->eig;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) a[(size_t)i * m + j] = s->gram[(size_t)i * R + j];
    if (m > 0) {
        int blas_threads = co_blas_serial_begin();
        int info = LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', m, a, m, s->work, s->lwork, s->nlwork);
        co_blas_serial_end(blas_threads);
        if (info != 0) return co_error_set(err, CO_ENUMERIC, "sketch eigendecomposition failed");
    }
    /* dsyev's eigenvalues ascend: eval[i] and evec[.][i] (component r of eigenvector i at
     * evec[r * R + i]) take its column m - 1 - i, whose entry r is a[(m - 1 - i) * m + r]. */
    for (int i = 0; i < R; i++) {
        double w = i < m ? s->work[m - 1 - i] : 0;
        s->eval[i] = w > 0 ? w : 0;
        for (int r = 0; r < R; r++) s->evec[(size_t)r * R + i] = r < m && i < m ? a[(size_t)(m - 1 - i) * m + r] : (r == i);
    }
    return CO_OK;
}

/* A block's float lanes of a . b (summed in a local array: through `out` the compiler would
 * have to assume it aliases a and b, and keep the lanes in memory). */
static void block_products(float *out, const float *a, const float *b, int len)
{
    float f[CO_DOT_LANES] = {0};
    int k = 0;
    for (; k + CO_DOT_LANES <= len; k += CO_DOT_LANES)
        for (int j = 0; j < CO_DOT_LANES; j++) f[j] += a[k + j] * b[k + j];
    for (int j = 0; k < len; k++, j++) f[j] += a[k] * b[k];
    memcpy(out, f, sizeof f);
}

static void add_block_products(double *lanes, const float *a, const float *b, int len)
{
    float f[CO_DOT_LANES];
    block_products(f, a, b, len);
    for (int j = 0; j < CO_DOT_LANES; j++) lanes[j] += f[j];
}

/* The Gram entry of two stored rows from scratch, in the same order as the passes that keep
 * raw up to date. */
static double row_dot(const float *a, const float *b, int n)
{
    double lanes[CO_DOT_LANES] = {0};
    for (int k0 = 0; k0 < n; k0 += GRAM_BLOCK) add_block_products(lanes, a + k0, b + k0, n - k0 < GRAM_BLOCK ? n - k0 : GRAM_BLOCK);
    return co_lanes_sum(lanes);
}

/* B <- diag(sqrt(max(eval - shift, 0))) V^T with V = B^T W diag(eval)^-1/2: the sketch
 * rewritten in its own singular basis as B <- C^T B, the lazy scale folded into C (the new
 * rows are stored at scale 1), with the new rows' Gram matrix summed in the same pass. One
 * SGEMM per block of REBUILD_COLS columns into tmp, which then overwrites the block (the
 * product reads the block's old rows whole first). */
static void rebuild(co_fd_sketch *s, double shift)
{
    int R = s->rows, n = s->n, kept = 0;
    float *c = s->coef; /* kept x R: row i = column i of C, as C^T for the product */
    for (int i = 0; i < R && kept < R / 2; i++) { /* at most R/2 with eval sorted; a loaded file may not be */
        double lam = s->eval[i], keep = lam - shift;
        if (!(lam > 0) || !(keep > 0)) continue;
        double scale = sqrt(keep / lam) * s->scale;
        for (int j = 0; j < R; j++) c[(size_t)kept * R + j] = (float)(s->evec[(size_t)j * R + i] * scale);
        kept++;
    }
    int pairs = kept * (kept + 1) / 2;
    memset(s->lanes, 0, (size_t)pairs * CO_DOT_LANES * sizeof(double));
    for (int k0 = 0; k0 < n; k0 += REBUILD_COLS) {
        int len = n - k0 < REBUILD_COLS ? n - k0 : REBUILD_COLS;
        if (kept > 0) co_gemm(0, 0, kept, len, R, 1.0f, c, R, s->b + k0, n, 0.0f, s->tmp, REBUILD_COLS, 0);
        for (int i = 0, pr = 0; i < kept; i++)
            for (int j = 0; j <= i; j++, pr++)
                for (int q0 = 0; q0 < len; q0 += GRAM_BLOCK)
                    add_block_products(s->lanes + (size_t)pr * CO_DOT_LANES, s->tmp + (size_t)i * REBUILD_COLS + q0,
                                       s->tmp + (size_t)j * REBUILD_COLS + q0, len - q0 < GRAM_BLOCK ? len - q0 : GRAM_BLOCK);
        for (int i = 0; i < R; i++) {
            float *bi = s->b + (size_t)i * n + k0;
            if (i < kept) memcpy(bi, s->tmp + (size_t)i * REBUILD_COLS, (size_t)len * sizeof *bi);
            else memset(bi, 0, (size_t)len * sizeof *bi);
        }
    }
    memset(s->raw, 0, (size_t)R * R * sizeof(double));
    for (int i = 0, pr = 0; i < kept; i++)
        for (int j = 0; j <= i; j++, pr++)
            s->raw[(size_t)i * R + j] = s->raw[(size_t)j * R + i] = co_lanes_sum(s->lanes + (size_t)pr * CO_DOT_LANES);
    s->used = kept;
    s->scale = 1;
}

/* The new row (row `used`, f u) written block by block with each block's float lanes of
 * its products with every row, itself included, into block_lanes; blocks are independent,
 * so they run on the threads, and co_fd_update adds their lanes in block order, the order
 * a single pass would (the same bits for any number of threads). */
typedef struct {
    co_fd_sketch *s;
    const float *u;
    float f;
} new_row_task;

static void new_row_blocks(void *ctx, size_t b0, size_t b1)
{
    const new_row_task *t = ctx;
    co_fd_sketch *s = t->s;
    const size_t n = (size_t)s->n;
    const int m = s->used;
    float *row = s->b + (size_t)m * n;
    for (size_t blk = b0; blk < b1; blk++) {
        const size_t k0 = blk * GRAM_BLOCK;
        const int len = n - k0 < GRAM_BLOCK ? (int)(n - k0) : GRAM_BLOCK;
        for (int k = 0; k < len; k++) row[k0 + k] = t->f * t->u[k0 + k];
        for (int i = 0; i <= m; i++)
            block_products(s->block_lanes + (blk * (size_t)s->rows + (size_t)i) * CO_DOT_LANES, s->b + (size_t)i * n + k0,
                           row + k0, len);
    }
}

co_status co_fd_update(co_fd_sketch *s, const float *u, double decay, co_error *err)
{
    if (s->rows <= 0) return CO_OK;
    int n = s->n;
    if (s->used == s->rows) {
        /* Frequent Directions: subtract the median squared singular value. Every update
         * ends by decomposing B B^T, and B has not changed since, so eval/evec are its
         * decomposition already (decompose is deterministic: recomputing it gave the same
         * bits at the price of an eigendecomposition). */
        rebuild(s, s->eval[s->rows / 2]);
    }
    /* B <- sqrt(decay) B lazily: the rows are stored at a common scale, so forgetting
     * costs no pass over B; the scale is folded into the rows only if it gets small enough
     * to push the stored new rows towards float's range (never at decay >= 0.5 and 2 x
     * rank_max <= 16, where a rebuild resets it first). */
    s->scale *= sqrt(decay);
    if (s->scale < 1e-3) {
        float f = (float)s->scale;
        for (size_t i = 0; i < (size_t)s->used * n; i++) s->b[i] *= f;
        for (int i = 0; i < s->used; i++)
            for (int j = 0; j <= i; j++)
                s->raw[(size_t)i * s->rows + j] = s->raw[(size_t)j * s->rows + i] =
                    row_dot(s->b + (size_t)i * n, s->b + (size_t)j * n, n);
        s->scale = 1;
    }
    /* The new row, stored as sqrt(1 - decay) u / scale, and its products with every row
     * (itself included) summed in the same pass. */
    new_row_task t = {s, u, (float)(sqrt(1.0 - decay) / s->scale)};
    const int m = s->used;
    const size_t nblocks = ((size_t)n + GRAM_BLOCK - 1) / GRAM_BLOCK;
    co_run_shared(nblocks, (size_t)n * (m + 1) >= SKETCH_PAR_MIN, new_row_blocks, &t);
    double *lanes = s->lanes;
    memset(lanes, 0, (size_t)(m + 1) * CO_DOT_LANES * sizeof(double));
    for (size_t blk = 0; blk < nblocks; blk++)
        for (int i = 0; i <= m; i++) {
            const float *f = s->block_lanes + (blk * (size_t)s->rows + (size_t)i) * CO_DOT_LANES;
            for (int j = 0; j < CO_DOT_LANES; j++) lanes[(size_t)i * CO_DOT_LANES + j] += f[j];
        }
    for (int i = 0; i <= m; i++) s->raw[(size_t)i * s->rows + m] = s->raw[(size_t)m * s->rows + i] = co_lanes_sum(lanes + (size_t)i * CO_DOT_LANES);
    s->used = m + 1;
    return decompose(s, err);
}

void co_fd_top_coef(const co_fd_sketch *s, int r, double *mu)
{
    int R = s->rows;
    if (r > R) r = R;
    for (int i = 0; i < r; i++) {
        int live = s->eval[i] > 1e-30;
        mu[i] = live ? s->eval[i] : 0;
        double inv = live ? s->scale / sqrt(s->eval[i]) : 0; /* B's rows are stored at 1/scale */
        for (int j = 0; j < R; j++) s->coef[i * R + j] = (float)(s->evec[(size_t)j * R + i] * inv);
    }
}

void co_fd_top_columns(const co_fd_sketch *s, int r, float *q, size_t ldq, size_t k0, size_t len)
{
    /* Tile by tile, every output of a tile from the rows' tile while it is in L1. */
    enum { TILE = 64 };
    const int R = s->rows, m = s->used;
    const size_t n = (size_t)s->n;
    if (r > R) r = R;
    size_t k = k0;
    for (; k + TILE <= k0 + len; k += TILE)
        for (int i = 0; i < r; i++) {
            const float *coef = s->coef + (size_t)i * R;
            float acc[TILE] = {0};
            for (int j = 0; j < m; j++) {
                const float c = coef[j], *restrict bj = s->b + (size_t)j * n + k;
                for (int t = 0; t < TILE; t++) acc[t] += c * bj[t];
            }
            memcpy(q + (size_t)i * ldq + k, acc, sizeof acc);
        }
    for (; k < k0 + len; k++)
        for (int i = 0; i < r; i++) {
            float acc = 0;
            for (int j = 0; j < m; j++) acc += s->coef[(size_t)i * R + j] * s->b[(size_t)j * n + k];
            q[(size_t)i * ldq + k] = acc;
        }
}

void co_fd_top(const co_fd_sketch *s, int r, float *q, double *mu)
{
    co_fd_top_coef(s, r, mu);
    co_fd_top_columns(s, r, q, (size_t)s->n, 0, (size_t)s->n);
}

double co_fd_tail(const co_fd_sketch *s, int r)
{
    double t = 0;
    for (int i = r; i < s->rows; i++) t += s->eval[i] * s->eval[i];
    return sqrt(t);
}

double co_power_iteration(void (*matvec)(const double *x, double *y, void *ctx), void *ctx, int n, int iters,
                          double *v, double *w)
{
    double norm = 0;
    for (int i = 0; i < n; i++) norm += v[i] * v[i];
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
        double inv = 1.0 / nw;
        for (int i = 0; i < n; i++) v[i] = w[i] * inv;
    }
    return lambda;
}

/* The dots for r known at compile time (co_woodbury_dots passes the small ranks as
 * constants), so that the lanes stay in registers across the segment. */
static inline __attribute__((always_inline)) void woodbury_dots_r(float *lanes, const float *q, size_t ldq, const int r,
                                                                   const float *x, size_t len)
{
    float acc[64][CO_DOT_LANES];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < CO_DOT_LANES; j++) acc[i][j] = lanes[(size_t)i * CO_DOT_LANES + j];
    size_t k0 = 0;
    for (; k0 + CO_DOT_LANES <= len; k0 += CO_DOT_LANES)
        for (int i = 0; i < r; i++) {
            const float *qi = q + (size_t)i * ldq + k0;
            for (int j = 0; j < CO_DOT_LANES; j++) acc[i][j] += qi[j] * x[k0 + j];
        }
    for (int i = 0; i < r; i++)
        for (size_t k = k0; k < len; k++) acc[i][k - k0] += q[(size_t)i * ldq + k] * x[k];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < CO_DOT_LANES; j++) lanes[(size_t)i * CO_DOT_LANES + j] = acc[i][j];
}

void co_woodbury_dots(float *lanes, const float *q, size_t ldq, int r, const float *x, size_t len)
{
    switch (r) {
    case 1: woodbury_dots_r(lanes, q, ldq, 1, x, len); break;
    case 2: woodbury_dots_r(lanes, q, ldq, 2, x, len); break;
    case 3: woodbury_dots_r(lanes, q, ldq, 3, x, len); break;
    case 4: woodbury_dots_r(lanes, q, ldq, 4, x, len); break;
    default: woodbury_dots_r(lanes, q, ldq, r, x, len); break;
    }
}

/* a_j and G_jk with r a compile-time constant, in GCC's generic vectors of
 * CO_WOODBURY_NORM_LANES floats (one AVX2 register; lane j takes the elements k = j mod
 * the lane count, whatever the target's vector width). The sums of one pass stay in
 * registers across the segment: at rank 4 the first pass takes the a_j and G's rows 0-1
 * (11 sums), the second rows 2-3 (3), re-reading the segment's x, w and Q from cache, so
 * that AVX2's 16 registers need not spill (one pass of all 14 in 16 lanes made DA-RMSprop's
 * whole step 1.7x slower on an AVX2 build). */
typedef float norm_vec __attribute__((vector_size(CO_WOODBURY_NORM_LANES * sizeof(float))));
/* Unaligned loads by memcpy; a macro, since a function returning the vector by value has
 * no stable ABI where the build targets no AVX (GCC's -Wpsabi). */
#define NORM_LOAD(v, p) memcpy(&(v), (p), sizeof(v))
/* Index of G_ab (a <= b) among the sums: after the r a_j, G's upper triangle row by row. */
#define NORM_G(r, a, b) ((r) + (a) * (r) - (a) * ((a) - 1) / 2 + ((b) - (a)))

static inline __attribute__((always_inline)) void woodbury_norm_pass(float *lanes, const float *q, size_t ldq,
                                                                      const int r, const int with_a, const int row0,
                                                                      const int row1, const float *x,
                                                                      const float *w, size_t len)
{
    enum { L = CO_WOODBURY_NORM_LANES, MAXS = CO_WOODBURY_NORM_SUMS(CO_WOODBURY_NORM_MAX_RANK) };
    /* The pass's sums are a contiguous run: the a_j (if with_a) then rows row0..row1-1. */
    const int s0 = with_a ? 0 : NORM_G(r, row0, row0), s1 = row1 < r ? NORM_G(r, row1, row1) : CO_WOODBURY_NORM_SUMS(r);
    norm_vec acc[MAXS];
    for (int s = s0; s < s1; s++) NORM_LOAD(acc[s], lanes + (size_t)s * L);
    for (size_t k0 = 0; k0 + L <= len; k0 += L) {
        norm_vec wv, xv;
        NORM_LOAD(wv, w + k0);
        if (with_a) {
            NORM_LOAD(xv, x + k0);
            const norm_vec xw = xv * wv;
            for (int a = 0; a < r; a++) {
                norm_vec qa;
                NORM_LOAD(qa, q + (size_t)a * ldq + k0);
                acc[a] += qa * xw;
            }
        }
        for (int a = row0; a < row1; a++) {
            norm_vec qa, qb;
            NORM_LOAD(qa, q + (size_t)a * ldq + k0);
            const norm_vec qw = qa * wv;
            for (int b = a; b < r; b++) {
                NORM_LOAD(qb, q + (size_t)b * ldq + k0);
                acc[NORM_G(r, a, b)] += qw * qb;
            }
        }
    }
    for (int s = s0; s < s1; s++) memcpy(lanes + (size_t)s * L, &acc[s], sizeof acc[s]);
}

static inline __attribute__((always_inline)) void woodbury_norm_dots_r(float *lanes, const float *q, size_t ldq,
                                                                        const int r, const float *x,
                                                                        const float *w, size_t len)
{
    enum { L = CO_WOODBURY_NORM_LANES };
    if (r <= 3) {
        woodbury_norm_pass(lanes, q, ldq, r, 1, 0, r, x, w, len);
    } else {
        woodbury_norm_pass(lanes, q, ldq, r, 1, 0, 2, x, w, len);
        woodbury_norm_pass(lanes, q, ldq, r, 0, 2, r, x, w, len);
    }
    const size_t k0 = len / L * L;
    for (size_t k = k0; k < len; k++) {
        float *lane = lanes + (k - k0);
        const float xw = x[k] * w[k];
        for (int a = 0; a < r; a++) lane[(size_t)a * L] += q[(size_t)a * ldq + k] * xw;
        for (int a = 0; a < r; a++) {
            const float qw = q[(size_t)a * ldq + k] * w[k];
            for (int b = a; b < r; b++) lane[(size_t)NORM_G(r, a, b) * L] += qw * q[(size_t)b * ldq + k];
        }
    }
}

void co_woodbury_norm_dots(float *lanes, const float *q, size_t ldq, int r, const float *x, const float *w,
                           size_t len)
{
    switch (r) {
    case 0: woodbury_norm_dots_r(lanes, q, ldq, 0, x, w, len); break;
    case 1: woodbury_norm_dots_r(lanes, q, ldq, 1, x, w, len); break;
    case 2: woodbury_norm_dots_r(lanes, q, ldq, 2, x, w, len); break;
    case 3: woodbury_norm_dots_r(lanes, q, ldq, 3, x, w, len); break;
    case 4: woodbury_norm_dots_r(lanes, q, ldq, 4, x, w, len); break;
    }
}

void co_woodbury_norm_sums(const float *lanes, int r, double *sums)
{
    for (int s = 0; s < CO_WOODBURY_NORM_SUMS(r); s++) {
        double l[CO_WOODBURY_NORM_LANES];
        for (int j = 0; j < CO_WOODBURY_NORM_LANES; j++) l[j] = lanes[(size_t)s * CO_WOODBURY_NORM_LANES + j];
        for (int h = CO_WOODBURY_NORM_LANES / 2; h > 0; h /= 2)
            for (int j = 0; j < h; j++) l[j] += l[j + h];
        sums[s] = l[0];
    }
}

double co_woodbury_norm2(double xwx, const double *sums, const float *p, int r, float inv_delta, double *bound)
{
    const double *a = sums, *gram = sums + r;
    double cross = 0, quad = 0, reach = 0;
    int s = 0;
    for (int i = 0; i < r; i++) {
        cross += (double)p[i] * a[i];
        reach += fabs((double)p[i]) * sqrt(fmax(gram[s], 0.0));
        for (int j = i; j < r; j++, s++) quad += (i == j ? 1.0 : 2.0) * (double)p[i] * (double)p[j] * gram[s];
    }
    const double id2 = (double)inv_delta * (double)inv_delta;
    const double root = sqrt(xwx) + reach;
    *bound = root * root * id2;
    return (xwx - 2 * cross + quad) * id2;
}

void co_woodbury_weights(double *proj, const double *dots, const double *mu, int r, double delta)
{
    for (int i = 0; i < r; i++) proj[i] = dots[i] * (mu[i] / (delta + mu[i]));
}

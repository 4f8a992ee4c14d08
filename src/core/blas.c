/* Fixed decompositions of BLAS work (blas.h). */
#include "blas.h"

#include "curvopt.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Pieces of a product: large enough that OpenBLAS's packing is paid rarely, small enough
 * that two to four threads share a layer's product. Constants, never derived from the
 * thread count: they decide the rounding. */
enum {
    TILE_ROWS = 256,   /* rows of c per piece when rows are not samples */
    TILE_COLS = 256,   /* columns of c per piece */
    TILE_SYRK = 512,   /* square tiles of a symmetric product */
    TREE_CHUNK = 4096, /* elements per thread chunk of the tree sum */
};
/* Below this many multiply-adds the pieces run on the calling thread (same pieces, same bits). */
#define PAR_MIN_MADDS 262144.0

int co_blas_serial_begin(void)
{
    int threads = openblas_get_num_threads();
    if (threads != 1) openblas_set_num_threads(1);
    return threads;
}

void co_blas_serial_end(int saved)
{
    if (saved != 1) openblas_set_num_threads(saved);
}

void co_blas_describe(char *buf, size_t len)
{
    snprintf(buf, len, "%s, core %s", openblas_get_config(), openblas_get_corename());
}

static int cdiv(int a, int b) { return (a + b - 1) / b; }
static int imin(int a, int b) { return a < b ? a : b; }
static CBLAS_TRANSPOSE op(int trans) { return trans ? CblasTrans : CblasNoTrans; }

/* Row i0 of op(a) and column j0 of op(b), at inner offset k0. */
static const float *a_at(const float *a, int lda, int trans, int i0, int k0)
{
    return trans ? a + (size_t)k0 * lda + i0 : a + (size_t)i0 * lda + k0;
}

static const float *b_at(const float *b, int ldb, int trans, int k0, int j0)
{
    return trans ? b + (size_t)j0 * ldb + k0 : b + (size_t)k0 * ldb + j0;
}

/* One product cut into pieces: piece p is rows i0.. of tile_rows and columns j0.. of
 * TILE_COLS of c, and, for a sum over blocks of the inner dimension, block blk of k_block
 * (written to its own buffer: block 0 to c, block b > 0 to work). */
typedef struct {
    int trans_a, trans_b, m, n, k, k_block, tile_rows, col_tiles, tiles;
    float alpha, beta;
    const float *a, *b;
    int lda, ldb, ldc;
    float *c, *work;
} product;

static void piece(const product *q, int p)
{
    int blk = p / q->tiles, t = p % q->tiles;
    int i0 = t / q->col_tiles * q->tile_rows, j0 = t % q->col_tiles * TILE_COLS, k0 = blk * q->k_block;
    float *dst = blk ? q->work + (size_t)(blk - 1) * q->m * q->n : q->c;
    cblas_sgemm(CblasRowMajor, op(q->trans_a), op(q->trans_b), imin(q->tile_rows, q->m - i0), imin(TILE_COLS, q->n - j0),
                imin(q->k_block, q->k - k0), q->alpha, a_at(q->a, q->lda, q->trans_a, i0, k0), q->lda,
                b_at(q->b, q->ldb, q->trans_b, k0, j0), q->ldb, q->beta, dst + (size_t)i0 * q->ldc + j0, q->ldc);
}

static void run_pieces(const product *q, int pieces)
{
    int saved = co_blas_serial_begin();
    /* Small products skip the parallel region (its fork costs more than they do): the same
     * pieces either way. */
    if (pieces > 1 && (double)q->m * q->n * q->k > PAR_MIN_MADDS) {
#pragma omp parallel for schedule(static)
        for (int p = 0; p < pieces; p++) piece(q, p);
    } else {
        for (int p = 0; p < pieces; p++) piece(q, p);
    }
    co_blas_serial_end(saved);
}

void co_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc, int row_tile)
{
    if (m <= 0 || n <= 0) return;
    int rt = row_tile > 0 ? row_tile : TILE_ROWS, nc = cdiv(n, TILE_COLS);
    product q = {trans_a, trans_b, m, n, k, k > 0 ? k : 1, rt, nc, cdiv(m, rt) * nc, alpha, beta, a, b, lda, ldb, ldc,
                 c, NULL};
    run_pieces(&q, q.tiles);
}

static int blocks_of(int k, int k_block) { return k > 0 ? cdiv(k, k_block) : 1; }

size_t co_gemm_ksum_work(int m, int n, int k, int k_block)
{
    return (size_t)(blocks_of(k, k_block) - 1) * (size_t)m * (size_t)n;
}

void co_gemm_ksum(int trans_a, int trans_b, int m, int n, int k, int k_block, float alpha, const float *a, int lda,
                  const float *b, int ldb, float *c, float *work)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        memset(c, 0, (size_t)m * n * sizeof(float));
        return;
    }
    int nb = blocks_of(k, k_block), nc = cdiv(n, TILE_COLS);
    product q = {trans_a, trans_b, m, n, k, k_block, TILE_ROWS, nc, cdiv(m, TILE_ROWS) * nc, alpha, 0.0f, a, b, lda,
                 ldb, n, c, work};
    run_pieces(&q, nb * q.tiles);
    co_tree_sum(c, work, (size_t)m * n, nb, (size_t)m * n);
}

int co_syrk_is_parallel(int n, int k) { return n > 0 && cdiv(n, TILE_SYRK) > 1 && (double)n * n * k > 2 * PAR_MIN_MADDS; }

void co_syrk_upper(int n, int k, float alpha, const float *a, int lda, float *c, int ldc)
{
    if (n <= 0) return;
    int nt = cdiv(n, TILE_SYRK);
    int saved = co_blas_serial_begin();
#pragma omp parallel for schedule(dynamic, 1) if (co_syrk_is_parallel(n, k))
    for (int p = 0; p < nt * nt; p++) {
        int ti = p / nt, tj = p % nt;
        if (tj < ti) continue;
        int i0 = ti * TILE_SYRK, j0 = tj * TILE_SYRK, ni = imin(TILE_SYRK, n - i0), nj = imin(TILE_SYRK, n - j0);
        float *dst = c + (size_t)i0 * ldc + j0;
        if (ti == tj)
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, ni, k, alpha, a + i0, lda, 0.0f, dst, ldc);
        else
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, nj, k, alpha, a + i0, lda, a + j0, lda, 0.0f, dst,
                        ldc);
    }
    co_blas_serial_end(saved);
}

void co_thread_share(size_t n, size_t *i0, size_t *i1)
{
    size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads(), q = n / nt, r = n % nt;
    *i0 = t * q + (t < r ? t : r);
    *i1 = *i0 + q + (t < r);
}

void co_run_shared(size_t n, int parallel, co_range_task task, void *ctx)
{
    if (!parallel || omp_get_max_threads() < 2 || omp_in_parallel()) {
        task(ctx, 0, n);
        return;
    }
#pragma omp parallel
    {
        size_t i0, i1;
        co_thread_share(n, &i0, &i1);
        task(ctx, i0, i1);
    }
}

typedef struct {
    float *dst;
    const float *src;
} copy_task;

static void copy_range(void *ctx, size_t i0, size_t i1)
{
    copy_task *c = ctx;
    memcpy(c->dst + i0, c->src + i0, (i1 - i0) * sizeof(float));
}

void co_copy(float *dst, const float *src, size_t n)
{
    copy_task c = {dst, src};
    co_run_shared(n, n > 16384, copy_range, &c);
}

typedef struct {
    float *first, *rest;
    size_t stride, n;
    int nparts;
} tree_task;

/* Chunks c0 .. c1-1 of co_tree_sum. */
static void tree_chunks(void *ctx, size_t c0, size_t c1)
{
    const tree_task *t = ctx;
    for (size_t q = c0; q < c1; q++) {
        size_t j0 = q * TREE_CHUNK, len = t->n - j0 < TREE_CHUNK ? t->n - j0 : TREE_CHUNK;
        for (int s = 1; s < t->nparts; s *= 2)
            for (int i = 0; i + s < t->nparts; i += 2 * s) {
                float *x = (i ? t->rest + (size_t)(i - 1) * t->stride : t->first) + j0;
                const float *y = t->rest + (size_t)(i + s - 1) * t->stride + j0;
#pragma omp simd
                for (size_t j = 0; j < len; j++) x[j] += y[j];
            }
    }
}

void co_tree_sum(float *first, float *rest, size_t stride, int nparts, size_t n)
{
    if (nparts < 2) return;
    size_t chunks = (n + TREE_CHUNK - 1) / TREE_CHUNK;
    tree_task t = {first, rest, stride, n, nparts};
    co_run_shared(chunks, chunks >= 2 && n * (size_t)nparts > 65536, tree_chunks, &t);
}

double co_tree_sum_d(double *parts, int nparts)
{
    for (int s = 1; s < nparts; s *= 2)
        for (int i = 0; i + s < nparts; i += 2 * s) parts[i] += parts[i + s];
    return nparts > 0 ? parts[0] : -0.0;
}

double co_dot_d(const float *a, const float *b, size_t n)
{
    double acc[CO_DOT_LANES] = {0};
    size_t i = 0;
    for (; i + CO_DOT_LANES <= n; i += CO_DOT_LANES)
        for (int j = 0; j < CO_DOT_LANES; j++) acc[j] += (double)a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)a[i] * b[i];
    return co_lanes_sum(acc);
}

size_t co_bias_grad_work(int batch, int channels)
{
    return (size_t)(blocks_of(batch, CO_BATCH_BLOCK) - 1) * (size_t)channels;
}

/* One block's sums, samples s0..s1 in order for every channel. */
static void block_bias_sums(float *dst, const float *dy, int s0, int s1, int channels, int positions)
{
    if (positions == 1) { /* a Linear layer's: channels side by side, each in sample order */
        enum { CH = 256 };
        double acc[CH];
        for (int o0 = 0; o0 < channels; o0 += CH) {
            int no = imin(CH, channels - o0);
            for (int o = 0; o < no; o++) acc[o] = 0;
            for (int s = s0; s < s1; s++) {
                const float *g = dy + (size_t)s * channels + o0;
                for (int o = 0; o < no; o++) acc[o] += g[o];
            }
            for (int o = 0; o < no; o++) dst[o0 + o] = (float)acc[o];
        }
        return;
    }
    for (int o = 0; o < channels; o++) {
        double sum = 0;
        for (int s = s0; s < s1; s++) {
            const float *g = dy + ((size_t)s * channels + o) * positions;
            for (int p = 0; p < positions; p++) sum += g[p];
        }
        dst[o] = (float)sum;
    }
}

typedef struct {
    float *db, *work;
    const float *dy;
    int batch, channels, positions;
} bias_task;

/* Blocks b0 .. b1-1 of co_bias_grad. */
static void bias_blocks(void *ctx, size_t b0, size_t b1)
{
    const bias_task *t = ctx;
    for (size_t blk = b0; blk < b1; blk++)
        block_bias_sums(blk ? t->work + (blk - 1) * (size_t)t->channels : t->db, t->dy, (int)blk * CO_BATCH_BLOCK,
                        imin(t->batch, ((int)blk + 1) * CO_BATCH_BLOCK), t->channels, t->positions);
}

void co_bias_grad(float *db, const float *dy, int batch, int channels, int positions, float *work)
{
    int nb = blocks_of(batch, CO_BATCH_BLOCK);
    bias_task t = {db, work, dy, batch, channels, positions};
    co_run_shared((size_t)nb, nb >= 2 && (size_t)batch * channels * positions > 16384, bias_blocks, &t);
    co_tree_sum(db, work, (size_t)channels, nb, (size_t)channels);
}

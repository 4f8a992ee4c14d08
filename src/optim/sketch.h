/* Low-rank curvature pieces for DA-RMSprop's SKF-OHA (paper 000, eq. 1-4):
 *  - a Frequent-Directions sketch (Liberty 2013) of an exponentially weighted stream of
 *    vectors, B (rows x n) with B^T B ~ sum_t w_t u_t u_t^T, giving its top eigenpairs;
 *  - power iteration for the largest eigenvalue of a symmetric operator (eq. 4);
 *  - the Woodbury solve with H = delta I + Q diag(mu) Q^T, Q orthonormal (eq. 2). */
#ifndef CO_OPTIM_SKETCH_H
#define CO_OPTIM_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "curvopt.h"

typedef struct co_fd_sketch {
    int n, rows;   /* dimension, sketch rows (2 x the largest rank) */
    int used;      /* rows holding data */
    float *b;      /* rows x n, row-major, stored at 1/scale: the sketch is scale * b */
    double scale;  /* the forgetting not yet applied to b (a scalar instead of a pass over B) */
    double *raw;   /* rows x rows: b b^T, kept up to date as rows change */
    double *gram;  /* rows x rows: the sketch's B B^T = scale^2 raw, as last decomposed */
    double *evec;  /* rows x rows eigenvectors of the Gram matrix (columns), descending */
    double *eval;  /* rows eigenvalues, descending, clamped >= 0 */
    double *eig;   /* rows x rows: LAPACK's input and output */
    double *work;  /* rows */
    double *lwork; /* LAPACK workspace, sized at init so updates never allocate */
    float *coef;   /* rows x rows: basis coefficients */
    float *tmp;    /* rows / 2 x a block of columns: the shrink's new rows */
    double *lanes; /* CO_DOT_LANES running sums per Gram entry being summed */
    float *block_lanes; /* rows x CO_DOT_LANES per block of columns: a pass's block sums, added in block order */
    int nlwork;
} co_fd_sketch;

/* Sketch rows at most: twice DA-RMSprop's largest rank_max. */
#define CO_SKETCH_MAX_ROWS 128
co_status co_fd_init(co_fd_sketch *s, int n, int rows, co_error *err);
void co_fd_free(co_fd_sketch *s);
/* B <- sqrt(decay) B, then u (scaled by sqrt(1 - decay)) is added as a row; a full sketch
 * is first shrunk by the Frequent-Directions rule (subtract the median squared singular
 * value, which empties at least half the rows). Leaves eval/evec describing B B^T. */
co_status co_fd_update(co_fd_sketch *s, const float *u, double decay, co_error *err);
/* The top r eigenpairs of B^T B: q (n x r, column i at q + i*n, orthonormal) and mu[i]. */
void co_fd_top(const co_fd_sketch *s, int r, float *q, double *mu);
/* co_fd_top in two parts, for a caller that forms q piece by piece in a pass of its own:
 * mu and the coefficients of q_i = B^T w_i / sqrt(lambda_i) (kept in the sketch until it
 * next changes), then q's elements [k0, k0 + len) (column i at q + i*ldq), each the
 * coefficients times B's rows in use, rows in order. */
void co_fd_top_coef(const co_fd_sketch *s, int r, double *mu);
void co_fd_top_columns(const co_fd_sketch *s, int r, float *q, size_t ldq, size_t k0, size_t len);
/* sqrt(sum_{i >= r} eval_i^2): the Frobenius error of the rank-r truncation of B^T B. */
double co_fd_tail(const co_fd_sketch *s, int r);

/* Largest eigenvalue of the symmetric PSD operator x -> matvec(x) by power iteration from
 * the start v (n entries, overwritten; the caller draws it, e.g. from a seeded stream):
 * ||A^k v|| / ||A^(k-1) v|| (eq. 4), `iters` products; w holds n. */
double co_power_iteration(void (*matvec)(const double *x, double *y, void *ctx), void *ctx, int n, int iters,
                          double *v, double *w);

/* y = H^{-1} x for H = delta I + Q diag(mu) Q^T, Q (n x r, orthonormal columns), mu >= 0:
 * Woodbury with C = diag(mu): H^{-1} = (I - Q diag(mu / (delta + mu)) Q^T) / delta, in
 * pieces for a caller that forms x segment by segment (a layer's tensors, in chunks):
 *  1. co_woodbury_dots over each segment (q at the segment's first element, rows ldq
 *     apart): float lanes (r x CO_DOT_LANES, zeroed first) += q_i . x, element k of the
 *     segment in lane k mod CO_DOT_LANES (so a segment split at multiples of
 *     CO_DOT_LANES sums as one). In float: meant for segments of a few thousand elements
 *     (|q_i| <= 1 entrywise), whose lane totals the caller adds in double (co_lanes_sum_f);
 *  2. co_woodbury_weights: proj_i = (q_i . x) mu_i / (delta + mu_i), from the dot products
 *     (several segments' sums added in a fixed order);
 *  3. co_woodbury_correct_at for element i of a segment: y_i = (x_i - sum_j p_j q_j[i]) / delta
 *     in float, the directions in order, with p = proj and inv_delta = 1 / delta rounded to
 *     float by the caller. Inline, for a caller that forms x_i and uses y_i in the same loop
 *     (DA-RMSprop stores neither). */
void co_woodbury_dots(float *lanes, const float *q, size_t ldq, int r, const float *x, size_t len);
void co_woodbury_weights(double *proj, const double *dots, const double *mu, int r, double delta);
static inline float co_woodbury_correct_at(float x, const float *q, size_t ldq, size_t i, int r, const float *p,
                                           float inv_delta)
{
    /* r <= 64 terms correct the float x (the projections themselves are summed in double). */
    for (int j = 0; j < r; j++) x -= p[j] * q[(size_t)j * ldq + i];
    return x * inv_delta;
}

/* The length of a Woodbury step seen through a diagonal metric, without forming the step:
 * for y = (x - sum_j p_j q_j) / delta and weights w >= 0,
 *   sum_k w_k y_k^2 = (x.Wx - 2 sum_j p_j a_j + sum_jk p_j p_k G_jk) / delta^2,
 *   a_j = sum_k x_k q_j[k] w_k,  G_jk = sum_k q_j[k] q_k[k] w_k,
 * so one pass that already reads x and Q can sum a and G, and a second pass that would
 * form y only to measure it is saved. For r <= CO_WOODBURY_NORM_MAX_RANK only (the sums
 * grow as r^2, and beyond it forming y costs less; larger r sums nothing):
 *  1. co_woodbury_norm_dots over each segment: float lanes (CO_WOODBURY_NORM_SUMS(r) x
 *     CO_WOODBURY_NORM_LANES, zeroed first, a_1..a_r then G's upper triangle row by row)
 *     += the segment's terms, element k in lane k mod CO_WOODBURY_NORM_LANES; a quarter of
 *     co_woodbury_dots' lanes, so that the r + r(r+1)/2 running sums fit the registers;
 *     co_woodbury_norm_sums adds each set's lanes in double (the pairwise tree), and the
 *     caller adds segments' sums in a fixed order;
 *  2. co_woodbury_norm2: the length squared from x.Wx, a, G and the p (as rounded for the
 *     solve) and 1 / delta; *bound gets (sqrt(x.Wx) + sum_j |p_j| sqrt(G_jj))^2 / delta^2,
 *     which bounds the sum of every term's size (Cauchy-Schwarz): the float lanes' error is
 *     at most (terms a lane sums + 3) float roundings of it (~1.5e-5 for segments of 2,048
 *     elements), so a result small against the bound has cancelled and is to be measured
 *     on the formed y instead. */
#define CO_WOODBURY_NORM_MAX_RANK 4
#define CO_WOODBURY_NORM_SUMS(r) ((r) + (r) * ((r) + 1) / 2)
#define CO_WOODBURY_NORM_LANES 8
void co_woodbury_norm_dots(float *lanes, const float *q, size_t ldq, int r, const float *x, const float *w,
                           size_t len);
void co_woodbury_norm_sums(const float *lanes, int r, double *sums);
double co_woodbury_norm2(double xwx, const double *sums, const float *p, int r, float inv_delta, double *bound);

#endif

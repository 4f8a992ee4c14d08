/* K-FAC factors of one layer (Martens & Grosse 2015; KFC for convolutions, Grosse &
 * Martens 2016) and their damped inverse square roots, as TSO-ALRA (paper 004, eq. 14-18)
 * uses them: F_l ~ B (x) A with
 *   A = E[a a^T]       a = [layer input (or im2col patch); 1]   (cols+1) x (cols+1)
 *   B = E[d d^T]       d = per-sample gradient of the loss w.r.t. the layer output (rows x rows)
 * and the update direction vec(B^-1/2 G A^-1/2), G = [dW | db]. */
#ifndef CO_OPTIM_KFAC_H
#define CO_OPTIM_KFAC_H

#include "curvopt.h"

#include <lapacke.h>

typedef enum { CO_KFAC_DAMP_FACTORS = 0, CO_KFAC_DAMP_PRODUCT = 1 } co_kfac_damping;

/* One factor's eigendecomposition workspace: the factor in float (eigenvectors on return),
 * its eigenvalues, LAPACK's workspaces sized by formula in co_kfac_init. */
typedef struct co_kfac_eig {
    int n;
    float *x, *w, *work;
    lapack_int *iwork;
    lapack_int nwork, niwork;
} co_kfac_eig;

typedef struct co_kfac {
    int rows, cols, m;  /* m = cols + 1 (bias column) */
    int has_bias;
    int64_t updates;    /* factor updates so far */
    int64_t skipped;    /* batches left out for non-finite statistics */
    double *A, *B;      /* running factors */
    double *ua, *ub;    /* eigenvectors (column-major, as LAPACK returns them; scaled by the roots in mode 0) */
    double *la, *lb;    /* eigenvalues, clamped >= 0 */
    float *ra, *rb;     /* cached A^-1/2, B^-1/2 (per-factor damping), row-major */
    float *batch_a, *batch_b; /* one batch's statistics */
    float *g, *t;       /* rows x m: gathered gradient and a temporary */
    double *colsum;     /* cols: the patch column sums (the bias row of A) */
    co_kfac_eig ea, eb; /* A's and B's, so both (and other layers') can run at once */
    int have_roots;
    double root_trace[2]; /* tr(A), tr(B) when their roots were last formed */
    /* Low-rank roots (co_kfac_set_rank), per factor (A, B): 0 the full root; k > 0 keeps the
     * top k eigenpairs and one scalar for the rest. Then ra / rb hold U_k^T (k x d, row-major),
     * la / lb the k eigenvalues (descending) followed by the mean of the discarded ones. */
    int rank[2];
    float *p; /* the low-rank apply's scratch */
} co_kfac;

co_status co_kfac_init(co_kfac *k, int rows, int cols, int has_bias, co_error *err);
void co_kfac_free(co_kfac *k);
/* Low-rank + scalar roots for factors wider than 2 rank (rank 0: full roots everywhere):
 *   X^-1/2 ~ U_k (L_k + eps)^-1/2 U_k^T + c (I - U_k U_k^T),  c = (mean discarded eigenvalue + eps)^-1/2,
 * the top k eigenpairs found by subspace iteration (warm-started from the previous U_k).
 * Only with damping per factor (CO_KFAC_DAMP_FACTORS). Call once, before the first refresh. */
co_status co_kfac_set_rank(co_kfac *k, int rank, co_error *err);
/* The factor size from which co_kfac_set_rank(rank) takes the low-rank root. */
int co_kfac_low_rank(int d, int rank);
/* Eq. 17-18 with the batch's statistics: A = (1-gamma) A + gamma E_batch[a a^T] (the first
 * update takes the batch statistics as they are). cap->g holds gradients of the batch-MEAN
 * loss, so per-sample gradients are batch * g: B's batch term is batch * sum_rows g g^T
 * (for a convolution the rows are positions too and this is KFC's T-scaled factor). */
void co_kfac_update(co_kfac *k, const co_capture *cap, double gamma);
/* The captured rows a statistics step reads: rows first, first + stride, ... (used of them). */
typedef struct {
    int first, stride, used;
} co_kfac_rows;
/* All rows when max_rows is 0 or rows <= max_rows; else every s-th row, s = ceil(rows /
 * max_rows), from row phase mod s: s consecutive phases read every row once. */
co_kfac_rows co_kfac_sample_rows(int rows, int max_rows, uint64_t phase);
/* co_kfac_update of n layers at once (a statistics step), each factor's arithmetic the same
 * as there: the narrow factors' products run side by side on the threads, so the result does
 * not depend on their number. With max_rows > 0 a capture of more rows is read at the rows
 * co_kfac_sample_rows(rows, max_rows, phase) names: A the mean of a a^T over them, B's sum
 * scaled by rows / used (docs/optimizers/tso-alra.md, "stat_rows"). */
void co_kfac_update_many(co_kfac *const *ks, const co_capture *caps, const double *gammas, int n, int max_rows,
                         uint64_t phase);
/* co_kfac_update in two halves, for statistics gathered from several ranks: one batch's
 * statistics into batch_a / batch_b (A's: sum over rows of a a^T and of a, over div_a, the
 * bias corner set to `corner`; B's: scale_b sum over rows of g g^T), then the average. */
void co_kfac_stats(co_kfac *k, const float *a, const float *g, int rows, double div_a, float scale_b, float corner);
int co_kfac_stats_finite(const co_kfac *k);
/* finite 0: the batch is left out (counted in skipped). */
void co_kfac_fold(co_kfac *k, double gamma, int finite);
/* How far a factor has moved since its root was formed: max(r, 1/r) - 1 for r the ratio of
 * its trace now to its trace then (0 when unchanged; +inf when either is 0). */
double co_kfac_drift(const co_kfac *k, int which);
/* The same against a given trace now (a distributed run's trace summed over the ranks'
 * shares), and a factor's trace. */
double co_kfac_drift_at(const co_kfac *k, int which, double now);
double co_kfac_trace(const co_kfac *k, int which);
/* Eigendecomposes A and B (eigenvalues clamped >= 0) and caches the damped roots. */
co_status co_kfac_refresh(co_kfac *k, double damping, co_kfac_damping mode, co_error *err);
/* One factor to refresh: k's A (which = 0) or B (which = 1). */
typedef struct co_kfac_job {
    co_kfac *k;
    int which;
    double damping;
    co_kfac_damping mode;
    co_status st; /* out */
} co_kfac_job;
/* Runs the jobs (reordered: largest factor first), in parallel over OpenMP threads when
 * more than one is available; each job's result is the same as alone. Layers whose jobs
 * all succeed get their roots (have_roots); the first failure is reported. */
co_status co_kfac_refresh_jobs(co_kfac_job *jobs, int njobs, co_error *err);
/* out = B^-1/2 G A^-1/2 for G = [dw | db] (db may be NULL), written back split into
 * out_w (rows x cols) and out_b (rows). */
void co_kfac_apply(co_kfac *k, const float *dw, const float *db, float *out_w, float *out_b, double damping,
                   co_kfac_damping mode);
/* The multiply-adds of co_kfac_apply's products (for scheduling several layers). */
double co_kfac_apply_madds(const co_kfac *k, co_kfac_damping mode);

#endif

/* DA-RMSprop: the Woodbury solve, power iteration, the Frequent-Directions sketch on a
 * quadratic with known Hessian, eq. 3's probability, DM-MAGA's factor, equality with
 * RMSprop at rank 0 / lambda 0, descent, training, save/load. */
#include "core/blas.h"
#include "optim/sketch.h"
#include "test_util.h"

#include <curvopt.h>
#include <lapacke.h>
#include <unistd.h>

/* Random orthonormal n x n matrix (columns) by Gram-Schmidt on Gaussian columns. */
static void random_orthonormal(double *q, int n, co_rng *r)
{
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) q[i * n + j] = co_rng_normal(r);
        for (int k = 0; k < j; k++) {
            double d = 0;
            for (int i = 0; i < n; i++) d += q[i * n + j] * q[i * n + k];
            for (int i = 0; i < n; i++) q[i * n + j] -= d * q[i * n + k];
        }
        double nn = 0;
        for (int i = 0; i < n; i++) nn += q[i * n + j] * q[i * n + j];
        for (int i = 0; i < n; i++) q[i * n + j] /= sqrt(nn);
    }
}

static void test_woodbury(void)
{
    enum { N = 40, R = 5 };
    co_rng r;
    co_rng_seed(&r, 1, 99);
    double qd[N * N];
    random_orthonormal(qd, N, &r);
    float q[R * N], x[N], y[N];
    double mu[R] = {50, 7, 2, 0.5, 0}, proj[R], delta = 0.7;
    for (int i = 0; i < R; i++)
        for (int k = 0; k < N; k++) q[i * N + k] = (float)qd[k * N + i];
    for (int k = 0; k < N; k++) x[k] = (float)co_rng_normal(&r);
    /* One segment, then the same in two segments split at a multiple of CO_DOT_LANES
     * (and corrected in two other pieces, the second first): the same bits. */
    float lanes[R * CO_DOT_LANES] = {0};
    co_woodbury_dots(lanes, q, N, R, x, N);
    double dots[R];
    for (int i = 0; i < R; i++) dots[i] = co_lanes_sum_f(lanes + i * CO_DOT_LANES);
    co_woodbury_weights(proj, dots, mu, R, delta);
    float pf[R], inv_delta = (float)(1.0 / delta);
    for (int i = 0; i < R; i++) pf[i] = (float)proj[i];
    for (int k = 0; k < N; k++) y[k] = co_woodbury_correct_at(x[k], q, N, (size_t)k, R, pf, inv_delta);
    float ys[N];
    double projs[R];
    memset(lanes, 0, sizeof lanes);
    co_woodbury_dots(lanes, q, N, R, x, 32);
    co_woodbury_dots(lanes, q + 32, N, R, x + 32, N - 32);
    for (int i = 0; i < R; i++) dots[i] = co_lanes_sum_f(lanes + i * CO_DOT_LANES);
    co_woodbury_weights(projs, dots, mu, R, delta);
    for (int i = 0; i < R; i++) pf[i] = (float)projs[i];
    for (int k = 0; k < N - 17; k++) ys[17 + k] = co_woodbury_correct_at(x[17 + k], q + 17, N, (size_t)k, R, pf, inv_delta);
    for (int k = 0; k < 17; k++) ys[k] = co_woodbury_correct_at(x[k], q, N, (size_t)k, R, pf, inv_delta);
    CHECK(memcmp(ys, y, sizeof y) == 0 && memcmp(projs, proj, sizeof proj) == 0, "Woodbury in segments differs from one call");
    for (int i = 0; i < R; i++) {
        double exact = co_dot_d(q + i * N, x, N) * (mu[i] / (delta + mu[i]));
        CHECK(fabs(proj[i] - exact) <= 1e-6 * (fabs(exact) + 1), "projection %d: %.9g, co_dot_d's %.9g", i, proj[i], exact);
    }
    /* Dense H = delta I + Q diag(mu) Q^T, solved by LAPACK. */
    double h[N * N], b[N];
    for (int i = 0; i < N; i++) {
        b[i] = x[i];
        for (int j = 0; j < N; j++) {
            double v = i == j ? delta : 0;
            for (int k = 0; k < R; k++) v += (double)q[k * N + i] * mu[k] * q[k * N + j];
            h[i * N + j] = v;
        }
    }
    lapack_int ipiv[N];
    CHECK(LAPACKE_dgesv(LAPACK_ROW_MAJOR, N, 1, h, N, ipiv, b, 1) == 0, "dgesv");
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) {
        num += (y[i] - b[i]) * (y[i] - b[i]);
        den += b[i] * b[i];
    }
    CHECK(sqrt(num / den) < 1e-5, "Woodbury vs dense solve: relative error %.3g", sqrt(num / den));
}

/* Grafting's |d|^2 without forming d (co_woodbury_norm_dots / _norm2): for every rank the
 * closed form is used for, against sum w y^2 in double over the formed y, with weights
 * spanning eight orders of magnitude (1 / (sqrt(v) + eps) does), the sums in two segments
 * (the second with a tail shorter than the lanes); and a step that the correction cancels almost wholly
 * is flagged by its bound, which is what sends DA-RMSprop to measuring the formed d. */
static void test_woodbury_norm(void)
{
    enum { N = 300, RM = CO_WOODBURY_NORM_MAX_RANK };
    co_rng r;
    co_rng_seed(&r, 3, 99);
    static double qd[N * N];
    random_orthonormal(qd, N, &r);
    float q[RM * N], x[N], w[N], xc[N];
    for (int i = 0; i < RM; i++)
        for (int k = 0; k < N; k++) q[i * N + k] = (float)qd[k * N + i];
    for (int k = 0; k < N; k++) {
        x[k] = (float)co_rng_normal(&r);
        w[k] = (float)pow(10.0, 8.0 * co_rng_uniform(&r) - 4.0);
    }
    /* x almost inside span(Q): the correction below removes all but 1e-3 of it. */
    for (int k = 0; k < N; k++) xc[k] = 1e-3f * x[k] + 3 * q[k] - 2 * q[N + k] + q[2 * N + k];
    const double mu[RM] = {1e6, 1e6, 1e6, 1e6}, delta = 0.7;
    for (int pass = 0; pass < 2; pass++) {
        const float *xs = pass ? xc : x;
        for (int rank = 0; rank <= RM; rank++) {
            float lanes[RM * CO_DOT_LANES] = {0};
            double dots[RM] = {0}, proj[RM];
            co_woodbury_dots(lanes, q, N, rank, xs, N);
            for (int i = 0; i < rank; i++) dots[i] = co_lanes_sum_f(lanes + i * CO_DOT_LANES);
            co_woodbury_weights(proj, dots, mu, rank, delta);
            float pf[RM], inv_delta = (float)(1.0 / delta);
            for (int i = 0; i < rank; i++) pf[i] = (float)proj[i];
            float nl[CO_WOODBURY_NORM_SUMS(RM) * CO_WOODBURY_NORM_LANES] = {0};
            co_woodbury_norm_dots(nl, q, N, rank, xs, w, 112);
            co_woodbury_norm_dots(nl, q + 112, N, rank, xs + 112, w + 112, N - 112);
            double sums[CO_WOODBURY_NORM_SUMS(RM)], xwx = 0, exact = 0, bound;
            co_woodbury_norm_sums(nl, rank, sums);
            for (int k = 0; k < N; k++) {
                double y = co_woodbury_correct_at(xs[k], q, N, (size_t)k, rank, pf, inv_delta);
                xwx += (double)xs[k] * xs[k] * w[k];
                exact += y * y * w[k];
            }
            double nd = co_woodbury_norm2(xwx, sums, pf, rank, inv_delta, &bound);
            if (pass == 0) {
                CHECK(fabs(nd / exact - 1) < 1e-5, "rank %d: closed-form |y|^2 %.9g, formed %.9g", rank, nd, exact);
                CHECK(exact >= bound / 16, "rank %d: a step the correction hardly changes flagged as cancelled (%.3g of the bound)", rank, exact / bound);
            } else if (rank >= 3) {
                CHECK(exact < bound / 16, "rank %d: a step cancelled to %.3g of its bound not flagged", rank, exact / bound);
            }
        }
    }
}

typedef struct {
    const double *a;
    int n;
} dense_op;

static void dense_matvec(const double *x, double *y, void *ctx)
{
    const dense_op *op = ctx;
    for (int i = 0; i < op->n; i++) {
        double s = 0;
        for (int j = 0; j < op->n; j++) s += op->a[i * op->n + j] * x[j];
        y[i] = s;
    }
}

static void test_power_iteration(void)
{
    enum { N = 30 };
    co_rng r;
    co_rng_seed(&r, 2, 99);
    double q[N * N], a[N * N], work[2 * N];
    random_orthonormal(q, N, &r);
    /* Known spectrum: 10, 6, then smaller. */
    double ev[N];
    for (int i = 0; i < N; i++) ev[i] = i == 0 ? 10 : i == 1 ? 6 : 3.0 / (i + 1);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++) s += q[i * N + k] * ev[k] * q[j * N + k];
            a[i * N + j] = s;
        }
    dense_op op = {a, N};
    for (int i = 0; i < N; i++) work[i] = co_rng_normal(&r);
    double top = co_power_iteration(dense_matvec, &op, N, 60, work, work + N);
    CHECK(fabs(top - 10) / 10 < 0.01, "power iteration top eigenvalue %.5f, expected 10", top);
    /* Too few iterations must be visibly worse, or the test above proves little. */
    for (int i = 0; i < N; i++) work[i] = co_rng_normal(&r);
    double rough = co_power_iteration(dense_matvec, &op, N, 1, work, work + N);
    CHECK(fabs(rough - 10) > 1e-3, "one iteration already exact (%.6f): the check cannot fail", rough);
}

/* Gradients of f = 1/2 x^T A x at random points have second moment A^2: the sketch's top
 * eigenvectors must be A's dominant ones and its eigenvalues their squares (up to the FD
 * shrinkage, which only lowers them). */
static void test_sketch_quadratic(void)
{
    enum { N = 50, ROWS = 8, STEPS = 400 };
    co_rng r;
    co_rng_seed(&r, 3, 99);
    double q[N * N];
    random_orthonormal(q, N, &r);
    double ev[N];
    for (int i = 0; i < N; i++) ev[i] = i == 0 ? 8 : i == 1 ? 4 : 0.3;
    co_fd_sketch sk;
    CHECK(co_fd_init(&sk, N, ROWS, NULL) == CO_OK, "init");
    float g[N];
    for (int t = 0; t < STEPS; t++) {
        double z[N];
        for (int i = 0; i < N; i++) z[i] = co_rng_normal(&r);
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int k = 0; k < N; k++) s += q[i * N + k] * ev[k] * z[k]; /* A Q^T... with z ~ N(0, I) in eigen basis */
            g[i] = (float)s;
        }
        CHECK(co_fd_update(&sk, g, 0.99, NULL) == CO_OK, "update");
    }
    float top[2 * N];
    double mu[2];
    co_fd_top(&sk, 2, top, mu);
    for (int i = 0; i < 2; i++) {
        double c = 0, nn = 0;
        for (int k = 0; k < N; k++) {
            c += top[i * N + k] * q[k * N + i];
            nn += (double)top[i * N + k] * top[i * N + k];
        }
        CHECK(fabs(fabs(c) - 1) < 0.05, "eigenvector %d: |cos| with the true one %.4f", i, fabs(c));
        CHECK(fabs(nn - 1) < 1e-3, "eigenvector %d not unit: %.5f", i, nn);
    }
    CHECK(mu[0] > mu[1], "eigenvalues not descending");
    CHECK(fabs(mu[0] / mu[1] - 4.0) < 1.5, "eigenvalue ratio %.3f, expected about (8/4)^2 = 4", mu[0] / mu[1]);
    CHECK(mu[0] < 64 * 1.3 && mu[0] > 64 * 0.4, "top eigenvalue %.3f, expected near 64", mu[0]);
    co_fd_free(&sk);
}

/* Descending eigenvalues (and eigenvectors as columns, if vec) of the symmetric R x R a. */
static void sym_eig_desc(double *a, int R, double *eval)
{
    double w[64];
    CHECK(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', R, a, R, w) == 0, "reference dsyev");
    for (int i = 0; i < R; i++) eval[i] = w[R - 1 - i];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < R / 2; i++) {
            double t = a[r * R + i];
            a[r * R + i] = a[r * R + R - 1 - i];
            a[r * R + R - 1 - i] = t;
        }
}

/* The Gram matrix of the R x N rows b (g, R x R) and its eigenpairs, descending. */
static void gram_eig(const double *b, int R, int N, double *g, double *eval)
{
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double a = 0;
            for (int k = 0; k < N; k++) a += b[i * N + k] * b[j * N + k];
            g[i * R + j] = a;
        }
    sym_eig_desc(g, R, eval);
}

/* The sketch keeps its rows at a lazy common scale and its Gram matrix updated entry by
 * entry instead of scaling B and recomputing B B^T at every update: against Frequent
 * Directions done eagerly in double (B scaled, B B^T formed, decomposed every update),
 * over 60 updates spanning several shrinks, the spectrum and the top directions must
 * agree, raw must be the stored rows' Gram matrix (to 1e-6 of the rows' norms), and a small
 * decay (the scale folded into the rows) must agree too. */
static void test_sketch_lazy_scale(void)
{
    enum { N = 70, R = 8, STEPS = 60 };
    const double decays[2] = {0.95, 0.05};
    for (int d = 0; d < 2; d++) {
        double decay = decays[d];
        co_rng r;
        co_rng_seed(&r, 5, 7);
        co_fd_sketch sk;
        CHECK(co_fd_init(&sk, N, R, NULL) == CO_OK, "init");
        static double ref[R * N];
        memset(ref, 0, sizeof ref);
        int used = 0, folded = 0;
        double worst_eval = 0, worst_cos = 1;
        float u[N];
        for (int t = 0; t < STEPS; t++) {
            for (int k = 0; k < N; k++) u[k] = (float)(co_rng_normal(&r) * (k < 3 ? 4.0 / (k + 1) : 0.3));
            if (used == R) { /* the eager shrink */
                double g[R * R], ev[R];
                gram_eig(ref, R, N, g, ev);
                double shift = ev[R / 2], nb[R * N];
                int kept = 0;
                for (int i = 0; i < R; i++) {
                    if (!(ev[i] > 0) || !(ev[i] - shift > 0)) continue;
                    double sc = sqrt((ev[i] - shift) / ev[i]);
                    for (int k = 0; k < N; k++) {
                        double a = 0;
                        for (int j = 0; j < R; j++) a += g[j * R + i] * ref[j * N + k];
                        nb[kept * N + k] = a * sc;
                    }
                    kept++;
                }
                memset(ref, 0, sizeof ref);
                memcpy(ref, nb, (size_t)kept * N * sizeof(double));
                used = kept;
            }
            for (int i = 0; i < used * N; i++) ref[i] *= sqrt(decay);
            for (int k = 0; k < N; k++) ref[used * N + k] = sqrt(1 - decay) * u[k];
            used++;
            CHECK(co_fd_update(&sk, u, decay, NULL) == CO_OK, "update");
            CHECK(sk.used == used, "rows in use %d, eager reference %d", sk.used, used);
            folded += sk.scale == 1.0; /* an update leaves scale < 1 unless it folded it */
            for (int i = 0; i < sk.used; i++)
                for (int j = 0; j < sk.used; j++) {
                    double dot = co_dot_d(sk.b + (size_t)i * N, sk.b + (size_t)j * N, N);
                    double norm = sqrt(co_dot_d(sk.b + (size_t)i * N, sk.b + (size_t)i * N, N) *
                                       co_dot_d(sk.b + (size_t)j * N, sk.b + (size_t)j * N, N));
                    CHECK(fabs(dot - sk.raw[i * R + j]) <= 1e-6 * norm, "raw[%d][%d] %.9g, the stored rows' product %.9g", i, j,
                          sk.raw[i * R + j], dot);
                }
            double g[R * R], ev[R];
            gram_eig(ref, R, N, g, ev);
            for (int i = 0; i < R; i++) {
                double e = fabs(sk.eval[i] - ev[i]) / ev[0];
                if (e > worst_eval) worst_eval = e;
            }
            /* the top direction: B^T w_0 / sqrt(lambda_0) against the reference's */
            float q[N];
            double mu;
            co_fd_top(&sk, 1, q, &mu);
            double c = 0, nr = 0;
            for (int k = 0; k < N; k++) {
                double rq = 0;
                for (int j = 0; j < R; j++) rq += g[j * R] * ref[j * N + k];
                c += q[k] * rq;
                nr += rq * rq;
            }
            double nq = 0;
            for (int k = 0; k < N; k++) nq += (double)q[k] * q[k];
            CHECK(fabs(nq - 1) < 1e-4, "decay %.2f, update %d: top direction not unit (%.6f)", decay, t, nq);
            c = fabs(c) / sqrt(nr);
            if (c < worst_cos) worst_cos = c;
        }
        CHECK(worst_eval < 1e-5, "decay %.2f: eigenvalues differ from eager FD by %.2e of the largest", decay, worst_eval);
        CHECK(worst_cos > 1 - 1e-5, "decay %.2f: top direction |cos| %.8f with eager FD", decay, worst_cos);
        if (d == 1) CHECK(folded > 0, "decay 0.05 never folded the scale into the rows");
        co_fd_free(&sk);
    }
}

/* A dense "layer" of n parameters. */
typedef struct {
    float p[64], g[64];
    co_group grp;
} toy;

static co_optim *toy_new(toy *t, int n, const char *hp)
{
    memset(t, 0, sizeof *t);
    t->grp = (co_group){.name = "toy", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {t->p}, .grad = {t->g}, .size = {(size_t)n}};
    co_error err;
    co_optim *o = co_optim_new("da-rmsprop", &t->grp, 1, hp, 5, &err);
    CHECK(o != NULL, "create: %s", o ? "" : err.msg);
    return o;
}

static void test_alignment_factor(void)
{
    toy a, b;
    /* Parallel: g1 = g2 -> cos(g2, m2) = 1 -> factor 1 + lambda = 2 against lambda = 0. */
    co_optim *o1 = toy_new(&a, 2, "rank_max=0,lambda=1,beta1=0.5,faithful=1");
    co_optim *o0 = toy_new(&b, 2, "rank_max=0,lambda=0,beta1=0.5");
    for (int s = 0; s < 2; s++) {
        a.g[0] = b.g[0] = 1;
        a.g[1] = b.g[1] = 1;
        float before1 = a.p[0], before0 = b.p[0];
        co_optim_step(o1, NULL, NULL);
        co_optim_step(o0, NULL, NULL);
        double ratio = (a.p[0] - before1) / (b.p[0] - before0);
        CHECK(fabs(ratio - 2) < 1e-6, "g parallel to m: step ratio %.8f, expected 1 + lambda = 2", ratio);
    }
    double al;
    CHECK(co_optim_diagnostic(o1, "alignment", &al, 1) == 1 && fabs(al - 1) < 1e-12, "alignment %.9f", al);
    co_optim_free(o1);
    co_optim_free(o0);
    /* Orthogonal: beta1 = 0.5, g1 = (4, 0), g2 = (-1, 1) gives g2 . m2 = 0 exactly. */
    o1 = toy_new(&a, 2, "rank_max=0,lambda=1,beta1=0.5,faithful=1");
    o0 = toy_new(&b, 2, "rank_max=0,lambda=0,beta1=0.5");
    a.g[0] = b.g[0] = 4;
    a.g[1] = b.g[1] = 0;
    co_optim_step(o1, NULL, NULL);
    co_optim_step(o0, NULL, NULL);
    a.g[0] = b.g[0] = -1;
    a.g[1] = b.g[1] = 1;
    /* Step 1 had g parallel to m (factor 2); compare step 2's displacement alone. */
    float a0 = a.p[0], a1 = a.p[1], b0 = b.p[0], b1 = b.p[1];
    co_optim_step(o1, NULL, NULL);
    co_optim_step(o0, NULL, NULL);
    CHECK(co_optim_diagnostic(o1, "alignment", &al, 1) == 1 && fabs(al) < 1e-12, "alignment %.3g, expected 0", al);
    CHECK(fabs((a.p[0] - a0) - (b.p[0] - b0)) < 1e-7 && fabs((a.p[1] - a1) - (b.p[1] - b1)) < 1e-7 && a.p[1] != a1,
          "g orthogonal to m: factor must be 1 (steps %.9g vs %.9g)", a.p[1] - a1, b.p[1] - b1);
    co_optim_free(o1);
    co_optim_free(o0);
    /* Anti-parallel: g1 = (4, 0), g2 = (-1, 0) gives m2 = (0.5, 0), cos = -1: factor
     * 1 - lambda, i.e. 0.5 with lambda = 0.5 (the damping half of eq. 7). */
    o1 = toy_new(&a, 2, "rank_max=0,lambda=0.5,beta1=0.5");
    o0 = toy_new(&b, 2, "rank_max=0,lambda=0,beta1=0.5");
    a.g[0] = b.g[0] = 4;
    a.g[1] = b.g[1] = 0;
    co_optim_step(o1, NULL, NULL);
    co_optim_step(o0, NULL, NULL);
    a.g[0] = b.g[0] = -1;
    a0 = a.p[0];
    b0 = b.p[0];
    co_optim_step(o1, NULL, NULL);
    co_optim_step(o0, NULL, NULL);
    CHECK(co_optim_diagnostic(o1, "alignment", &al, 1) == 1 && fabs(al + 1) < 1e-12, "alignment %.9f, expected -1", al);
    double ratio = (a.p[0] - a0) / (b.p[0] - b0);
    CHECK(fabs(ratio - 0.5) < 1e-6, "g anti-parallel to m: step ratio %.8f, expected 1 - lambda = 0.5", ratio);
    co_optim_free(o1);
    co_optim_free(o0);
}

/* Eq. 4's adaptive rank on whitened gradients spanned by k random directions plus small
 * noise: from below and from above the rank settles at k and stays there (no k <-> k-1
 * oscillation), and with isotropic gradients it climbs to rank_max. */
static int settled_rank(int dirs, double noise, const char *hp, int *changes_late)
{
    enum { N = 48, STEPS = 300 };
    toy t;
    co_optim *o = toy_new(&t, N, hp);
    co_rng r;
    co_rng_seed(&r, 12, (uint64_t)dirs);
    static float basis[4][N];
    for (int d = 0; d < dirs; d++)
        for (int i = 0; i < N; i++) basis[d][i] = (float)co_rng_normal(&r);
    double rank = -1, last = -1;
    *changes_late = 0;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++) t.g[i] = (float)(noise * co_rng_normal(&r));
        for (int d = 0; d < dirs; d++) {
            double c = co_rng_normal(&r);
            for (int i = 0; i < N; i++) t.g[i] += (float)(c * basis[d][i]);
        }
        co_optim_step(o, NULL, NULL);
        co_optim_diagnostic(o, "rank", &rank, 1);
        if (s >= STEPS - 100 && last >= 0 && rank != last) (*changes_late)++;
        last = rank;
    }
    co_optim_free(o);
    return (int)rank;
}

static void test_adaptive_rank(void)
{
    int changes;
    int r = settled_rank(3, 0.05, "p=1,rank_max=6,rank_init=1", &changes);
    CHECK(r == 3 && changes == 0, "3 directions from rank 1: rank %d, %d changes in the last 100 steps", r, changes);
    r = settled_rank(3, 0.05, "p=1,rank_max=6,rank_init=6", &changes);
    CHECK(r == 3 && changes == 0, "3 directions from rank 6: rank %d, %d changes in the last 100 steps", r, changes);
    r = settled_rank(1, 0.05, "p=1,rank_max=6,rank_init=4", &changes);
    CHECK(r == 1 && changes == 0, "1 direction from rank 4: rank %d, %d changes in the last 100 steps", r, changes);
    r = settled_rank(0, 1.0, "p=1,rank_max=6,rank_init=1", &changes);
    CHECK(r == 6, "isotropic gradients: rank %d, expected rank_max 6", r);
}

/* The floor of mu ("div & cut"): when every sketched direction is below the base (sqrt of the
 * whitened second moment < delta), H is delta I exactly and the step equals the rank-0
 * step with the same delta, even though the low-rank path runs (rank >= 1). Without the
 * floor, negative mu would make H smaller than the base (or indefinite) along q_i. */
static void test_mu_floor(void)
{
    enum { N = 32, STEPS = 400 };
    toy a, b;
    co_optim *lo = toy_new(&a, N, "p=1,rank_max=3,rank_min=1,delta=4,lambda=0");
    co_optim *d0 = toy_new(&b, N, "rank_max=0,delta=4,lambda=0");
    co_rng r;
    co_rng_seed(&r, 13, 1);
    int differ = 0, early_differ = 0;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++) a.g[i] = b.g[i] = (float)co_rng_normal(&r);
        memcpy(b.p, a.p, sizeof b.p); /* same start, so the steps compare exactly */
        co_optim_step(lo, NULL, NULL);
        co_optim_step(d0, NULL, NULL);
        /* The first steps see u = g / (sqrt(v) + eps) near 10 (v starts at 0): large
         * directions, mu > 0. Once the sketch has forgotten them, the steps must agree. */
        if (s >= 300) differ += memcmp(a.p, b.p, sizeof a.p) != 0;
        if (s < 5) early_differ += memcmp(a.p, b.p, sizeof a.p) != 0;
    }
    double rank, mu;
    co_optim_diagnostic(lo, "rank", &rank, 1);
    co_optim_diagnostic(lo, "mu_max", &mu, 1);
    CHECK(rank >= 1, "rank %g: the low-rank path did not run", rank);
    CHECK(mu == 0, "largest mu %g: the whitened directions should all be below delta = 4", mu);
    CHECK(differ == 0, "%d of the last 100 steps differ from H = delta I", differ);
    CHECK(early_differ > 0, "the first steps (mu > 0) equal H = delta I too: the comparison cannot fail");
    co_optim_free(lo);
    co_optim_free(d0);
}

/* p = 0 never refreshes, p = 1 always, p_warmup refreshes the first steps. */
static void test_p_zero_freezes_factors(void)
{
    toy a;
    co_optim *o = toy_new(&a, 32, "p=0,rank_max=3,rank_init=2");
    co_rng r;
    co_rng_seed(&r, 9, 1);
    for (int s = 0; s < 200; s++) {
        for (int i = 0; i < 32; i++) a.g[i] = (float)co_rng_normal(&r);
        co_optim_step(o, NULL, NULL);
    }
    double upd, rank;
    CHECK(co_optim_diagnostic(o, "updates", &upd, 1) == 1 && upd == 0, "p = 0 updated the factors %g times", upd);
    CHECK(co_optim_diagnostic(o, "rank", &rank, 1) == 1 && rank == 2, "rank moved to %g with p = 0", rank);
    co_optim_free(o);
    /* p = 1 updates every step: the counter is real. */
    o = toy_new(&a, 32, "p=1,rank_max=3");
    for (int s = 0; s < 10; s++) {
        for (int i = 0; i < 32; i++) a.g[i] = (float)co_rng_normal(&r);
        co_optim_step(o, NULL, NULL);
    }
    CHECK(co_optim_diagnostic(o, "updates", &upd, 1) == 1 && upd == 10, "p = 1: %g updates in 10 steps", upd);
    co_optim_free(o);
    /* p_warmup: every step of the warm-up refreshes, then p rules again (p = 0: none). */
    o = toy_new(&a, 32, "p=0,p_warmup=7,rank_max=3");
    for (int s = 0; s < 30; s++) {
        for (int i = 0; i < 32; i++) a.g[i] = (float)co_rng_normal(&r);
        co_optim_step(o, NULL, NULL);
        CHECK(co_optim_diagnostic(o, "updates", &upd, 1) == 1 && upd == (s < 7 ? s + 1 : 7),
              "p_warmup=7, p = 0: %g updates after %d steps", upd, s + 1);
    }
    co_optim_free(o);
}

/* The step must stay a descent direction with any factors: g . (theta_before - theta_after) > 0. */
static void test_descent(void)
{
    toy a;
    co_optim *o = toy_new(&a, 48, "p=1,rank_max=4,rank_init=4,lambda=0,delta=0.3");
    co_rng r;
    co_rng_seed(&r, 10, 1);
    int bad = 0;
    for (int s = 0; s < 300; s++) {
        /* Strongly correlated gradients so the factors are far from the identity. */
        double common = co_rng_normal(&r) * 5;
        for (int i = 0; i < 48; i++) a.g[i] = (float)(common * (i % 3 + 1) + co_rng_normal(&r));
        float before[48];
        memcpy(before, a.p, sizeof before);
        co_optim_step(o, NULL, NULL);
        double d = 0;
        for (int i = 0; i < 48; i++) d += (double)a.g[i] * (before[i] - a.p[i]);
        bad += !(d > 0);
    }
    CHECK(bad == 0, "%d of 300 steps were not descent directions", bad);
    double rank;
    co_optim_diagnostic(o, "rank", &rank, 1);
    CHECK(rank >= 1, "rank %g: the low-rank path was not exercised", rank);
    co_optim_free(o);
}

static co_model *moons_model(co_dataset **train, co_dataset **test)
{
    co_dataset *all = co_make_moons(400, 0.2, 1, NULL);
    co_dataset_split(all, 0.2, 1, train, test, NULL);
    co_dataset_free(all);
    co_model *m = co_model_new_mlp("mlp:2-32-1", CO_ACT_RELU, CO_ACT_NONE, NULL);
    co_model_init(m, 7);
    return m;
}

static co_optim *model_optim(co_model *m, const char *name, const char *hp)
{
    co_group g[8];
    co_model_groups(m, g);
    co_error err;
    co_optim *o = co_optim_new(name, g, co_model_ngroups(m), hp, 3, &err);
    CHECK(o != NULL, "%s: %s", name, o ? "" : err.msg);
    return o;
}

static void train_epochs(co_model *m, co_optim *o, co_dataset *tr, co_dataset *te, int epochs, co_train_result *res)
{
    co_train_config c;
    co_train_config_default(&c);
    c.epochs = epochs;
    c.batch = 32;
    c.seed = 4;
    co_error err;
    CHECK(co_train(m, o, tr, te, &c, res, &err) == CO_OK, "train: %s", err.msg);
}

static void test_equals_rmsprop(void)
{
    co_dataset *tr, *te;
    co_model *m1 = moons_model(&tr, &te), *m2;
    co_dataset *tr2, *te2;
    m2 = moons_model(&tr2, &te2);
    co_optim *a = model_optim(m1, "da-rmsprop", "rank_max=0,lambda=0,lr=0.01,beta2=0.99,eps=1e-8");
    co_optim *b = model_optim(m2, "rmsprop", "lr=0.01,alpha=0.99,eps=1e-8");
    co_train_result r1, r2;
    train_epochs(m1, a, tr, te, 5, &r1);
    train_epochs(m2, b, tr2, te2, 5, &r2);
    size_t n = co_model_param_count(m1);
    float *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float));
    co_model_get_params(m1, p1);
    co_model_get_params(m2, p2);
    CHECK(memcmp(p1, p2, n * sizeof(float)) == 0, "rank 0 and lambda 0 differ from RMSprop");
    /* Again with weight decay, another beta2/eps and per-layer alignment (lambda 0 makes it moot). */
    {
        co_dataset *tr3, *te3, *tr4, *te4;
        co_model *m3 = moons_model(&tr3, &te3), *m4 = moons_model(&tr4, &te4);
        co_optim *c3 = model_optim(m3, "da-rmsprop",
                                   "rank_max=0,lambda=0,lr=0.003,beta2=0.9,eps=1e-6,weight_decay=0.01,"
                                   "align_per_layer=1");
        co_optim *c4 = model_optim(m4, "rmsprop", "lr=0.003,alpha=0.9,eps=1e-6,weight_decay=0.01");
        co_train_result r5, r6;
        train_epochs(m3, c3, tr3, te3, 5, &r5);
        train_epochs(m4, c4, tr4, te4, 5, &r6);
        float *p3 = malloc(n * sizeof(float)), *p4 = malloc(n * sizeof(float));
        co_model_get_params(m3, p3);
        co_model_get_params(m4, p4);
        CHECK(memcmp(p3, p4, n * sizeof(float)) == 0, "rank 0, lambda 0, weight decay 0.01: differs from RMSprop");
        free(p3);
        free(p4);
        co_train_result_free(&r5);
        co_train_result_free(&r6);
        co_optim_free(c3);
        co_optim_free(c4);
        co_model_free(m3);
        co_model_free(m4);
        co_dataset_free(tr3);
        co_dataset_free(te3);
        co_dataset_free(tr4);
        co_dataset_free(te4);
    }
    /* And the full method differs, or the comparison proves nothing. */
    co_optim_free(a);
    co_model_init(m1, 7);
    a = model_optim(m1, "da-rmsprop", "lr=0.01");
    double initial;
    co_evaluate(m1, tr, CO_LOSS_BCE_LOGITS, 256, &initial, NULL, NULL);
    co_train_result r3;
    train_epochs(m1, a, tr, te, 5, &r3);
    co_model_get_params(m1, p1);
    CHECK(memcmp(p1, p2, n * sizeof(float)) != 0, "full DA-RMSprop identical to RMSprop");
    CHECK(r3.history[4].train_loss < 0.5 * initial, "training loss %.4f -> %.4f did not fall", initial,
          r3.history[4].train_loss);
    co_train_result_free(&r1);
    co_train_result_free(&r2);
    co_train_result_free(&r3);
    free(p1);
    free(p2);
    co_optim_free(a);
    co_optim_free(b);
    co_model_free(m1);
    co_model_free(m2);
    co_dataset_free(tr);
    co_dataset_free(te);
    co_dataset_free(tr2);
    co_dataset_free(te2);
}

static void test_save_load(void)
{
    toy a, b;
    co_optim *o = toy_new(&a, 40, "p=0.5,rank_max=3");
    co_rng r;
    co_rng_seed(&r, 11, 1);
    float grads[60][40];
    for (int s = 0; s < 60; s++)
        for (int i = 0; i < 40; i++) grads[s][i] = (float)(co_rng_normal(&r) + (i % 4));
    for (int s = 0; s < 30; s++) {
        memcpy(a.g, grads[s], sizeof a.g[0] * 40);
        co_optim_step(o, NULL, NULL);
    }
    char path[] = "/tmp/curvopt_darms_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    co_error err;
    CHECK(co_optim_save(o, path, &err) == CO_OK, "save: %s", err.msg);
    co_optim *o2 = toy_new(&b, 40, "p=0.5,rank_max=3");
    memcpy(b.p, a.p, sizeof b.p);
    CHECK(co_optim_load(o2, path, &err) == CO_OK, "load: %s", err.msg);
    for (int s = 30; s < 60; s++) {
        memcpy(a.g, grads[s], sizeof a.g[0] * 40);
        memcpy(b.g, grads[s], sizeof b.g[0] * 40);
        co_optim_step(o, NULL, NULL);
        co_optim_step(o2, NULL, NULL);
    }
    CHECK(memcmp(a.p, b.p, 40 * sizeof(float)) == 0, "save -> load -> continue differs");
    unlink(path);
    co_optim_free(o);
    co_optim_free(o2);
}

/* The safeguards (docs/optimizers/da-rmsprop.md, "Safeguards"). A strongly correlated stream
 * whose coordinates span four orders of magnitude: the whitened rank-1 correction of the
 * published step mixes coordinates of very different sqrt(v), so on the small ones the step
 * exceeds RMSprop's many times (what blew up the MNIST classifier); curv_clip keeps every
 * coordinate within RMSprop's step. gain_max = 1 makes aligned steps RMSprop's exactly. */
static void test_safeguards(void)
{
    enum { N = 64, STEPS = 60 };
    double worst[2] = {0, 0};
    for (int v = 0; v < 2; v++) {
        toy a, b;
        co_optim *da = toy_new(&a, N, v ? "lambda=0,p=1,rank_max=2" : "lambda=0,p=1,rank_max=2,faithful=1");
        co_error err;
        memset(&b, 0, sizeof b);
        b.grp = (co_group){.name = "toy", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {b.p}, .grad = {b.g}, .size = {N}};
        co_optim *rms = co_optim_new("rmsprop", &b.grp, 1, NULL, 5, &err);
        CHECK(da && rms, "create");
        if (!da || !rms) return;
        co_rng r;
        co_rng_seed(&r, 77, 1);
        for (int t = 0; t < STEPS; t++) {
            double common = 1 + 0.1 * co_rng_normal(&r);
            for (int i = 0; i < N; i++)
                a.g[i] = b.g[i] = (float)(pow(10.0, -4.0 * i / (N - 1)) * (common + 0.05 * co_rng_normal(&r)));
            float pa[N], pb[N];
            memcpy(pa, a.p, sizeof pa);
            memcpy(pb, b.p, sizeof pb);
            co_optim_step(da, NULL, NULL);
            co_optim_step(rms, NULL, NULL);
            for (int i = 0; i < N; i++) {
                double ref = fabs((double)b.p[i] - pb[i]);
                if (ref > 0) worst[v] = fmax(worst[v], fabs((double)a.p[i] - pa[i]) / ref);
            }
        }
        co_optim_free(da);
        co_optim_free(rms);
    }
    printf("largest coordinate step over RMSprop's: published %.3g, curv_clip=1 %.6f\n", worst[0], worst[1]);
    CHECK(worst[0] > 2, "the published step never exceeded RMSprop's by 2x (%.3g): the check cannot fail", worst[0]);
    /* Up to the rounding of the parameters the moves are measured from. */
    CHECK(worst[1] <= 1 + 1e-4, "curv_clip=1: a coordinate moved %.6f x RMSprop's step", worst[1]);

    /* graft: with the clip off the corrected step has RMSprop's length exactly (and not without). */
    for (int v = 0; v < 2; v++) {
        toy a, b;
        co_optim *da = toy_new(&a, N, v ? "lambda=0,p=1,rank_max=2,curv_clip=0,graft=0" : "lambda=0,p=1,rank_max=2,curv_clip=0");
        co_error err;
        memset(&b, 0, sizeof b);
        b.grp = (co_group){.name = "toy", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {b.p}, .grad = {b.g}, .size = {N}};
        co_optim *rms = co_optim_new("rmsprop", &b.grp, 1, NULL, 5, &err);
        co_rng r;
        co_rng_seed(&r, 78, 1);
        double worst = 0;
        for (int t = 0; t < 30; t++) {
            double common = 1 + 0.1 * co_rng_normal(&r);
            for (int i = 0; i < N; i++)
                a.g[i] = b.g[i] = (float)(pow(10.0, -2.0 * i / (N - 1)) * (common + 0.05 * co_rng_normal(&r)));
            float pa[N], pb[N];
            memcpy(pa, a.p, sizeof pa);
            memcpy(pb, b.p, sizeof pb);
            co_optim_step(da, NULL, NULL);
            co_optim_step(rms, NULL, NULL);
            double na = 0, nb = 0;
            for (int i = 0; i < N; i++) {
                na += ((double)a.p[i] - pa[i]) * ((double)a.p[i] - pa[i]);
                nb += ((double)b.p[i] - pb[i]) * ((double)b.p[i] - pb[i]);
            }
            worst = fmax(worst, fabs(sqrt(na / nb) - 1));
        }
        if (v == 0) CHECK(worst < 1e-4, "graft: step length off RMSprop's by %.3g", worst);
        else CHECK(worst > 1e-2, "without graft the step length equals RMSprop's (%.3g): the check cannot fail", worst);
        co_optim_free(da);
        co_optim_free(rms);
    }

    /* gain_max: constant gradients (cos = 1) at rank 0 give RMSprop's step bit for bit. */
    toy a, b;
    co_optim *da = toy_new(&a, 8, "rank_max=0,lambda=1");
    co_error err;
    memset(&b, 0, sizeof b);
    b.grp = (co_group){.name = "toy", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {b.p}, .grad = {b.g}, .size = {8}};
    co_optim *rms = co_optim_new("rmsprop", &b.grp, 1, NULL, 5, &err);
    for (int t = 0; t < 10; t++) {
        for (int i = 0; i < 8; i++) a.g[i] = b.g[i] = 0.1f * (float)(i + 1);
        co_optim_step(da, NULL, NULL);
        co_optim_step(rms, NULL, NULL);
    }
    CHECK(memcmp(a.p, b.p, sizeof(float) * 8) == 0, "gain_max=1: aligned steps differ from RMSprop's");
    co_optim_free(da);
    co_optim_free(rms);
}

int main(void)
{
    test_woodbury();
    test_woodbury_norm();
    test_power_iteration();
    test_sketch_quadratic();
    test_sketch_lazy_scale();
    test_alignment_factor();
    test_p_zero_freezes_factors();
    test_adaptive_rank();
    test_mu_floor();
    test_descent();
    test_equals_rmsprop();
    test_save_load();
    test_safeguards();
    return co_test_finish();
}

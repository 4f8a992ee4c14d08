/* Quasi-Adam (paper 003): the compact L-BFGS representation against the dense BFGS
 * recursion of eq. 7 (memory 1 and more, the ring wrapping), the secant equation, the step
 * of eq. 10 and of the authors' code followed against a dense re-computation, rejected
 * pairs giving Adam bit for bit, the 1/sqrt(t) rate, make_moons training, and
 * save -> load -> continue. */
#include "optim/lbfgs_compact.h"
#include "curvopt.h"
#include "test_util.h"

#include <unistd.h>

#define MAXN 16
#define MAXPAIRS 8

/* ------------------------------------------------------------ dense references */

/* H g with H from eq. 7 applied pair by pair (oldest first) from H_0 = gamma I, gamma from
 * the newest pair. */
static void dense_bfgs(int n, int k, double S[][MAXN], double Y[][MAXN], const double *g, double *out)
{
    static double H[MAXN][MAXN], T[MAXN][MAXN];
    double sy = 0, yy = 0;
    for (int i = 0; i < n; i++) {
        sy += S[k - 1][i] * Y[k - 1][i];
        yy += Y[k - 1][i] * Y[k - 1][i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) H[i][j] = i == j ? sy / yy : 0;
    for (int p = 0; p < k; p++) {
        const double *s = S[p], *y = Y[p];
        double rho = 0;
        for (int i = 0; i < n; i++) rho += s[i] * y[i];
        rho = 1 / rho;
        double Hy[MAXN];
        for (int i = 0; i < n; i++) {
            Hy[i] = 0;
            for (int j = 0; j < n; j++) Hy[i] += H[i][j] * y[j];
        }
        for (int i = 0; i < n; i++) /* T = H (I - rho y s') */
            for (int j = 0; j < n; j++) T[i][j] = H[i][j] - rho * Hy[i] * s[j];
        double yT[MAXN];
        for (int j = 0; j < n; j++) {
            yT[j] = 0;
            for (int i = 0; i < n; i++) yT[j] += y[i] * T[i][j];
        }
        for (int i = 0; i < n; i++) /* (I - rho s y') T + rho s s' */
            for (int j = 0; j < n; j++) H[i][j] = T[i][j] - rho * s[i] * yT[j] + rho * s[i] * s[j];
    }
    for (int i = 0; i < n; i++) {
        out[i] = 0;
        for (int j = 0; j < n; j++) out[i] += H[i][j] * g[j];
    }
}

static double dot(int n, const double *a, const double *b)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs_diff(int n, const double *a, const double *b, double *scale)
{
    double d = 0, sc = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        sc = fmax(sc, fabs(b[i]));
    }
    if (scale) *scale = sc;
    return d;
}

/* A random symmetric positive definite matrix with eigenvalues spread over [lo, hi]. */
static void random_spd(co_rng *r, int n, double A[][MAXN], double lo, double hi)
{
    double Q[MAXN][MAXN];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) Q[i][j] = co_rng_normal(r);
    /* Gram-Schmidt for an orthonormal basis. */
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < i; k++) {
            double p = dot(n, Q[i], Q[k]);
            for (int j = 0; j < n; j++) Q[i][j] -= p * Q[k][j];
        }
        double nn = sqrt(dot(n, Q[i], Q[i]));
        for (int j = 0; j < n; j++) Q[i][j] /= nn;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            A[i][j] = 0;
            for (int k = 0; k < n; k++) A[i][j] += Q[k][i] * (lo + (hi - lo) * k / (n - 1.0)) * Q[k][j];
        }
}

/* ------------------------------------------------------------ compact representation */

static void test_memory1_closed_form(void)
{
    co_rng r;
    co_rng_seed(&r, 1, 0);
    const int n = 7;
    double A[MAXN][MAXN], S[1][MAXN], Y[1][MAXN], g[MAXN];
    for (int trial = 0; trial < 20; trial++) {
        random_spd(&r, n, A, 0.1, 10.0);
        for (int i = 0; i < n; i++) {
            S[0][i] = co_rng_normal(&r);
            g[i] = co_rng_normal(&r);
        }
        for (int i = 0; i < n; i++) {
            Y[0][i] = 0;
            for (int j = 0; j < n; j++) Y[0][i] += A[i][j] * S[0][j];
        }
        double sy = dot(n, S[0], Y[0]), yy = dot(n, Y[0], Y[0]);
        double gamma, cs, cy;
        CHECK(co_lbfgs1_coefs(sy, yy, dot(n, S[0], g), dot(n, Y[0], g), 1e-12, &gamma, &cs, &cy) == 1, "pair refused");
        double compact[MAXN], dense[MAXN], scale;
        for (int i = 0; i < n; i++) compact[i] = gamma * g[i] + cs * S[0][i] + cy * Y[0][i];
        dense_bfgs(n, 1, S, Y, g, dense);
        double d = max_abs_diff(n, compact, dense, &scale);
        CHECK(d <= 1e-6 * scale, "memory 1: compact H g differs from eq. 7 by %g (of %g)", d, scale);
        /* Eq. 8 written out: H = gamma I + Gamma M Gamma', Gamma = [s, gamma y]. */
        double rho = 1 / sy, m11 = rho + gamma * rho * rho * yy, eq8[MAXN];
        double t0 = dot(n, S[0], g), t1 = gamma * dot(n, Y[0], g);
        double u0 = m11 * t0 - rho * t1, u1 = -rho * t0;
        for (int i = 0; i < n; i++) eq8[i] = gamma * g[i] + S[0][i] * u0 + gamma * Y[0][i] * u1;
        d = max_abs_diff(n, eq8, dense, &scale);
        CHECK(d <= 1e-6 * scale, "eq. 8 as printed differs from eq. 7 by %g", d);
        /* Secant equation: H y = s. */
        co_lbfgs1_coefs(sy, yy, sy, yy, 0, &gamma, &cs, &cy);
        double hy[MAXN];
        for (int i = 0; i < n; i++) hy[i] = gamma * Y[0][i] + cs * S[0][i] + cy * Y[0][i];
        d = max_abs_diff(n, hy, S[0], &scale);
        CHECK(d <= 1e-6 * scale, "H y = s violated by %g", d);
    }
    double gamma, cs, cy;
    CHECK(co_lbfgs1_coefs(-1e-3, 1, 1, 1, 1e-8, &gamma, &cs, &cy) == 0 && gamma == 0 && cs == 0 && cy == 0,
          "s'y < 0 must be refused");
    CHECK(co_lbfgs1_coefs(1e-9, 1, 1, 1, 1e-8, &gamma, &cs, &cy) == 0, "s'y below eps_curv must be refused");
    CHECK(co_lbfgs1_coefs(1e-8, 1, 1, 1, 1e-8, &gamma, &cs, &cy) == 1, "s'y = eps_curv is accepted (>=)");
}

static void test_memory_m(int m)
{
    co_rng r;
    co_rng_seed(&r, 10 + m, 0);
    const int n = 9;
    double A[MAXN][MAXN];
    random_spd(&r, n, A, 0.2, 20.0);
    co_lbfgs_mem L;
    co_error err = {0};
    CHECK(co_lbfgs_mem_init(&L, m, &err) == CO_OK, "%s", err.msg);
    double Ss[MAXPAIRS][MAXN], Ys[MAXPAIRS][MAXN]; /* by slot, as an optimizer stores them */
    double S[MAXPAIRS][MAXN], Y[MAXPAIRS][MAXN];   /* chronological, for the dense reference */
    int total = 0;
    for (int step = 0; step < 9; step++) {
        double s[MAXN], y[MAXN];
        for (int i = 0; i < n; i++) s[i] = co_rng_normal(&r);
        for (int i = 0; i < n; i++) {
            y[i] = 0.05 * co_rng_normal(&r);
            for (int j = 0; j < n; j++) y[i] += A[i][j] * s[j];
        }
        double sdy[MAXPAIRS] = {0}, ydy[MAXPAIRS] = {0};
        for (int q = 0; q < L.count; q++) {
            int j = co_lbfgs_mem_slot(&L, q);
            sdy[j] = dot(n, Ss[j], y);
            ydy[j] = dot(n, Ys[j], y);
        }
        int slot = co_lbfgs_mem_next_slot(&L);
        memcpy(Ss[slot], s, sizeof s);
        memcpy(Ys[slot], y, sizeof y);
        co_lbfgs_mem_push(&L, sdy, ydy, dot(n, s, y), dot(n, y, y));
        total++;
        int k = total < m ? total : m;
        CHECK(L.count == k, "memory %d: %d pairs stored after %d pushes", m, L.count, total);
        for (int q = 0; q < k; q++) {
            int j = co_lbfgs_mem_slot(&L, q);
            memcpy(S[q], Ss[j], sizeof S[q]);
            memcpy(Y[q], Ys[j], sizeof Y[q]);
        }
        double g[MAXN], sg[MAXPAIRS], yg[MAXPAIRS], a[MAXPAIRS], b[MAXPAIRS], gamma;
        for (int i = 0; i < n; i++) g[i] = co_rng_normal(&r);
        for (int j = 0; j < m; j++) sg[j] = yg[j] = 0;
        for (int q = 0; q < k; q++) {
            int j = co_lbfgs_mem_slot(&L, q);
            sg[j] = dot(n, Ss[j], g);
            yg[j] = dot(n, Ys[j], g);
        }
        co_lbfgs_mem_coefs(&L, sg, yg, &gamma, a, b);
        double compact[MAXN], dense[MAXN], scale;
        for (int i = 0; i < n; i++) {
            compact[i] = gamma * g[i];
            for (int j = 0; j < m; j++) compact[i] += a[j] * Ss[j][i] + b[j] * Ys[j][i];
        }
        dense_bfgs(n, k, S, Y, g, dense);
        double d = max_abs_diff(n, compact, dense, &scale);
        CHECK(d <= 1e-8 * scale, "memory %d, %d pushes: compact differs from dense BFGS by %g (of %g)", m, total, d,
              scale);
        if (m == 1) {
            double g1, cs, cy;
            co_lbfgs1_coefs(dot(n, s, y), dot(n, y, y), dot(n, s, g), dot(n, y, g), 0, &g1, &cs, &cy);
            CHECK_CLOSE(a[slot], cs, 1e-10, "general compact form vs eq. 8 (s)");
            CHECK_CLOSE(b[slot], cy, 1e-10, "general compact form vs eq. 8 (y)");
        }
        /* Newest pair's secant equation. */
        for (int q = 0; q < k; q++) {
            int j = co_lbfgs_mem_slot(&L, q);
            sg[j] = dot(n, Ss[j], y);
            yg[j] = dot(n, Ys[j], y);
        }
        co_lbfgs_mem_coefs(&L, sg, yg, &gamma, a, b);
        for (int i = 0; i < n; i++) {
            compact[i] = gamma * y[i];
            for (int j = 0; j < m; j++) compact[i] += a[j] * Ss[j][i] + b[j] * Ys[j][i];
        }
        d = max_abs_diff(n, compact, s, &scale);
        CHECK(d <= 1e-8 * scale, "memory %d: H y_newest = s_newest violated by %g", m, d);
    }
    co_lbfgs_mem_free(&L);
}

/* ------------------------------------------------------------ problems for the optimizer */

/* f = 0.5 (x - p)'A(x - p), plus optional gradient noise, over two groups of two tensors
 * each (sizes 3, 2 | 4, 3). */
#define PN 12
static const int tensor_off[5] = {0, 3, 5, 9, 12};

typedef struct {
    double A[MAXN][MAXN], p[MAXN];
    double noise;
    co_rng rng;
    float x[MAXN], g[MAXN];
    co_group groups[2];
} prob;

static void prob_bind(prob *q)
{
    for (int g = 0; g < 2; g++) {
        co_group *gr = &q->groups[g];
        memset(gr, 0, sizeof *gr);
        gr->kind = CO_GROUP_DENSE;
        gr->ntensors = 2;
        for (int k = 0; k < 2; k++) {
            int t = 2 * g + k;
            gr->param[k] = q->x + tensor_off[t];
            gr->grad[k] = q->g + tensor_off[t];
            gr->size[k] = (size_t)(tensor_off[t + 1] - tensor_off[t]);
        }
    }
}

static void prob_init(prob *q, uint64_t seed, double lo, double hi)
{
    memset(q, 0, sizeof *q);
    co_rng r;
    co_rng_seed(&r, seed, 0);
    random_spd(&r, PN, q->A, lo, hi); /* lo, hi < 0: a concave problem */
    for (int i = 0; i < PN; i++) {
        q->p[i] = co_rng_normal(&r);
        q->x[i] = (float)co_rng_normal(&r);
    }
    co_rng_seed(&q->rng, seed, 1);
    prob_bind(q);
}

static void prob_eval(prob *q)
{
    for (int i = 0; i < PN; i++) {
        double gi = 0;
        for (int j = 0; j < PN; j++) gi += q->A[i][j] * ((double)q->x[j] - q->p[j]);
        if (q->noise > 0) gi += q->noise * co_rng_normal(&q->rng);
        q->g[i] = (float)gi;
    }
}

static co_optim *make(prob *q, const char *name, const char *hp)
{
    co_error err = {0};
    co_optim *o = co_optim_new(name, q->groups, 2, hp, 3, &err);
    CHECK(o != NULL, "%s(%s): %s", name, hp ? hp : "", err.msg);
    return o;
}

static void run(prob *q, co_optim *o, int steps, int invsqrt_scale)
{
    co_error err = {0};
    for (int s = 0; s < steps; s++) {
        prob_eval(q);
        if (invsqrt_scale) co_optim_set_lr_scale(o, 1.0 / sqrt((double)co_optim_steps(o) + 1.0));
        CHECK(co_optim_step(o, NULL, &err) == CO_OK, "step: %s", err.msg);
    }
}

/* ------------------------------------------------------------ rejected pairs are Adam */

static void test_rejected_is_adam(void)
{
    /* The authors' y = m_t - m_{t-1} is not a gradient difference: its s'y can be positive
     * on a concave function, so that case raises eps_curv instead. */
    const char *hp[] = {"lr=0.01", "lr=0.01,memory=3", "lr=0.01,variant=1,eps_curv=1e30"};
    for (int c = 0; c < 3; c++) {
        /* Concave: s'y < 0 for every pair of gradient differences. */
        prob a, b;
        prob_init(&a, 4, -5.0, -0.5);
        b = a;
        prob_bind(&b);
        co_optim *oa = make(&a, "adam", "lr=0.01"), *oq = make(&b, "quasi-adam", hp[c]);
        if (!oa || !oq) return;
        run(&a, oa, 25, 0);
        run(&b, oq, 25, 0);
        double rate = -1;
        co_optim_diagnostic(oq, "accept_rate", &rate, 1);
        CHECK(rate == 0, "%s: concave problem accepted pairs (rate %g)", hp[c], rate);
        CHECK(memcmp(a.x, b.x, sizeof a.x) == 0, "%s: rejected pairs must leave Adam's step bit for bit", hp[c]);
        co_optim_free(oa);
        co_optim_free(oq);
    }
    /* Convex, but eps_curv above every s'y. */
    prob a, b, c;
    prob_init(&a, 5, 0.5, 5.0);
    b = a;
    c = a;
    prob_bind(&b);
    prob_bind(&c);
    co_optim *oa = make(&a, "adam", "lr=0.01"), *oq = make(&b, "quasi-adam", "lr=0.01,eps_curv=1e30");
    co_optim *oc = make(&c, "quasi-adam", "lr=0.01");
    if (!oa || !oq || !oc) return;
    run(&a, oa, 25, 0);
    run(&b, oq, 25, 0);
    run(&c, oc, 25, 0);
    CHECK(memcmp(a.x, b.x, sizeof a.x) == 0, "eps_curv above s'y must give Adam bit for bit");
    double rate = 0;
    co_optim_diagnostic(oc, "accept_rate", &rate, 1);
    CHECK(rate == 1.0, "convex quadratic without noise: every pair accepted (rate %g)", rate);
    CHECK(memcmp(a.x, c.x, sizeof a.x) != 0, "accepted pairs must change the step");
    co_optim_free(oa);
    co_optim_free(oq);
    co_optim_free(oc);
}

/* ------------------------------------------------------------ eq. 10 followed step by step */

/* Follows the optimizer and recomputes each move in double from the iterates and gradients
 * it saw: Adam's direction plus the dense BFGS H g of eq. 7 over the last `memory` accepted
 * pairs (paper variant), or the authors' code per tensor. */
static void follow(const char *hp, int memory, int authors, int decay, double noise, double eps_curv)
{
    prob q;
    prob_init(&q, 21, 0.5, 8.0);
    q.noise = noise;
    co_optim *o = make(&q, "quasi-adam", hp);
    if (!o) return;
    const double lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double m[MAXN] = {0}, v[MAXN] = {0}, prev_x[MAXN] = {0}, prev_g[MAXN] = {0}, prev_m[MAXN] = {0};
    double S[MAXPAIRS][MAXN], Y[MAXPAIRS][MAXN];
    int k = 0, used = 0, pairs = 0;
    double worst = 0;
    for (int t = 1; t <= 30; t++) {
        prob_eval(&q);
        double x[MAXN], g[MAXN], want[MAXN];
        for (int i = 0; i < PN; i++) {
            x[i] = q.x[i];
            g[i] = q.g[i];
            prev_m[i] = m[i];
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        }
        double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t), lrt = decay ? lr / sqrt(t) : lr;
        for (int i = 0; i < PN; i++) want[i] = -lrt * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
        if (!authors && t > 1) {
            double s[MAXN], y[MAXN];
            for (int i = 0; i < PN; i++) {
                s[i] = (double)(q.x[i] - (float)prev_x[i]);
                y[i] = (double)(q.g[i] - (float)prev_g[i]);
            }
            pairs++;
            if (dot(PN, s, y) >= eps_curv && dot(PN, s, y) > 0) {
                used++;
                if (k == memory) {
                    memmove(S[0], S[1], sizeof S[0] * (memory - 1));
                    memmove(Y[0], Y[1], sizeof Y[0] * (memory - 1));
                    k--;
                }
                memcpy(S[k], s, sizeof s);
                memcpy(Y[k], y, sizeof y);
                k++;
                double hg[MAXN];
                dense_bfgs(PN, k, S, Y, g, hg);
                for (int i = 0; i < PN; i++) want[i] -= lrt * hg[i];
            }
        }
        if (authors && t > 1) {
            for (int tn = 0; tn < 4; tn++) {
                int lo = tensor_off[tn], n = tensor_off[tn + 1] - lo;
                double s[1][MAXN], y[1][MAXN], mm[MAXN];
                for (int i = 0; i < n; i++) {
                    s[0][i] = (double)(q.x[lo + i] - (float)prev_x[lo + i]);
                    y[0][i] = m[lo + i] - prev_m[lo + i];
                    mm[i] = m[lo + i];
                }
                pairs++;
                double sy = dot(n, s[0], y[0]);
                if (sy > 0 && sy >= eps_curv) {
                    used++;
                    double hm[MAXN];
                    dense_bfgs(n, 1, s, y, mm, hm);
                    for (int i = 0; i < n; i++) want[lo + i] = -lrt / bc1 * hm[i];
                }
            }
        }
        for (int i = 0; i < PN; i++) {
            prev_x[i] = x[i];
            prev_g[i] = g[i];
        }
        co_error err = {0};
        CHECK(co_optim_step(o, NULL, &err) == CO_OK, "%s", err.msg);
        double got[MAXN], scale;
        for (int i = 0; i < PN; i++) got[i] = (double)q.x[i] - x[i];
        double d = max_abs_diff(PN, got, want, &scale);
        worst = fmax(worst, d / fmax(scale, 1e-30));
    }
    double rate = -1;
    co_optim_diagnostic(o, "accept_rate", &rate, 1);
    printf("follow %-40s: %d/%d pairs used, worst relative move error %.2e\n", hp, used, pairs, worst);
    CHECK(used > 0, "%s: no pair was used, the check proves nothing", hp);
    CHECK(fabs(rate - (double)used / pairs) < 1e-12, "%s: accept_rate %g, expected %g", hp, rate, (double)used / pairs);
    CHECK(worst <= 2e-4, "%s: moves differ from the dense recomputation by %.3g relative", hp, worst);
    co_optim_free(o);
}

static void test_follow(void)
{
    follow("lr=0.05", 1, 0, 0, 0, 1e-8);
    follow("lr=0.05,lr_decay_sqrt=1", 1, 0, 1, 0, 1e-8);
    follow("lr=0.05,memory=3", 3, 0, 0, 0, 1e-8);
    follow("lr=0.05,memory=5", 5, 0, 0, 0.3, 1e-8);
    /* Noise makes some pairs fail the test: memory 1 falls back to Adam for those steps. */
    follow("lr=0.05,eps_curv=1e-3", 1, 0, 0, 0.5, 1e-3);
    follow("lr=0.05,variant=1", 1, 1, 0, 0, 1e-8);
    follow("lr=0.05,variant=1,eps_curv=1e-4", 1, 1, 0, 0.5, 1e-4);
}

static void test_lr_decay_sqrt(void)
{
    /* With no usable pair, lr_decay_sqrt=1 is Adam under the invsqrt schedule. */
    prob a, b;
    prob_init(&a, 6, 0.5, 5.0);
    b = a;
    prob_bind(&b);
    co_optim *oa = make(&a, "adam", "lr=0.02"), *oq = make(&b, "quasi-adam", "lr=0.02,lr_decay_sqrt=1,eps_curv=1e30");
    if (!oa || !oq) return;
    run(&a, oa, 20, 1);
    run(&b, oq, 20, 0);
    double worst = 0;
    for (int i = 0; i < PN; i++) worst = fmax(worst, fabs((double)a.x[i] - b.x[i]));
    CHECK(worst < 1e-5, "lr_decay_sqrt differs from Adam with lr/sqrt(t) by %g", worst);
    co_optim_free(oa);
    co_optim_free(oq);
}

static void test_bad_settings(void)
{
    prob q;
    prob_init(&q, 1, 0.5, 5.0);
    co_error err = {0};
    co_optim *o = co_optim_new("quasi-adam", q.groups, 2, "variant=1,memory=2", 1, &err);
    CHECK(o == NULL && err.code == CO_EINVAL, "variant 1 with memory 2 must be refused");
    co_optim_free(o);
    o = make(&q, "quasi-adam", "memory=2");
    if (!o) return;
    prob_eval(&q);
    CHECK(co_optim_set(o, -1, "memory", 4, &err) == CO_EINVAL && strstr(err.msg, "fixed"),
          "changing memory after creation must be refused: %s", err.msg);
    CHECK(co_optim_step(o, NULL, &err) == CO_OK, "the step after a refused change: %s", err.msg);
    co_optim_free(o);
}

/* ------------------------------------------------------------ make_moons */

static void test_moons(void)
{
    co_error err = {0};
    co_dataset *d = co_make_moons(300, 0.2, 11, &err);
    CHECK(d != NULL, "moons: %s", err.msg);
    if (!d) return;
    const char *cases[] = {"lr=0.01", "lr=0.01,memory=4", "lr=0.01,variant=1", "lr=0.05,lr_decay_sqrt=1"};
    for (int c = 0; c < 4; c++) {
        co_model *model = co_model_new_mlp("mlp:2-16-1", CO_ACT_RELU, CO_ACT_NONE, &err);
        CHECK(model != NULL, "model: %s", err.msg);
        if (!model) continue;
        co_model_init(model, 42);
        co_group groups[8];
        co_model_groups(model, groups);
        co_optim *o = co_optim_new("quasi-adam", groups, co_model_ngroups(model), cases[c], 42, &err);
        CHECK(o != NULL, "%s: %s", cases[c], err.msg);
        double loss0 = NAN, loss1 = NAN;
        co_evaluate(model, d, CO_LOSS_BCE_LOGITS, 64, &loss0, NULL, &err);
        co_train_config cfg;
        co_train_config_default(&cfg);
        cfg.epochs = 8;
        cfg.batch = 32;
        cfg.seed = 42;
        co_train_result res;
        co_status st = o ? co_train(model, o, d, d, &cfg, &res, &err) : CO_EINVAL;
        CHECK(st == CO_OK, "%s training: %s", cases[c], err.msg);
        if (st == CO_OK) co_train_result_free(&res);
        co_evaluate(model, d, CO_LOSS_BCE_LOGITS, 64, &loss1, NULL, &err);
        double rate = 0;
        if (o) co_optim_diagnostic(o, "accept_rate", &rate, 1);
        printf("moons quasi-adam(%s): loss %.4f -> %.4f, pairs accepted %.2f\n", cases[c], loss0, loss1, rate);
        CHECK(isfinite(loss1) && loss1 < 0.6 * loss0, "%s: training loss %g -> %g", cases[c], loss0, loss1);
        co_optim_free(o);
        co_model_free(model);
    }
    co_dataset_free(d);
}

/* ------------------------------------------------------------ save -> load -> continue */

static void test_save_load(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_optim_quasi_%d.state", (int)getpid());
    const char *hp[] = {"lr=0.05", "lr=0.05,memory=3", "lr=0.05,variant=1", "lr=0.05,lr_decay_sqrt=1,memory=2"};
    const int save_at[] = {1, 2, 6};
    for (int c = 0; c < 4; c++)
        for (int si = 0; si < 3; si++) {
            prob a;
            prob_init(&a, 30 + si, 0.5, 6.0);
            a.noise = 0.2;
            co_optim *o = make(&a, "quasi-adam", hp[c]);
            if (!o) continue;
            run(&a, o, save_at[si], 0);
            co_error err = {0};
            CHECK(co_optim_save(o, path, &err) == CO_OK, "save: %s", err.msg);
            prob b = a, fresh = a;
            prob_bind(&b);
            prob_bind(&fresh);
            run(&a, o, 9, 0);
            co_optim *o2 = make(&b, "quasi-adam", hp[c]), *o3 = make(&fresh, "quasi-adam", hp[c]);
            if (o2 && o3) {
                CHECK(co_optim_load(o2, path, &err) == CO_OK, "load: %s", err.msg);
                run(&b, o2, 9, 0);
                run(&fresh, o3, 9, 0);
                CHECK(memcmp(a.x, b.x, sizeof a.x) == 0, "%s saved at step %d: continuation differs", hp[c],
                      save_at[si]);
                CHECK(memcmp(a.x, fresh.x, sizeof a.x) != 0, "%s: a fresh optimizer matched too", hp[c]);
            }
            co_optim_free(o);
            co_optim_free(o2);
            co_optim_free(o3);
        }
    unlink(path);
}

int main(void)
{
    test_memory1_closed_form();
    test_memory_m(1);
    test_memory_m(3);
    test_memory_m(5);
    test_rejected_is_adam();
    test_follow();
    test_lr_decay_sqrt();
    test_bad_settings();
    test_moons();
    test_save_load();
    return co_test_finish();
}

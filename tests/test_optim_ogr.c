/* Duda's OGR family (paper 001): the 1-d regression and step (eqs. 2-4) on their own, the
 * three momentum + parabola methods on exactly known 1-d parabolas, the coordinate-wise
 * ogr-asgd / ogr-asgdc on separable quadratics of widely spread curvature, constant
 * gradients, make_moons training, and save -> load -> continue. */
#include "optim/ogr.h"
#include "curvopt.h"
#include "test_util.h"

#include <unistd.h>

#define MAXN 64

/* A parameter vector split over two groups (the 1-d methods' direction spans both). */
typedef struct {
    int n;
    float theta[MAXN], grad[MAXN];
    double h[MAXN], p[MAXN], c[MAXN];
    double noise;
    co_rng rng;
    co_group groups[2];
    int ngroups;
} problem;

static void problem_init(problem *pb, int n, int ngroups)
{
    memset(pb, 0, sizeof *pb);
    pb->n = n;
    pb->ngroups = ngroups;
    int first = ngroups == 2 ? n / 2 : n;
    for (int g = 0; g < ngroups; g++) {
        co_group *gr = &pb->groups[g];
        gr->kind = CO_GROUP_DENSE;
        gr->ntensors = 1;
        gr->param[0] = pb->theta + (g ? first : 0);
        gr->grad[0] = pb->grad + (g ? first : 0);
        gr->size[0] = (size_t)(g ? n - first : first);
    }
}

/* f = sum 0.5 h (theta - p)^2 + c theta, gradient with optional Gaussian noise. */
static double problem_eval(problem *pb)
{
    double f = 0;
    for (int i = 0; i < pb->n; i++) {
        double d = (double)pb->theta[i] - pb->p[i];
        f += 0.5 * pb->h[i] * d * d + pb->c[i] * pb->theta[i];
        double gi = pb->h[i] * d + pb->c[i];
        if (pb->noise > 0) gi += pb->noise * co_rng_normal(&pb->rng);
        pb->grad[i] = (float)gi;
    }
    return f;
}

static co_optim *make(problem *pb, const char *name, const char *hp)
{
    co_error err = {0};
    co_optim *o = co_optim_new(name, pb->groups, pb->ngroups, hp, 7, &err);
    CHECK(o != NULL, "%s(%s): %s", name, hp ? hp : "", err.msg);
    return o;
}

/* ogr1d has no stage (its direction moves every step). */
static co_optim *make_1d(problem *pb, int m, const char *hp, int stage)
{
    char buf[256];
    if (m == 0) snprintf(buf, sizeof buf, "%s", hp);
    else snprintf(buf, sizeof buf, "%s,stage=%d", hp, stage);
    return make(pb, m == 0 ? "ogr1d" : m == 1 ? "ogr1ds" : "ogr1dc", buf);
}

static int all_finite(const problem *pb)
{
    for (int i = 0; i < pb->n; i++)
        if (!isfinite(pb->theta[i])) return 0;
    return 1;
}

static void run_steps(problem *pb, co_optim *o, int steps)
{
    for (int t = 0; t < steps; t++) {
        problem_eval(pb);
        co_optim_step(o, NULL, NULL);
    }
}

/* ------------------------------------------------------------ eqs. 2-4 alone */

static void test_regression_exact(void)
{
    const double lambdas[] = {2.5, -0.75, 1e-3, 40.0};
    const double ps[] = {0.7, -3.0, 12.0, 1e-4};
    const double betas[] = {0.9, 0.5, 0.99, 0.2};
    for (int c = 0; c < 4; c++) {
        double L = lambdas[c], P = ps[c], b = betas[c];
        co_ogr_avg a = {0};
        double lam, p;
        co_ogr_avg_update(&a, b, 0.1, L * (0.1 - P));
        CHECK(co_ogr_regress(&a, &lam, &p) == 0, "case %d: one point cannot fix a slope", c);
        /* Two identical positions do not either. */
        co_ogr_avg_update(&a, b, 0.1, L * (0.1 - P));
        CHECK(co_ogr_regress(&a, &lam, &p) == 0, "case %d: repeated position accepted", c);
        co_ogr_avg_update(&a, b, -1.3, L * (-1.3 - P));
        CHECK(co_ogr_regress(&a, &lam, &p) == 1, "case %d: two distinct points must fit", c);
        CHECK_CLOSE(lam, L, 1e-12, "lambda after two distinct points");
        CHECK_CLOSE(p, P, 1e-10, "p after two distinct points");
        /* s is still far from 1 here (1 - b^3): the bias term is what makes it exact. */
        CHECK(fabs(a.s - (1 - b * b * b)) < 1e-15, "case %d: s = 1 - beta^t, got %.17g", c, a.s);
        co_ogr_avg_update(&a, b, 5.0, L * (5.0 - P));
        co_ogr_regress(&a, &lam, &p);
        CHECK_CLOSE(lam, L, 1e-12, "lambda after three points");
        CHECK_CLOSE(p, P, 1e-10, "p after three points");
    }
    /* The centre shift of section III-C re-expresses the same points: the slope stays and
     * p moves by the shift. */
    co_ogr_avg a = {0};
    for (int t = 0; t < 5; t++) co_ogr_avg_update(&a, 0.8, 0.3 * t - 1, 2.0 * (0.3 * t - 1 - 0.25));
    co_ogr_avg_shift(&a, 0.6);
    double lam, p;
    co_ogr_regress(&a, &lam, &p);
    CHECK_CLOSE(lam, 2.0, 1e-12, "lambda after a centre shift");
    CHECK_CLOSE(p, 0.25 - 0.6, 1e-12, "p after a centre shift");
}

static void test_step_rules(void)
{
    /* alpha = 1 lands on p (eq. 4 with full trust). */
    co_ogr_avg a = {0};
    const double L = 3.0, P = -0.4;
    co_ogr_avg_update(&a, 0.9, 1.0, L * (1.0 - P));
    co_ogr_avg_update(&a, 0.9, 0.5, L * (0.5 - P));
    for (double th = -2; th <= 2; th += 0.5) {
        double mv = co_ogr_parabola_step(&a, th, 1.0, 100.0);
        CHECK_CLOSE(th + mv, P, 1e-12, "alpha=1 step lands on p");
        mv = co_ogr_parabola_step(&a, th, 0.5, 100.0);
        CHECK_CLOSE(th + mv, th + 0.5 * (P - th), 1e-12, "alpha=0.5 goes half way");
    }
    /* Far from p the clip bounds the move. */
    CHECK_CLOSE(co_ogr_parabola_step(&a, 10.0, 1.0, 0.25), -0.25, 1e-15, "clip bounds the move");

    /* lambda < 0: a maximum at p; the step goes away from it (downhill), at most alpha*clip. */
    co_ogr_avg m = {0};
    const double Ln = -2.0, Pn = 0.3;
    co_ogr_avg_update(&m, 0.9, 0.0, Ln * (0.0 - Pn));
    co_ogr_avg_update(&m, 0.9, 0.2, Ln * (0.2 - Pn));
    double lam, p;
    co_ogr_regress(&m, &lam, &p);
    CHECK_CLOSE(lam, Ln, 1e-12, "negative curvature estimated");
    for (double th = -1.0; th <= 1.6; th += 0.2) {
        if (fabs(th - Pn) < 1e-9) continue;
        const double alpha = 0.7, clip = 0.5;
        double mv = co_ogr_parabola_step(&m, th, alpha, clip);
        double f0 = 0.5 * Ln * (th - Pn) * (th - Pn), f1 = 0.5 * Ln * (th + mv - Pn) * (th + mv - Pn);
        CHECK(f1 < f0, "lambda<0 at theta=%g: f %g -> %g is not downhill", th, f0, f1);
        CHECK(fabs(mv) <= alpha * clip * (1 + 1e-15), "lambda<0: |move| %g above alpha*clip", mv);
        CHECK((mv > 0) == (th > Pn), "lambda<0 at theta=%g: move %g toward the maximum", th, mv);
        /* Sign-reversed Newton: |move| = alpha |theta - p| where the clip does not bind. */
        if (fabs(th - Pn) < clip) CHECK_CLOSE(fabs(mv), alpha * fabs(th - Pn), 1e-12, "reversed Newton step");
    }

    /* Constant gradients: lambda = 0, p infinitely far; the step is the clipped move downhill. */
    co_ogr_avg z = {0};
    for (int t = 0; t < 6; t++) co_ogr_avg_update(&z, 0.9, 0.1 * t, 0.8);
    co_ogr_regress(&z, &lam, &p);
    CHECK(fabs(lam) < 1e-12 && fabs(p) > 1e12, "constant gradient: lambda %g p %g", lam, p);
    double mv = co_ogr_parabola_step(&z, 0.5, 0.5, 0.1);
    CHECK(isfinite(mv) && fabs(mv + 0.05) < 1e-15, "constant gradient: clipped move -alpha*clip, got %g", mv);
    /* ... and the limit lambda -> 0 is continuous from both sides. */
    co_ogr_avg e1 = {0}, e2 = {0};
    co_ogr_avg_update(&e1, 0.9, 0.0, 0.8);
    co_ogr_avg_update(&e1, 0.9, 1.0, 0.8 + 1e-9);
    co_ogr_avg_update(&e2, 0.9, 0.0, 0.8);
    co_ogr_avg_update(&e2, 0.9, 1.0, 0.8 - 1e-9);
    CHECK_CLOSE(co_ogr_parabola_step(&e1, 1.0, 0.5, 0.1), -0.05, 1e-12, "lambda -> 0+");
    CHECK_CLOSE(co_ogr_parabola_step(&e2, 1.0, 0.5, 0.1), -0.05, 1e-12, "lambda -> 0-");
    /* Zero gradient everywhere: no move, no NaN. */
    co_ogr_avg zero = {0};
    co_ogr_avg_update(&zero, 0.9, 0.0, 0.0);
    co_ogr_avg_update(&zero, 0.9, 1.0, 0.0);
    CHECK(co_ogr_parabola_step(&zero, 3.0, 0.5, 0.1) == 0, "zero gradient moves");
    co_ogr_avg empty = {0};
    CHECK(co_ogr_parabola_step(&empty, 3.0, 0.5, 0.1) == 0, "no averages yet moves");
}

/* ------------------------------------------------------------ the 1-d methods */

static const char *const ONE_D[] = {"ogr1d", "ogr1ds", "ogr1dc"};

/* On f = 0.5 L (theta - P)^2 in one coordinate the warm-up's averages already fit the line
 * exactly, so with alpha = 1 the first model step lands on P and the later ones stay. */
static void test_1d_lands_on_p(void)
{
    for (int m = 0; m < 3; m++) {
        problem pb;
        problem_init(&pb, 1, 1);
        pb.h[0] = 2.0;
        pb.p[0] = 0.75;
        pb.theta[0] = -1.0f;
        co_optim *o = make_1d(&pb, m, "lr=0.05,alpha=1,clip=100,warmup=3", 2);
        if (!o) continue;
        for (int t = 0; t < 6; t++) {
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
        }
        CHECK(fabsf(pb.theta[0] - 0.75f) > 0.1f, "%s: the warm-up alone already reached p", ONE_D[m]);
        problem_eval(&pb);
        co_optim_step(o, NULL, NULL);
        double lam = NAN, p = NAN;
        co_optim_diagnostic(o, "lambda", &lam, 1);
        co_optim_diagnostic(o, "p", &p, 1);
        CHECK_CLOSE(lam, 2.0, 1e-9, ONE_D[m]);
        CHECK(fabsf(pb.theta[0] - 0.75f) <= 1e-6f, "%s: alpha=1 step ends at %.9g, not p=0.75", ONE_D[m],
              pb.theta[0]);
        for (int t = 0; t < 8; t++) {
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
        }
        CHECK(fabsf(pb.theta[0] - 0.75f) <= 1e-6f, "%s: left p, at %.9g", ONE_D[m], pb.theta[0]);
        co_optim_free(o);
    }
}

/* A warm-up that overshoots reverses the momentum; modelling the same line with the
 * opposite orientation must not mirror the averages. */
static void test_1d_momentum_reversal(void)
{
    for (int m = 0; m < 3; m++) {
        problem pb;
        problem_init(&pb, 1, 1);
        pb.h[0] = 1.0;
        pb.p[0] = 0.5;
        pb.theta[0] = 2.0f;
        co_optim *o = make_1d(&pb, m, "lr=0.6,gamma=0.5,alpha=1,clip=100,warmup=4", 1);
        if (!o) continue;
        int crossings = 0;
        float prev = pb.theta[0];
        for (int t = 0; t < 8; t++) { /* the warm-up */
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
            crossings += (prev - 0.5f) * (pb.theta[0] - 0.5f) < 0;
            prev = pb.theta[0];
        }
        CHECK(crossings >= 2, "%s: the warm-up was meant to oscillate (%d crossings)", ONE_D[m], crossings);
        for (int t = 0; t < 12; t++) {
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
        }
        CHECK(fabsf(pb.theta[0] - 0.5f) <= 1e-6f, "%s: after a momentum reversal theta = %.9g, not p = 0.5",
              ONE_D[m], pb.theta[0]);
        co_optim_free(o);
    }
}

/* lambda < 0: each model step is downhill and at most alpha * clip long. */
static void test_1d_negative_curvature(void)
{
    for (int m = 0; m < 3; m++) {
        problem pb;
        problem_init(&pb, 1, 1);
        pb.h[0] = -1.5;
        pb.p[0] = 0.0;
        pb.theta[0] = 0.2f;
        const double alpha = 0.5, clip = 0.3;
        /* Eq. 4 as published: the sign-reversed, clipped step (faithful; the default is neg_gd). */
        co_optim *o = make_1d(&pb, m, "lr=0.01,alpha=0.5,clip=0.3,warmup=2,faithful=1", 3);
        if (!o) continue;
        for (int t = 0; t < 4; t++) {
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
        }
        for (int t = 0; t < 20; t++) {
            float before = pb.theta[0];
            double f0 = problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
            double lam = 0;
            co_optim_diagnostic(o, "lambda", &lam, 1);
            double f1 = -0.75 * (double)pb.theta[0] * pb.theta[0];
            CHECK(lam < 0, "%s step %d: lambda %g should be negative", ONE_D[m], t, lam);
            CHECK(f1 < f0, "%s step %d: f %g -> %g is not downhill", ONE_D[m], t, f0, f1);
            CHECK(fabsf(pb.theta[0] - before) <= alpha * clip * (1 + 1e-6), "%s step %d: |move| %g > alpha*clip",
                  ONE_D[m], t, fabsf(pb.theta[0] - before));
        }
        /* The clip binds once far from the maximum: exactly alpha * clip per step. */
        float before = pb.theta[0];
        problem_eval(&pb);
        co_optim_step(o, NULL, NULL);
        CHECK(fabs(fabsf(pb.theta[0] - before) - alpha * clip) < 1e-5, "%s: far move %g, expected alpha*clip",
              ONE_D[m], fabsf(pb.theta[0] - before));
        co_optim_free(o);

        /* neg_gd: Algorithm 3's alternative, plain gradient descent where lambda < 0. */
        problem_init(&pb, 1, 1);
        pb.h[0] = -1.5;
        pb.theta[0] = 0.2f;
        o = make_1d(&pb, m, "lr=0.01,clip=0.3,warmup=2,neg_gd=1", 3);
        if (!o) continue;
        run_steps(&pb, o, 4);
        for (int t = 0; t < 5; t++) {
            float before = pb.theta[0];
            problem_eval(&pb);
            float g = pb.grad[0];
            co_optim_step(o, NULL, NULL);
            CHECK(fabsf(pb.theta[0] - (before - 0.01f * g)) <= 1e-6f, "%s neg_gd: %.9g, gradient step gives %.9g",
                  ONE_D[m], pb.theta[0], before - 0.01f * g);
        }
        co_optim_free(o);
    }
}

static const char *const ALL[] = {"ogr1d", "ogr1ds", "ogr1dc", "ogr-asgd", "ogr-asgdc"};

/* f = c . theta: constant gradients, no curvature, zero gradient variance. */
static void test_constant_gradients(void)
{
    for (int m = 0; m < 5; m++) {
        problem pb;
        problem_init(&pb, 10, 2);
        for (int i = 0; i < 10; i++) {
            pb.c[i] = (i % 3 == 0 ? -1.0 : 0.5) * (1 + i);
            pb.theta[i] = 0.1f * (float)i;
        }
        co_optim *o = make(&pb, ALL[m], NULL);
        if (!o) continue;
        double f0 = problem_eval(&pb), f = f0;
        int ok = 1;
        for (int t = 0; t < 60 && ok; t++) {
            co_optim_step(o, NULL, NULL);
            f = problem_eval(&pb);
            ok = all_finite(&pb) && isfinite(f);
        }
        CHECK(ok, "%s: constant gradients produced a non-finite parameter", ALL[m]);
        CHECK(f < f0, "%s: constant gradients did not go downhill (%g -> %g)", ALL[m], f0, f);
        co_optim_free(o);
    }
}

/* ------------------------------------------------------------ coordinate-wise methods */

/* Steps until every coordinate is within tol of its minimum on sum 0.5 h_i (theta_i - p_i)^2
 * with h log-spaced over [1/sqrt(spread), sqrt(spread)]; -1 on NaN, max_steps + 1 if never. */
static int separable_steps(const char *name, const char *hp, double spread, int max_steps)
{
    problem pb;
    const int n = 16;
    problem_init(&pb, n, 2);
    for (int i = 0; i < n; i++) {
        pb.h[i] = pow(spread, (double)i / (n - 1) - 0.5);
        pb.p[i] = -1.0 + 2.0 * i / (n - 1);
        pb.theta[i] = 0;
    }
    co_optim *o = make(&pb, name, hp);
    if (!o) return -1;
    int steps = max_steps + 1;
    for (int t = 1; t <= max_steps; t++) {
        problem_eval(&pb);
        co_optim_step(o, NULL, NULL);
        if (!all_finite(&pb)) {
            steps = -1;
            break;
        }
        double worst = 0;
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(pb.theta[i] - pb.p[i]));
        if (worst < 1e-5) {
            steps = t;
            break;
        }
    }
    co_optim_free(o);
    return steps;
}

static void test_asgd_curvature_spread(void)
{
    /* With a weak prior (small initial dispersions) the rate sigma_theta/sigma_g becomes
     * 1/h_i per coordinate at once: the step count does not depend on the spread. Plain
     * gradient descent would need about spread * log(1/tol) / 2 steps (~7e6 here). */
    const char *weak[] = {"sigma_theta0=1e-3,sigma_g0=1e-3,faithful=1",
                          "sigma_theta0=1e-3,sigma_g0=1e-3,lambda_min=1e-6,faithful=1"};
    for (int m = 0; m < 2; m++) {
        const char *name = m ? "ogr-asgdc" : "ogr-asgd";
        int n1 = separable_steps(name, weak[m], 1.0, 2000);
        int n6 = separable_steps(name, weak[m], 1e6, 2000);
        printf("%s weak prior: %d steps at spread 1, %d at spread 1e6\n", name, n1, n6);
        CHECK(n1 > 0 && n1 < 200, "%s: spread 1 took %d steps", name, n1);
        CHECK(n6 > 0 && n6 <= 1.5 * n1 + 10, "%s: spread 1e6 took %d steps vs %d at spread 1", name, n6, n1);
        /* The paper's prior (dispersions 1) is forgotten at rate beta: a log(spread) delay only. */
        const char *paper = m ? "lambda_min=1e-6,faithful=1" : "faithful=1";
        int d1 = separable_steps(name, paper, 1.0, 2000), d6 = separable_steps(name, paper, 1e6, 2000);
        printf("%s paper prior: %d steps at spread 1, %d at spread 1e6\n", name, d1, d6);
        CHECK(d1 > 0 && d1 < 200, "%s paper prior: spread 1 took %d steps", name, d1);
        CHECK(d6 > 0 && d6 < 400, "%s paper prior: spread 1e6 took %d steps", name, d6);
    }
}

/* The first step of each method from its documented initial state. */
static void test_asgd_first_step(void)
{
    const double th0 = 0.4, g0 = 0.3, beta = 0.9, st0 = 0.2, sg0 = 0.5, alpha = 0.5;
    problem pb;
    problem_init(&pb, 1, 1);
    pb.h[0] = 0;
    pb.c[0] = g0;
    pb.theta[0] = (float)th0;
    co_optim *o = make(&pb, "ogr-asgd", "lr=0.5,beta=0.9,sigma_theta0=0.2,sigma_g0=0.5,eps=0,delta=0");
    problem_eval(&pb);
    co_optim_step(o, NULL, NULL);
    /* var_theta = beta st0^2 (theta equals its mean), var_g = beta (sg0^2 + (1-beta) g^2). */
    double rate = sqrt(beta * st0 * st0 / (beta * (sg0 * sg0 + (1 - beta) * g0 * g0)));
    CHECK_CLOSE(pb.theta[0], th0 - alpha * rate * g0, 1e-6, "ogr-asgd first step");
    co_optim_free(o);
    /* delta is a floor of the rate. */
    pb.theta[0] = (float)th0;
    o = make(&pb, "ogr-asgd", "lr=0.5,sigma_theta0=1e-6,delta=0.3");
    problem_eval(&pb);
    co_optim_step(o, NULL, NULL);
    CHECK_CLOSE(pb.theta[0], th0 - alpha * 0.3 * g0, 1e-6, "ogr-asgd rate floor delta");
    co_optim_free(o);
    /* Algorithm 9: lambda = 0 (no spread yet), nu = beta sg0^2 + (1-beta) (beta g)^2. */
    pb.theta[0] = (float)th0;
    o = make(&pb, "ogr-asgdc", "lr=0.5,beta=0.9,sigma_theta0=0.2,sigma_g0=0.5,gamma=0.1,lambda_min=1e-9,faithful=1");
    problem_eval(&pb);
    co_optim_step(o, NULL, NULL);
    double nu = beta * sg0 * sg0 + (1 - beta) * (beta * g0) * (beta * g0);
    double h = 0.1 * sqrt(nu / (beta * st0 * st0));
    CHECK_CLOSE(pb.theta[0], th0 - alpha * g0 / h, 1e-6, "ogr-asgdc first step");
    co_optim_free(o);
    /* lambda_min caps the rate at lr / lambda_min. */
    pb.theta[0] = (float)th0;
    o = make(&pb, "ogr-asgdc", "lr=0.5,gamma=1e-9,lambda_min=2");
    problem_eval(&pb);
    co_optim_step(o, NULL, NULL);
    CHECK_CLOSE(pb.theta[0], th0 - alpha * g0 / 2, 1e-6, "ogr-asgdc lambda_min");
    co_optim_free(o);
}

/* The coordinate-wise safeguards (docs/optimizers/ogr-asgd.md, "Safeguards"): rate_max caps
 * the rate at rate_max x lr (ogr-asgdc's default 1 turns its prior rate lr / (gamma
 * sigma_g0 / sigma_theta0), 10 lr here, into lr); rate_growth keeps each rate within that
 * factor of the average of its past rates, which starts at 1 (in units of lr). */
static void test_asgd_safeguards(void)
{
    const double th0 = 0.4, g0 = 0.3, alpha = 0.5;
    problem pb;
    problem_init(&pb, 1, 1);
    pb.h[0] = 0;
    pb.c[0] = g0;
    const char *hp[] = {NULL, "faithful=1", "rate_max=0.25", "rate_max=0,rate_growth=1.2"};
    /* First steps: prior rate 1/h with h = gamma sqrt(nu / var_theta) ~ 0.1, capped at 1 by the
     * default; the faithful one takes the paper's 1/h; growth 1.2 from an average of 1. */
    for (int v = 0; v < 4; v++) {
        pb.theta[0] = (float)th0;
        co_optim *o = make(&pb, "ogr-asgdc", hp[v]);
        problem_eval(&pb);
        co_optim_step(o, NULL, NULL);
        double move = (th0 - pb.theta[0]) / (alpha * g0);
        const double expect[] = {1, NAN, 0.25, 1.2};
        if (v == 1) CHECK(move > 5, "ogr-asgdc faithful: first rate %.4f, expected the prior's ~10", move);
        else CHECK(fabs(move - expect[v]) < 1e-5, "ogr-asgdc %s: first rate %.6f, expected %g", hp[v] ? hp[v] : "defaults",
                   move, expect[v]);
        co_optim_free(o);
    }
    /* rate_growth over many steps: no rate exceeds growth x the running average of the rates. */
    pb.theta[0] = (float)th0;
    co_optim *o = make(&pb, "ogr-asgd", "rate_growth=1.5,sigma_theta0=10,sigma_g0=1e-3");
    double avg = 1, worst = 0;
    for (int t = 0; t < 40; t++) {
        float before = pb.theta[0];
        problem_eval(&pb);
        co_optim_step(o, NULL, NULL);
        double rate = (before - pb.theta[0]) / (alpha * g0);
        worst = fmax(worst, rate / (1.5 * avg));
        avg = 0.9 * avg + 0.1 * rate;
    }
    CHECK(worst <= 1 + 1e-4, "ogr-asgd rate_growth=1.5: a rate reached %.5f x the bound", worst);
    CHECK(worst > 0.99, "the prior rate (10^4) never met the bound: the check cannot fail");
    co_optim_free(o);
}

/* Noisy gradients: ogr-asgdc stays finite and reaches the noise floor. */
static void test_asgdc_noisy(void)
{
    problem pb;
    problem_init(&pb, 16, 2);
    co_rng_seed(&pb.rng, 3, 0);
    pb.noise = 0.01;
    double f_min_gap = 0;
    for (int i = 0; i < 16; i++) {
        pb.h[i] = pow(100.0, (double)i / 15 - 0.5);
        pb.p[i] = -1.0 + 2.0 * i / 15;
        f_min_gap += 0.5 * pb.h[i] * pb.p[i] * pb.p[i];
    }
    for (int m = 3; m < 5; m++) {
        for (int i = 0; i < 16; i++) pb.theta[i] = 0;
        co_optim *o = make(&pb, ALL[m], NULL);
        double gap = 0;
        for (int t = 0; t < 400; t++) {
            problem_eval(&pb);
            co_optim_step(o, NULL, NULL);
        }
        for (int i = 0; i < 16; i++) gap += 0.5 * pb.h[i] * pow(pb.theta[i] - pb.p[i], 2);
        CHECK(all_finite(&pb), "%s: noisy quadratic went non-finite", ALL[m]);
        CHECK(gap < 1e-2 * f_min_gap, "%s: noisy quadratic gap %g of %g left", ALL[m], gap, f_min_gap);
        co_optim_free(o);
    }
}

/* ------------------------------------------------------------ make_moons */

static void test_moons(void)
{
    co_error err = {0};
    co_dataset *d = co_make_moons(300, 0.2, 11, &err);
    CHECK(d != NULL, "moons: %s", err.msg);
    if (!d) return;
    for (int m = 0; m < 5; m++) {
        co_model *model = co_model_new_mlp("mlp:2-64-1", CO_ACT_RELU, CO_ACT_NONE, &err);
        CHECK(model != NULL, "model: %s", err.msg);
        if (!model) continue;
        co_model_init(model, 5);
        int ng = co_model_ngroups(model);
        co_group groups[8];
        co_model_groups(model, groups);
        co_optim *o = co_optim_new(ALL[m], groups, ng, NULL, 5, &err);
        CHECK(o != NULL, "%s: %s", ALL[m], err.msg);
        double loss0 = NAN, acc0 = NAN;
        co_evaluate(model, d, CO_LOSS_BCE_LOGITS, 64, &loss0, &acc0, &err);
        co_train_config cfg;
        co_train_config_default(&cfg);
        cfg.epochs = 8;
        cfg.batch = 32;
        cfg.seed = 5;
        co_train_result res;
        co_status st = co_train(model, o, d, d, &cfg, &res, &err);
        CHECK(st == CO_OK, "%s training: %s", ALL[m], err.msg);
        double loss1 = NAN, acc1 = NAN;
        co_evaluate(model, d, CO_LOSS_BCE_LOGITS, 64, &loss1, &acc1, &err);
        printf("moons %-9s loss %.4f -> %.4f, accuracy %.3f -> %.3f\n", ALL[m], loss0, loss1, acc0, acc1);
        CHECK(isfinite(loss1) && loss1 < 0.6 * loss0, "%s: training loss %g -> %g", ALL[m], loss0, loss1);
        co_train_result_free(&res);
        co_optim_free(o);
        co_model_free(model);
    }
    co_dataset_free(d);
}

/* ------------------------------------------------------------ save -> load -> continue */

static void test_save_load(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_optim_ogr_%d.state", (int)getpid());
    const int save_at[] = {2, 5, 9, 14};
    for (int m = 0; m < 5; m++)
        for (int si = 0; si < 4; si++) {
            problem a;
            problem_init(&a, 12, 2);
            for (int i = 0; i < 12; i++) {
                a.h[i] = 0.5 + 0.3 * i;
                a.p[i] = 0.1 * i - 0.4;
                a.theta[i] = 0.05f * (float)(i - 6);
            }
            a.noise = 0.05;
            co_rng_seed(&a.rng, 9, 0);
            co_optim *o = m < 3 ? make_1d(&a, m, "warmup=3,clip=100", 4) : make(&a, ALL[m], NULL);
            if (!o) continue;
            run_steps(&a, o, save_at[si]);
            co_error err = {0};
            CHECK(co_optim_save(o, path, &err) == CO_OK, "%s save: %s", ALL[m], err.msg);
            problem b = a; /* same parameters and noise stream at the save point */
            problem_init(&b, 12, 2);
            memcpy(b.theta, a.theta, sizeof a.theta);
            memcpy(b.h, a.h, sizeof a.h);
            memcpy(b.p, a.p, sizeof a.p);
            b.noise = a.noise;
            b.rng = a.rng;
            run_steps(&a, o, 17);
            co_optim *o2 = make(&b, ALL[m], NULL);
            if (!o2) {
                co_optim_free(o);
                continue;
            }
            CHECK(co_optim_load(o2, path, &err) == CO_OK, "%s load: %s", ALL[m], err.msg);
            run_steps(&b, o2, 17);
            CHECK(memcmp(a.theta, b.theta, sizeof a.theta) == 0, "%s saved at step %d: continuation differs",
                  ALL[m], save_at[si]);
            co_optim_free(o);
            co_optim_free(o2);
        }
    unlink(path);
}

int main(void)
{
    test_regression_exact();
    test_step_rules();
    test_1d_lands_on_p();
    test_1d_momentum_reversal();
    test_1d_negative_curvature();
    test_constant_gradients();
    test_asgd_first_step();
    test_asgd_curvature_spread();
    test_asgdc_noisy();
    test_asgd_safeguards();
    test_moons();
    test_save_load();
    return co_test_finish();
}

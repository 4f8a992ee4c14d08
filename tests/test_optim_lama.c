/* LAMA-Adam (paper 002): the Hutchinson trace against exactly known per-layer Hessian
 * blocks, eq. 9's alpha and the clamp on the effective beta1 as they reach the update,
 * equality with Adam when alpha = 1, make_moons training, and save -> load -> continue. */
#include "optim/hutchinson.h"
#include "optim/lama_adam.h"
#include "curvopt.h"
#include "test_util.h"

#include <unistd.h>

#define MAXN 24

/* f = 0.5 x'Ax + b'x over two groups (the first n0 coordinates, then the rest). */
typedef struct {
    int n, n0;
    double A[MAXN][MAXN], b[MAXN];
    float x[MAXN], g[MAXN];
    co_group groups[2];
    int evals;
} quad;

static double quad_eval(void *ctx)
{
    quad *q = ctx;
    double f = 0;
    for (int i = 0; i < q->n; i++) {
        double gi = q->b[i];
        for (int j = 0; j < q->n; j++) gi += q->A[i][j] * q->x[j];
        q->g[i] = (float)gi;
        f += q->x[i] * (0.5 * (gi - q->b[i]) + q->b[i]);
    }
    q->evals++;
    return f;
}

/* Points the groups at q's own buffers (after q was copied). */
static void quad_bind(quad *q)
{
    int n = q->n, n0 = q->n0;
    for (int g = 0; g < 2; g++) {
        co_group *gr = &q->groups[g];
        gr->kind = CO_GROUP_DENSE;
        gr->ntensors = 1;
        gr->param[0] = q->x + (g ? n0 : 0);
        gr->grad[0] = q->g + (g ? n0 : 0);
        gr->size[0] = (size_t)(g ? n - n0 : n0);
    }
}

static void quad_init(quad *q, int n, int n0)
{
    memset(q, 0, sizeof *q);
    q->n = n;
    q->n0 = n0;
    quad_bind(q);
}

/* A random symmetric matrix with diagonal blocks of mean diagonal d0, d1 and a cross block
 * of size `cross`. */
static void quad_random(quad *q, uint64_t seed, double d0, double d1, double off, double cross)
{
    co_rng r;
    co_rng_seed(&r, seed, 0);
    for (int i = 0; i < q->n; i++)
        for (int j = 0; j <= i; j++) {
            int li = i >= q->n0, lj = j >= q->n0;
            double a = (i == j) ? (li ? d1 : d0) * (0.5 + co_rng_uniform(&r))
                                : (li == lj ? off : cross) * co_rng_normal(&r);
            q->A[i][j] = q->A[j][i] = a;
        }
    for (int i = 0; i < q->n; i++) {
        q->b[i] = 0.3 * co_rng_normal(&r);
        q->x[i] = (float)(0.5 * co_rng_normal(&r));
    }
}

static double block_trace(const quad *q, int l)
{
    double t = 0;
    for (int i = l ? q->n0 : 0; i < (l ? q->n : q->n0); i++) t += q->A[i][i];
    return t;
}

/* Variance of one joint probe's v_l'(Av)_l: every pair inside the block counts twice,
 * every pair across blocks once (hutchinson.h). */
static double probe_variance(const quad *q, int l)
{
    double var = 0;
    int lo = l ? q->n0 : 0, hi = l ? q->n : q->n0;
    for (int i = lo; i < hi; i++)
        for (int j = 0; j < q->n; j++) {
            if (j == i) continue;
            int inside = j >= lo && j < hi;
            if (inside && j > i) var += 4 * q->A[i][j] * q->A[i][j];
            if (!inside) var += q->A[i][j] * q->A[i][j];
        }
    return var;
}

/* ------------------------------------------------------------ Hutchinson */

static void test_hutchinson_diagonal(void)
{
    /* A diagonal Hessian makes every probe exact: v'Av = tr A for v in {-1, 1}^n. */
    quad q;
    quad_init(&q, 12, 5);
    quad_random(&q, 3, 2.0, 30.0, 0, 0);
    co_closure c = {.ctx = &q, .eval = quad_eval, .capture = NULL};
    quad_eval(&q);
    co_hutchinson h;
    co_error err = {0};
    CHECK(co_hutchinson_init(&h, q.groups, 2, &err) == CO_OK, "init: %s", err.msg);
    co_rng rng;
    co_rng_seed(&rng, 1, CO_STREAM_OPTIM);
    double tr[2], se[2];
    CHECK(co_hutchinson_trace(&h, q.groups, 2, &c, &rng, 5, 0.01, 0, tr, se, &err) == CO_OK, "trace: %s", err.msg);
    for (int l = 0; l < 2; l++) {
        CHECK_CLOSE(tr[l], block_trace(&q, l), 1e-4, "diagonal block trace");
        CHECK(se[l] < 1e-4 * block_trace(&q, l), "group %d: standard error %g of an exact estimate", l, se[l]);
    }
    co_hutchinson_free(&h);
}

static void test_hutchinson_blocks(void)
{
    /* Strong off-diagonal entries inside and across the layers: the estimates must centre
     * on the diagonal blocks' traces, within 3 standard errors of the analytic variance. */
    quad q;
    quad_init(&q, 16, 6);
    quad_random(&q, 5, 1.0, 4.0, 0.8, 1.5);
    co_closure c = {.ctx = &q, .eval = quad_eval, .capture = NULL};
    quad_eval(&q);
    float x0[MAXN], g0[MAXN];
    memcpy(x0, q.x, sizeof x0);
    memcpy(g0, q.g, sizeof g0);
    co_hutchinson h;
    co_error err = {0};
    CHECK(co_hutchinson_init(&h, q.groups, 2, &err) == CO_OK, "init: %s", err.msg);
    co_rng rng;
    co_rng_seed(&rng, 2, CO_STREAM_OPTIM);
    const int K = 3000;
    double tr[2], se[2];
    q.evals = 0;
    CHECK(co_hutchinson_trace(&h, q.groups, 2, &c, &rng, K, 0.01, 0, tr, se, &err) == CO_OK, "trace: %s", err.msg);
    CHECK(q.evals == K, "one closure evaluation per probe for all layers: %d for %d probes", q.evals, K);
    CHECK(memcmp(x0, q.x, sizeof x0) == 0, "parameters not restored bit for bit");
    CHECK(memcmp(g0, q.g, sizeof g0) == 0, "gradients not restored bit for bit");
    for (int l = 0; l < 2; l++) {
        double exact = block_trace(&q, l), sd = sqrt(probe_variance(&q, l) / K);
        printf("hutchinson group %d: %.4f +- %.4f (reported se %.4f), exact %.4f\n", l, tr[l], sd, se[l], exact);
        CHECK(fabs(tr[l] - exact) <= 3 * sd, "group %d: estimate %g, exact %g, 3 s.e. %g", l, tr[l], exact, 3 * sd);
        CHECK(se[l] > 0.85 * sd && se[l] < 1.15 * sd, "group %d: reported s.e. %g, analytic %g", l, se[l], sd);
    }
    /* The base gradient re-evaluated through the closure (the clipped-gradient path) gives
     * the same estimate from the same probes and still restores the caller's buffers. */
    for (int i = 0; i < q.n; i++) q.g[i] *= 0.25f; /* as if clipped */
    memcpy(g0, q.g, sizeof g0);
    co_rng r1, r2;
    co_rng_seed(&r1, 9, CO_STREAM_OPTIM);
    r2 = r1;
    double ta[2], tb[2];
    CHECK(co_hutchinson_trace(&h, q.groups, 2, &c, &r1, 50, 0.01, 1, ta, NULL, &err) == CO_OK, "%s", err.msg);
    CHECK(memcmp(g0, q.g, sizeof g0) == 0, "clipped gradients not restored");
    quad_eval(&q);
    CHECK(co_hutchinson_trace(&h, q.groups, 2, &c, &r2, 50, 0.01, 0, tb, NULL, &err) == CO_OK, "%s", err.msg);
    for (int l = 0; l < 2; l++) CHECK_CLOSE(ta[l], tb[l], 1e-9, "re-evaluated base gradient");
    co_hutchinson_free(&h);
}

/* ------------------------------------------------------------ eq. 9 */

static void test_alpha_formula(void)
{
    CHECK(co_lama_alpha(123.0, 0, 0.5, 1.5, 0) == 1.0, "lambda 0 must give alpha = 1 exactly");
    CHECK(co_lama_alpha(-7.0, 0, 0.3, 1.7, 1) == 1.0, "lambda 0 must give (min + max)/2 exactly");
    double prev = -1;
    for (int i = -40; i <= 40; i++) {
        double h = i * 25.0, a = co_lama_alpha(h, 0.01, 0.5, 1.5, 0);
        double ref = 0.5 + 1.0 / (1.0 + exp(-0.01 * h));
        CHECK_CLOSE(a, ref, 1e-12, "eq. 9");
        CHECK(a >= 0.5 && a <= 1.5, "alpha %g outside [0.5, 1.5]", a);
        CHECK(a > prev || a == 1.5 || i == -40, "alpha must grow with the trace (h %g)", h);
        prev = a;
        double inv = co_lama_alpha(h, 0.01, 0.5, 1.5, 1);
        CHECK_CLOSE(inv, 0.5 + 1.0 / (1.0 + exp(0.01 * h)), 1e-12, "invert=1 (paper §5.1)");
    }
    CHECK(co_lama_alpha(1e300, 1e10, 0.5, 1.5, 0) <= 1.5, "upper bound");
    CHECK(co_lama_alpha(-1e300, 1e10, 0.5, 1.5, 0) >= 0.5, "lower bound");
}

/* alpha_l from the layers' traces reaches the first moment, clamped at beta1_max. The test
 * follows two steps of Adam with the decays it expects and compares the second move. */
static void test_alpha_in_update(int invert)
{
    quad q;
    quad_init(&q, 10, 4);
    quad_random(&q, 7, 1.0, 20.0, 0, 0); /* diagonal: the traces are exact */
    for (int i = 0; i < 10; i++) q.A[i][i] = i < 4 ? 1.0 : 20.0;
    co_closure c = {.ctx = &q, .eval = quad_eval, .capture = NULL};
    char hp[160];
    snprintf(hp, sizeof hp, "lr=0.1,lambda=0.1,K=2,invert=%d", invert);
    co_error err = {0};
    co_optim *o = co_optim_new("lama-adam", q.groups, 2, hp, 3, &err);
    CHECK(o != NULL, "%s", err.msg);
    if (!o) return;
    CHECK(co_optim_needs(o) & CO_NEEDS_CLOSURE, "lama-adam must ask for a closure");
    quad_eval(&q);
    CHECK(co_optim_step(o, NULL, &err) != CO_OK, "a step without a closure must be refused");
    double m[MAXN] = {0}, v[MAXN] = {0};
    float before[MAXN];
    double b1eff[2] = {0, 0};
    for (int t = 1; t <= 2; t++) {
        quad_eval(&q);
        memcpy(before, q.x, sizeof before);
        float g[MAXN];
        memcpy(g, q.g, sizeof g);
        CHECK(co_optim_step(o, &c, &err) == CO_OK, "step: %s", err.msg);
        double lt[2], al[2], be[2];
        CHECK(co_optim_diagnostic(o, "layer_trace", lt, 2) == 2, "layer_trace diagnostic");
        CHECK(co_lama_adam_traces(o, lt, 2) == 2, "co_lama_adam_traces");
        co_optim_diagnostic(o, "alpha", al, 2);
        co_optim_diagnostic(o, "beta1_eff", be, 2);
        CHECK_CLOSE(lt[0], 1.0, 1e-4, "tr(H_0)/N_0");
        CHECK_CLOSE(lt[1], 20.0, 1e-4, "tr(H_1)/N_1");
        for (int l = 0; l < 2; l++) {
            CHECK_CLOSE(al[l], co_lama_alpha(lt[l], 0.1, 0.5, 1.5, invert), 1e-12, "alpha from the trace");
            CHECK(al[l] >= 0.5 && al[l] <= 1.5, "alpha %g out of range", al[l]);
            CHECK(be[l] <= 0.999, "effective beta1 %g above beta1_max", be[l]);
            CHECK_CLOSE(be[l], fmin(0.9 * al[l], 0.999), 1e-12, "effective beta1");
            b1eff[l] = be[l];
        }
        if (!invert) CHECK(al[1] > al[0] && be[1] == 0.999, "steeper layer: alpha %g vs %g, beta %g", al[1], al[0], be[1]);
        else CHECK(al[1] < al[0], "invert: steeper layer must get the smaller alpha (%g vs %g)", al[1], al[0]);
        double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t), worst = 0, scale = 0;
        for (int i = 0; i < q.n; i++) {
            double b = b1eff[i >= q.n0];
            m[i] = b * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * (double)g[i] * g[i];
            double want = -0.1 / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + 1e-8);
            double got = (double)q.x[i] - before[i];
            worst = fmax(worst, fabs(got - want));
            scale = fmax(scale, fabs(want));
        }
        CHECK(worst <= 1e-5 * scale, "step %d: move differs from Adam with the clamped decays by %g (of %g)", t, worst, scale);
    }
    co_optim_free(o);
}

/* The probe schedule (docs/optimizers/lama-adam.md): K evaluations at steps 1, 1 + interval,
 * ...; faithful=1 probes at every step whatever interval says (the paper's schedule). */
static void test_probe_schedule(void)
{
    const struct {
        const char *hp;
        int estimates; /* over 120 steps */
    } cases[] = {{"K=3", 3},                    /* the default interval, 50: steps 1, 51, 101 */
                 {"K=3,interval=7", 18},        /* ceil(120 / 7) */
                 {"K=3,faithful=1", 120},       /* every step */
                 {"K=3,interval=7,faithful=1", 120}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        quad q;
        quad_init(&q, 10, 4);
        quad_random(&q, 5, 1.0, 4.0, 0, 0);
        co_closure c = {.ctx = &q, .eval = quad_eval, .capture = NULL};
        co_error err = {0};
        co_optim *o = co_optim_new("lama-adam", q.groups, 2, cases[k].hp, 3, &err);
        CHECK(o != NULL, "%s: %s", cases[k].hp, err.msg);
        if (!o) continue;
        q.evals = 0;
        for (int t = 0; t < 120; t++) {
            quad_eval(&q);
            CHECK(co_optim_step(o, &c, &err) == CO_OK, "step: %s", err.msg);
        }
        int probes = q.evals - 120; /* less the training loop's own evaluation per step */
        CHECK(probes == 3 * cases[k].estimates, "%s: %d probe evaluations in 120 steps, expected %d", cases[k].hp,
              probes, 3 * cases[k].estimates);
        co_optim_free(o);
    }
}

static void test_bad_range(void)
{
    quad q;
    quad_init(&q, 6, 3);
    co_error err = {0};
    co_optim *o = co_optim_new("lama-adam", q.groups, 2, "alpha_min=1.2,alpha_max=0.8", 1, &err);
    CHECK(o == NULL && err.code == CO_EINVAL, "alpha_min > alpha_max must be refused");
    co_optim_free(o);
    o = co_optim_new("lama-adam", q.groups, 2, "beta1_max=1", 1, &err);
    CHECK(o == NULL, "beta1_max must stay below 1");
    co_optim_free(o);
}

/* ------------------------------------------------------------ make_moons */

typedef struct {
    co_model *model;
    co_optim *opt;
    co_dataset *data;
} moons_run;

static int moons_setup(moons_run *r, const char *optim, const char *hp, co_dataset *d)
{
    co_error err = {0};
    r->data = d;
    r->model = co_model_new_mlp("mlp:2-16-1", CO_ACT_RELU, CO_ACT_NONE, &err);
    CHECK(r->model != NULL, "model: %s", err.msg);
    if (!r->model) return 0;
    co_model_init(r->model, 42);
    co_group groups[8];
    co_model_groups(r->model, groups);
    r->opt = co_optim_new(optim, groups, co_model_ngroups(r->model), hp, 42, &err);
    CHECK(r->opt != NULL, "%s(%s): %s", optim, hp ? hp : "", err.msg);
    return r->opt != NULL;
}

static double moons_train(moons_run *r, int epochs, double clip)
{
    co_error err = {0};
    co_train_config cfg;
    co_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = 32;
    cfg.seed = 42;
    co_optim_set_clip(r->opt, clip);
    co_train_result res;
    co_status st = co_train(r->model, r->opt, r->data, r->data, &cfg, &res, &err);
    CHECK(st == CO_OK, "training: %s", err.msg);
    co_train_result_free(&res);
    double loss = NAN;
    co_evaluate(r->model, r->data, CO_LOSS_BCE_LOGITS, 64, &loss, NULL, &err);
    return loss;
}

static void moons_free(moons_run *r)
{
    co_optim_free(r->opt);
    co_model_free(r->model);
}

static void test_equals_adam(co_dataset *d)
{
    const char *cases[] = {"lambda=0", "lambda=0,alpha_min=0.25,alpha_max=1.75", "lambda=0,interval=3,K=2"};
    const double clips[] = {0, 0, 0.05};
    for (int c = 0; c < 3; c++) {
        moons_run a, l;
        if (!moons_setup(&a, "adam", "lr=0.01", d) || !moons_setup(&l, "lama-adam", cases[c], d)) continue;
        co_optim_set(l.opt, -1, "lr", 0.01, NULL);
        moons_train(&a, 3, clips[c]);
        moons_train(&l, 3, clips[c]);
        size_t n = co_model_param_count(a.model);
        float pa[256], pl[256];
        co_model_get_params(a.model, pa);
        co_model_get_params(l.model, pl);
        CHECK(n <= 256 && memcmp(pa, pl, n * sizeof(float)) == 0, "lama-adam(%s, clip %g) differs from Adam", cases[c],
              clips[c]);
        moons_free(&a);
        moons_free(&l);
    }
    /* ...and a curvature-driven alpha does change the run. */
    moons_run a, l;
    if (moons_setup(&a, "adam", "lr=0.01", d) && moons_setup(&l, "lama-adam", "lr=0.01,lambda=1", d)) {
        moons_train(&a, 1, 0);
        moons_train(&l, 1, 0);
        float pa[256], pl[256];
        co_model_get_params(a.model, pa);
        co_model_get_params(l.model, pl);
        CHECK(memcmp(pa, pl, co_model_param_count(a.model) * sizeof(float)) != 0, "lambda=1 left Adam unchanged");
    }
    moons_free(&a);
    moons_free(&l);
}

static void test_moons(co_dataset *d)
{
    const char *cases[] = {"lr=0.01", "lr=0.01,lambda=1", "lr=0.01,invert=1,lambda=1,ema_correction=1"};
    for (int c = 0; c < 3; c++) {
        moons_run r;
        if (!moons_setup(&r, "lama-adam", cases[c], d)) continue;
        double loss0 = NAN;
        co_evaluate(r.model, d, CO_LOSS_BCE_LOGITS, 64, &loss0, NULL, NULL);
        double loss1 = moons_train(&r, 8, 0);
        double lt[2], al[2];
        co_optim_diagnostic(r.opt, "layer_trace", lt, 2);
        co_optim_diagnostic(r.opt, "alpha", al, 2);
        printf("moons lama-adam(%s): loss %.4f -> %.4f; tr(H_l)/N_l %.4g %.4g, alpha %.4f %.4f\n", cases[c], loss0,
               loss1, lt[0], lt[1], al[0], al[1]);
        CHECK(isfinite(loss1) && loss1 < 0.6 * loss0, "%s: training loss %g -> %g", cases[c], loss0, loss1);
        moons_free(&r);
    }
}

/* ------------------------------------------------------------ save -> load -> continue */

static void run_quad(quad *q, co_optim *o, int steps)
{
    co_closure c = {.ctx = q, .eval = quad_eval, .capture = NULL};
    co_error err = {0};
    for (int s = 0; s < steps; s++) {
        quad_eval(q);
        CHECK(co_optim_step(o, &c, &err) == CO_OK, "step: %s", err.msg);
    }
}

static void test_save_load(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_optim_lama_%d.state", (int)getpid());
    /* interval 3 and saves between estimates: the stored alpha must carry over; the probe
     * stream decides the estimates, so it must carry over too. */
    const char *hp = "lr=0.05,lambda=2,K=2,interval=3,ema_correction=1";
    const int save_at[] = {1, 4, 5};
    for (int si = 0; si < 3; si++) {
        quad a;
        quad_init(&a, 12, 5);
        quad_random(&a, 11, 1.0, 3.0, 0.5, 0.5);
        co_error err = {0};
        co_optim *o = co_optim_new("lama-adam", a.groups, 2, hp, 8, &err);
        CHECK(o != NULL, "%s", err.msg);
        if (!o) continue;
        run_quad(&a, o, save_at[si]);
        CHECK(co_optim_save(o, path, &err) == CO_OK, "save: %s", err.msg);
        quad b = a, fresh = a;
        quad_bind(&b);
        quad_bind(&fresh);
        run_quad(&a, o, 7);
        co_optim *o2 = co_optim_new("lama-adam", b.groups, 2, hp, 8, &err);
        co_optim *o3 = co_optim_new("lama-adam", fresh.groups, 2, hp, 8, &err);
        if (!o2 || !o3) {
            co_optim_free(o);
            co_optim_free(o2);
            co_optim_free(o3);
            continue;
        }
        CHECK(co_optim_load(o2, path, &err) == CO_OK, "load: %s", err.msg);
        run_quad(&b, o2, 7);
        run_quad(&fresh, o3, 7);
        CHECK(memcmp(a.x, b.x, sizeof a.x) == 0, "saved at step %d: continuation differs", save_at[si]);
        CHECK(memcmp(a.x, fresh.x, sizeof a.x) != 0, "saved at step %d: a fresh optimizer matched too", save_at[si]);
        co_optim_free(o);
        co_optim_free(o2);
        co_optim_free(o3);
    }
    unlink(path);
}

int main(void)
{
    test_hutchinson_diagonal();
    test_hutchinson_blocks();
    test_alpha_formula();
    test_alpha_in_update(0);
    test_alpha_in_update(1);
    test_bad_range();
    test_probe_schedule();
    co_error err = {0};
    co_dataset *d = co_make_moons(300, 0.2, 11, &err);
    CHECK(d != NULL, "moons: %s", err.msg);
    if (d) {
        test_equals_adam(d);
        test_moons(d);
        co_dataset_free(d);
    }
    test_save_load();
    return co_test_finish();
}

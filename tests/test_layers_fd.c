/* Finite-difference checks in double precision for every MLP layer and loss: a double
 * reference forward written here (the same math as the float code), central differences
 * of it, against the float analytic backward; plus the float forward against the
 * reference. Then PyTorch's default initialisation in distribution. */
#include "nn/layers.h"
#include "test_util.h"

#include <curvopt.h>

#define H 1e-6

static double rnd(co_rng *r) { return 2 * co_rng_uniform(r) - 1; }

/* ---------------------------------------------------------------- Linear */

static void ref_linear(double *y, const double *x, const double *w, const double *b, int B, int I, int O)
{
    for (int s = 0; s < B; s++)
        for (int o = 0; o < O; o++) {
            double v = b[o];
            for (int i = 0; i < I; i++) v += x[s * I + i] * w[o * I + i];
            y[s * O + o] = v;
        }
}

/* L = sum(y * r) for a fixed random r, so dL/dy = r. */
static double lin_objective(const double *x, const double *w, const double *b, const double *r, int B, int I, int O)
{
    double y[512], L = 0;
    ref_linear(y, x, w, b, B, I, O);
    for (int k = 0; k < B * O; k++) L += y[k] * r[k];
    return L;
}

static void test_linear(void)
{
    enum { B = 70, I = 6, O = 4 }; /* three batch blocks, the last one partial */
    co_rng g;
    co_rng_seed(&g, 1, 1);
    double x[B * I], w[O * I], b[O], r[B * O];
    float xf[B * I], wf[O * I], bf[O], rf[B * O], yf[B * O], dx[B * I], dw[O * I], db[O];
    for (int k = 0; k < B * I; k++) xf[k] = (float)(x[k] = rnd(&g));
    for (int k = 0; k < O * I; k++) wf[k] = (float)(w[k] = rnd(&g));
    for (int k = 0; k < O; k++) bf[k] = (float)(b[k] = rnd(&g));
    for (int k = 0; k < B * O; k++) rf[k] = (float)(r[k] = rnd(&g));
    for (int k = 0; k < B * I; k++) x[k] = xf[k];
    for (int k = 0; k < O * I; k++) w[k] = wf[k];
    for (int k = 0; k < O; k++) b[k] = bf[k];
    for (int k = 0; k < B * O; k++) r[k] = rf[k];
    co_linear_forward(yf, xf, wf, bf, B, I, O);
    double y[B * O];
    ref_linear(y, x, w, b, B, I, O);
    for (int k = 0; k < B * O; k++) CHECK_CLOSE(yf[k], y[k], 1e-5, "linear forward");
    float *work = malloc(co_linear_work(B, I, O) * sizeof(float) + 1);
    co_linear_backward(dx, dw, db, rf, xf, wf, B, I, O, work);
    double *vars[3] = {x, w, b};
    float *grads[3] = {dx, dw, db};
    int sizes[3] = {B * I, O * I, O};
    const char *what[3] = {"linear dx", "linear dW", "linear db"};
    for (int v = 0; v < 3; v++)
        for (int k = 0; k < sizes[v]; k++) {
            double keep = vars[v][k];
            vars[v][k] = keep + H;
            double lp = lin_objective(x, w, b, r, B, I, O);
            vars[v][k] = keep - H;
            double lm = lin_objective(x, w, b, r, B, I, O);
            vars[v][k] = keep;
            CHECK_CLOSE(grads[v][k], (lp - lm) / (2 * H), 1e-4, what[v]);
        }
    /* dx may be skipped (the first layer): the parameter gradients are unchanged. */
    float dw2[O * I], db2[O];
    co_linear_backward(NULL, dw2, db2, rf, xf, wf, B, I, O, work);
    CHECK(memcmp(dw, dw2, sizeof dw) == 0 && memcmp(db, db2, sizeof db) == 0, "dx=NULL changed dW/db");
    free(work);
}

/* ---------------------------------------------------------------- activations */

static double ref_act(co_act a, double x)
{
    switch (a) {
    case CO_ACT_NONE: return x;
    case CO_ACT_RELU: return x > 0 ? x : 0;
    case CO_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case CO_ACT_TANH: return tanh(x);
    }
    return NAN;
}

static void test_activations(void)
{
    enum { N = 64 };
    co_rng g;
    co_rng_seed(&g, 2, 1);
    for (int a = CO_ACT_NONE; a <= CO_ACT_TANH; a++) {
        float x[N], y[N], dy[N], dx[N];
        for (int k = 0; k < N; k++) {
            double v = 4 * rnd(&g);
            if (fabs(v) < 1e-3) v = 0.5; /* keep away from ReLU's kink */
            x[k] = (float)v;
            dy[k] = (float)rnd(&g);
        }
        x[0] = 30.0f; /* saturated sigmoid/tanh must stay finite */
        x[1] = -30.0f;
        co_act_forward((co_act)a, y, x, N);
        co_act_backward((co_act)a, dx, dy, y, N);
        for (int k = 0; k < N; k++) {
            CHECK_CLOSE(y[k], ref_act((co_act)a, x[k]), 1e-6, co_act_name((co_act)a));
            double fd = (ref_act((co_act)a, x[k] + H) - ref_act((co_act)a, x[k] - H)) / (2 * H) * dy[k];
            CHECK_CLOSE(dx[k], fd, 1e-4, co_act_name((co_act)a));
        }
    }
}

/* ---------------------------------------------------------------- losses */

static double ref_loss(co_loss_kind kind, const double *z, const double *y, int B, int D)
{
    double L = 0;
    for (int s = 0; s < B; s++) {
        if (kind == CO_LOSS_CROSS_ENTROPY) {
            double mx = z[s * D], se = 0;
            for (int j = 1; j < D; j++) mx = fmax(mx, z[s * D + j]);
            for (int j = 0; j < D; j++) se += exp(z[s * D + j] - mx);
            L += mx + log(se) - z[s * D + (int)y[s]];
            continue;
        }
        for (int j = 0; j < D; j++) {
            double v = z[s * D + j], t = y[s * D + j];
            if (kind == CO_LOSS_BCE_LOGITS) L += -(t * log(1 / (1 + exp(-v))) + (1 - t) * log(1 - 1 / (1 + exp(-v))));
            else if (kind == CO_LOSS_BCE) L += -(t * log(v) + (1 - t) * log(1 - v));
            else L += (v - t) * (v - t);
        }
    }
    return kind == CO_LOSS_CROSS_ENTROPY ? L / B : L / (B * D);
}

static void test_losses(void)
{
    enum { B = 6, D = 3 };
    co_rng g;
    co_rng_seed(&g, 3, 1);
    const char *names[] = {"bce-logits", "bce", "cross-entropy", "mse"};
    for (int kind = 0; kind < 4; kind++) {
        int d = kind == CO_LOSS_CROSS_ENTROPY ? D : 1;
        int dim = kind == CO_LOSS_MSE ? D : d;
        double z[B * D], y[B * D];
        float zf[B * D], yf[B * D], dz[B * D];
        for (int k = 0; k < B * dim; k++) {
            double v = kind == CO_LOSS_BCE ? 0.1 + 0.8 * co_rng_uniform(&g) : 3 * rnd(&g);
            zf[k] = (float)v;
            z[k] = zf[k];
        }
        for (int s = 0; s < B; s++)
            for (int j = 0; j < dim; j++) {
                double t = kind == CO_LOSS_CROSS_ENTROPY ? (double)co_rng_below(&g, D)
                           : kind == CO_LOSS_MSE          ? rnd(&g)
                                                          : (double)(co_rng_below(&g, 2));
                if (kind == CO_LOSS_CROSS_ENTROPY && j > 0) continue;
                yf[s * (kind == CO_LOSS_CROSS_ENTROPY ? 1 : dim) + j] = (float)t;
                y[s * (kind == CO_LOSS_CROSS_ENTROPY ? 1 : dim) + j] = t;
            }
        double L = co_loss((co_loss_kind)kind, zf, yf, B, dim, dz);
        CHECK_CLOSE(L, ref_loss((co_loss_kind)kind, z, y, B, dim), 1e-6, names[kind]);
        for (int k = 0; k < B * dim; k++) {
            double keep = z[k];
            z[k] = keep + H;
            double lp = ref_loss((co_loss_kind)kind, z, y, B, dim);
            z[k] = keep - H;
            double lm = ref_loss((co_loss_kind)kind, z, y, B, dim);
            z[k] = keep;
            CHECK_CLOSE(dz[k], (lp - lm) / (2 * H), 1e-5, names[kind]);
        }
    }
    /* Extreme logits stay finite (the stable forms). */
    float big[2] = {80, -80}, t[2] = {0, 1}, d[2];
    double L = co_loss(CO_LOSS_BCE_LOGITS, big, t, 2, 1, d);
    CHECK(isfinite(L) && fabs(L - 80) < 1e-3, "bce-logits at |z| = 80: %g", L);
    float p[2] = {1, 0}; /* confidently wrong: each term is the clamp, 100 */
    L = co_loss(CO_LOSS_BCE, p, t, 2, 1, d);
    CHECK(isfinite(L) && fabs(L - 100) < 1e-9 && isfinite(d[0]) && isfinite(d[1]), "bce clamps log at -100: %g", L);
}

/* ---------------------------------------------------------------- whole MLP */

typedef struct {
    const char *spec;
    co_act hidden, output;
    co_loss_kind loss;
} mlp_case;

enum { MLP_MAX_WIDTH = 16, MLP_MAX_LAYERS = 4, MLP_BATCH = 5 };

/* The double reference forward of an MLP from its flat parameters (per layer W then b, as
 * co_model_get_params lays them out). Returns 0 when a ReLU pre-activation lies within 1e-3
 * of the kink, where finite differences do not measure the one-sided derivative. */
static int ref_mlp(const int *sizes, int nsizes, co_act hidden, co_act output, const double *p, const double *x,
                   double *out)
{
    double a[MLP_BATCH * MLP_MAX_WIDTH], z[MLP_BATCH * MLP_MAX_WIDTH];
    int smooth = 1;
    memcpy(a, x, sizeof(double) * MLP_BATCH * sizes[0]);
    size_t off = 0;
    for (int l = 0; l + 1 < nsizes; l++) {
        int in = sizes[l], o = sizes[l + 1];
        ref_linear(z, a, p + off, p + off + (size_t)in * o, MLP_BATCH, in, o);
        off += (size_t)in * o + o;
        co_act act = l + 2 == nsizes ? output : hidden;
        for (int k = 0; k < MLP_BATCH * o; k++) {
            if (act == CO_ACT_RELU && fabs(z[k]) < 1e-3) smooth = 0;
            a[k] = ref_act(act, z[k]);
        }
    }
    memcpy(out, a, sizeof(double) * MLP_BATCH * sizes[nsizes - 1]);
    return smooth;
}

static int parse_widths(const char *spec, int *sizes)
{
    int n = 0;
    for (const char *p = spec + 4; *p; p += *p == '-') sizes[n++] = (int)strtol(p, (char **)&p, 10);
    return n;
}

static void test_mlp_case(const mlp_case *c)
{
    int sizes[MLP_MAX_LAYERS + 1] = {0};
    int nsizes = parse_widths(c->spec, sizes), in = sizes[0], D = sizes[nsizes - 1];
    co_error err;
    co_model *m = co_model_new_mlp(c->spec, c->hidden, c->output, &err);
    CHECK(m != NULL, "%s: %s", c->spec, err.msg);
    if (!m) return;
    size_t n = co_model_param_count(m);
    size_t expect = 0;
    for (int l = 0; l + 1 < nsizes; l++) expect += (size_t)sizes[l] * sizes[l + 1] + sizes[l + 1];
    CHECK(n == expect, "%s: parameter count %zu, expected %zu", c->spec, n, expect);
    float *pf = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
    double *p = malloc(n * sizeof(double));
    double x[MLP_BATCH * MLP_MAX_WIDTH], y[MLP_BATCH * MLP_MAX_WIDTH], ref_out[MLP_BATCH * MLP_MAX_WIDTH];
    float xf[MLP_BATCH * MLP_MAX_WIDTH], yf[MLP_BATCH * MLP_MAX_WIDTH], dout[MLP_BATCH * MLP_MAX_WIDTH];
    int ydim = c->loss == CO_LOSS_CROSS_ENTROPY ? 1 : D;
    /* Draw initialisations and inputs until no ReLU sits at its kink (deterministic). */
    int smooth = 0;
    for (uint64_t seed = 4; seed < 64 && !smooth; seed++) {
        co_model_init(m, seed);
        co_model_get_params(m, pf);
        for (size_t i = 0; i < n; i++) p[i] = pf[i];
        co_rng g;
        co_rng_seed(&g, seed, 1);
        for (int k = 0; k < MLP_BATCH * in; k++) x[k] = xf[k] = (float)(2 * rnd(&g));
        for (int k = 0; k < MLP_BATCH * ydim; k++) {
            float t = c->loss == CO_LOSS_CROSS_ENTROPY ? (float)co_rng_below(&g, (uint64_t)D)
                      : c->loss == CO_LOSS_MSE         ? (float)rnd(&g)
                                                       : (float)co_rng_below(&g, 2);
            yf[k] = t;
            y[k] = t;
        }
        smooth = ref_mlp(sizes, nsizes, c->hidden, c->output, p, x, ref_out);
    }
    CHECK(smooth, "%s: no seed kept the ReLUs off their kink", c->spec);
    const float *out = co_model_forward(m, xf, MLP_BATCH, 1, &err);
    CHECK(out != NULL, "%s: forward: %s", c->spec, err.msg);
    if (!out) goto done;
    double out_err = 0;
    for (int k = 0; k < MLP_BATCH * D; k++) out_err = fmax(out_err, fabs(out[k] - ref_out[k]) / fmax(1, fabs(ref_out[k])));
    CHECK(out_err < 1e-5, "%s: float forward differs from the double reference by %.3g", c->spec, out_err);
    double L = co_loss(c->loss, out, yf, MLP_BATCH, D, dout);
    CHECK_CLOSE(L, ref_loss(c->loss, ref_out, y, MLP_BATCH, D), 1e-5, c->spec);
    co_model_backward(m, dout);
    co_group gr[MLP_MAX_LAYERS];
    co_model_groups(m, gr);
    size_t off = 0;
    for (int l = 0; l < co_model_ngroups(m); l++)
        for (int k = 0; k < gr[l].ntensors; k++) {
            memcpy(grad + off, gr[l].grad[k], gr[l].size[k] * sizeof(float));
            off += gr[l].size[k];
        }
    CHECK(off == n, "%s: the groups hold %zu of %zu parameters", c->spec, off, n);
    /* Central differences of the double reference: the float gradient must agree to 1e-4 of
     * its own size. Entries under 0.1% of the largest come from cancelling float sums, so
     * they are measured against that 0.1% instead. */
    double fd_max = 0, worst = 0;
    double *fd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double keep = p[i], o[MLP_BATCH * MLP_MAX_WIDTH];
        p[i] = keep + H;
        ref_mlp(sizes, nsizes, c->hidden, c->output, p, x, o);
        double lp = ref_loss(c->loss, o, y, MLP_BATCH, D);
        p[i] = keep - H;
        ref_mlp(sizes, nsizes, c->hidden, c->output, p, x, o);
        double lm = ref_loss(c->loss, o, y, MLP_BATCH, D);
        p[i] = keep;
        fd[i] = (lp - lm) / (2 * H);
        fd_max = fmax(fd_max, fabs(fd[i]));
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(grad[i] - fd[i]) / (fabs(fd[i]) + 1e-3 * fd_max);
        worst = fmax(worst, e);
        if (e > 1e-4) {
            if (bad++ < 5)
                fprintf(stderr, "%s parameter %zu: analytic %.9g vs finite difference %.9g\n", c->spec, i, grad[i], fd[i]);
        }
    }
    CHECK(bad == 0 && fd_max > 0, "%s: %d of %zu gradients off by more than 1e-4 (worst %.3g)", c->spec, bad, n, worst);
    printf("%-14s %-7s %-13s forward %.2g, gradient %.2g (largest |g| %.3g)\n", c->spec, co_act_name(c->hidden),
           c->loss == CO_LOSS_CROSS_ENTROPY ? "cross-entropy"
           : c->loss == CO_LOSS_MSE         ? "mse"
           : c->loss == CO_LOSS_BCE         ? "bce"
                                            : "bce-logits",
           out_err, worst, fd_max);
    free(fd);
done:
    free(p);
    free(pf);
    free(grad);
    co_model_free(m);
}

static void test_mlp(void)
{
    const mlp_case cases[] = {
        {"mlp:3-7-5-2", CO_ACT_TANH, CO_ACT_NONE, CO_LOSS_CROSS_ENTROPY},
        {"mlp:4-8-6-1", CO_ACT_RELU, CO_ACT_NONE, CO_LOSS_BCE_LOGITS},
        {"mlp:3-6-1", CO_ACT_SIGMOID, CO_ACT_SIGMOID, CO_LOSS_BCE},
        {"mlp:2-5-4-3", CO_ACT_RELU, CO_ACT_TANH, CO_LOSS_MSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_mlp_case(&cases[i]);
}

/* ---------------------------------------------------------------- init */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov distance of a sample from U(-b, b) (sorts the sample). */
static double ks_uniform(float *v, size_t n, double b)
{
    qsort(v, n, sizeof *v, cmp_float);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double F = (v[i] + b) / (2 * b);
        d = fmax(d, fmax((i + 1.0) / n - F, F - (double)i / n));
    }
    return d;
}

static void check_uniform(const char *what, const float *v, size_t n, double b)
{
    double mean = 0, var = 0;
    int outside = 0;
    for (size_t i = 0; i < n; i++) {
        mean += v[i];
        outside += !(fabs(v[i]) <= b);
    }
    mean /= n;
    for (size_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
    var /= n;
    CHECK(outside == 0, "%s: %d of %zu values outside +-1/sqrt(fan_in) = %.5g", what, outside, n, b);
    /* U(-b, b): mean 0 with s.e. b/sqrt(3n); variance b^2/3 with s.e. b^2 sqrt(4/(45n)). */
    double se_mean = b / sqrt(3.0 * n), se_var = b * b * sqrt(4.0 / (45.0 * n));
    CHECK(fabs(mean) < 4 * se_mean, "%s: mean %.3g is %.1f standard errors from 0", what, mean, mean / se_mean);
    CHECK(fabs(var - b * b / 3) < 4 * se_var, "%s: variance %.5g vs %.5g (%.1f standard errors)", what, var, b * b / 3,
          (var - b * b / 3) / se_var);
    float *sorted = malloc(n * sizeof *sorted);
    memcpy(sorted, v, n * sizeof *sorted);
    double ks = ks_uniform(sorted, n, b), crit = 1.628 / sqrt((double)n); /* asymptotic 1% value */
    CHECK(ks < crit, "%s: KS statistic %.5f above the 1%% critical value %.5f", what, ks, crit);
    printf("%-18s n=%-7zu mean %+.2f se, variance %+.2f se, KS %.5f (1%% critical %.5f)\n", what, n, mean / se_mean,
           (var - b * b / 3) / se_var, ks, crit);
    free(sorted);
}

static void test_init(void)
{
    co_model *m = co_model_new_mlp("mlp:512-512-300-1", CO_ACT_RELU, CO_ACT_NONE, NULL);
    co_model_init(m, 11);
    co_group gr[3];
    co_model_groups(m, gr);
    /* Each Linear's weights and biases share the bound 1/sqrt(fan_in) (torch.nn.Linear). */
    check_uniform("weight 512x512", gr[0].param[0], gr[0].size[0], 1 / sqrt(512.0));
    check_uniform("bias 512 (fan 512)", gr[0].param[1], gr[0].size[1], 1 / sqrt(512.0));
    check_uniform("weight 300x512", gr[1].param[0], gr[1].size[0], 1 / sqrt(512.0));
    check_uniform("weight 1x300", gr[2].param[0], gr[2].size[0], 1 / sqrt(300.0));
    /* A layer with fan_in 300 and out 1: its bias (one value) must still respect its bound. */
    CHECK(fabs(gr[2].param[1][0]) <= 1 / sqrt(300.0), "last bias %g outside its bound", gr[2].param[1][0]);
    /* A distribution with the wrong bound must fail the same checks: scale by 1.05. */
    size_t nw = gr[0].size[0];
    float *scaled = malloc(nw * sizeof *scaled);
    for (size_t i = 0; i < nw; i++) scaled[i] = 1.05f * gr[0].param[0][i];
    CHECK(ks_uniform(scaled, nw, 1 / sqrt(512.0)) > 1.628 / sqrt((double)nw), "KS cannot tell a 5%% wider bound");
    free(scaled);
    /* Same seed, same values everywhere; another seed, other values. */
    size_t n = co_model_param_count(m);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    co_model_get_params(m, a);
    co_model_init(m, 11);
    co_model_get_params(m, b);
    CHECK(memcmp(a, b, n * sizeof *a) == 0, "same seed gave different parameters");
    co_model_init(m, 12);
    co_model_get_params(m, b);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += a[i] == b[i];
    CHECK(same < n / 1000, "another seed left %zu of %zu parameters equal", same, n);
    free(a);
    free(b);
    co_model_free(m);
}

/* torch's LogSoftmax + NLLLoss: the loss is minus the mean log-probability of the labels,
 * its gradient -1/B at the label; through the log-softmax backward the gradient at the
 * logits equals cross-entropy's on the logits, and so does the loss. */
static void test_nll_after_logsoftmax(void)
{
    enum { B = 5, D = 7 };
    co_rng g;
    co_rng_seed(&g, 31, CO_STREAM_INIT);
    float z[B * D], y[B], lp[B * D], d_nll[B * D], d_lp[B * D], d_ce[B * D];
    for (int i = 0; i < B * D; i++) z[i] = (float)(4 * co_rng_uniform(&g) - 2);
    for (int b = 0; b < B; b++) y[b] = (float)co_rng_below(&g, D);
    co_layer *l = co_logsoftmax_new(D);
    CHECK(l != NULL, "logsoftmax layer");
    l->ops->forward(l, z, lp, B, 1);
    double nll = co_loss(CO_LOSS_NLL, lp, y, B, D, d_nll);
    double by_hand = 0;
    for (int b = 0; b < B; b++) by_hand -= (double)lp[b * D + (int)y[b]] / B;
    CHECK(fabs(nll - by_hand) < 1e-12, "NLL %.9g vs %.9g", nll, by_hand);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < D; j++) bad += d_nll[b * D + j] != (j == (int)y[b] ? -1.0f / B : 0.0f);
    CHECK(bad == 0, "NLL gradient off at %d places", bad);
    l->ops->backward(l, z, lp, d_nll, d_lp, B);
    double ce = co_loss(CO_LOSS_CROSS_ENTROPY, z, y, B, D, d_ce);
    CHECK(fabs(nll - ce) < 1e-6, "logsoftmax + NLL %.9g vs cross-entropy %.9g", nll, ce);
    double worst = 0;
    for (int i = 0; i < B * D; i++) worst = fmax(worst, fabs((double)d_lp[i] - d_ce[i]));
    CHECK(worst < 1e-7, "gradients at the logits differ by %.3g", worst);
    CHECK(co_correct(CO_LOSS_NLL, lp, y, B, D) == co_correct(CO_LOSS_CROSS_ENTROPY, z, y, B, D), "accuracy");
    co_layer_free(l);
}

int main(void)
{
    test_nll_after_logsoftmax();
    test_linear();
    test_activations();
    test_losses();
    test_mlp();
    test_init();
    return co_test_finish();
}

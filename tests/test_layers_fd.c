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
    double y[256], L = 0;
    ref_linear(y, x, w, b, B, I, O);
    for (int k = 0; k < B * O; k++) L += y[k] * r[k];
    return L;
}

static void test_linear(void)
{
    enum { B = 5, I = 6, O = 4 };
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
    co_linear_backward(dx, dw, db, rf, xf, wf, B, I, O);
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
    co_linear_backward(NULL, dw2, db2, rf, xf, wf, B, I, O);
    CHECK(memcmp(dw, dw2, sizeof dw) == 0 && memcmp(db, db2, sizeof db) == 0, "dx=NULL changed dW/db");
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

static void test_mlp(void)
{
    co_error err;
    co_model *m = co_model_new_mlp("mlp:3-7-5-2", CO_ACT_TANH, CO_ACT_NONE, &err);
    CHECK(m != NULL, "mlp: %s", err.msg);
    co_model_init(m, 4);
    enum { B = 4 };
    co_rng g;
    co_rng_seed(&g, 5, 1);
    float x[B * 3], y[B], dout[B * 2];
    for (int k = 0; k < B * 3; k++) x[k] = (float)rnd(&g);
    for (int s = 0; s < B; s++) y[s] = (float)co_rng_below(&g, 2);
    const float *out = co_model_forward(m, x, B, 1, &err);
    co_loss(CO_LOSS_CROSS_ENTROPY, out, y, B, 2, dout);
    co_model_backward(m, dout);
    size_t n = co_model_param_count(m);
    CHECK(n == 3 * 7 + 7 + 7 * 5 + 5 + 5 * 2 + 2, "parameter count %zu", n);
    float *p = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
    co_model_get_params(m, p);
    co_group gr[4];
    co_model_groups(m, gr);
    size_t off = 0;
    for (int l = 0; l < co_model_ngroups(m); l++)
        for (int k = 0; k < gr[l].ntensors; k++) {
            memcpy(grad + off, gr[l].grad[k], gr[l].size[k] * sizeof(float));
            off += gr[l].size[k];
        }
    /* Float forward differences are noisy: a larger step, a looser bound. */
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + h;
        co_model_set_params(m, p);
        double lp = co_loss(CO_LOSS_CROSS_ENTROPY, co_model_forward(m, x, B, 1, NULL), y, B, 2, NULL);
        p[i] = keep - h;
        co_model_set_params(m, p);
        double lm = co_loss(CO_LOSS_CROSS_ENTROPY, co_model_forward(m, x, B, 1, NULL), y, B, 2, NULL);
        p[i] = keep;
        CHECK(fabs(grad[i] - (lp - lm) / (2 * h)) < 2e-3, "MLP parameter %zu: analytic %.6f vs numeric %.6f", i, grad[i],
              (lp - lm) / (2 * h));
    }
    co_model_set_params(m, p);
    free(p);
    free(grad);
    co_model_free(m);
}

/* ---------------------------------------------------------------- init */

static void test_init(void)
{
    co_model *m = co_model_new_mlp("mlp:400-300-1", CO_ACT_RELU, CO_ACT_NONE, NULL);
    co_model_init(m, 11);
    co_group gr[2];
    co_model_groups(m, gr);
    double bound = 1 / sqrt(400.0);
    const float *w = gr[0].param[0];
    size_t n = gr[0].size[0];
    double mean = 0, var = 0;
    int outside = 0;
    for (size_t i = 0; i < n; i++) {
        mean += w[i];
        var += (double)w[i] * w[i];
        outside += fabs(w[i]) > bound;
    }
    mean /= n;
    var = var / n - mean * mean;
    CHECK(outside == 0, "%d weights outside +-1/sqrt(fan_in)", outside);
    /* U(-b, b): mean 0 (s.e. b/sqrt(3n)), variance b^2/3 (s.e. ~ b^2 sqrt(4/45n)). */
    CHECK(fabs(mean) < 4 * bound / sqrt(3.0 * n), "weight mean %.3g", mean);
    CHECK(fabs(var - bound * bound / 3) < 4 * bound * bound * sqrt(4.0 / (45.0 * n)), "weight variance %.4g vs %.4g", var,
          bound * bound / 3);
    /* Kolmogorov-Smirnov against U(-b, b) on a histogram of 1000 bins. */
    enum { BINS = 1000 };
    static int hist[BINS];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        int k = (int)((w[i] + bound) / (2 * bound) * BINS);
        hist[k < 0 ? 0 : k >= BINS ? BINS - 1 : k]++;
    }
    double cdf = 0, ks = 0;
    for (int k = 0; k < BINS; k++) {
        cdf += (double)hist[k] / n;
        ks = fmax(ks, fabs(cdf - (k + 1.0) / BINS));
    }
    CHECK(ks < 1.63 / sqrt((double)n) + 1.0 / BINS, "KS statistic %.5f above the 1%% critical value", ks);
    int bias_out = 0;
    for (size_t i = 0; i < gr[0].size[1]; i++) bias_out += fabs(gr[0].param[1][i]) > bound;
    CHECK(bias_out == 0, "biases outside +-1/sqrt(fan_in)");
    double b2 = 1 / sqrt(300.0);
    int out2 = 0;
    for (size_t i = 0; i < gr[1].size[0]; i++) out2 += fabs(gr[1].param[0][i]) > b2;
    CHECK(out2 == 0, "layer 2 weights outside +-1/sqrt(300)");
    /* Same seed, same values; another seed, other values. */
    float first = w[0];
    co_model_init(m, 11);
    CHECK(w[0] == first, "same seed gave different weights");
    co_model_init(m, 12);
    CHECK(w[0] != first, "another seed gave the same weights");
    co_model_free(m);
}

int main(void)
{
    test_linear();
    test_activations();
    test_losses();
    test_mlp();
    test_init();
    return co_test_finish();
}

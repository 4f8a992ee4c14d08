/* ResNet34 for 32 x 32 inputs (the Quasi-Adam paper's SVHN model) on a tiny batch: it is
 * built with the expected parameter count and groups, its forward/backward gives a finite
 * loss, and the backward gradient agrees with central differences of the float loss on
 * the largest-gradient coordinate of layers spread over the depth, and along the whole
 * gradient direction. */
#include "test_util.h"

#include <curvopt.h>

enum { B = 2, IN = 3 * 32 * 32, CLASSES = 10 };

static co_model *m;
static float x[B * IN], labels[B];

static double loss_at(float *dout)
{
    co_error err;
    const float *out = co_model_forward(m, x, B, 1, &err);
    CHECK(out != NULL, "forward: %s", err.msg);
    return out ? co_loss(CO_LOSS_CROSS_ENTROPY, out, labels, B, CLASSES, dout) : NAN;
}

int main(void)
{
    co_error err;
    m = co_model_new("resnet34-32", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return co_test_finish();
    /* 3x3 stem 1,728 + BN 128; blocks; fc 5,130 (kuangliu's CIFAR ResNet34). */
    CHECK(co_model_param_count(m) == 21282122, "%zu parameters", co_model_param_count(m));
    int ng = co_model_ngroups(m);
    /* stem conv + bn, 16 blocks x (conv, bn, conv, bn), 3 projections x (conv, bn), fc */
    CHECK(ng == 2 + 16 * 4 + 3 * 2 + 1, "%d groups", ng);
    co_group *gr = calloc((size_t)ng, sizeof *gr);
    co_model_groups(m, gr);
    co_model_init(m, 5);
    co_rng r;
    co_rng_seed(&r, 6, 1);
    for (int i = 0; i < B * IN; i++) x[i] = (float)co_rng_normal(&r);
    labels[0] = 3;
    labels[1] = 7;
    float dout[B * CLASSES];
    double L = loss_at(dout);
    CHECK(isfinite(L) && L > 0.5 && L < 10, "loss %g", L);
    co_model_backward(m, dout);
    /* Copies: the finite-difference forwards below overwrite nothing but outputs, yet keep
     * the analytic gradient apart. */
    float **g = calloc((size_t)ng, sizeof *g);
    double norm2 = 0;
    for (int k = 0; k < ng; k++) {
        g[k] = malloc(gr[k].size[0] * sizeof(float));
        memcpy(g[k], gr[k].grad[0], gr[k].size[0] * sizeof(float));
        for (size_t i = 0; i < gr[k].size[0]; i++) norm2 += (double)g[k][i] * g[k][i];
    }
    CHECK(isfinite(norm2) && norm2 > 0, "gradient norm^2 %g", norm2);
    /* The stem conv, a conv of the first stage, the second BN's scales in the third stage,
     * the last stage's projection conv, the classifier. */
    const int probe[] = {0, 4, 2 + 4 * 7 + 2 + 3, ng - 3, ng - 1};
    const double h = 1e-3;
    for (size_t t = 0; t < sizeof probe / sizeof probe[0]; t++) {
        int k = probe[t];
        size_t at = 0;
        for (size_t i = 1; i < gr[k].size[0]; i++)
            if (fabsf(g[k][i]) > fabsf(g[k][at])) at = i;
        float keep = gr[k].param[0][at];
        gr[k].param[0][at] = keep + (float)h;
        double lp = loss_at(NULL);
        gr[k].param[0][at] = keep - (float)h;
        double lm = loss_at(NULL);
        gr[k].param[0][at] = keep;
        double fd = (lp - lm) / (2 * h);
        CHECK(fabs(fd - g[k][at]) <= 0.03 * fabs(g[k][at]) + 2e-4, "group %d (%s) [%zu]: analytic %.6g vs differences %.6g",
              k, gr[k].name, at, g[k][at], fd);
    }
    /* Along the normalised gradient the directional derivative is the gradient's norm. */
    double norm = sqrt(norm2), eps = 3e-5, ls[2];
    float **p0 = calloc((size_t)ng, sizeof *p0);
    for (int k = 0; k < ng; k++) {
        p0[k] = malloc(gr[k].size[0] * sizeof(float));
        memcpy(p0[k], gr[k].param[0], gr[k].size[0] * sizeof(float));
    }
    for (int side = 0; side < 2; side++) {
        double step = side ? -eps : eps;
        for (int k = 0; k < ng; k++)
            for (size_t i = 0; i < gr[k].size[0]; i++) gr[k].param[0][i] = (float)(p0[k][i] + step * g[k][i] / norm);
        ls[side] = loss_at(NULL);
    }
    for (int k = 0; k < ng; k++) free(p0[k]);
    free(p0);
    double lp = ls[0], lm = ls[1];
    double dd = (lp - lm) / (2 * eps);
    CHECK(fabs(dd - norm) < 0.01 * norm, "directional derivative %.6g vs gradient norm %.6g", dd, norm);
    printf("loss %.4f, gradient norm %.4f, directional derivative %.4f\n", L, norm, dd);
    for (int k = 0; k < ng; k++) free(g[k]);
    free(g);
    free(gr);
    co_model_free(m);
    return co_test_finish();
}

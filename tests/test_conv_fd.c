/* Conv2d (stride, padding, dilation), MaxPool2d and Flatten against double-precision
 * references and central differences; the K-FAC capture of a convolution; layer specs. */
#include "nn/layers.h"
#include "test_util.h"

#include <curvopt.h>

#define H 1e-6

static double rnd(co_rng *r) { return 2 * co_rng_uniform(r) - 1; }

typedef struct {
    int B, C, Hh, W, OC, K, S, P, D, OH, OW;
} conv_shape;

static void ref_conv(const conv_shape *c, const double *x, const double *w, const double *b, double *y)
{
    for (int s = 0; s < c->B; s++)
        for (int o = 0; o < c->OC; o++)
            for (int oy = 0; oy < c->OH; oy++)
                for (int ox = 0; ox < c->OW; ox++) {
                    double v = b[o];
                    for (int ch = 0; ch < c->C; ch++)
                        for (int ky = 0; ky < c->K; ky++)
                            for (int kx = 0; kx < c->K; kx++) {
                                int iy = oy * c->S - c->P + ky * c->D, ix = ox * c->S - c->P + kx * c->D;
                                if (iy < 0 || iy >= c->Hh || ix < 0 || ix >= c->W) continue;
                                v += x[((s * c->C + ch) * c->Hh + iy) * c->W + ix] *
                                     w[((o * c->C + ch) * c->K + ky) * c->K + kx];
                            }
                    y[((s * c->OC + o) * c->OH + oy) * c->OW + ox] = v;
                }
}

static double conv_objective(const conv_shape *c, const double *x, const double *w, const double *b, const double *r)
{
    static double y[4096];
    ref_conv(c, x, w, b, y);
    double L = 0;
    for (int i = 0; i < c->B * c->OC * c->OH * c->OW; i++) L += y[i] * r[i];
    return L;
}

static void check_conv(int B, int C, int Hh, int W, int OC, int K, int S, int P, int D)
{
    co_layer *l = co_conv2d_new(C, Hh, W, OC, K, S, P, D);
    CHECK(l != NULL, "conv %d %d %d", K, S, P);
    if (!l) return;
    conv_shape c = {B, C, Hh, W, OC, K, S, P, D, l->out_h, l->out_w};
    int nx = B * C * Hh * W, ny = B * l->out_size, nw = (int)l->size[0];
    co_rng g;
    co_rng_seed(&g, (uint64_t)(K * 100 + S * 10 + P + D * 1000), 1);
    double *x = malloc(sizeof(double) * nx), *w = malloc(sizeof(double) * nw), b[16], *r = malloc(sizeof(double) * ny),
           *y = malloc(sizeof(double) * ny);
    float *xf = malloc(sizeof(float) * nx), *yf = malloc(sizeof(float) * ny), *rf = malloc(sizeof(float) * ny),
          *dx = malloc(sizeof(float) * nx);
    for (int i = 0; i < nx; i++) x[i] = xf[i] = (float)rnd(&g);
    for (int i = 0; i < nw; i++) w[i] = l->param[0][i] = (float)rnd(&g);
    for (int i = 0; i < OC; i++) b[i] = l->param[1][i] = (float)rnd(&g);
    for (int i = 0; i < ny; i++) r[i] = rf[i] = (float)rnd(&g);
    l->ops->forward(l, xf, yf, B, 1);
    ref_conv(&c, x, w, b, y);
    for (int i = 0; i < ny; i++) CHECK_CLOSE(yf[i], y[i], 1e-5, "conv forward");
    l->ops->backward(l, xf, yf, rf, dx, B);
    double *vars[3] = {x, w, b};
    const float *grads[3] = {dx, l->grad[0], l->grad[1]};
    int sizes[3] = {nx, nw, OC};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < sizes[v]; i++) {
            double keep = vars[v][i];
            vars[v][i] = keep + H;
            double lp = conv_objective(&c, x, w, b, r);
            vars[v][i] = keep - H;
            double lm = conv_objective(&c, x, w, b, r);
            vars[v][i] = keep;
            CHECK_CLOSE(grads[v][i], (lp - lm) / (2 * H), 1e-4, v == 0 ? "conv dx" : v == 1 ? "conv dW" : "conv db");
        }
    /* The capture: rows = (sample, position), the patches and the output gradients. */
    co_capture cap;
    CHECK(l->ops->capture(l, &cap) == 1, "no capture");
    CHECK(cap.n == B * l->out_h * l->out_w && cap.a_dim == C * K * K && cap.g_dim == OC && cap.batch == B,
          "capture shape %d x %d / %d", cap.n, cap.a_dim, cap.g_dim);
    int P_ = l->out_h * l->out_w, bad = 0;
    for (int s = 0; s < B; s++)
        for (int pos = 0; pos < P_; pos++) {
            int oy = pos / l->out_w, ox = pos % l->out_w;
            for (int ch = 0; ch < C; ch++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int iy = oy * S - P + ky * D, ix = ox * S - P + kx * D;
                        float want = (iy < 0 || iy >= Hh || ix < 0 || ix >= W) ? 0 : xf[((s * C + ch) * Hh + iy) * W + ix];
                        bad += cap.a[(size_t)(s * P_ + pos) * cap.a_dim + (ch * K + ky) * K + kx] != want;
                    }
            for (int o = 0; o < OC; o++) bad += cap.g[(size_t)(s * P_ + pos) * OC + o] != rf[(s * OC + o) * P_ + pos];
        }
    CHECK(bad == 0, "%d captured entries differ from the direct im2col", bad);
    free(x);
    free(w);
    free(r);
    free(y);
    free(xf);
    free(yf);
    free(rf);
    free(dx);
    co_layer_free(l);
}

static void test_maxpool_flatten(void)
{
    enum { B = 2, C = 3, Hh = 6, W = 5 };
    co_layer *l = co_maxpool2d_new(C, Hh, W, 2, 2);
    CHECK(l && l->out_h == 3 && l->out_w == 2, "maxpool shape");
    co_rng g;
    co_rng_seed(&g, 31, 1);
    float x[B * C * Hh * W], y[B * C * 6], dy[B * C * 6], dx[B * C * Hh * W];
    for (int i = 0; i < B * C * Hh * W; i++) x[i] = (float)rnd(&g);
    for (int i = 0; i < B * C * 6; i++) dy[i] = (float)rnd(&g);
    l->ops->forward(l, x, y, B, 1);
    l->ops->backward(l, x, y, dy, dx, B);
    int bad = 0;
    for (int s = 0; s < B; s++)
        for (int c = 0; c < C; c++)
            for (int oy = 0; oy < 3; oy++)
                for (int ox = 0; ox < 2; ox++) {
                    float m = -1e30f;
                    for (int ky = 0; ky < 2; ky++)
                        for (int kx = 0; kx < 2; kx++) m = fmaxf(m, x[((s * C + c) * Hh + oy * 2 + ky) * W + ox * 2 + kx]);
                    bad += y[((s * C + c) * 3 + oy) * 2 + ox] != m;
                }
    CHECK(bad == 0, "maxpool forward: %d wrong maxima", bad);
    /* Finite differences of sum(y * dy) (random inputs: no ties). */
    for (int i = 0; i < B * C * Hh * W; i++) {
        float keep = x[i];
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            x[i] = keep + (sgn ? -1e-3f : 1e-3f);
            l->ops->forward(l, x, y, B, 1);
            L[sgn] = 0;
            for (int j = 0; j < B * C * 6; j++) L[sgn] += (double)y[j] * dy[j];
        }
        x[i] = keep;
        CHECK(fabs(dx[i] - (L[0] - L[1]) / 2e-3) < 1e-3, "maxpool dx[%d] %g vs %g", i, dx[i], (L[0] - L[1]) / 2e-3);
    }
    co_layer_free(l);
    co_layer *f = co_flatten_new(C, Hh, W);
    f->ops->forward(f, x, dx, B, 1);
    CHECK(memcmp(x, dx, sizeof x) == 0 && f->out_size == C * Hh * W, "flatten is not the identity");
    co_layer_free(f);
}

static void test_avgpool_dropout(void)
{
    enum { B = 2, C = 2, Hh = 4, W = 6 };
    co_rng g;
    co_rng_seed(&g, 41, 1);
    float x[B * C * Hh * W], dx[B * C * Hh * W];
    for (int i = 0; i < B * C * Hh * W; i++) x[i] = (float)rnd(&g);
    const int ks[2][2] = {{2, 2}, {4, 1}}; /* 2x2 stride 2, and 4x4 stride 1 */
    for (int t = 0; t < 2; t++) {
        co_layer *l = co_avgpool2d_new(C, Hh, W, ks[t][0], ks[t][1]);
        CHECK(l != NULL, "avgpool");
        int ny = B * l->out_size;
        float y[64], dy[64];
        for (int i = 0; i < ny; i++) dy[i] = (float)rnd(&g);
        l->ops->forward(l, x, y, B, 1);
        l->ops->backward(l, x, y, dy, dx, B);
        for (int i = 0; i < B * C * Hh * W; i++) {
            float keep = x[i];
            double L[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                x[i] = keep + (sgn ? -1e-2f : 1e-2f);
                l->ops->forward(l, x, y, B, 1);
                L[sgn] = 0;
                for (int j = 0; j < ny; j++) L[sgn] += (double)y[j] * dy[j];
            }
            x[i] = keep;
            CHECK(fabs(dx[i] - (L[0] - L[1]) / 2e-2) < 1e-4, "avgpool dx[%d] %g vs %g", i, dx[i], (L[0] - L[1]) / 2e-2);
        }
        co_layer_free(l);
    }
    /* Global average pooling through a spec: one value per channel, the channel mean. */
    co_error err;
    co_model *m = co_model_new("in:2x4x4 avgpool:4", &err);
    CHECK(m != NULL && co_model_out_size(m) == 2, "global pool spec: %s", m ? "" : err.msg);
    if (m) {
        const float *out = co_model_forward(m, x, 1, 0, &err);
        for (int c = 0; c < 2; c++) {
            double mean = 0;
            for (int i = 0; i < 16; i++) mean += x[c * 16 + i];
            CHECK(fabs(out[c] - mean / 16) < 1e-6, "global average pool channel %d: %g vs %g", c, out[c], mean / 16);
        }
        co_model_free(m);
    }
    /* Dropout: eval is the identity; training zeroes about p and scales the rest by 1/(1-p);
     * backward uses the same mask; the mask is a function of the seed. */
    enum { N = 20000 };
    static float xs[N], ys[N], ys2[N], dys[N], dxs[N];
    for (int i = 0; i < N; i++) xs[i] = dys[i] = 1.0f;
    co_layer *d = co_dropout_new(N, 0.3);
    co_rng r1;
    co_rng_seed(&r1, 5, CO_STREAM_INIT);
    d->ops->init(d, &r1);
    d->ops->forward(d, xs, ys, 1, 0);
    CHECK(memcmp(xs, ys, sizeof xs) == 0, "dropout in eval mode is not the identity");
    d->ops->forward(d, xs, ys, 1, 1);
    d->ops->backward(d, xs, ys, dys, dxs, 1);
    int zeros = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        zeros += ys[i] == 0;
        bad += !(ys[i] == 0 || fabsf(ys[i] - 1.0f / 0.7f) < 1e-6f) || dxs[i] != ys[i];
    }
    CHECK(abs(zeros - 6000) < 4 * 65, "dropout zeroed %d of %d, expected about 6000", zeros, N);
    CHECK(bad == 0, "%d dropout outputs or gradients wrong", bad);
    co_rng_seed(&r1, 5, CO_STREAM_INIT);
    d->ops->init(d, &r1);
    d->ops->forward(d, xs, ys2, 1, 1);
    CHECK(memcmp(ys, ys2, sizeof ys) == 0, "same seed, different mask");
    co_rng_seed(&r1, 6, CO_STREAM_INIT);
    d->ops->init(d, &r1);
    d->ops->forward(d, xs, ys2, 1, 1);
    CHECK(memcmp(ys, ys2, sizeof ys) != 0, "different seed, same mask");
    co_layer_free(d);
}

static void test_specs(void)
{
    co_error err;
    co_model *m = co_model_new("quasi-adam-mnist", &err);
    CHECK(m != NULL, "preset: %s", err.msg);
    if (m) {
        /* LeNet-5 sizes: 156 + 2416 + 48120 + 10164 + 850. */
        CHECK(co_model_param_count(m) == 61706, "quasi-adam-mnist has %zu parameters", co_model_param_count(m));
        CHECK(co_model_in_size(m) == 784 && co_model_out_size(m) == 10, "in/out");
        co_group gr[8];
        CHECK(co_model_ngroups(m) == 5, "groups %d", co_model_ngroups(m));
        co_model_groups(m, gr);
        CHECK(gr[0].kind == CO_GROUP_CONV2D && gr[0].rows == 6 && gr[0].cols == 25, "conv group shape");
        co_model_free(m);
    }
    const char *bad[] = {"conv:6:5", "in:1x28x28 conv:6", "in:1x28x28 pool:2", "in:1x4x4 conv:2:7", "in:1x28 fc:3",
                         "in:1x28x28 conv:6:5:q3", "in:0x1x1 fc:2", "in:3x8x8 maxpool:9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        co_model *x = co_model_new(bad[i], &err);
        CHECK(x == NULL && err.code == CO_EINVAL && strstr(err.msg, "model spec"), "'%s' accepted or unclear: %s", bad[i],
              err.msg);
        co_model_free(x);
    }
}

int main(void)
{
    check_conv(2, 2, 5, 6, 3, 3, 1, 1, 1);
    check_conv(2, 3, 7, 7, 2, 3, 2, 0, 1);
    check_conv(1, 2, 8, 7, 2, 2, 1, 2, 2);
    check_conv(2, 1, 6, 6, 4, 1, 1, 0, 1);
    test_maxpool_flatten();
    test_avgpool_dropout();
    test_specs();
    return co_test_finish();
}

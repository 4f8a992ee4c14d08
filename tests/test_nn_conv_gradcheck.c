/* Finite-difference gradient checks of the image layers in double precision: each layer
 * has a double reference forward written here from its definition; central differences of
 * L = sum(y * r) with respect to every input and parameter value are compared with the
 * float analytic backward. Also: the K-FAC capture of convolutions inside a model (patches
 * against a direct im2col, output gradients against the weight gradient), dropout's
 * dependence on the seed, and batch norm's running statistics in eval mode. */
#include "nn/layers.h"
#include "test_util.h"

#include <curvopt.h>
#include <omp.h>

#define FD_H 1e-6
#define MAXT 16

static double rnd(co_rng *r) { return 2 * co_rng_uniform(r) - 1; }

/* ------------------------------------------------------------ double references */

typedef struct {
    int c, h, w;
} shape;

static shape conv_ref(const double *x, int B, shape in, const double *w, const double *b, int OC, int K, int S, int P,
                      int D, double *y)
{
    shape o = {OC, (in.h + 2 * P - D * (K - 1) - 1) / S + 1, (in.w + 2 * P - D * (K - 1) - 1) / S + 1};
    for (int s = 0; s < B; s++)
        for (int oc = 0; oc < OC; oc++)
            for (int oy = 0; oy < o.h; oy++)
                for (int ox = 0; ox < o.w; ox++) {
                    double v = b ? b[oc] : 0;
                    for (int c = 0; c < in.c; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * S - P + ky * D, ix = ox * S - P + kx * D;
                                if (iy >= 0 && iy < in.h && ix >= 0 && ix < in.w)
                                    v += x[((s * in.c + c) * in.h + iy) * in.w + ix] * w[((oc * in.c + c) * K + ky) * K + kx];
                            }
                    y[((s * OC + oc) * o.h + oy) * o.w + ox] = v;
                }
    return o;
}

/* Transposed convolution by its definition: every input pixel scatters its kernel. */
static shape convt_ref(const double *x, int B, shape in, const double *w, const double *b, int OC, int K, int S, int P,
                       int O, int D, double *y)
{
    shape o = {OC, (in.h - 1) * S - 2 * P + D * (K - 1) + O + 1, (in.w - 1) * S - 2 * P + D * (K - 1) + O + 1};
    for (int s = 0; s < B; s++)
        for (int oc = 0; oc < OC; oc++)
            for (int i = 0; i < o.h * o.w; i++) y[(s * OC + oc) * o.h * o.w + i] = b ? b[oc] : 0;
    for (int s = 0; s < B; s++)
        for (int c = 0; c < in.c; c++)
            for (int iy = 0; iy < in.h; iy++)
                for (int ix = 0; ix < in.w; ix++)
                    for (int oc = 0; oc < OC; oc++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int oy = iy * S - P + ky * D, ox = ix * S - P + kx * D;
                                if (oy >= 0 && oy < o.h && ox >= 0 && ox < o.w)
                                    y[((s * OC + oc) * o.h + oy) * o.w + ox] +=
                                        x[((s * in.c + c) * in.h + iy) * in.w + ix] * w[((c * OC + oc) * K + ky) * K + kx];
                            }
    return o;
}

static void bn_ref(const double *x, int B, shape in, const double *gamma, const double *beta, int train,
                   const double *rmean, const double *rvar, double *y)
{
    int HW = in.h * in.w, n = B * HW;
    for (int c = 0; c < in.c; c++) {
        double mean = 0, var = 0;
        if (train) {
            for (int s = 0; s < B; s++)
                for (int i = 0; i < HW; i++) mean += x[(s * in.c + c) * HW + i];
            mean /= n;
            for (int s = 0; s < B; s++)
                for (int i = 0; i < HW; i++) var += pow(x[(s * in.c + c) * HW + i] - mean, 2);
            var /= n;
        } else {
            mean = rmean[c];
            var = rvar[c];
        }
        for (int s = 0; s < B; s++)
            for (int i = 0; i < HW; i++)
                y[(s * in.c + c) * HW + i] = (x[(s * in.c + c) * HW + i] - mean) / sqrt(var + 1e-5) * gamma[c] + beta[c];
    }
}

static shape maxpool_ref(const double *x, int B, shape in, int K, int S, int ceil_mode, double *y)
{
    int oh = ceil_mode ? (in.h - K + S - 1) / S + 1 : (in.h - K) / S + 1;
    int ow = ceil_mode ? (in.w - K + S - 1) / S + 1 : (in.w - K) / S + 1;
    if (ceil_mode && (oh - 1) * S >= in.h) oh--;
    if (ceil_mode && (ow - 1) * S >= in.w) ow--;
    shape o = {in.c, oh, ow};
    for (int s = 0; s < B * in.c; s++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double m = -INFINITY;
                for (int iy = oy * S; iy < oy * S + K && iy < in.h; iy++)
                    for (int ix = ox * S; ix < ox * S + K && ix < in.w; ix++) m = fmax(m, x[(s * in.h + iy) * in.w + ix]);
                y[(s * oh + oy) * ow + ox] = m;
            }
    return o;
}

/* ------------------------------------------------------------ cases */

/* A case is a layer token on an input shape; ref computes its double forward from the
 * input and the parameter tensors (in the layer's leaf order) and the running statistics. */
typedef struct gc_case gc_case;
struct gc_case {
    const char *token;
    int B, train;
    shape in;
    void (*ref)(const gc_case *c, const double *x, double *const *p, const double *state, double *y);
    int k, s, pad, opad, dil, oc, ceil_mode; /* the geometry the reference needs */
    int direct; /* capture off: convolutions take the direct path when the batch allows */
};

static void ref_conv(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    (void)st;
    int bias = strstr(c->token, "nobias") == NULL;
    conv_ref(x, c->B, c->in, p[0], bias ? p[1] : NULL, c->oc, c->k, c->s, c->pad, c->dil, y);
}

static void ref_convt(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    (void)st;
    int bias = strstr(c->token, "nobias") == NULL;
    convt_ref(x, c->B, c->in, p[0], bias ? p[1] : NULL, c->oc, c->k, c->s, c->pad, c->opad, c->dil, y);
}

static void ref_maxpool(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    (void)p;
    (void)st;
    maxpool_ref(x, c->B, c->in, c->k, c->s, c->ceil_mode, y);
}

static void ref_bn(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    bn_ref(x, c->B, c->in, p[0], p[1], c->train, st, st + c->in.c, y);
}

static void ref_logsoftmax(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    (void)p;
    (void)st;
    int n = c->in.c * c->in.h * c->in.w;
    for (int s = 0; s < c->B; s++) {
        double mx = -INFINITY, se = 0;
        for (int j = 0; j < n; j++) mx = fmax(mx, x[s * n + j]);
        for (int j = 0; j < n; j++) se += exp(x[s * n + j] - mx);
        for (int j = 0; j < n; j++) y[s * n + j] = x[s * n + j] - mx - log(se);
    }
}

/* BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x). */
static void ref_res(const gc_case *c, const double *x, double *const *p, const double *st, double *y)
{
    int B = c->B, OC = c->oc;
    static double t1[4096], t2[4096], t3[4096];
    shape m = conv_ref(x, B, c->in, p[0], NULL, OC, 3, c->s, 1, 1, t1);
    int n = B * OC * m.h * m.w;
    bn_ref(t1, B, m, p[1], p[2], c->train, st, st + OC, t2);
    for (int i = 0; i < n; i++) t2[i] = fmax(t2[i], 0);
    conv_ref(t2, B, m, p[3], NULL, OC, 3, 1, 1, 1, t1);
    bn_ref(t1, B, m, p[4], p[5], c->train, st + 2 * OC, st + 3 * OC, t3);
    if (c->s != 1 || c->in.c != OC) {
        conv_ref(x, B, c->in, p[6], NULL, OC, 1, c->s, 0, 1, t1);
        bn_ref(t1, B, m, p[7], p[8], c->train, st + 4 * OC, st + 5 * OC, t2);
    } else {
        memcpy(t2, x, sizeof(double) * n);
    }
    for (int i = 0; i < n; i++) y[i] = fmax(t3[i] + t2[i], 0);
}

static double objective(const gc_case *c, const double *x, double *const *p, const double *st, const double *r, double *y,
                        int ny)
{
    c->ref(c, x, p, st, y);
    double L = 0;
    for (int i = 0; i < ny; i++) L += y[i] * r[i];
    return L;
}

static void check_case(const gc_case *c, uint64_t seed)
{
    co_layer *l = co_layer_from_spec(c->token, c->in.c, c->in.h, c->in.w);
    CHECK(l != NULL, "%s not built", c->token);
    if (!l) return;
    co_rng g;
    co_rng_seed(&g, seed, 1);
    co_layer *leaf[16];
    int nl = co_layer_leaves(l, leaf, 16), nt = 0;
    CHECK(nl > 0, "%s: leaves", c->token);
    double *p[MAXT];
    float *grad[MAXT];
    size_t psize[MAXT];
    double state[256];
    int ns = 0;
    for (int i = 0; i < nl; i++) {
        leaf[i]->capture = leaf[i]->gemm_only = !c->direct;
        if (leaf[i]->ops->init) leaf[i]->ops->init(leaf[i], &g);
        int is_bn = !strcmp(leaf[i]->ops->kind, "batchnorm2d");
        for (int k = 0; k < leaf[i]->ntensors; k++, nt++) {
            psize[nt] = leaf[i]->size[k];
            grad[nt] = leaf[i]->grad[k];
            p[nt] = malloc(sizeof(double) * psize[nt]);
            for (size_t j = 0; j < psize[nt]; j++) {
                /* Batch-norm scales away from 0, so every path carries a gradient. */
                float v = (float)(is_bn && k == 0 ? 0.5 + co_rng_uniform(&g) : rnd(&g));
                leaf[i]->param[k][j] = v;
                p[nt][j] = v;
            }
        }
        if (leaf[i]->ops->state) {
            size_t b;
            float *s = leaf[i]->ops->state(leaf[i], &b);
            int C = (int)(b / sizeof(float) / 2);
            for (int j = 0; j < C; j++) {
                s[j] = (float)(0.5 * rnd(&g));
                s[C + j] = (float)(0.5 + co_rng_uniform(&g));
                state[ns + j] = s[j];
                state[ns + C + j] = s[C + j];
            }
            ns += 2 * C;
        }
    }
    int nx = c->B * l->in_size, ny = c->B * l->out_size;
    double *x = malloc(sizeof(double) * nx), *r = malloc(sizeof(double) * ny), *y = malloc(sizeof(double) * ny);
    float *xf = malloc(sizeof(float) * nx), *yf = malloc(sizeof(float) * ny), *rf = malloc(sizeof(float) * ny),
          *dx = malloc(sizeof(float) * nx);
    for (int i = 0; i < nx; i++) x[i] = xf[i] = (float)(2 * rnd(&g));
    for (int i = 0; i < ny; i++) r[i] = rf[i] = (float)rnd(&g);
    l->ops->forward(l, xf, yf, c->B, c->train);
    objective(c, x, p, state, r, y, ny);
    double worst = 0, scale = 1;
    for (int i = 0; i < ny; i++) scale = fmax(scale, fabs(y[i]));
    for (int i = 0; i < ny; i++) worst = fmax(worst, fabs(yf[i] - y[i]) / scale);
    CHECK(worst < 1e-5, "%s: float forward differs from the double reference by %.3g", c->token, worst);
    l->ops->backward(l, xf, yf, rf, dx, c->B);
    /* Every input, then every parameter tensor. */
    for (int v = -1; v < nt; v++) {
        double *var = v < 0 ? x : p[v];
        const float *an = v < 0 ? dx : grad[v];
        size_t n = v < 0 ? (size_t)nx : psize[v];
        double *fd = calloc(n, sizeof(double)), fscale = 1, err = 0;
        size_t at = 0;
        /* Large tensors: every step-th coordinate, from a random start (keeps the test fast). */
        size_t step = n > 400 ? n / 400 : 1, first = co_rng_below(&g, step);
        for (size_t i = first; i < n; i += step) {
            double keep = var[i];
            var[i] = keep + FD_H;
            double lp = objective(c, x, p, state, r, y, ny);
            var[i] = keep - FD_H;
            double lm = objective(c, x, p, state, r, y, ny);
            var[i] = keep;
            fd[i] = (lp - lm) / (2 * FD_H);
            fscale = fmax(fscale, fabs(fd[i]));
        }
        for (size_t i = first; i < n; i += step)
            if (fabs(an[i] - fd[i]) / fscale > err) {
                err = fabs(an[i] - fd[i]) / fscale;
                at = i;
            }
        CHECK(err < 1e-4, "%s (train %d): %s%d[%zu] analytic %.9g vs finite differences %.9g", c->token, c->train,
              v < 0 ? "input" : "tensor ", v < 0 ? 0 : v, at, an[at], fd[at]);
        free(fd);
    }
    for (int t = 0; t < nt; t++) free(p[t]);
    free(x);
    free(r);
    free(y);
    free(xf);
    free(yf);
    free(rf);
    free(dx);
    co_layer_free(l);
}

static void test_layers(void)
{
    static const gc_case cases[] = {
        /* Conv2d without bias and with stride / padding / dilation. */
        {"conv:4:3:s2:p1:nobias", 2, 1, {3, 7, 6}, ref_conv, 3, 2, 1, 0, 1, 4, 0, 0},
        {"conv:3:2:p2:d3", 2, 1, {2, 8, 9}, ref_conv, 2, 1, 2, 0, 3, 3, 0, 0},
        {"conv:2:5:s3:p2", 1, 1, {2, 9, 8}, ref_conv, 5, 3, 2, 0, 1, 2, 0, 0},
        /* ConvTranspose2d: the decoder's upsampling, output padding, dilation, a 1x1 input. */
        {"convt:3:3:s2:p1:o1", 2, 1, {2, 4, 5}, ref_convt, 3, 2, 1, 1, 1, 3, 0, 0},
        {"convt:2:3:s3:o2:nobias", 2, 1, {3, 3, 2}, ref_convt, 3, 3, 0, 2, 1, 2, 0, 0},
        {"convt:2:3:p1:d2", 1, 1, {2, 4, 4}, ref_convt, 3, 1, 1, 0, 2, 2, 0, 0},
        {"convt:4:5", 2, 1, {3, 1, 1}, ref_convt, 5, 1, 0, 0, 1, 4, 0, 0},
        {"convt:2:4:s2:p1:o1:d2", 2, 1, {2, 3, 4}, ref_convt, 4, 2, 1, 1, 2, 2, 0, 0},
        /* Max pooling in ceil mode: the last window hangs over the edge. */
        {"maxpool:2:ceil", 2, 1, {2, 7, 5}, ref_maxpool, 2, 2, 0, 0, 1, 0, 1, 0},
        {"maxpool:3:s2:ceil", 2, 1, {2, 8, 6}, ref_maxpool, 3, 2, 0, 0, 1, 0, 1, 0},
        {"maxpool:3:s2", 2, 1, {2, 8, 7}, ref_maxpool, 3, 2, 0, 0, 1, 0, 0, 0},
        /* Batch norm: training (the batch statistics depend on every input), flat, eval. */
        {"bn", 3, 1, {3, 3, 4}, ref_bn, 0, 0, 0, 0, 0, 0, 0, 0},
        {"bn", 5, 1, {4, 1, 1}, ref_bn, 0, 0, 0, 0, 0, 0, 0, 0},
        {"bn", 2, 0, {3, 3, 3}, ref_bn, 0, 0, 0, 0, 0, 0, 0, 0},
        /* Residual blocks: identity shortcut, strided projection, channel projection, eval. */
        {"res:3", 2, 1, {3, 4, 4}, ref_res, 0, 1, 0, 0, 0, 3, 0, 0},
        {"res:4:s2", 2, 1, {3, 5, 5}, ref_res, 0, 2, 0, 0, 0, 4, 0, 0},
        {"res:4", 2, 1, {2, 4, 3}, ref_res, 0, 1, 0, 0, 0, 4, 0, 0},
        {"res:4:s2", 2, 0, {3, 6, 5}, ref_res, 0, 2, 0, 0, 0, 4, 0, 0},
        {"logsoftmax", 3, 1, {7, 1, 1}, ref_logsoftmax, 0, 0, 0, 0, 0, 0, 0, 0},
        {"logsoftmax", 2, 1, {2, 2, 3}, ref_logsoftmax, 0, 0, 0, 0, 0, 0, 0, 0},
        /* The direct convolution (batch in the vector lanes; 17 samples leave a partial
         * block): stride, dilation, no bias, and inside a residual block. */
        {"conv:3:3:s2:p1", 17, 1, {2, 13, 13}, ref_conv, 3, 2, 1, 0, 1, 3, 0, 1},
        {"conv:2:3:p2:d2:nobias", 17, 1, {3, 8, 9}, ref_conv, 3, 1, 2, 0, 2, 2, 0, 1},
        {"res:3", 17, 1, {2, 6, 6}, ref_res, 0, 1, 0, 0, 0, 3, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 100 + i);
}

/* The direct path against the im2col + GEMM path on the same data, over geometries and
 * batch sizes around the 16-sample blocks; and the direct path with the K-FAC capture:
 * the same results bit for bit as without it, the same capture as the GEMM path's. */
static void test_paths(void)
{
    static const struct {
        const char *token;
        shape in;
    } cases[] = {{"conv:6:5:p2", {1, 28, 28}}, {"conv:16:5", {6, 14, 14}}, {"conv:5:3:s2:p1", {3, 15, 13}},
                 {"conv:4:3:p3:d3", {2, 9, 10}}, {"conv:7:1", {5, 8, 8}}, {"conv:3:4:s3:p2:nobias", {4, 19, 20}},
                 {"conv:10:3", {9, 10, 10}}};
    const int batches[] = {16, 17, 35};
    co_rng g;
    co_rng_seed(&g, 77, 1);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int bi = 0; bi < 3; bi++) {
            int B = batches[bi];
            co_layer *l = co_layer_from_spec(cases[k].token, cases[k].in.c, cases[k].in.h, cases[k].in.w);
            CHECK(l != NULL, "%s", cases[k].token);
            if (!l) continue;
            CHECK(l->out_h * l->out_w >= 32, "%s: too few positions for the direct path", cases[k].token);
            l->ops->init(l, &g);
            size_t nx = (size_t)B * l->in_size, ny = (size_t)B * l->out_size;
            float *x = malloc(nx * sizeof(float)), *dy = malloc(ny * sizeof(float)), *y[2], *dx[2], *dw[2], *db[2];
            for (size_t i = 0; i < nx; i++) x[i] = (float)rnd(&g);
            for (size_t i = 0; i < ny; i++) dy[i] = (float)rnd(&g);
            co_capture dcap;
            float *da = NULL, *dg = NULL;
            for (int path = 0; path < 3; path++) {
                /* 0: direct, 1: im2col + GEMM, 2: direct with the capture */
                l->capture = path > 0;
                l->gemm_only = path == 1;
                if (path == 2) {
                    float *y2 = malloc(ny * sizeof(float)), *dx2 = malloc(nx * sizeof(float));
                    l->ops->forward(l, x, y2, B, 1);
                    l->ops->backward(l, x, y2, dy, dx2, B);
                    CHECK(!memcmp(y2, y[0], ny * sizeof(float)) && !memcmp(dx2, dx[0], nx * sizeof(float)) &&
                              !memcmp(l->grad[0], dw[0], l->size[0] * sizeof(float)) &&
                              (l->ntensors < 2 || !memcmp(l->grad[1], db[0], l->out_c * sizeof(float))),
                          "%s batch %d: the capture changed the direct path's results", cases[k].token, B);
                    CHECK(l->ops->capture(l, &dcap) == 1, "%s: the direct path did not capture", cases[k].token);
                    size_t na = (size_t)dcap.n * dcap.a_dim, ng = (size_t)dcap.n * dcap.g_dim;
                    da = malloc(na * sizeof(float));
                    dg = malloc(ng * sizeof(float));
                    memcpy(da, dcap.a, na * sizeof(float));
                    memcpy(dg, dcap.g, ng * sizeof(float));
                    free(y2);
                    free(dx2);
                    /* Back on the GEMM path for the capture compared below. */
                    l->gemm_only = 1;
                    l->ops->forward(l, x, y[1], B, 1);
                    l->ops->backward(l, x, y[1], dy, dx[1], B);
                    break;
                }
                y[path] = malloc(ny * sizeof(float));
                dx[path] = malloc(nx * sizeof(float));
                l->ops->forward(l, x, y[path], B, 1);
                l->ops->backward(l, x, y[path], dy, dx[path], B);
                dw[path] = malloc(l->size[0] * sizeof(float));
                memcpy(dw[path], l->grad[0], l->size[0] * sizeof(float));
                db[path] = calloc(l->out_c, sizeof(float));
                if (l->ntensors > 1) memcpy(db[path], l->grad[1], l->out_c * sizeof(float));
            }
            co_capture cap;
            CHECK(l->ops->capture(l, &cap) == 1, "%s: the GEMM path did not capture", cases[k].token);
            CHECK(da && cap.n == dcap.n && cap.a_dim == dcap.a_dim && cap.g_dim == dcap.g_dim &&
                      !memcmp(cap.a, da, (size_t)cap.n * cap.a_dim * sizeof(float)) &&
                      !memcmp(cap.g, dg, (size_t)cap.n * cap.g_dim * sizeof(float)),
                  "%s batch %d: the direct path's capture differs from the GEMM path's", cases[k].token, B);
            free(da);
            free(dg);
            const float *a[4][2] = {{y[0], y[1]}, {dx[0], dx[1]}, {dw[0], dw[1]}, {db[0], db[1]}};
            size_t n[4] = {ny, nx, l->size[0], (size_t)l->out_c};
            const char *what[4] = {"output", "input gradient", "weight gradient", "bias gradient"};
            for (int t = 0; t < 4; t++) {
                double scale = 1, worst = 0;
                for (size_t i = 0; i < n[t]; i++) scale = fmax(scale, fabs(a[t][1][i]));
                for (size_t i = 0; i < n[t]; i++) worst = fmax(worst, fabs(a[t][0][i] - a[t][1][i]) / scale);
                CHECK(worst < 5e-6, "%s batch %d: direct and GEMM %s differ by %.3g",
                      cases[k].token, B, what[t], worst);
            }
            for (int path = 0; path < 2; path++) {
                free(y[path]);
                free(dx[path]);
                free(dw[path]);
                free(db[path]);
            }
            free(x);
            free(dy);
            co_layer_free(l);
        }
}

/* The direct path splits the batch over threads; its sums must not depend on how many. */
static void test_thread_independence(void)
{
    enum { B = 40 };
    co_error err;
    co_model *m = co_model_new("in:3x12x12 conv:6:5:p2 relu maxpool:2 conv:8:3:p1 bn relu flatten fc:4", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    co_model_init(m, 4);
    int in = co_model_in_size(m), ng = co_model_ngroups(m);
    float *x = malloc(sizeof(float) * B * in), dout[B * 4];
    co_rng g;
    co_rng_seed(&g, 8, 1);
    for (int i = 0; i < B * in; i++) x[i] = (float)rnd(&g);
    for (int i = 0; i < B * 4; i++) dout[i] = (float)rnd(&g);
    co_group gr[8];
    co_model_groups(m, gr);
    float *first[8][2] = {{0}};
    int threads_before = omp_get_max_threads(), differ = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        co_model_forward(m, x, B, 1, &err);
        co_model_backward(m, dout);
        for (int k = 0; k < ng; k++)
            for (int t = 0; t < gr[k].ntensors; t++) {
                if (threads == 1) {
                    first[k][t] = malloc(gr[k].size[t] * sizeof(float));
                    memcpy(first[k][t], gr[k].grad[t], gr[k].size[t] * sizeof(float));
                } else {
                    differ += memcmp(first[k][t], gr[k].grad[t], gr[k].size[t] * sizeof(float)) != 0;
                    free(first[k][t]);
                }
            }
    }
    omp_set_num_threads(threads_before);
    CHECK(differ == 0, "%d gradient tensors differ between 1 and 2 threads", differ);
    free(x);
    co_model_free(m);
}

/* ------------------------------------------------------------ capture */

/* The capture of the block's first convolution and of its projection must be the im2col
 * of the block's input; the output gradients must be the rows whose product with the
 * patches is the weight gradient. With capture off the model reports none. */
static void test_capture(void)
{
    enum { B = 2, C = 2, HW = 6, OC = 3 };
    co_error err;
    co_model *m = co_model_new("in:2x6x6 res:3:s2 gap fc:2", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    co_model_init(m, 3);
    co_rng g;
    co_rng_seed(&g, 9, 1);
    float x[B * C * HW * HW], dout[B * 2];
    for (int i = 0; i < B * C * HW * HW; i++) x[i] = (float)rnd(&g);
    for (int i = 0; i < B * 2; i++) dout[i] = (float)rnd(&g);
    co_capture cap;
    co_model_forward(m, x, B, 1, &err);
    co_model_backward(m, dout);
    CHECK(co_model_capture(m, 0, &cap) == 0, "capture reported while off");
    co_model_set_capture(m, 1);
    co_model_forward(m, x, B, 1, &err);
    co_model_backward(m, dout);
    int ng = co_model_ngroups(m);
    co_group gr[8];
    CHECK(ng == 7, "groups %d (conv1 bn1 conv2 bn2 projection-conv projection-bn fc)", ng);
    co_model_groups(m, gr);
    const int conv_groups[2] = {0, 4}, ks[2] = {3, 1}, pads[2] = {1, 0};
    for (int t = 0; t < 2; t++) {
        int gi = conv_groups[t], K = ks[t], P = pads[t], OH = 3;
        CHECK(gr[gi].kind == CO_GROUP_CONV2D && gr[gi].ntensors == 1 && gr[gi].cols == C * K * K,
              "group %d is not a bias-free conv of %d columns", gi, C * K * K);
        CHECK(co_model_capture(m, gi, &cap) == 1, "no capture for group %d", gi);
        CHECK(cap.n == B * OH * OH && cap.a_dim == C * K * K && cap.g_dim == OC && cap.batch == B,
              "group %d capture shape %d x %d / %d", gi, cap.n, cap.a_dim, cap.g_dim);
        if (cap.n != B * OH * OH || cap.a_dim != C * K * K || cap.g_dim != OC) continue;
        int bad = 0;
        for (int s = 0; s < B; s++)
            for (int pos = 0; pos < OH * OH; pos++)
                for (int ch = 0; ch < C; ch++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int iy = (pos / OH) * 2 - P + ky, ix = (pos % OH) * 2 - P + kx;
                            float want = (iy < 0 || iy >= HW || ix < 0 || ix >= HW) ? 0 : x[((s * C + ch) * HW + iy) * HW + ix];
                            bad += cap.a[(size_t)(s * OH * OH + pos) * cap.a_dim + (ch * K + ky) * K + kx] != want;
                        }
        CHECK(bad == 0, "group %d: %d patch entries differ from a direct im2col", gi, bad);
        double worst = 0;
        for (int o = 0; o < OC; o++)
            for (int j = 0; j < cap.a_dim; j++) {
                double sum = 0;
                for (int r = 0; r < cap.n; r++) sum += (double)cap.g[(size_t)r * OC + o] * cap.a[(size_t)r * cap.a_dim + j];
                worst = fmax(worst, fabs(sum - gr[gi].grad[0][o * cap.a_dim + j]));
            }
        CHECK(worst < 1e-5, "group %d: output gradients x patches differ from the weight gradient by %.3g", gi, worst);
    }
    CHECK(co_model_capture(m, 1, &cap) == 0, "a batch-norm group reported a capture");
    CHECK(co_model_capture(m, 6, &cap) == 1 && cap.a_dim == OC && cap.g_dim == 2 && cap.n == B, "fc capture");
    co_model_free(m);
}

/* ------------------------------------------------------------ dropout, batch norm */

static void test_dropout_seed(void)
{
    enum { N = 4000 };
    static float x[N];
    float *y[3];
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)i / N;
    co_error err;
    const uint64_t seeds[3] = {11, 11, 12};
    for (int k = 0; k < 3; k++) {
        co_model *m = co_model_new("in:1x40x50 dropout:0.25 flatten", &err);
        CHECK(m != NULL, "%s", err.msg);
        if (!m) return;
        co_model_init(m, seeds[k]);
        y[k] = malloc(sizeof x);
        memcpy(y[k], co_model_forward(m, x, 2, 1, &err), sizeof x);
        const float *e = co_model_forward(m, x, 2, 0, &err);
        CHECK(memcmp(e, x, sizeof x) == 0, "dropout in eval mode changed its input");
        co_model_free(m);
    }
    int zeros = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        zeros += y[0][i] == 0;
        bad += y[0][i] != 0 && fabsf(y[0][i] - x[i] / 0.75f) > 1e-6f * x[i];
    }
    CHECK(bad == 0, "%d kept values not scaled by 1/(1-p)", bad);
    CHECK(abs(zeros - N / 4) < 4 * 28, "%d of %d zeroed, expected about %d", zeros, N, N / 4);
    CHECK(memcmp(y[0], y[1], sizeof x) == 0, "the same seed gave different masks");
    CHECK(memcmp(y[0], y[2], sizeof x) != 0, "different seeds gave the same mask");
    for (int k = 0; k < 3; k++) free(y[k]);
}

static void test_bn_running(void)
{
    enum { B = 4, C = 2, HW = 9 };
    co_error err;
    co_model *m = co_model_new("in:2x3x3 bn", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    co_model_init(m, 1);
    co_rng g;
    co_rng_seed(&g, 21, 1);
    float x[B * C * HW], st[2 * C];
    for (int i = 0; i < B * C * HW; i++) x[i] = (float)(3 + 2 * rnd(&g));
    CHECK(co_model_state_size(m) == sizeof st, "state size %zu", co_model_state_size(m));
    co_model_get_state(m, st);
    CHECK(st[0] == 0 && st[1] == 0 && st[2] == 1 && st[3] == 1, "initial running statistics");
    co_model_forward(m, x, B, 1, &err);
    co_model_get_state(m, st);
    double rm[C], rv[C];
    for (int c = 0; c < C; c++) {
        double mean = 0, ss = 0;
        for (int s = 0; s < B; s++)
            for (int i = 0; i < HW; i++) mean += x[(s * C + c) * HW + i];
        mean /= B * HW;
        for (int s = 0; s < B; s++)
            for (int i = 0; i < HW; i++) ss += pow(x[(s * C + c) * HW + i] - mean, 2);
        rm[c] = 0.1 * mean;
        rv[c] = 0.9 + 0.1 * ss / (B * HW - 1);
        CHECK(fabs(st[c] - rm[c]) < 1e-6 && fabs(st[C + c] - rv[c]) < 1e-6,
              "channel %d running mean %g (expected %g), variance %g (expected unbiased %g)", c, st[c], rm[c], st[C + c],
              rv[c]);
    }
    /* Eval: one sample alone gives the running-statistics normalisation, whatever the batch. */
    const float *y = co_model_forward(m, x + C * HW, 1, 0, &err);
    double worst = 0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++)
            worst = fmax(worst, fabs(y[c * HW + i] - (x[(C + c) * HW + i] - rm[c]) / sqrt(rv[c] + 1e-5)));
    CHECK(worst < 1e-5, "eval output differs from the running-statistics normalisation by %g", worst);
    float st2[2 * C];
    co_model_get_state(m, st2);
    CHECK(memcmp(st, st2, sizeof st) == 0, "an eval forward changed the running statistics");
    co_model_free(m);
}

int main(void)
{
    test_layers();
    test_paths();
    test_thread_independence();
    test_capture();
    test_dropout_seed();
    test_bn_running();
    return co_test_finish();
}

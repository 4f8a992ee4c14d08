/* A run is the same bit for bit at any thread count: every layer path (linear, direct and
 * GEMM convolutions, transposed convolution, batch norm, residual block) and the curvature
 * methods' BLAS work (K-FAC statistics, roots and apply, DA-RMSprop's sketches, LAMA-Adam's
 * closure) are trained for a few steps at 1, 2 and 4 OpenMP threads, with OpenBLAS's own
 * thread count set high as a user's environment might; parameters and an evaluation
 * forward (a batch of several blocks, the last partial) must agree to the bit. */
#include "test_util.h"

#include <cblas.h>
#include <curvopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    co_model *model;
    const float *x, *y;
    int n;
    co_loss_kind loss;
    float *dout;
} step_ctx;

static double eval_batch(void *ctx)
{
    step_ctx *c = ctx;
    const float *out = co_model_forward(c->model, c->x, c->n, 1, NULL);
    if (!out) return NAN;
    double l = co_loss(c->loss, out, c->y, c->n, co_model_out_size(c->model), c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static int capture(void *ctx, int group, co_capture *out)
{
    return co_model_capture(((step_ctx *)ctx)->model, group, out);
}

typedef struct {
    const char *spec, *opt, *hp;
    int batch, steps, eval_batch;
    co_loss_kind loss;
} run_case;

/* Trains one case at the given thread counts; out: parameters then evaluation outputs. */
static float *run(const run_case *rc, int threads, size_t *len, uint64_t seed)
{
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    co_error err = {0};
    co_model *m = co_model_new(rc->spec, &err);
    CHECK(m != NULL, "%s", rc->spec);
    if (!m) return NULL;
    co_model_init(m, seed);
    int ng = co_model_ngroups(m), in = co_model_in_size(m), out = co_model_out_size(m);
    co_group *groups = calloc((size_t)ng, sizeof *groups);
    co_model_groups(m, groups);
    co_optim *opt = co_optim_new(rc->opt, groups, ng, rc->hp, seed, &err);
    CHECK(opt != NULL, "%s", err.msg);
    co_model_set_capture(m, (co_optim_needs(opt) & CO_NEEDS_CAPTURE) != 0);
    int nx = rc->batch > rc->eval_batch ? rc->batch : rc->eval_batch;
    float *x = malloc(sizeof(float) * (size_t)nx * in), *y = malloc(sizeof(float) * (size_t)nx * out);
    float *dout = malloc(sizeof(float) * (size_t)rc->batch * out);
    co_rng r;
    co_rng_seed(&r, 99, 0);
    step_ctx sc = {m, x, y, rc->batch, rc->loss, dout};
    co_closure cl = {.ctx = &sc, .eval = eval_batch, .capture = capture};
    for (int s = 0; s < rc->steps && opt; s++) {
        for (size_t i = 0; i < (size_t)rc->batch * in; i++) x[i] = (float)co_rng_uniform(&r);
        for (int i = 0; i < rc->batch * (rc->loss == CO_LOSS_CROSS_ENTROPY ? 1 : out); i++)
            y[i] = rc->loss == CO_LOSS_CROSS_ENTROPY ? (float)co_rng_below(&r, (uint64_t)out) : (float)co_rng_uniform(&r);
        double l = eval_batch(&sc);
        CHECK(isfinite(l), "loss finite");
        CHECK(co_optim_step(opt, &cl, &err) == CO_OK, "%s", err.msg);
    }
    size_t np = co_model_param_count(m);
    *len = np + (size_t)rc->eval_batch * out;
    float *res = malloc(sizeof(float) * *len);
    co_model_get_params(m, res);
    for (size_t i = 0; i < (size_t)rc->eval_batch * in; i++) x[i] = (float)co_rng_uniform(&r);
    const float *o = co_model_forward(m, x, rc->eval_batch, 0, &err);
    if (o) memcpy(res + np, o, sizeof(float) * (size_t)rc->eval_batch * out);
    free(x);
    free(y);
    free(dout);
    free(groups);
    co_optim_free(opt);
    co_model_free(m);
    return res;
}

int main(void)
{
    const run_case cases[] = {
        /* Linear layers big enough for parallel pieces, three batch blocks (the last partial). */
        {"mlp:64-600-300-10", "adam", "", 80, 4, 75, CO_LOSS_CROSS_ENTROPY},
        {"mlp:64-600-300-10", "tso-alra", "T_int=2", 80, 4, 75, CO_LOSS_CROSS_ENTROPY},
        {"mlp:64-600-300-10", "da-rmsprop", "p=1", 80, 4, 75, CO_LOSS_CROSS_ENTROPY},
        {"mlp:64-600-300-10", "quasi-adam", "", 80, 4, 75, CO_LOSS_CROSS_ENTROPY},
        {"mlp:64-600-300-10", "lama-adam", "interval=2", 80, 3, 75, CO_LOSS_CROSS_ENTROPY},
        {"mlp:64-600-300-10", "ogr-asgdc", "", 80, 4, 75, CO_LOSS_CROSS_ENTROPY},
        /* LeNet: the direct convolution (lane blocks of 16), with and without K-FAC capture. */
        {"quasi-adam-mnist", "adam", "", 48, 3, 40, CO_LOSS_CROSS_ENTROPY},
        {"quasi-adam-mnist", "tso-alra", "T_int=2", 48, 3, 40, CO_LOSS_CROSS_ENTROPY},
        /* im2col + GEMM convolutions (maps below 32 positions), batch norm, a residual block. */
        {"in:4x6x6 conv:32:3 bn relu res:48:s2 flatten fc:10", "sgd", "momentum=0.9", 70, 3, 66,
         CO_LOSS_CROSS_ENTROPY},
        {"in:4x6x6 conv:32:3 relu conv:64:3 relu flatten fc:10", "tso-alra", "T_int=2", 70, 3, 66,
         CO_LOSS_CROSS_ENTROPY},
        /* Transposed convolutions (the autoencoder preset), MSE. */
        {"quasi-adam-ae", "adam", "", 40, 2, 36, CO_LOSS_MSE},
    };
    const int threads[] = {2, 4};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n1, nt;
        float *ref = run(&cases[c], 1, &n1, 7);
        if (!ref) continue;
        for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
            float *got = run(&cases[c], threads[t], &nt, 7);
            char what[256];
            snprintf(what, sizeof what, "%s / %s: %d threads equal 1 thread bit for bit", cases[c].spec, cases[c].opt,
                     threads[t]);
            CHECK(got && nt == n1 && memcmp(ref, got, n1 * sizeof(float)) == 0, "%s", what);
            free(got);
        }
        /* The comparison is not vacuous: another seed trains to other parameters. */
        float *other = run(&cases[c], 2, &nt, 8);
        CHECK(other && memcmp(ref, other, n1 * sizeof(float)) != 0, "another seed differs");
        free(other);
        free(ref);
    }
    return co_test_finish();
}

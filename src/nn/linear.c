/* Fully connected layer on BLAS, with PyTorch's default initialisation. */
#include "layers.h"
#include "../core/alloc.h"
#include "../core/blas.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    float *y;
    const float *b;
    int out;
} fill_task;

/* Rows i0 .. i1-1 of y set to the bias (0 without one). */
static void fill_rows(void *ctx, size_t i0, size_t i1)
{
    const fill_task *t = ctx;
    for (size_t i = i0; i < i1; i++)
        for (int o = 0; o < t->out; o++) t->y[i * t->out + o] = t->b ? t->b[o] : 0.0f;
}

void co_linear_forward(float *y, const float *x, const float *w, const float *b, int batch, int in, int out)
{
    /* The rows split as co_gemm's pieces split them, so each thread fills the rows it then
     * accumulates into. */
    fill_task t = {y, b, out};
    co_run_shared((size_t)batch, (size_t)batch * out > 16384, fill_rows, &t);
    co_gemm(0, 1, batch, out, in, 1.0f, x, in, w, in, 1.0f, y, out, CO_BATCH_BLOCK);
}

size_t co_linear_work(int batch, int in, int out)
{
    return co_gemm_ksum_work(out, in, batch, CO_BATCH_BLOCK) + co_bias_grad_work(batch, out);
}

void co_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                        int batch, int in, int out, float *work)
{
    if (dx) co_gemm(0, 0, batch, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in, CO_BATCH_BLOCK);
    co_gemm_ksum(1, 0, out, in, batch, CO_BATCH_BLOCK, 1.0f, dy, out, x, in, dw, work);
    if (db) co_bias_grad(db, dy, batch, out, 1, work + co_gemm_ksum_work(out, in, batch, CO_BATCH_BLOCK));
}

static void linear_fwd(co_layer *l, const float *x, float *y, int batch, int train)
{
    (void)train;
    co_linear_forward(y, x, l->param[0], l->param[1], batch, l->in_size, l->out_size);
}

static void linear_bwd(co_layer *l, const float *x, const float *y, const float *dy, float *dx, int batch)
{
    (void)y;
    float *work = co_layer_work(l, co_linear_work(batch, l->in_size, l->out_size));
    if (!work) return;
    co_linear_backward(dx, l->grad[0], l->grad[1], dy, x, l->param[0], batch, l->in_size, l->out_size, work);
}

/* torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives
 * bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)), i.e. 1/sqrt(fan_in);
 * the bias bound is 1/sqrt(fan_in) too. */
static void linear_init(co_layer *l, co_rng *r)
{
    double bound = 1.0 / sqrt((double)l->in_size);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < l->size[k]; i++) l->param[k][i] = (float)((2.0 * co_rng_uniform(r) - 1.0) * bound);
}

static void linear_describe(const co_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "Linear(%d->%d)", l->in_size, l->out_size);
}

static void linear_free(co_layer *l)
{
    for (int k = 0; k < 2; k++) {
        free(l->param[k]);
        free(l->grad[k]);
    }
}

static const co_layer_ops linear_ops = {"linear", linear_fwd, linear_bwd, linear_init, linear_describe, linear_free, NULL, NULL};

co_layer *co_linear_new(int in, int out)
{
    co_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ops = &linear_ops;
    l->in_size = in;
    l->out_size = out;
    l->ntensors = 2;
    l->size[0] = (size_t)in * out;
    l->size[1] = (size_t)out;
    l->group_kind = CO_GROUP_LINEAR;
    l->rows = out;
    l->cols = in;
    return co_layer_alloc_params(l);
}

co_layer *co_layer_alloc_params(co_layer *l)
{
    for (int t = 0; t < l->ntensors; t++) {
        l->param[t] = co_falloc(l->size[t]);
        l->grad[t] = co_falloc(l->size[t]);
        if (!l->param[t] || !l->grad[t]) {
            co_layer_free(l);
            return NULL;
        }
    }
    return l;
}

int co_layer_leaves(co_layer *l, co_layer **out, int max)
{
    if (l->nsub == 0) {
        if (max < 1) return -1;
        out[0] = l;
        return 1;
    }
    int n = 0;
    for (int i = 0; i < l->nsub; i++) {
        int k = co_layer_leaves(l->sub[i], out + n, max - n);
        if (k < 0) return -1;
        n += k;
    }
    return n;
}

float *co_layer_work(co_layer *l, size_t n)
{
    if (n > l->work_size || !l->work) {
        free(l->work);
        l->work = co_falloc(n);
        l->work_size = l->work ? n : 0;
    }
    if (!l->work) /* out of memory: NaN gradients, which the training loop's finiteness check stops on */
        for (int t = 0; t < l->ntensors; t++)
            for (size_t i = 0; i < l->size[t]; i++) l->grad[t][i] = NAN;
    return l->work;
}

void co_layer_free(co_layer *l)
{
    if (!l) return;
    if (l->ops && l->ops->free) l->ops->free(l);
    free(l->work);
    free(l);
}

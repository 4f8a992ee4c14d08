/* Whole training steps on the GPU through co_train (data on the GPU, a CUDA graph per step,
 * the optimizer's fused launch), the numbers bench/torch_cuda_bench.py measures for PyTorch:
 *   moons MLP (mlp:2-64-1, BCE-with-logits, Adam lr 1e-3, batch 32): microseconds per step;
 *   LeNet-5 (quasi-adam-mnist, cross-entropy, SGD lr 0.01 momentum 0.9) on MNIST-shaped
 *   random data, batch 256 and 8192: images per second.
 * Time is co_train's per-epoch training time (evaluations excluded; each epoch ends by
 * waiting for the GPU), the first epoch (warm-up: allocations, graph capture) left out.
 *   RESULT cuda_train <what> device=cuda batch=<b> us_per_step=... img_per_s=...        */
#include "curvopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_cuda_train: %s: %s\n", what, msg);
    exit(1);
}

static void bench(const char *what, const char *model_spec, const char *opt, const char *hp, co_loss_kind loss,
                  const co_dataset *train, int batch, int epochs)
{
    co_error err = {0};
    co_model *m = co_model_new(model_spec, &err);
    if (!m) die(what, err.msg);
    co_model_init(m, 0);
    if (co_model_to_device(m, CO_DEVICE_CUDA, &err) != CO_OK) die(what, err.msg);
    int ng = co_model_ngroups(m);
    co_group *g = calloc((size_t)ng, sizeof *g);
    co_model_groups(m, g);
    co_optim *o = co_optim_new_on(CO_DEVICE_CUDA, opt, g, ng, hp, NULL, 0, &err);
    if (!o) die(what, err.msg);
    co_train_config cfg;
    co_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = batch;
    cfg.loss = loss;
    co_train_result r;
    if (co_train(m, o, train, NULL, &cfg, &r, &err) != CO_OK) die(what, err.msg);
    double t = 0;
    for (int e = 1; e < r.epochs_run; e++) t += r.history[e].seconds;
    long steps_per_epoch = (train->n + batch - 1) / batch;
    double steps = (double)steps_per_epoch * (r.epochs_run - 1), images = (double)train->n * (r.epochs_run - 1);
    printf("%-28s batch %5d: %8.2f us/step  %12.0f images/s  (final train loss %.4f)\n", what, batch, 1e6 * t / steps,
           images / t, r.final_train_loss);
    printf("RESULT cuda_train %s device=cuda batch=%d us_per_step=%.3f img_per_s=%.0f\n", what, batch, 1e6 * t / steps,
           images / t);
    co_train_result_free(&r);
    co_optim_free(o);
    co_model_free(m);
    free(g);
}

int main(void)
{
    co_error err;
    if (co_cuda_check(&err) != CO_OK) {
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    co_dataset *moons = co_make_moons(1024, 0.2, 0, &err);
    if (!moons) die("moons", err.msg);
    bench("moons", "mlp:2-64-1", "adam", "lr=1e-3", CO_LOSS_BCE_LOGITS, moons, 32, 400);
    co_dataset *mnist = co_dataset_new(60000, 784, 1, &err);
    if (!mnist) die("mnist", err.msg);
    mnist->c = 1, mnist->h = mnist->w = 28, mnist->nclasses = 10;
    co_rng r;
    co_rng_seed(&r, 1, CO_STREAM_DATA);
    for (size_t i = 0; i < (size_t)60000 * 784; i++) mnist->x[i] = (float)co_rng_uniform(&r);
    for (int i = 0; i < 60000; i++) mnist->y[i] = (float)co_rng_below(&r, 10);
    bench("lenet5", "quasi-adam-mnist", "sgd", "lr=0.01,momentum=0.9", CO_LOSS_CROSS_ENTROPY, mnist, 256, 4);
    bench("lenet5", "quasi-adam-mnist", "sgd", "lr=0.01,momentum=0.9", CO_LOSS_CROSS_ENTROPY, mnist, 8192, 6);
    co_dataset_free(moons);
    co_dataset_free(mnist);
    return 0;
}

/* One training step of the make_moons MLP (2-64(ReLU)-1, BCE on logits, batch 32):
 * forward, loss, backward, optimizer update (Adam at lr 1e-3 unless named), through the
 * public API. Each step is timed on its own; the median, the minimum and the mean over
 * many steps are reported in microseconds (the mean is the one to compare for methods
 * whose work varies from step to step, such as DA-RMSprop's random sketch refreshes).
 *
 * Usage: bench_mlp_step [threads [optimizer [hparams]]] Batches cycle through the training set so the step sees
 * changing data, as in training; gathering batches is not timed (torch_bench.py slices
 * pre-built tensors the same way). */
#include "timing.h"
#include "curvopt.h"

#include <stdio.h>
#include <stdlib.h>

#define BATCH 32
#define WARMUP 2000
#define STEPS 20000

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));
    const char *name = argc > 2 ? argv[2] : "adam", *hp = argc > 3 ? argv[3] : (argc > 2 ? "" : "lr=1e-3");
    co_error err = {0};
    co_dataset *data = co_make_moons(1024, 0.2, 0, &err);
    co_model *model = data ? co_model_new_mlp("mlp:2-64-1", CO_ACT_RELU, CO_ACT_NONE, &err) : NULL;
    if (!model) {
        fprintf(stderr, "bench_mlp_step: %s\n", err.msg);
        return 1;
    }
    co_model_init(model, 0);
    int ng = co_model_ngroups(model);
    co_group groups[8];
    co_model_groups(model, groups);
    co_optim *opt = co_optim_new(name, groups, ng, hp, 0, &err);
    if (!opt) {
        fprintf(stderr, "bench_mlp_step: %s\n", err.msg);
        return 1;
    }
    float dout[BATCH];
    int nbatches = data->n / BATCH;
    double *t = malloc(STEPS * sizeof *t);
    double loss_sum = 0;
    for (int s = 0; s < WARMUP + STEPS; s++) {
        int b = s % nbatches;
        const float *x = data->x + (size_t)b * BATCH * 2, *y = data->y + (size_t)b * BATCH;
        double t0 = bench_now();
        const float *out = co_model_forward(model, x, BATCH, 1, &err);
        double loss = co_loss(CO_LOSS_BCE_LOGITS, out, y, BATCH, 1, dout);
        co_model_backward(model, dout);
        co_optim_step(opt, NULL, &err);
        double t1 = bench_now();
        loss_sum += loss;
        if (s >= WARMUP) t[s - WARMUP] = (t1 - t0) * 1e6;
    }
    bench_consume(loss_sum);
    double mn = bench_min(t, STEPS), med = bench_median(t, STEPS), mean = 0;
    for (int s = 0; s < STEPS; s++) mean += t[s] / STEPS;
    printf("mlp 2-64-1 batch %d, %s %s, %d thread(s): median %.2f us, min %.2f us, mean %.2f us over %d steps "
           "(mean loss %.4f)\n",
           BATCH, name, hp, threads, med, mn, mean, STEPS, loss_sum / (WARMUP + STEPS));
    printf("RESULT mlp_step curvopt threads=%d median_us=%.3f min_us=%.3f mean_us=%.3f opt=%s\n", threads, med, mn,
           mean, name);
    free(t);
    co_optim_free(opt);
    co_model_free(model);
    co_dataset_free(data);
    return 0;
}

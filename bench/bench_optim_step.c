/* One optimizer's step alone (no forward or backward) on a model's parameter groups, with
 * synthetic gradients: four fixed random sets cycled, rescaled a little every step, plus a
 * small multiple of the parameters (so the stream is neither constant nor i.i.d.). Prints
 * the mean time of the steps after 20 warm-up steps and an FNV-1a hash of the parameters at
 * the end: two builds that print the same hash took bit-identical steps, which is how a
 * change meant to alter only speed is checked.
 *
 * Usage: bench_optim_step OPTIMIZER [HPARAMS|-] [steps] [model]
 *        (defaults: no hyperparameters, 200 steps, mlp:784-1000-200-10); threads from
 *        OMP_NUM_THREADS. */
#include "timing.h"
#include "curvopt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WARMUP = 20, SETS = 4 };

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OPTIMIZER [HPARAMS|-] [steps] [model]\n", argv[0]);
        return 2;
    }
    const char *opt = argv[1];
    const char *hp = argc > 2 && strcmp(argv[2], "-") != 0 ? argv[2] : NULL;
    int steps = argc > 3 ? atoi(argv[3]) : 200;
    const char *spec = argc > 4 ? argv[4] : "mlp:784-1000-200-10";
    if (steps <= WARMUP) steps = WARMUP + 1;
    co_error err = {0};
    co_model *m = co_model_new(spec, &err);
    if (!m) {
        fprintf(stderr, "model: %s\n", err.msg);
        return 1;
    }
    co_model_init(m, 1);
    int G = co_model_ngroups(m);
    co_group *gr = calloc((size_t)G, sizeof *gr);
    co_model_groups(m, gr);
    size_t total = 0;
    for (int g = 0; g < G; g++)
        for (int k = 0; k < gr[g].ntensors; k++) total += gr[g].size[k];
    float *bank = malloc(SETS * total * sizeof *bank);
    if (!bank) return 1;
    uint64_t state = 12345;
    for (size_t i = 0; i < SETS * total; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        bank[i] = (float)((int)((state >> 40) % 2001) - 1000) * 1e-5f;
    }
    co_optim *o = co_optim_new(opt, gr, G, hp, 7, &err);
    if (!o) {
        fprintf(stderr, "optimizer: %s\n", err.msg);
        return 1;
    }
    double t = 0;
    for (int s = 0; s < steps; s++) {
        size_t off = (size_t)(s % SETS) * total;
        float f = 1.0f + 0.01f * (float)(s % 7);
        for (int g = 0; g < G; g++)
            for (int k = 0; k < gr[g].ntensors; off += gr[g].size[k], k++)
                for (size_t i = 0; i < gr[g].size[k]; i++)
                    gr[g].grad[k][i] = bank[off + i] * f + 1e-4f * gr[g].param[k][i];
        double t0 = bench_now();
        if (co_optim_step(o, NULL, &err)) {
            fprintf(stderr, "step: %s\n", err.msg);
            return 1;
        }
        if (s >= WARMUP) t += bench_now() - t0;
    }
    uint64_t h = 1469598103934665603ULL;
    for (int g = 0; g < G; g++)
        for (int k = 0; k < gr[g].ntensors; k++) {
            const unsigned char *b = (const unsigned char *)gr[g].param[k];
            for (size_t i = 0; i < gr[g].size[k] * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ULL;
        }
    printf("%s %s on %s: %.3f ms a step (mean of %d), parameters' hash %016llx\n", opt, hp ? hp : "-", spec,
           1e3 * t / (steps - WARMUP), steps - WARMUP, (unsigned long long)h);
    printf("RESULT optim_step %s hp=%s model=%s ms=%.4f hash=%016llx\n", opt, hp ? hp : "-", spec, 1e3 * t / (steps - WARMUP),
           (unsigned long long)h);
    co_optim_free(o);
    co_model_free(m);
    free(bank);
    free(gr);
    return 0;
}

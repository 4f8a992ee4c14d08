/* Cost of a TSO-ALRA training step relative to SGD's on the same model, batch and threads:
 * quasi-adam-mnist (61,706 parameters, 1x28x28) and alexnet-28 (2.45 M parameters,
 * Fashion-MNIST-shaped 1x28x28), batch 128, default hyperparameters (T_int = 10).
 *
 * A step is what src/train/train.c does: forward, cross-entropy, backward, co_optim_step
 * with the closure (TSO-ALRA reads the captured inputs / im2col patches and output
 * gradients from it). The model captures only for TSO-ALRA, as in training, so SGD's
 * convolutions may take the direct path. Times are means over windows of whole T_int
 * cycles (the eigendecompositions every T_int steps amortised as in training), the median
 * over several windows reported; the optimizer's own share (co_optim_step) and, for
 * TSO-ALRA, the mean of refresh steps and of the others are printed too. The process's
 * CPU time per step is printed beside them: with one thread on a shared machine it is the
 * steadier measure (wall time includes the waits for a core).
 *
 * Usage: bench_tso_cost [threads] [model]   (default 1 thread, both models) */
#include "timing.h"
#include "curvopt.h"
#include "core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 128
#define NBATCH 8
#define T_INT 10
#define MAX_WINDOWS 16

typedef struct {
    co_model *model;
    const float *x, *y;
    int batch;
    float *dout;
} closure_ctx;

static double fwd_bwd(void *ctx)
{
    closure_ctx *c = ctx;
    const float *out = co_model_forward(c->model, c->x, c->batch, 1, NULL);
    if (!out) return NAN;
    double l = co_loss(CO_LOSS_CROSS_ENTROPY, out, c->y, c->batch, co_model_out_size(c->model), c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static int capture(void *ctx, int group, co_capture *out)
{
    closure_ctx *c = ctx;
    return co_model_capture(c->model, group, out);
}

typedef struct {
    double step_ms, opt_ms, refresh_opt_ms, other_opt_ms, cpu_ms, loss;
    int ok;
} result;

/* windows x (T_INT x cycles) timed steps after warm-up cycles; the median window. */
static result run(const char *spec, const char *name, int windows, int cycles, int warm_cycles)
{
    result res = {0};
    co_error err = {0};
    co_model *m = co_model_new(spec, &err);
    if (!m) {
        fprintf(stderr, "bench_tso_cost: %s\n", err.msg);
        return res;
    }
    co_model_init(m, 0);
    int ng = co_model_ngroups(m), in = co_model_in_size(m), out = co_model_out_size(m);
    co_group *groups = calloc((size_t)ng, sizeof *groups);
    co_model_groups(m, groups);
    co_optim *o = co_optim_new(name, groups, ng, "lr=1e-2", 0, &err);
    float *x = co_falloc((size_t)NBATCH * BATCH * in), *y = co_falloc((size_t)NBATCH * BATCH);
    float *dout = co_falloc((size_t)BATCH * out);
    if (!o || !x || !y || !dout) {
        fprintf(stderr, "bench_tso_cost: %s: %s\n", name, o ? "out of memory" : err.msg);
        goto done;
    }
    co_rng r;
    co_rng_seed(&r, 1, CO_STREAM_DATA);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH * in; i++) x[i] = (float)co_rng_uniform(&r);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH; i++) y[i] = (float)co_rng_below(&r, (uint64_t)out);
    closure_ctx cc = {m, NULL, NULL, BATCH, dout};
    co_closure closure = {.ctx = &cc, .eval = fwd_bwd, .capture = capture};
    double win_step[MAX_WINDOWS], win_opt[MAX_WINDOWS], refresh = 0, other = 0;
    long nrefresh = 0, nother = 0;
    int per_window = T_INT * cycles, total = T_INT * warm_cycles + windows * per_window;
    double sum_step = 0, sum_opt = 0, cpu0 = 0;
    for (int s = 0; s < total; s++) {
        if (s == T_INT * warm_cycles) cpu0 = bench_cpu();
        int b = s % NBATCH;
        cc.x = x + (size_t)b * BATCH * in;
        cc.y = y + (size_t)b * BATCH;
        /* As training: captures only for the steps that use them (K-FAC's T_cov). */
        co_model_set_capture(m, (co_optim_needs(o) & CO_NEEDS_CAPTURE) != 0);
        double t0 = bench_now();
        res.loss = fwd_bwd(&cc);
        double t1 = bench_now();
        co_status st = co_optim_step(o, &closure, &err);
        double t2 = bench_now();
        if (st) {
            fprintf(stderr, "bench_tso_cost: %s, step %d: %s\n", name, s + 1, err.msg);
            goto done;
        }
        int timed = s - T_INT * warm_cycles;
        if (timed < 0) continue;
        sum_step += t2 - t0;
        sum_opt += t2 - t1;
        if (s % T_INT == 0) { /* step s + 1 = 1 mod T_int: TSO-ALRA's refresh steps */
            refresh += t2 - t1;
            nrefresh++;
        } else {
            other += t2 - t1;
            nother++;
        }
        if ((timed + 1) % per_window == 0) {
            win_step[timed / per_window] = sum_step / per_window;
            win_opt[timed / per_window] = sum_opt / per_window;
            sum_step = sum_opt = 0;
        }
    }
    res.cpu_ms = (bench_cpu() - cpu0) / (windows * per_window) * 1e3;
    res.step_ms = bench_median(win_step, (size_t)windows) * 1e3;
    res.opt_ms = bench_median(win_opt, (size_t)windows) * 1e3;
    res.refresh_opt_ms = nrefresh ? refresh / nrefresh * 1e3 : 0;
    res.other_opt_ms = nother ? other / nother * 1e3 : 0;
    res.ok = 1;
done:
    co_optim_free(o);
    free(x);
    free(y);
    free(dout);
    free(groups);
    co_model_free(m);
    return res;
}

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));
    const char *only = argc > 2 ? argv[2] : NULL;
    static const struct {
        const char *spec;
        int windows, cycles, warm;
    } models[] = {{"quasi-adam-mnist", 7, 5, 1}, {"alexnet-28", 5, 1, 1}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (only && strcmp(only, models[i].spec) != 0) continue;
        result sgd = run(models[i].spec, "sgd", models[i].windows, models[i].cycles, models[i].warm);
        result tso = run(models[i].spec, "tso-alra", models[i].windows, models[i].cycles, models[i].warm);
        if (!sgd.ok || !tso.ok) return 1;
        printf("%s batch %d, %d thread(s), T_int %d, median of %d windows of %d steps:\n", models[i].spec, BATCH,
               threads, T_INT, models[i].windows, T_INT * models[i].cycles);
        printf("  sgd      step %9.3f ms (optimizer %8.3f ms), CPU %9.3f ms\n", sgd.step_ms, sgd.opt_ms, sgd.cpu_ms);
        printf("  tso-alra step %9.3f ms (optimizer %8.3f ms: refresh steps %.3f ms, others %.3f ms), CPU %9.3f ms\n",
               tso.step_ms, tso.opt_ms, tso.refresh_opt_ms, tso.other_opt_ms, tso.cpu_ms);
        printf("  tso-alra / sgd: %.2fx per step (CPU time %.2fx)\n", tso.step_ms / sgd.step_ms, tso.cpu_ms / sgd.cpu_ms);
        printf("RESULT tso_cost %s threads=%d batch=%d sgd_ms=%.4f sgd_opt_ms=%.4f tso_ms=%.4f tso_opt_ms=%.4f "
               "tso_refresh_opt_ms=%.4f tso_other_opt_ms=%.4f ratio=%.4f sgd_cpu_ms=%.4f tso_cpu_ms=%.4f "
               "cpu_ratio=%.4f\n",
               models[i].spec, threads, BATCH, sgd.step_ms, sgd.opt_ms, tso.step_ms, tso.opt_ms, tso.refresh_opt_ms,
               tso.other_opt_ms, tso.step_ms / sgd.step_ms, sgd.cpu_ms, tso.cpu_ms, tso.cpu_ms / sgd.cpu_ms);
        fflush(stdout);
    }
    return 0;
}

/* What the curvature methods cost over the first-order method each extends, per training
 * step (hence per epoch) on the image presets, side by side in one run:
 *   TSO-ALRA vs SGD, DA-RMSprop vs RMSprop, LAMA-Adam vs Adam, each at its defaults and at
 *   the paper's schedule where that differs (`faithful=1`, or the setting given below).
 * A step is what src/train/train.c does: forward, cross-entropy, backward, co_optim_step with
 * the closure (LAMA-Adam's Hessian-vector products re-evaluate through it, TSO-ALRA reads the
 * captured patches). The model captures only for methods that need it, as in training.
 * Windows of 50 steps cover whole refresh cycles (T_int = 10; LAMA-Adam at interval 25 and at its
 * default 50; the fast TSO-ALRA row's windows are its 100-step cycle), so a window costs what
 * an epoch costs per step on average; the median
 * window is reported, and the process's CPU time per step beside it (the steadier measure on
 * a shared machine with one thread).
 *
 * Usage: bench_curvature_cost [threads] [model] [windows] [method]
 *        (defaults: 1 thread, quasi-adam-mnist, 5 windows, every method; batch 128; a part of
 *        a method's name or settings, e.g. `tso` or `T_cov`, runs only those rows and their bases) */
#include "timing.h"
#include "curvopt.h"
#include "core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 128
#define NBATCH 8
#define WINDOW 50
#define MAX_WINDOWS 32
/* TSO-ALRA's fast setting (docs/optimizers/tso-alra.md) and its refresh cycle in steps. */
#ifndef TSO_FAST
#define TSO_FAST "T_cov=10,T_int=100,rank=64,stat_rows=4096"
#define TSO_FAST_CYCLE 100
#endif

typedef struct {
    co_model *model;
    const float *x, *y;
    float *dout;
} closure_ctx;

static double fwd_bwd(void *ctx)
{
    closure_ctx *c = ctx;
    const float *out = co_model_forward(c->model, c->x, BATCH, 1, NULL);
    if (!out) return NAN;
    double l = co_loss(CO_LOSS_CROSS_ENTROPY, out, c->y, BATCH, co_model_out_size(c->model), c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static int capture(void *ctx, int group, co_capture *out)
{
    return co_model_capture(((closure_ctx *)ctx)->model, group, out);
}

typedef struct {
    double step_ms, cpu_ms;
    int ok;
} result;

static result run(const char *spec, const char *name, const char *hp, int windows, int window)
{
    result res = {0};
    co_error err = {0};
    co_model *m = co_model_new(spec, &err);
    if (!m) {
        fprintf(stderr, "bench_curvature_cost: %s\n", err.msg);
        return res;
    }
    co_model_init(m, 0);
    int ng = co_model_ngroups(m), in = co_model_in_size(m), out = co_model_out_size(m);
    co_group *groups = calloc((size_t)ng, sizeof *groups);
    co_model_groups(m, groups);
    co_optim *o = co_optim_new(name, groups, ng, hp, 0, &err);
    float *x = co_falloc((size_t)NBATCH * BATCH * in), *y = co_falloc((size_t)NBATCH * BATCH);
    float *dout = co_falloc((size_t)BATCH * out);
    double win[MAX_WINDOWS];
    if (window <= 0) window = WINDOW;
    if (!o || !x || !y || !dout) {
        fprintf(stderr, "bench_curvature_cost: %s %s: %s\n", name, hp, o ? "out of memory" : err.msg);
        goto done;
    }
    co_rng r;
    co_rng_seed(&r, 1, CO_STREAM_DATA);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH * in; i++) x[i] = (float)co_rng_uniform(&r);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH; i++) y[i] = (float)co_rng_below(&r, (uint64_t)out);
    closure_ctx cc = {m, NULL, NULL, dout};
    co_closure closure = {.ctx = &cc, .eval = fwd_bwd, .capture = capture};
    double cpu0 = 0, sum = 0;
    for (int s = 0; s < (windows + 1) * window; s++) { /* the first window warms up */
        if (s == window) cpu0 = bench_cpu();
        cc.x = x + (size_t)(s % NBATCH) * BATCH * in;
        cc.y = y + (size_t)(s % NBATCH) * BATCH;
        /* As training: captures only for the steps that use them (K-FAC's T_cov). */
        co_model_set_capture(m, (co_optim_needs(o) & CO_NEEDS_CAPTURE) != 0);
        double t0 = bench_now();
        fwd_bwd(&cc);
        if (co_optim_step(o, &closure, &err)) {
            fprintf(stderr, "bench_curvature_cost: %s %s, step %d: %s\n", name, hp, s + 1, err.msg);
            goto done;
        }
        if (s < window) continue;
        sum += bench_now() - t0;
        if ((s + 1) % window == 0) {
            win[s / window - 1] = sum / window;
            sum = 0;
        }
    }
    res.cpu_ms = (bench_cpu() - cpu0) / ((double)windows * window) * 1e3;
    res.step_ms = bench_median(win, (size_t)windows) * 1e3;
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

/* A row is wanted when `only` is part of its method's name or of its hyperparameters. */
static int wanted(const char *name, const char *hp, const char *only) { return strstr(name, only) || strstr(hp, only); }

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));
    const char *model = argc > 2 ? argv[2] : "quasi-adam-mnist";
    int windows = argc > 3 ? atoi(argv[3]) : 5;
    if (windows < 1 || windows > MAX_WINDOWS) windows = 5;
    const char *only = argc > 4 ? argv[4] : NULL;
    static const struct {
        const char *name, *hp, *base;
        int window; /* steps per window, a whole refresh cycle (0: WINDOW) */
    } rows[] = {
        {"sgd", "lr=1e-2", NULL, 0},
        {"tso-alra", "lr=1e-2", "sgd", 0},
        {"tso-alra", "lr=1e-2,faithful=1", "sgd", 0},
        {"tso-alra", "lr=1e-2," TSO_FAST, "sgd", TSO_FAST_CYCLE},
        {"rmsprop", "", NULL, 0},
        {"da-rmsprop", "", "rmsprop", 0},
        {"da-rmsprop", "p=0.1", "rmsprop", 0},
        {"da-rmsprop", "faithful=1", "rmsprop", 0},
        {"adam", "", NULL, 0},
        {"lama-adam", "", "adam", 0},
        {"lama-adam", "interval=25", "adam", 0},
        {"lama-adam", "faithful=1", "adam", 0},
    };
    enum { NROWS = sizeof rows / sizeof rows[0] };
    result res[NROWS];
    printf("%s batch %d, %d thread(s), median of %d windows of %d steps (%d for the fast TSO-ALRA row; ms per "
           "training step):\n",
           model, BATCH, threads, windows, WINDOW, TSO_FAST_CYCLE);
    for (int i = 0; i < NROWS; i++) {
        res[i].ok = 0;
        int base_of_wanted = 0; /* a base row runs when a wanted row compares with it */
        for (int j = i + 1; j < NROWS && only; j++)
            base_of_wanted |= rows[j].base && strcmp(rows[j].base, rows[i].name) == 0 && wanted(rows[j].name, rows[j].hp, only);
        if (only && !wanted(rows[i].name, rows[i].hp, only) && !base_of_wanted) continue;
        res[i] = run(model, rows[i].name, rows[i].hp, windows, rows[i].window);
        if (!res[i].ok) {
            printf("  %-11s %-22s refused (this build has no such setting)\n", rows[i].name, rows[i].hp);
            continue;
        }
        const result *base = NULL;
        for (int j = 0; j < i && rows[i].base; j++)
            if (strcmp(rows[j].name, rows[i].base) == 0 && res[j].ok) base = &res[j];
        printf("  %-11s %-22s %9.3f ms (CPU %9.3f ms)", rows[i].name, rows[i].hp, res[i].step_ms, res[i].cpu_ms);
        if (base) printf("  %.2fx %s (CPU %.2fx)", res[i].step_ms / base->step_ms, rows[i].base, res[i].cpu_ms / base->cpu_ms);
        printf("\n");
        printf("RESULT curvature_cost %s threads=%d batch=%d opt=%s hp=%s step_ms=%.4f cpu_ms=%.4f base=%s ratio=%.4f "
               "cpu_ratio=%.4f\n",
               model, threads, BATCH, rows[i].name, rows[i].hp[0] ? rows[i].hp : "-", res[i].step_ms, res[i].cpu_ms,
               base ? rows[i].base : "-", base ? res[i].step_ms / base->step_ms : 1.0,
               base ? res[i].cpu_ms / base->cpu_ms : 1.0);
        fflush(stdout);
    }
    return 0;
}

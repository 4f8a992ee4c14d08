/* Cost of every registered optimizer relative to Adam, measured in the same run:
 *   - on the make_moons MLP 2-64(ReLU)-1, BCE on logits, batch 32;
 *   - on mlp:784-1000-200-10 (987,210 parameters), softmax cross-entropy, batch 64, on a
 *     fixed batch of Gaussian inputs with random labels (only the shapes matter for time).
 * A training step is: forward, loss, backward (the base gradient evaluation), then
 * co_optim_step with a closure that re-runs forward/loss/backward on the same batch, as
 * src/train/train.c builds it. Reported per optimizer: the optimizer's own step time
 * (co_optim_step, including any closure evaluations it triggers), the whole training step,
 * both as ratios to Adam's, and the extra gradient evaluations per step (closure calls
 * counted). Times are means over all timed steps, so work done every T_int steps
 * (eigendecompositions, re-estimations) is amortised as in training; each method runs
 * twice and the faster run counts.
 *
 * Usage: bench_methods [threads]   (default 1, or $BENCH_THREADS) */
#include "timing.h"
#include "curvopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    co_model *model;
    const float *x, *y;
    int batch;
    co_loss_kind loss;
    float *dout;
    long evals;
} closure_ctx;

static double fwd_bwd(closure_ctx *c)
{
    const float *out = co_model_forward(c->model, c->x, c->batch, 1, NULL);
    if (!out) return NAN;
    double l = co_loss(c->loss, out, c->y, c->batch, co_model_out_size(c->model), c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static double closure_eval(void *ctx)
{
    closure_ctx *c = ctx;
    c->evals++;
    return fwd_bwd(c);
}

static int closure_capture(void *ctx, int group, co_capture *out)
{
    closure_ctx *c = ctx;
    return co_model_capture(c->model, group, out);
}

typedef struct {
    const char *label, *spec;
    co_loss_kind loss;
    int batch, warmup, steps;
} problem;

typedef struct {
    double opt_us, total_us, evals_per_step, final_loss;
    int ok;
} result;

static result run_one(const problem *pb, const char *name, const float *x, const float *y)
{
    result r = {0};
    co_error err = {0};
    co_model *m = co_model_new_mlp(pb->spec, CO_ACT_RELU, CO_ACT_NONE, &err);
    if (!m) {
        fprintf(stderr, "bench_methods: %s\n", err.msg);
        return r;
    }
    co_model_init(m, 0);
    int ng = co_model_ngroups(m);
    co_group *groups = calloc((size_t)ng, sizeof *groups);
    float *dout = calloc((size_t)pb->batch * co_model_out_size(m), sizeof *dout);
    co_model_groups(m, groups);
    co_optim *o = co_optim_new(name, groups, ng, NULL, 0, &err);
    if (!o) {
        fprintf(stderr, "bench_methods: %s on %s: %s\n", name, pb->label, err.msg);
        goto done;
    }
    co_model_set_capture(m, (co_optim_needs(o) & CO_NEEDS_CAPTURE) != 0);
    closure_ctx cc = {m, x, y, pb->batch, pb->loss, dout, 0};
    co_closure closure = {.ctx = &cc, .eval = closure_eval, .capture = closure_capture};
    double t_opt = 0, t_total = 0, loss = NAN;
    long evals0 = 0;
    for (int s = 0; s < pb->warmup + pb->steps; s++) {
        if (s == pb->warmup) evals0 = cc.evals;
        double t0 = bench_now();
        loss = fwd_bwd(&cc);
        double t1 = bench_now();
        co_status st = co_optim_step(o, &closure, &err);
        double t2 = bench_now();
        if (st) {
            fprintf(stderr, "bench_methods: %s on %s, step %d: %s\n", name, pb->label, s + 1, err.msg);
            goto done;
        }
        if (s >= pb->warmup) {
            t_opt += t2 - t1;
            t_total += t2 - t0;
        }
    }
    r.opt_us = t_opt / pb->steps * 1e6;
    r.total_us = t_total / pb->steps * 1e6;
    r.evals_per_step = (double)(cc.evals - evals0) / pb->steps;
    r.final_loss = loss;
    r.ok = 1;
done:
    co_optim_free(o);
    free(dout);
    free(groups);
    co_model_free(m);
    return r;
}

static void run_problem(const problem *pb, const float *x, const float *y, int threads)
{
    int n = co_optim_count();
    result *res = calloc((size_t)n, sizeof *res);
    /* Two rounds over the registry, keeping each method's faster one, so neither the order
     * of the runs nor a burst of load on the shared machine favours a method. */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < n; i++) {
            result r = run_one(pb, co_optim_info_at(i)->name, x, y);
            if (r.ok && (!res[i].ok || r.total_us < res[i].total_us)) res[i] = r;
        }
    result adam = {0};
    for (int i = 0; i < n; i++)
        if (strcmp(co_optim_info_at(i)->name, "adam") == 0) adam = res[i];
    printf("\n%s, batch %d, %d thread(s), mean over %d steps after %d warm-up:\n", pb->label, pb->batch, threads,
           pb->steps, pb->warmup);
    printf("  %-16s %12s %9s %14s %9s %12s %11s\n", "optimizer", "opt step us", "vs adam", "train step us",
           "vs adam", "extra evals", "final loss");
    for (int i = 0; i < n; i++) {
        const char *name = co_optim_info_at(i)->name;
        if (!res[i].ok || !adam.ok) {
            printf("  %-16s failed (see stderr)\n", name);
            continue;
        }
        printf("  %-16s %12.2f %8.2fx %14.2f %8.2fx %12.2f %11.4g\n", name, res[i].opt_us,
               res[i].opt_us / adam.opt_us, res[i].total_us, res[i].total_us / adam.total_us,
               res[i].evals_per_step, res[i].final_loss);
        printf("RESULT methods %s threads=%d model=%s opt_us=%.3f opt_vs_adam=%.3f step_us=%.3f "
               "step_vs_adam=%.3f extra_evals=%.3f\n",
               name, threads, pb->label, res[i].opt_us, res[i].opt_us / adam.opt_us, res[i].total_us,
               res[i].total_us / adam.total_us, res[i].evals_per_step);
    }
    free(res);
}

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));
    co_error err = {0};

    co_dataset *moons = co_make_moons(1000, 0.2, 0, &err);
    if (!moons) {
        fprintf(stderr, "bench_methods: %s\n", err.msg);
        return 1;
    }
    problem small = {"mlp:2-64-1", "mlp:2-64-1", CO_LOSS_BCE_LOGITS, 32, 200, 2000};
    run_problem(&small, moons->x, moons->y, threads);
    co_dataset_free(moons);

    problem big = {"mlp:784-1000-200-10", "mlp:784-1000-200-10", CO_LOSS_CROSS_ENTROPY, 64, 10, 100};
    float *x = malloc(sizeof(float) * 784 * 64), *y = malloc(sizeof(float) * 64);
    co_rng r;
    co_rng_seed(&r, 1, CO_STREAM_DATA);
    for (int i = 0; i < 784 * 64; i++) x[i] = (float)co_rng_normal(&r);
    for (int i = 0; i < 64; i++) y[i] = (float)co_rng_below(&r, 10);
    run_problem(&big, x, y, threads);
    free(x);
    free(y);
    return 0;
}

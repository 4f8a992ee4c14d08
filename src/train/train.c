/* The training loop shared by the CLI and every experiment: minibatches, the closure the
 * curvature methods re-evaluate, schedules, per-epoch evaluation, logs. */
#include "dist_train.h"
#include "loop.h"
#include "train_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    co_model *model;
    const float *x, *y;
    int n;
    co_loss_kind loss;
    float *dout;
    co_shard_batch *shard; /* distributed run: this rank's part of every minibatch */
} batch_ctx;

/* Forward, loss, backward on the whole current minibatch at the current parameters. */
static double batch_eval_whole(void *ctx)
{
    batch_ctx *c = ctx;
    if (c->shard) co_model_set_shard(c->model, 0, 0, NULL);
    const float *out = co_model_forward(c->model, c->x, c->n, 1, NULL);
    if (!out) return NAN;
    double l = co_loss(c->loss, out, c->y, c->n, co_model_out_size(c->model), c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

/* The same, in a distributed run the ranks' shards summed. */
static double batch_eval(void *ctx)
{
    batch_ctx *c = ctx;
    return c->shard ? co_shard_batch_eval(c->shard, c->x, c->y, c->n) : batch_eval_whole(ctx);
}

static int batch_capture(void *ctx, int group, co_capture *out)
{
    batch_ctx *c = ctx;
    return c->shard ? co_shard_batch_capture(c->shard, group, out) : co_model_capture(c->model, group, out);
}

static co_status save_checkpoint(const co_collective *coll, const co_train_config *cfg, const co_model *m,
                                 co_optim *opt, const co_train_pos *pos, const co_train_result *res, co_error *err)
{
    return coll ? co_dist_checkpoint_save(coll, cfg->checkpoint_path, m, opt, pos, res->history, res->epochs_run, err)
                : co_checkpoint_save(cfg->checkpoint_path, m, opt, pos, res->history, res->epochs_run, err);
}

static int step_limit(const co_train_config *cfg, const co_optim *opt)
{
    return cfg->max_steps > 0 && co_optim_steps(opt) >= (uint64_t)cfg->max_steps;
}

double co_train_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void co_train_config_default(co_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->epochs = 10;
    c->batch = 32;
    c->loss = CO_LOSS_BCE_LOGITS;
}

void co_train_result_free(co_train_result *r)
{
    free(r->history);
    r->history = NULL;
}

/* Names the first group whose gradients (or parameters) hold a NaN or Inf, or returns -1. */
static int nonfinite_group(co_group *groups, int ngroups, int params)
{
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) {
            const float *x = params ? groups[g].param[k] : groups[g].grad[k];
            for (size_t i = 0; i < groups[g].size[k]; i++)
                if (!isfinite(x[i])) return g;
        }
    return -1;
}

co_status co_train_csv_open(const char *path, FILE **out, co_error *err)
{
    *out = fopen(path, "w");
    if (!*out) return co_error_set(err, CO_EIO, "%s: cannot create", path);
    fprintf(*out, "epoch,train_loss,test_loss,test_acc,train_acc,val_loss,lr_scale,seconds\n");
    return CO_OK;
}

void co_train_result_finish(co_train_result *res)
{
    if (res->epochs_run <= 0) return;
    const co_epoch_stats *last = &res->history[res->epochs_run - 1];
    res->final_test_acc = last->test_acc;
    res->final_test_loss = last->test_loss;
    res->final_train_loss = last->train_loss;
}

void co_train_csv_row(FILE *csv, const co_epoch_stats *s)
{
    fprintf(csv, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.6f\n", s->epoch, s->train_loss, s->test_loss, s->test_acc,
            s->train_acc, s->val_loss, s->lr_scale, s->seconds);
    fflush(csv);
}

/* How often, at most, the loop reports progress from inside an epoch (seconds). */
#define PROGRESS_INTERVAL 0.2

/* When to report, without reading the clock at every step (an MLP step takes microseconds):
 * the clock is read every `stride` steps, the stride doubling while reads come far more
 * often than the interval needs and halving when they come too rarely. */
typedef struct {
    long stride, countdown;
    double last_read, next_report;
} progress_clock;

static int progress_due(progress_clock *c)
{
    if (--c->countdown > 0) return 0;
    double t = co_train_now(), dt = t - c->last_read;
    if (dt < PROGRESS_INTERVAL / 16 && c->stride < (1L << 20)) c->stride *= 2;
    else if (dt > PROGRESS_INTERVAL / 4 && c->stride > 1) c->stride /= 2;
    c->countdown = c->stride;
    c->last_read = t;
    if (t < c->next_report) return 0;
    c->next_report = t + PROGRESS_INTERVAL;
    return 1;
}

static void report_progress(const co_train_config *cfg, const co_loader *l, const co_train_pos *pos, int epoch,
                            long steps_run, double t0, int evaluating, const co_epoch_stats *finished)
{
    long n = l->data->n, b = l->batch;
    co_train_progress p = {
        .epoch = epoch + 1,
        .epochs = cfg->epochs,
        .step = finished ? (n + b - 1) / b : (l->pos + b - 1) / b,
        .steps = (n + b - 1) / b,
        .steps_run = steps_run,
        .seconds = co_train_now() - t0,
        .loss = finished ? finished->train_loss : pos->seen ? pos->loss_sum / pos->seen : NAN,
        .evaluating = evaluating,
        .finished = finished,
    };
    cfg->on_progress(&p, cfg->progress_ctx);
}

co_status co_train(co_model *m, co_optim *opt, const co_dataset *train, const co_dataset *test,
                   const co_train_config *cfg, co_train_result *res, co_error *err)
{
    memset(res, 0, sizeof *res);
    if (cfg->epochs < 0) return co_error_set(err, CO_EINVAL, "epochs %d must be >= 0", cfg->epochs);
    if (co_model_device(m) == CO_DEVICE_CUDA) return co_train_cuda(m, opt, train, test, cfg, res, err);
    if (train->x_dim != co_model_in_size(m))
        return co_error_set(err, CO_EINVAL, "data has %d features, the model expects %d", train->x_dim,
                            co_model_in_size(m));
    int ngroups = co_model_ngroups(m);
    co_group *groups = calloc((size_t)ngroups, sizeof *groups);
    float *dout = malloc((size_t)cfg->batch * co_model_out_size(m) * sizeof(float));
    res->history = calloc((size_t)(cfg->epochs ? cfg->epochs : 1), sizeof *res->history);
    co_loader loader;
    memset(&loader, 0, sizeof loader);
    const co_collective *coll = cfg->collective && cfg->collective->size > 1 ? cfg->collective : NULL;
    co_shard_batch shard;
    memset(&shard, 0, sizeof shard);
    co_status st = CO_OK;
    FILE *csv = NULL;
    if (!groups || !dout || !res->history) {
        st = co_error_set(err, CO_ENOMEM, "out of memory");
        goto done;
    }
    co_model_groups(m, groups);
    if ((st = co_loader_init(&loader, train, cfg->batch, 1, cfg->seed, err))) goto done;
    if (coll) {
        st = co_shard_batch_init(&shard, m, groups, ngroups, coll, cfg->loss, train->y_dim, cfg->shard_even, cfg->batch,
                                 err);
        if (st) goto done;
        co_optim_set_collective(opt, coll);
    }
    if (cfg->csv_path && (st = co_train_csv_open(cfg->csv_path, &csv, err))) goto done;
    batch_ctx bc = {m, NULL, NULL, 0, cfg->loss, dout, coll ? &shard : NULL};
    /* A rank evaluating alone would move a dropout stream the others do not. */
    co_closure closure = {.ctx = &bc, .eval = batch_eval, .capture = batch_capture,
                          .eval_whole = co_model_state_size(m) == 0 ? batch_eval_whole : NULL};
    co_train_pos pos = {.epoch_rng = loader.rng, .epochs_to_80 = -1};
    if (cfg->resume && cfg->checkpoint_path) {
        int nh = 0, found = !coll && access(cfg->checkpoint_path, F_OK) == 0;
        if (coll)
            st = co_dist_checkpoint_load(coll, cfg->checkpoint_path, m, opt, &pos, res->history, cfg->epochs, &nh,
                                         &found, err);
        else if (found)
            st = co_checkpoint_load(cfg->checkpoint_path, m, opt, &pos, res->history, cfg->epochs, &nh, err);
        if (st) goto done;
        if (found) {
            res->epochs_run = nh;
            res->resumed_from_epoch = pos.epoch + 1;
        }
    }
    res->epochs_to_80 = pos.epochs_to_80;
    res->skipped_steps = pos.skipped;
    if (csv)
        for (int e = 0; e < res->epochs_run; e++) co_train_csv_row(csv, &res->history[e]);
    double t0 = co_train_now();
    long steps_run = 0;
    progress_clock clock = {.stride = 1, .countdown = 1, .last_read = t0, .next_report = t0};
    for (int epoch = pos.epoch; epoch < cfg->epochs && !step_limit(cfg, opt); epoch++) {
        double te = co_train_now(), not_training = 0;
        /* The epoch's order is drawn from the shuffle stream as it stood before it, which is
         * what a checkpoint keeps; a resumed epoch re-draws the same order and skips ahead. */
        loader.rng = pos.epoch_rng;
        co_loader_start_epoch(&loader);
        loader.pos = pos.samples_done;
        int b;
        while ((b = co_loader_next(&loader)) > 0) {
            bc.x = loader.xb;
            bc.y = loader.yb;
            bc.n = b;
            co_optim_set_lr_scale(opt, co_schedule_scale(&cfg->schedule, epoch, co_optim_steps(opt)));
            /* Per step: a two-stage optimizer stops needing captures after a switch, K-FAC's
             * statistics may be taken every few steps only, and a convolution that is not
             * asked for a capture skips the patch matrix. */
            shard.capturing = (co_optim_needs(opt) & CO_NEEDS_CAPTURE) != 0;
            co_model_set_capture(m, shard.capturing);
            double l = batch_eval(&bc);
            int bad = isfinite(l) ? nonfinite_group(groups, ngroups, 0) : -2;
            if (bad != -1 && cfg->skip_nonfinite) {
                pos.skipped++;
            } else if (bad != -1) {
                char where[96] = "";
                if (bad >= 0) snprintf(where, sizeof where, " in layer %d (%s)", bad + 1, groups[bad].name);
                st = co_error_set(err, CO_ENUMERIC, "%s at epoch %d step %llu%s (optimizer %s)%s",
                                  bad == -2 ? "non-finite loss" : "non-finite gradient", epoch + 1,
                                  (unsigned long long)co_optim_steps(opt) + 1, where, co_optim_info_of(opt)->name,
                                  cfg->checkpoint_path ? "; the last good checkpoint is kept" : "");
                goto done;
            } else {
                if ((st = co_optim_step(opt, &closure, err))) goto done;
                int g = nonfinite_group(groups, ngroups, 1);
                if (g >= 0) {
                    st = co_error_set(err, CO_ENUMERIC,
                                      "optimizer %s produced non-finite parameters in layer %d (%s) at epoch %d step "
                                      "%llu%s",
                                      co_optim_info_of(opt)->name, g + 1, groups[g].name, epoch + 1,
                                      (unsigned long long)co_optim_steps(opt),
                                      cfg->checkpoint_path ? "; the last good checkpoint is kept" : "");
                    goto done;
                }
                pos.loss_sum += l * b;
                pos.seen += b;
                if (coll && cfg->dist_check_every > 0 && co_optim_steps(opt) % (uint64_t)cfg->dist_check_every == 0 &&
                    (st = co_dist_check_params(coll, groups, ngroups, co_optim_steps(opt), err)))
                    goto done;
                if (cfg->eval_every > 0 && cfg->on_eval && co_optim_steps(opt) % (uint64_t)cfg->eval_every == 0) {
                    double el, ea, t_eval = co_train_now();
                    if ((st = co_evaluate_collective(m, cfg->eval_set ? cfg->eval_set : test, cfg->loss, 256, coll, &el,
                                                     &ea, err)))
                        goto done;
                    cfg->on_eval(co_optim_steps(opt), el, ea, cfg->cb_ctx);
                    not_training += co_train_now() - t_eval;
                }
            }
            pos.samples_done = loader.pos;
            steps_run++;
            if (cfg->on_progress && progress_due(&clock))
                report_progress(cfg, &loader, &pos, epoch, steps_run, t0, 0, NULL);
            if (cfg->checkpoint_path && cfg->checkpoint_every > 0 &&
                co_optim_steps(opt) % (uint64_t)cfg->checkpoint_every == 0 && loader.pos < train->n) {
                double t_save = co_train_now();
                if ((st = save_checkpoint(coll, cfg, m, opt, &pos, res, err))) goto done;
                not_training += co_train_now() - t_save;
            }
            if (step_limit(cfg, opt)) break;
        }
        double trained = co_train_now() - te - not_training;
        if (cfg->on_progress) report_progress(cfg, &loader, &pos, epoch, steps_run, t0, 1, NULL);
        co_epoch_stats *s = &res->history[epoch];
        s->epoch = epoch + 1;
        s->train_loss = pos.seen ? pos.loss_sum / pos.seen : NAN;
        s->val_loss = NAN;
        s->train_acc = NAN;
        if ((st = co_evaluate_collective(m, test, cfg->loss, 256, coll, &s->test_loss, &s->test_acc, err))) goto done;
        if (cfg->val && (st = co_evaluate_collective(m, cfg->val, cfg->loss, 256, coll, &s->val_loss, NULL, err)))
            goto done;
        /* A task without a test accuracy (reconstruction, regression) has no training one either. */
        if (cfg->eval_train_acc && !isnan(s->test_acc) &&
            (st = co_evaluate_collective(m, train, cfg->loss, 256, coll, NULL, &s->train_acc, err)))
            goto done;
        s->lr_scale = co_optim_lr_scale(opt);
        s->seconds = trained;
        if ((st = co_optim_epoch_end(opt, epoch + 1, s->val_loss, err))) goto done;
        res->epochs_run = epoch + 1;
        if (res->epochs_to_80 < 0 && s->test_acc >= 0.8) res->epochs_to_80 = epoch + 1;
        pos = (co_train_pos){.epoch = epoch + 1, .epoch_rng = loader.rng, .skipped = pos.skipped, .epochs_to_80 = res->epochs_to_80};
        if (cfg->checkpoint_path && (st = save_checkpoint(coll, cfg, m, opt, &pos, res, err))) goto done;
        if (csv) co_train_csv_row(csv, s);
        if (cfg->on_progress) report_progress(cfg, &loader, &pos, epoch, steps_run, t0, 0, s);
        if (cfg->on_epoch) cfg->on_epoch(s, cfg->cb_ctx);
    }
    res->skipped_steps = pos.skipped;
    res->seconds = co_train_now() - t0;
    /* Rank 0 ends with the complete optimizer state, ready to be saved. */
    if (coll && (st = co_optim_collect_state(opt, err))) goto done;
    co_train_result_finish(res);
done:
    if (csv && fclose(csv) != 0 && !st) st = co_error_set(err, CO_EIO, "%s: write failed", cfg->csv_path);
    co_loader_free(&loader);
    if (coll) {
        co_shard_batch_free(&shard);
        co_optim_set_collective(opt, NULL);
    }
    free(groups);
    free(dout);
    return st;
}

/* co_train for a model on a GPU (co_model_to_device) with an optimizer created there: the
 * datasets are copied to the GPU once, each minibatch is gathered there in the loader's order
 * (the same order as on the CPU), and the step's forward, loss and backward are one CUDA
 * graph replayed at every full-size batch, followed by the optimizer's fused launch. The
 * epoch's loss and the evaluations' sums stay on the GPU until the epoch ends, so a step
 * never waits for the GPU; the finiteness check therefore runs once per epoch, on the
 * epoch's loss and the parameters (copied to the host for it). A capture that fails (a
 * library call that cannot be recorded) is abandoned and the run goes on without graphs.
 * Checkpoints are written at epoch ends (the CPU loop's format: a run resumes on either
 * device), and a run resumes from one taken at an epoch's end. What the CPU loop offers
 * beyond that (checkpoints inside an epoch,
 * distributed runs, mid-epoch evaluations, skipping non-finite steps, optimizers that need
 * a closure or captures) is refused with a message (docs/cuda.md). */
#include "train_cuda.h"
#include "checkpoint.h"
#include "loop.h"
#include "../cuda/cuda_api.h"
#include "../nn/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A dataset's samples on the GPU. */
typedef struct {
    float *x, *y;
    int n, x_dim, y_dim;
} device_set;

static co_status upload(device_set *d, const co_dataset *src, co_error *err)
{
    *d = (device_set){NULL, NULL, src->n, src->x_dim, src->y_dim};
    size_t bx = (size_t)src->n * src->x_dim * sizeof(float), by = (size_t)src->n * src->y_dim * sizeof(float);
    d->x = co_cuda_alloc(bx, err);
    d->y = d->x ? co_cuda_alloc(by, err) : NULL;
    if (!d->y) return err ? err->code : CO_ENOMEM;
    co_status st = co_cuda_copy(d->x, src->x, bx, NULL, err);
    return st == CO_OK ? co_cuda_copy(d->y, src->y, by, NULL, err) : st;
}

static void release(device_set *d)
{
    co_cuda_free(d->x);
    co_cuda_free(d->y);
}

/* The buffers of one run: a minibatch, its targets and output gradient, the loss's scratch,
 * the epoch's sums (device doubles) and the indices of the epoch's order. */
typedef struct {
    float *xb, *yb, *dout;
    double *scratch, *sums; /* sums: train loss, eval loss, eval correct */
    int *order;
} buffers;

static co_status evaluate(co_model *m, const device_set *d, co_loss_kind loss, const co_dataset *host, buffers *b,
                          int batch, double *mean_loss, double *accuracy, co_error *err)
{
    int dim = co_model_out_size(m);
    co_status st = co_cuda_memset_float((float *)(b->sums + 1), 0.0f, 4, NULL, err);
    for (int i = 0; i < d->n && st == CO_OK; i += batch) {
        int n = d->n - i < batch ? d->n - i : batch;
        const float *out = co_model_forward(m, d->x + (size_t)i * d->x_dim, n, 0, err);
        if (!out) return err ? err->code : CO_EIO;
        st = co_cuda_loss(loss, out, d->y + (size_t)i * d->y_dim, n, dim, b->dout, b->sums + 1, b->sums + 2, b->scratch,
                          NULL, err);
    }
    double s[2] = {0, 0};
    if (st == CO_OK) st = co_cuda_copy(s, b->sums + 1, sizeof s, NULL, err);
    if (st != CO_OK) return st;
    /* co_evaluate's rules: the mean of the batch means weighted by size is the sum over n. */
    int classifies = loss != CO_LOSS_MSE && host->y_dim == 1;
    int per_element = loss == CO_LOSS_BCE_LOGITS || loss == CO_LOSS_BCE || loss == CO_LOSS_MSE;
    if (mean_loss) *mean_loss = d->n ? s[0] / (per_element ? (double)dim : 1.0) / d->n : 0;
    if (accuracy) *accuracy = !classifies ? NAN : d->n ? s[1] / d->n : 0;
    return CO_OK;
}

/* Forward, loss (its sum added on the GPU) and backward of the gathered batch. */
static co_status forward_backward(co_model *m, const co_train_config *cfg, buffers *b, int n, int dim, void *stream,
                                  co_error *err)
{
    const float *out = co_model_forward(m, b->xb, n, 1, err);
    if (!out) return err && err->code ? err->code : CO_EIO;
    co_status st = co_cuda_loss(cfg->loss, out, b->yb, n, dim, b->dout, b->sums, NULL, b->scratch, stream, err);
    return st == CO_OK ? co_model_backward_device(m, b->dout, err) : st;
}

/* 1 when a parameter is NaN or infinite (the epoch's end check; host: param_count floats). */
static int nonfinite_params(const co_model *m, float *host)
{
    size_t n = co_model_param_count(m);
    co_model_get_params(m, host);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(host[i])) return 1;
    return 0;
}

static const char *unsupported(const co_train_config *cfg, const co_optim *opt)
{
    if (co_optim_device(opt) != CO_DEVICE_CUDA) return "the optimizer must be created on CUDA (co_optim_new_on)";
    if (co_optim_needs(opt) & (CO_NEEDS_CLOSURE | CO_NEEDS_CAPTURE)) return "optimizers that need closures or captures";
    if (co_optim_needs(opt) & CO_NEEDS_EPOCH) return "optimizers driven at epoch ends";
    if (cfg->checkpoint_path && cfg->checkpoint_every > 0) return "checkpoints inside an epoch (checkpoint_every)";
    if (cfg->collective && cfg->collective->size > 1) return "distributed runs";
    if (cfg->eval_every > 0 || cfg->on_eval || cfg->eval_set) return "evaluations every few steps (eval_every)";
    if (cfg->skip_nonfinite) return "skip_nonfinite";
    if (cfg->val) return "a validation set";
    return NULL;
}

co_status co_train_cuda(co_model *m, co_optim *opt, const co_dataset *train, const co_dataset *test,
                        const co_train_config *cfg, co_train_result *res, co_error *err)
{
    memset(res, 0, sizeof *res);
    res->epochs_to_80 = -1;
    const char *no = unsupported(cfg, opt);
    if (no) return co_error_set(err, CO_EINVAL, "training on CUDA: not supported there yet: %s", no);
    int dim = co_model_out_size(m), batch = cfg->batch;
    if (train->x_dim != co_model_in_size(m) || (test && test->x_dim != co_model_in_size(m)))
        return co_error_set(err, CO_EINVAL, "the model takes %d inputs, the data has %d", co_model_in_size(m),
                            train->x_dim);
    device_set dtrain = {0}, dtest = {0};
    buffers b = {0};
    co_loader loader = {0};
    co_cuda_graph *graph = NULL;
    unsigned long graph_generation = 0;
    int no_graphs = 0;
    float *host_params = malloc((co_model_param_count(m) ? co_model_param_count(m) : 1) * sizeof *host_params);
    FILE *csv = NULL;
    void *stream = NULL;
    size_t max_eval = 256 > batch ? 256 : (size_t)batch;
    res->history = calloc((size_t)(cfg->epochs ? cfg->epochs : 1), sizeof *res->history);
    co_status st = res->history && host_params ? CO_OK : co_error_set(err, CO_ENOMEM, "out of memory");
    if (st == CO_OK) st = upload(&dtrain, train, err);
    if (st == CO_OK && test) st = upload(&dtest, test, err);
    if (st == CO_OK) st = co_loader_init(&loader, train, batch, 1, cfg->seed, err);
    if (st == CO_OK) {
        b.xb = co_cuda_alloc((size_t)batch * train->x_dim * sizeof(float), err);
        b.yb = co_cuda_alloc((size_t)batch * train->y_dim * sizeof(float), err);
        b.dout = co_cuda_alloc(max_eval * dim * sizeof(float), err);
        b.scratch = co_cuda_alloc(co_cuda_loss_scratch((int)max_eval) * sizeof(double), err);
        b.sums = co_cuda_alloc(3 * sizeof(double), err);
        b.order = co_cuda_alloc((size_t)train->n * sizeof(int), err);
        if (!b.xb || !b.yb || !b.dout || !b.scratch || !b.sums || !b.order) st = err ? err->code : CO_ENOMEM;
    }
    if (st == CO_OK && cfg->csv_path) st = co_train_csv_open(cfg->csv_path, &csv, err);
    /* Where the run stands: the start, or an epoch's end a checkpoint kept. */
    co_train_pos pos = {.epoch_rng = loader.rng, .epochs_to_80 = -1};
    if (st == CO_OK && cfg->resume && cfg->checkpoint_path && access(cfg->checkpoint_path, F_OK) == 0) {
        int nh = 0;
        st = co_checkpoint_load(cfg->checkpoint_path, m, opt, &pos, res->history, cfg->epochs, &nh, err);
        if (st == CO_OK && pos.samples_done != 0)
            st = co_error_set(err, CO_EINVAL,
                              "%s: taken %d samples into epoch %d; on CUDA a run resumes only from an epoch's end",
                              cfg->checkpoint_path, pos.samples_done, pos.epoch + 1);
        if (st == CO_OK) {
            res->epochs_run = nh;
            res->resumed_from_epoch = pos.epoch + 1;
            res->epochs_to_80 = pos.epochs_to_80;
            for (int e = 0; e < nh && csv; e++) co_train_csv_row(csv, &res->history[e]);
        }
    }
    double t0 = co_train_now();
    long steps_run = 0;
    for (int epoch = pos.epoch; st == CO_OK && epoch < cfg->epochs; epoch++) {
        double te = co_train_now();
        /* The epoch's order is drawn from the shuffle stream as it stood before it (what a
         * checkpoint keeps), as the CPU loop does. */
        loader.rng = pos.epoch_rng;
        co_loader_start_epoch(&loader);
        st = co_cuda_copy(b.order, loader.order, (size_t)train->n * sizeof(int), stream, err);
        if (st == CO_OK) st = co_cuda_memset_float((float *)b.sums, 0.0f, 2, stream, err);
        long steps = 0, seen = 0;
        for (int at = 0; st == CO_OK && at < train->n; at += batch) {
            if (cfg->max_steps > 0 && co_optim_steps(opt) >= (uint64_t)cfg->max_steps) break;
            int n = train->n - at < batch ? train->n - at : batch;
            co_optim_set_lr_scale(opt, co_schedule_scale(&cfg->schedule, epoch, co_optim_steps(opt)));
            st = co_cuda_gather_rows(b.xb, dtrain.x, b.order + at, n, train->x_dim, stream, err);
            if (st == CO_OK) st = co_cuda_gather_rows(b.yb, dtrain.y, b.order + at, n, train->y_dim, stream, err);
            /* A full batch after the first (which sizes every buffer) is captured, the later
             * ones replay it; a short last batch runs eagerly. A buffer the graph holds that
             * was reallocated since (an evaluation's larger batch) means a new capture. */
            if (graph && co_model_device_generation(m) != graph_generation) {
                co_cuda_graph_free(graph);
                graph = NULL;
            }
            if (st == CO_OK && n == batch && graph) {
                st = co_cuda_graph_launch(graph, stream, err);
            } else if (st == CO_OK && n == batch && steps_run > 0 && !no_graphs) {
                co_error gerr = {0};
                co_status cst = co_cuda_graph_begin(stream, &gerr);
                if (cst == CO_OK) cst = forward_backward(m, cfg, &b, n, dim, stream, &gerr);
                co_cuda_graph *g = co_cuda_graph_end(stream, cst == CO_OK ? &gerr : NULL);
                if (cst == CO_OK && g) {
                    graph = g;
                    graph_generation = co_model_device_generation(m);
                    st = co_cuda_graph_launch(graph, stream, err);
                } else {
                    /* Nothing ran while capturing: the step runs eagerly, and so do the rest. */
                    co_cuda_graph_free(g);
                    co_cuda_clear_error();
                    no_graphs = 1;
                    st = forward_backward(m, cfg, &b, n, dim, stream, err);
                }
            } else if (st == CO_OK) {
                st = forward_backward(m, cfg, &b, n, dim, stream, err);
            }
            if (st == CO_OK) st = co_optim_step(opt, NULL, err);
            seen += n;
            steps++;
            steps_run++;
        }
        double sums[1] = {0};
        if (st == CO_OK) st = co_cuda_copy(sums, b.sums, sizeof(double), stream, err);
        if (st != CO_OK) break;
        double trained = co_train_now() - te;
        co_epoch_stats *s = &res->history[epoch];
        s->epoch = epoch + 1;
        /* The mean of the minibatch means weighted by their sizes: the sum of the terms over
         * the samples seen (over their elements too for the per-element losses). */
        int per_element = cfg->loss == CO_LOSS_BCE_LOGITS || cfg->loss == CO_LOSS_BCE || cfg->loss == CO_LOSS_MSE;
        s->train_loss = seen ? sums[0] / seen / (per_element ? dim : 1) : NAN;
        s->val_loss = NAN;
        s->train_acc = NAN;
        s->test_loss = s->test_acc = NAN;
        int bad_params = nonfinite_params(m, host_params);
        if (!isfinite(s->train_loss) || bad_params) {
            st = co_error_set(err, CO_ENUMERIC, "non-finite %s in epoch %d (optimizer %s; on CUDA the check runs once "
                                                "per epoch)",
                              bad_params ? "parameters" : "loss", epoch + 1, co_optim_info_of(opt)->name);
            break;
        }
        if (test && (st = evaluate(m, &dtest, cfg->loss, test, &b, (int)max_eval, &s->test_loss, &s->test_acc, err)))
            break;
        if (cfg->eval_train_acc && !isnan(s->test_acc) &&
            (st = evaluate(m, &dtrain, cfg->loss, train, &b, (int)max_eval, NULL, &s->train_acc, err)))
            break;
        s->lr_scale = co_optim_lr_scale(opt);
        s->seconds = trained;
        res->epochs_run = epoch + 1;
        if (res->epochs_to_80 < 0 && s->test_acc >= 0.8) res->epochs_to_80 = epoch + 1;
        pos = (co_train_pos){.epoch = epoch + 1, .epoch_rng = loader.rng, .epochs_to_80 = res->epochs_to_80};
        if (cfg->checkpoint_path &&
            (st = co_checkpoint_save(cfg->checkpoint_path, m, opt, &pos, res->history, res->epochs_run, err)))
            break;
        if (csv) co_train_csv_row(csv, s);
        if (cfg->on_progress) {
            co_train_progress p = {.epoch = epoch + 1,
                                   .epochs = cfg->epochs,
                                   .step = steps,
                                   .steps = steps,
                                   .steps_run = steps_run,
                                   .seconds = co_train_now() - t0,
                                   .loss = s->train_loss,
                                   .finished = s};
            cfg->on_progress(&p, cfg->progress_ctx);
        }
        if (cfg->on_epoch) cfg->on_epoch(s, cfg->cb_ctx);
        if (cfg->max_steps > 0 && co_optim_steps(opt) >= (uint64_t)cfg->max_steps) break;
    }
    res->seconds = co_train_now() - t0;
    co_train_result_finish(res);
    if (csv && fclose(csv) != 0 && st == CO_OK) st = co_error_set(err, CO_EIO, "%s: write failed", cfg->csv_path);
    co_cuda_sync(stream, NULL);
    co_cuda_graph_free(graph);
    co_loader_free(&loader);
    release(&dtrain);
    release(&dtest);
    co_cuda_free(b.xb);
    co_cuda_free(b.yb);
    co_cuda_free(b.dout);
    co_cuda_free(b.scratch);
    co_cuda_free(b.sums);
    co_cuda_free(b.order);
    free(host_params);
    return st;
}

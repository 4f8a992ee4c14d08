#include "run.h"
#include "json.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void co_run_spec_default(co_run_spec *s)
{
    memset(s, 0, sizeof *s);
    s->data = "moons";
    s->n = 1000;
    s->noise = 0.2;
    s->test_frac = 0.2;
    s->model = "mlp:2-64-1";
    s->hidden = CO_ACT_RELU;
    s->output = CO_ACT_NONE;
    s->loss = CO_LOSS_BCE_LOGITS;
    s->opt = "adam";
    s->lr = -1;
    s->schedule = "constant";
    s->epochs = 100;
    s->batch = 32;
}

co_status co_parse_act(const char *s, co_act *out, co_error *err)
{
    static const char *names[] = {"none", "relu", "sigmoid", "tanh"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (co_act)i;
            return CO_OK;
        }
    return co_error_set(err, CO_EINVAL, "unknown activation '%s' (none, relu, sigmoid, tanh)", s);
}

static const char *loss_names[] = {"bce-logits", "bce", "cross-entropy", "mse", "nll"};
#define NLOSSES ((int)(sizeof loss_names / sizeof loss_names[0]))

co_status co_parse_loss(const char *s, co_loss_kind *out, co_error *err)
{
    for (int i = 0; i < NLOSSES; i++)
        if (strcmp(s, loss_names[i]) == 0) {
            *out = (co_loss_kind)i;
            return CO_OK;
        }
    return co_error_set(err, CO_EINVAL, "unknown loss '%s' (bce-logits, bce, cross-entropy, mse, nll)", s);
}

const char *co_loss_name(co_loss_kind k) { return (int)k >= 0 && (int)k < NLOSSES ? loss_names[k] : "?"; }

/* The first n samples of d (all when n <= 0), copied. */
static co_dataset *prefix_copy(const co_dataset *d, int n, co_error *err)
{
    if (n <= 0 || n > d->n) n = d->n;
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    co_dataset *sub = co_dataset_subset(d, idx, n, err);
    free(idx);
    return sub;
}

/* Keeps the first n samples (a prefix: the files' own order). */
static co_status truncate_to(co_dataset **d, int n, co_error *err)
{
    if (n <= 0 || n >= (*d)->n) return CO_OK;
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) idx[i] = i;
    co_dataset *sub = co_dataset_subset(*d, idx, n, err);
    free(idx);
    if (!sub) return err->code;
    co_dataset_free(*d);
    *d = sub;
    return CO_OK;
}

static co_status build_data(const co_run_spec *s, co_run *run, co_error *err)
{
    co_status st = CO_OK;
    if (strcmp(s->data, "moons") == 0) {
        co_dataset *all = co_make_moons(s->n, s->noise, s->data_seed, err);
        if (!all) return err->code;
        st = co_dataset_split(all, s->test_frac, s->data_seed, &run->train, &run->test, err);
        co_dataset_free(all);
    } else if (s->loaded_train && s->loaded_test) {
        if (!(run->train = prefix_copy(s->loaded_train, s->train_limit, err)) ||
            !(run->test = prefix_copy(s->loaded_test, s->test_limit, err)))
            return err->code;
    } else {
        /* File datasets come with their own train/test split. */
        if ((st = co_dataset_load(s->data, s->data_dir, 1, &run->train, err))) return st;
        if ((st = co_dataset_load(s->data, s->data_dir, 0, &run->test, err))) return st;
        if ((st = truncate_to(&run->train, s->train_limit, err)) || (st = truncate_to(&run->test, s->test_limit, err)))
            return st;
    }
    if (st) return st;
    if (s->val_frac > 0) {
        co_dataset *rest = NULL, *val = NULL;
        /* The validation part comes out of the training split, never the test set. */
        st = co_dataset_split(run->train, s->val_frac, s->data_seed + 1, &rest, &val, err);
        if (st) return st;
        co_dataset_free(run->train);
        run->train = rest;
        run->val = val;
    }
    if (s->standardize) {
        co_scaler sc = {0};
        if ((st = co_scaler_fit(&sc, run->train, err))) return st;
        co_scaler_apply(&sc, run->train);
        co_scaler_apply(&sc, run->test);
        if (run->val) co_scaler_apply(&sc, run->val);
        co_scaler_free(&sc);
    }
    /* Last, so that the targets are the inputs exactly as the model sees them. */
    if (s->reconstruct) {
        co_dataset **parts[3] = {&run->train, &run->test, &run->val};
        for (int i = 0; i < 3; i++) {
            if (!*parts[i]) continue;
            co_dataset *r = co_dataset_reconstruction(*parts[i], err);
            if (!r) return err->code;
            co_dataset_free(*parts[i]);
            *parts[i] = r;
        }
    }
    return CO_OK;
}

/* The loss reads batch x out values of y (one class index for cross-entropy): a model whose
 * output does not match the targets would read past them. */
static co_status check_targets(const co_run_spec *s, const co_model *m, const co_dataset *d, co_error *err)
{
    int out = co_model_out_size(m);
    const char *kind = s->reconstruct ? " (reconstruction)" : "";
    if (s->loss == CO_LOSS_CROSS_ENTROPY || s->loss == CO_LOSS_NLL) {
        if (d->y_dim != 1)
            return co_error_set(err, CO_EINVAL, "loss %s takes one class index per sample, dataset %s%s has %d targets",
                                co_loss_name(s->loss), s->data, kind, d->y_dim);
        if (d->nclasses > out)
            return co_error_set(err, CO_EINVAL, "model %s has %d outputs, dataset %s has %d classes", s->model, out,
                                s->data, d->nclasses);
    } else if (out != d->y_dim) {
        return co_error_set(err, CO_EINVAL,
                            "model %s has %d outputs, loss %s needs one per target: dataset %s%s has %d", s->model, out,
                            co_loss_name(s->loss), s->data, kind, d->y_dim);
    }
    return CO_OK;
}

co_status co_run_prepare(const co_run_spec *s, co_run *run, co_error *err)
{
    memset(run, 0, sizeof *run);
    run->spec = *s;
    co_status st;
    if (s->epochs < 0 || s->batch <= 0)
        return co_error_set(err, CO_EINVAL, "epochs %d / batch %d: need epochs >= 0 and batch > 0", s->epochs, s->batch);
    if (!co_optim_find(s->opt))
        return co_error_set(err, CO_EINVAL, "unknown optimizer '%s' (see `curvopt list`)", s->opt);
    if ((st = build_data(s, run, err))) goto fail;
    run->model = strncmp(s->model, "mlp:", 4) == 0 ? co_model_new_mlp(s->model, s->hidden, s->output, err)
                                                   : co_model_new(s->model, err);
    if (!run->model) {
        st = err->code;
        goto fail;
    }
    if (co_model_in_size(run->model) != run->train->x_dim) {
        st = co_error_set(err, CO_EINVAL, "model %s takes %d inputs, dataset %s has %d features", s->model,
                          co_model_in_size(run->model), s->data, run->train->x_dim);
        goto fail;
    }
    if ((st = check_targets(s, run->model, run->train, err))) goto fail;
    co_model_init(run->model, s->seed);
    if (s->device != CO_DEVICE_CPU && (st = co_model_to_device(run->model, s->device, err))) goto fail;
    int ng = co_model_ngroups(run->model);
    co_group *groups = calloc((size_t)ng, sizeof *groups); /* ResNet34 has 73 */
    if (!groups) {
        st = co_error_set(err, CO_ENOMEM, "out of memory");
        goto fail;
    }
    co_model_groups(run->model, groups);
    run->opt = co_optim_new_on(s->device, s->opt, groups, ng, s->hparams, NULL, s->seed, err);
    free(groups);
    if (!run->opt) {
        st = err->code;
        goto fail;
    }
    if (s->lr >= 0 && (st = co_optim_set(run->opt, -1, "lr", s->lr, err))) goto fail;
    co_optim_set_clip(run->opt, s->clip);
    co_train_config_default(&run->cfg);
    run->cfg.epochs = s->epochs;
    run->cfg.batch = s->batch;
    run->cfg.seed = s->seed;
    run->cfg.loss = s->loss;
    run->cfg.val = run->val;
    run->cfg.collective = s->collective;
    if ((st = co_schedule_parse(&run->cfg.schedule, s->schedule, s->epochs, err))) goto fail;
    return CO_OK;
fail:
    co_run_free(run);
    return st;
}

void co_run_free(co_run *run)
{
    co_optim_free(run->opt);
    co_model_free(run->model);
    co_dataset_free(run->train);
    co_dataset_free(run->test);
    co_dataset_free(run->val);
    memset(run, 0, sizeof *run);
}

static co_status write_json(const co_run *run, const co_train_result *res, const char *path, co_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create: %s", path, strerror(errno));
    const co_run_spec *s = &run->spec;
    const co_optim_info *info = co_optim_info_of(run->opt);
    char desc[512];
    co_model_describe(run->model, desc, sizeof desc);
    fprintf(f, "{\n  \"optimizer\": \"%s\",\n  \"hparams\": {", info->name);
    int ncommon;
    const co_hparam *common = co_optim_common_hparams(&ncommon);
    for (int i = 0; i < info->nhparams + ncommon; i++) {
        const char *name = i < info->nhparams ? info->hparams[i].name : common[i - info->nhparams].name;
        fprintf(f, "%s\"%s\": ", i ? ", " : "", name);
        co_json_number(f, co_optim_get(run->opt, 0, name));
    }
    fprintf(f, "},\n  \"clip_norm\": %g,\n  \"schedule\": \"%s\",\n", s->clip, s->schedule);
    fprintf(f, "  \"data\": {\"name\": \"%s\", \"n\": %d, \"noise\": %g, \"test_frac\": %g, \"val_frac\": %g, "
               "\"standardize\": %d, \"reconstruct\": %d, \"seed\": %llu, \"train\": %d, \"test\": %d},\n",
            s->data, s->n, s->noise, s->test_frac, s->val_frac, s->standardize, s->reconstruct,
            (unsigned long long)s->data_seed, run->train->n, run->test->n);
    fprintf(f, "  \"model\": {\"spec\": \"%s\", \"layers\": \"%s\", \"params\": %zu, \"loss\": \"%s\"},\n", s->model,
            desc, co_model_param_count(run->model), co_loss_name(s->loss));
    fprintf(f, "  \"epochs\": %d, \"batch\": %d, \"seed\": %llu, \"steps\": %llu,\n", s->epochs, s->batch,
            (unsigned long long)s->seed, (unsigned long long)co_optim_steps(run->opt));
    char blas[256];
    co_blas_describe(blas, sizeof blas);
    fprintf(f, "  \"blas\": \"%s\", \"threads\": %d, \"ranks\": %d,\n", blas, omp_get_max_threads(),
            run->cfg.collective ? run->cfg.collective->size : 1);
    fprintf(f, "  \"final_test_acc\": ");
    co_json_number(f, res->final_test_acc);
    fprintf(f, ", \"final_test_loss\": ");
    co_json_number(f, res->final_test_loss);
    fprintf(f, ", \"final_train_loss\": ");
    co_json_number(f, res->final_train_loss);
    fprintf(f, ",\n  \"epochs_to_80\": %d, \"seconds\": %.6f,\n  \"history\": [", res->epochs_to_80, res->seconds);
    for (int e = 0; e < res->epochs_run; e++) {
        const co_epoch_stats *h = &res->history[e];
        fprintf(f, "%s\n    {\"epoch\": %d, \"train_loss\": ", e ? "," : "", h->epoch);
        co_json_number(f, h->train_loss);
        fprintf(f, ", \"test_loss\": ");
        co_json_number(f, h->test_loss);
        fprintf(f, ", \"test_acc\": ");
        co_json_number(f, h->test_acc);
        fprintf(f, ", \"val_loss\": ");
        co_json_number(f, h->val_loss);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) return co_error_set(err, CO_EIO, "%s: write failed", path);
    return CO_OK;
}

co_status co_run_execute(co_run *run, const char *out_dir, co_progress_line *progress, co_train_result *res,
                         co_error *err)
{
    char csv[4096], json[4096];
    if (out_dir) {
        if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
            return co_error_set(err, CO_EIO, "%s: cannot create directory: %s", out_dir, strerror(errno));
        snprintf(csv, sizeof csv, "%s/epochs.csv", out_dir);
        snprintf(json, sizeof json, "%s/result.json", out_dir);
        run->cfg.csv_path = csv;
    }
    if (progress) {
        const co_run_spec *s = &run->spec;
        char label[96];
        /* A layer list (spaces) is too long for the line; a preset or mlp: spec is not. */
        snprintf(label, sizeof label, "%s lr %g seed %llu (%s%s%s)", s->opt, co_optim_get(run->opt, 0, "lr"),
                 (unsigned long long)s->seed, s->data, strchr(s->model, ' ') ? "" : ", ",
                 strchr(s->model, ' ') ? "" : s->model);
        co_progress_line_start_run(progress, label);
        run->cfg.on_progress = co_progress_line_update;
        run->cfg.progress_ctx = progress;
    }
    co_status st = co_train(run->model, run->opt, run->train, run->test, &run->cfg, res, err);
    run->cfg.csv_path = NULL;
    run->cfg.on_progress = NULL;
    run->cfg.progress_ctx = NULL;
    if (st || !out_dir) return st;
    return write_json(run, res, json, err);
}

#include "study.h"
#include "train/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

double study_mean(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return n ? s / n : NAN;
}

double study_std(const double *x, int n)
{
    if (n < 2) return 0;
    double m = study_mean(x, n), s = 0;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (n - 1));
}

double study_diff_se(const double *a, int na, const double *b, int nb)
{
    double sa = study_std(a, na), sb = study_std(b, nb);
    return sqrt(sa * sa / na + sb * sb / nb);
}

int study_clearly_greater(const double *a, int na, const double *b, int nb)
{
    double ma = study_mean(a, na), mb = study_mean(b, nb);
    return ma - mb > 2 * study_diff_se(a, na, b, nb) && ma > mb;
}

double study_e80_mean(const study_result *r, int *reached)
{
    double s = 0;
    int k = 0;
    for (int i = 0; i < r->nseeds; i++)
        if (r->e80[i] > 0) {
            s += r->e80[i];
            k++;
        }
    if (reached) *reached = k;
    return k ? s / k : NAN;
}

int study_make_dirs(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
            *c = '/';
        }
    return (mkdir(p, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

typedef struct {
    const study *s;
    co_optim *opt;
    int entry, seed_index;
} hook_ctx;

static void on_epoch(const co_epoch_stats *st, void *ctx)
{
    hook_ctx *h = ctx;
    if (h->s->hook) h->s->hook(h->opt, st, h->entry, h->seed_index, h->s->hook_ctx);
}

co_status study_open_reports(const char *dir, FILE **md, FILE **json, co_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/report.md", dir);
    *md = fopen(path, "w");
    snprintf(path, sizeof path, "%s/results.json", dir);
    *json = fopen(path, "w");
    if (*md && *json) return CO_OK;
    if (*md) fclose(*md);
    if (*json) fclose(*json);
    return co_error_set(err, CO_EIO, "%s: cannot write the report files", dir);
}

/* The hyperparameter list a run of the study gets: faithful=1 first unless the study keeps
 * the safeguards (a later explicit value still wins). */
static const char *run_hparams(const study *s, const char *opt, const char *hparams, char *buf, size_t n)
{
    const co_optim_info *info = co_optim_find(opt);
    if (s->safeguards || !info || !co_optim_find_hparam(info, "faithful", NULL)) return hparams;
    snprintf(buf, n, "faithful=1%s%s", hparams ? "," : "", hparams ? hparams : "");
    return buf;
}

co_status study_validate(const study *s, const char *opt, double lr, const char *hparams, double *acc, double *loss,
                         co_error *err)
{
    double a = 0, l = 0;
    for (int t = 0; t < s->tune_seeds; t++) {
        co_run_spec spec = s->base;
        spec.opt = opt;
        char hp[512];
        spec.hparams = run_hparams(s, opt, hparams, hp, sizeof hp);
        spec.lr = lr;
        spec.val_frac = s->val_frac;
        spec.seed = s->seed0 + 1000 + (uint64_t)t;
        if (s->vary_data_seed) spec.data_seed = spec.seed;
        co_run run;
        co_train_result res;
        co_status st = co_run_prepare(&spec, &run, err);
        if (st) return st;
        st = co_run_execute(&run, NULL, s->progress, &res, err);
        double va = 0, vl = 0;
        if (st == CO_OK) st = co_evaluate(run.model, run.val, spec.loss, 256, &vl, &va, err);
        co_train_result_free(&res);
        co_run_free(&run);
        if (st == CO_ENUMERIC) {
            /* A diverging learning rate loses the comparison; it is not a failure of the study. */
            va = 0;
            vl = INFINITY;
        } else if (st) {
            return st;
        }
        a += va;
        l += vl;
    }
    *acc = a / s->tune_seeds;
    *loss = l / s->tune_seeds;
    return CO_OK;
}

/* The decision boundary of a trained model on a grid around the data, and the test points. */
static co_status write_boundary(co_run *run, const char *dir, const char *opt, co_error *err)
{
    const co_dataset *d = run->test;
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int i = 0; i < d->n; i++)
        for (int j = 0; j < 2; j++) {
            lo[j] = fmin(lo[j], d->x[2 * i + j]);
            hi[j] = fmax(hi[j], d->x[2 * i + j]);
        }
    char data[4200], path[4400];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/boundary_%s_grid.dat", data, opt);
    FILE *f = fopen(path, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create", path);
    enum { G = 160 };
    float xy[2 * G];
    for (int r = 0; r < G; r++) {
        double y = lo[1] - 0.5 + (hi[1] - lo[1] + 1.0) * r / (G - 1);
        for (int c = 0; c < G; c++) {
            xy[2 * c] = (float)(lo[0] - 0.5 + (hi[0] - lo[0] + 1.0) * c / (G - 1));
            xy[2 * c + 1] = (float)y;
        }
        const float *out = co_model_forward(run->model, xy, G, 0, err);
        if (!out) {
            fclose(f);
            return err->code;
        }
        for (int c = 0; c < G; c++) {
            double p = run->spec.loss == CO_LOSS_BCE_LOGITS ? 1.0 / (1.0 + exp(-(double)out[c])) : out[c];
            fprintf(f, "%.5f %.5f %.5f\n", xy[2 * c], y, p);
        }
        fputc('\n', f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/boundary_%s_points.dat", data, opt);
    f = fopen(path, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create", path);
    fprintf(f, "# x y label\n");
    for (int i = 0; i < d->n; i++) fprintf(f, "%.5f %.5f %d\n", d->x[2 * i], d->x[2 * i + 1], (int)d->y[i]);
    fclose(f);
    return CO_OK;
}

enum { NCURVES = 4 }; /* train loss, test acc, train acc, test loss */

static co_status write_curves(const char *dir, const char *opt, co_epoch_stats **hist, int nseeds, int epochs,
                              co_error *err)
{
    char data[4200], path[4400];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/curves_%s.csv", data, opt);
    FILE *f = fopen(path, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create", path);
    fprintf(f, "epoch,train_loss,train_loss_lo,train_loss_hi,test_acc,test_acc_lo,test_acc_hi,train_acc,"
               "train_acc_lo,train_acc_hi,test_loss,test_loss_lo,test_loss_hi,seconds\n");
    double v[STUDY_MAX_SEEDS], elapsed[STUDY_MAX_SEEDS] = {0};
    for (int e = 0; e < epochs; e++) {
        fprintf(f, "%d", e + 1);
        for (int c = 0; c < NCURVES; c++) {
            for (int k = 0; k < nseeds; k++) {
                const co_epoch_stats *h = &hist[k][e];
                v[k] = c == 0 ? h->train_loss : c == 1 ? h->test_acc : c == 2 ? h->train_acc : h->test_loss;
            }
            double m = study_mean(v, nseeds), sd = study_std(v, nseeds);
            fprintf(f, ",%.6g,%.6g,%.6g", m, m - sd, m + sd);
        }
        for (int k = 0; k < nseeds; k++) elapsed[k] += hist[k][e].seconds;
        fprintf(f, ",%.6g\n", study_mean(elapsed, nseeds));
    }
    fclose(f);
    return CO_OK;
}

static co_status run_entry(const study *s, int ei, const char *dir, study_result *r, int verbose, co_error *err)
{
    const study_entry *e = &s->entries[ei];
    co_status st;
    memset(r, 0, sizeof *r);
    r->lr = e->default_lr ? s->base.lr : e->fixed_lr;
    if (!e->default_lr && !(e->fixed_lr > 0)) {
        if (s->ngrid < 1) return co_error_set(err, CO_EINVAL, "%s: no learning rate and no grid to tune it on", e->opt);
        int best = -1;
        for (int g = 0; g < s->ngrid; g++) {
            st = study_validate(s, e->opt, s->grid[g], e->hparams, &r->grid_val_acc[g], &r->grid_val_loss[g], err);
            if (st) return st;
            if (best < 0 || r->grid_val_acc[g] > r->grid_val_acc[best] ||
                (r->grid_val_acc[g] == r->grid_val_acc[best] && r->grid_val_loss[g] < r->grid_val_loss[best]))
                best = g;
        }
        r->lr = s->grid[best];
    }
    co_epoch_stats *hist[STUDY_MAX_SEEDS] = {0};
    int epochs = s->base.epochs;
    r->nseeds = s->seeds;
    for (int k = 0; k < s->seeds; k++) {
        co_run_spec spec = s->base;
        spec.opt = e->opt;
        char hp[512];
        spec.hparams = run_hparams(s, e->opt, e->hparams ? e->hparams : s->base.hparams, hp, sizeof hp);
        spec.lr = r->lr;
        spec.seed = s->seed0 + (uint64_t)k;
        if (s->vary_data_seed) spec.data_seed = spec.seed;
        char rdir[4200];
        snprintf(rdir, sizeof rdir, "%s/runs/%s/seed%d", dir, study_entry_label(e), k);
        if (study_make_dirs(rdir) != 0) {
            st = co_error_set(err, CO_EIO, "%s: cannot create: %s", rdir, strerror(errno));
            goto done;
        }
        co_run run;
        co_train_result res;
        if ((st = co_run_prepare(&spec, &run, err))) goto done;
        if (e->default_lr) r->lr = co_optim_get(run.opt, 0, "lr"); /* the optimizer's own unless the base set one */
        hook_ctx hc = {s, run.opt, ei, k};
        run.cfg.eval_train_acc = !s->no_train_acc;
        char ckpt[4300];
        if (s->checkpoint) {
            snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ckpt", rdir);
            run.cfg.checkpoint_path = ckpt;
            run.cfg.checkpoint_every = s->checkpoint_every;
            run.cfg.resume = s->resume;
        }
        run.cfg.on_epoch = on_epoch;
        run.cfg.cb_ctx = &hc;
        st = co_run_execute(&run, rdir, s->progress, &res, err);
        if (st == CO_OK && e->boundary && k == 0) st = write_boundary(&run, dir, e->opt, err);
        if (st) {
            snprintf(r->failure, sizeof r->failure, "seed %d: %s", k, err->msg);
            co_train_result_free(&res);
            co_run_free(&run);
            goto done;
        }
        r->acc[k] = res.final_test_acc;
        r->e80[k] = res.epochs_to_80;
        r->train_loss[k] = res.final_train_loss;
        r->test_loss[k] = res.final_test_loss;
        r->loss_at[k] = s->report_epoch > 0 && s->report_epoch <= res.epochs_run
                            ? res.history[s->report_epoch - 1].train_loss
                            : NAN;
        r->seconds += res.seconds;
        hist[k] = res.history; /* kept for the curves */
        r->history_epochs[k] = res.epochs_run;
        co_run_free(&run);
    }
    st = write_curves(dir, study_entry_label(e), hist, s->seeds, epochs, err);
    if (st == CO_OK && s->keep_history)
        for (int k = 0; k < s->seeds; k++) {
            r->history[k] = hist[k];
            hist[k] = NULL;
        }
    if (verbose) {
        int acc = !isnan(study_mean(r->acc, r->nseeds));
        const double *v = acc ? r->acc : r->test_loss;
        co_progress_note(s->progress, stderr, "  %-12s lr %-8g test %s %.4f ± %.4f  (%.1f s)\n", study_entry_label(e),
                         r->lr, acc ? "acc" : "loss", study_mean(v, r->nseeds), study_std(v, r->nseeds), r->seconds);
    }
done:
    for (int k = 0; k < s->seeds; k++) free(hist[k]);
    return st;
}

void study_result_free(study_result *r, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < STUDY_MAX_SEEDS; k++) {
            free(r[i].history[k]);
            r[i].history[k] = NULL;
        }
}

int study_planned_runs(const study *s)
{
    int n = 0;
    for (int i = 0; i < s->nentries; i++) {
        const study_entry *e = &s->entries[i];
        if (!e->default_lr && !(e->fixed_lr > 0)) n += s->ngrid * s->tune_seeds;
        n += s->seeds;
    }
    return n;
}

co_status study_run(const study *s, const char *dir, study_result *results, int verbose, co_error *err)
{
    if (s->seeds < 1 || s->seeds > STUDY_MAX_SEEDS)
        return co_error_set(err, CO_EINVAL, "%d seeds (expected 1..%d)", s->seeds, STUDY_MAX_SEEDS);
    /* Zeroed first so that study_result_free is safe after an early return. */
    memset(results, 0, (size_t)s->nentries * sizeof *results);
    if (study_make_dirs(dir) != 0) return co_error_set(err, CO_EIO, "%s: cannot create: %s", dir, strerror(errno));
    for (int i = 0; i < s->nentries; i++) {
        co_status st = run_entry(s, i, dir, &results[i], verbose, err);
        /* A method that fails is reported as failed; the others still run. */
        if (st && !results[i].failure[0]) snprintf(results[i].failure, sizeof results[i].failure, "%s", err->msg);
        if (st == CO_EIO || st == CO_ENOMEM) return st;
    }
    return CO_OK;
}

/* The groups of a figure of many optimizers. */
enum { FAMILY_BASELINE, FAMILY_OGR, FAMILY_PAPERS, NFAMILIES };
static const char *family_titles[NFAMILIES] = {"baselines (torch.optim)", "Duda's OGR family",
                                               "the other papers' methods"};
#define SINGLE_PANEL_MAX 6
#define REFERENCE_OPT "adam"

static int family_of(const char *opt)
{
    const co_optim_info *info = co_optim_find(opt);
    if (info && strstr(info->source, "torch.optim")) return FAMILY_BASELINE;
    return strncmp(opt, "ogr", 3) == 0 ? FAMILY_OGR : FAMILY_PAPERS;
}

static co_status plot_curves(const study *s, const study_result *r, const char *dir, const char *png, const char *title,
                             int xcol, const char *xlabel, int ycol_mean, const char *ylabel, co_error *err)
{
    static char csv[STUDY_MAX_ENTRIES][4400];
    co_plot_series series[STUDY_MAX_ENTRIES];
    char data[4200];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    int n = 0, reference = -1, family[STUDY_MAX_ENTRIES];
    for (int i = 0; i < s->nentries; i++) {
        if (r[i].failure[0]) continue;
        const char *label = study_entry_label(&s->entries[i]);
        snprintf(csv[n], sizeof csv[n], "%s/curves_%s.csv", data, label);
        series[n] = (co_plot_series){csv[n], xcol, ycol_mean, label, ycol_mean + 1, ycol_mean + 2};
        family[n] = family_of(s->entries[i].opt);
        if (strcmp(label, REFERENCE_OPT) == 0) reference = n;
        n++;
    }
    if (n == 0) return co_error_set(err, CO_EINVAL, "%s: no finished runs to plot", png);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, png);
    int logy = ycol_mean == STUDY_COL_TRAIN_LOSS || ycol_mean == STUDY_COL_TEST_LOSS;
    int log_axes = (logy ? CO_PLOT_LOGY : 0) | (xcol == STUDY_COL_SECONDS ? CO_PLOT_LOGX : 0);
    if (n <= SINGLE_PANEL_MAX) {
        co_plot_panel one = {title, series, n};
        return co_plot_panels(path, title, xlabel, ylabel, log_axes, &one, 1, NULL, err);
    }
    /* Small multiples: each family in its own panel, the reference in every one. */
    co_plot_series grouped[NFAMILIES][STUDY_MAX_ENTRIES];
    co_plot_panel panels[NFAMILIES];
    int count[NFAMILIES] = {0}, np = 0;
    for (int i = 0; i < n; i++)
        if (i != reference) {
            int f = family[i];
            grouped[f][count[f]++] = series[i];
        }
    for (int f = 0; f < NFAMILIES; f++)
        if (count[f]) panels[np++] = (co_plot_panel){family_titles[f], grouped[f], count[f]};
    co_plot_series ref;
    if (reference >= 0) {
        ref = series[reference];
        ref.label = REFERENCE_OPT " (reference)";
    }
    return co_plot_panels(path, title, xlabel, ylabel, log_axes, panels, np, reference >= 0 ? &ref : NULL, err);
}

co_status study_plot_curves(const study *s, const study_result *r, const char *dir, const char *png, const char *title,
                            int ycol_mean, const char *ylabel, co_error *err)
{
    return plot_curves(s, r, dir, png, title, 1, "epoch", ycol_mean, ylabel, err);
}

co_status study_plot_curves_time(const study *s, const study_result *r, const char *dir, const char *png,
                                 const char *title, int ycol_mean, const char *ylabel, co_error *err)
{
    return plot_curves(s, r, dir, png, title, STUDY_COL_SECONDS, "training time (s, evaluations excluded)", ycol_mean,
                       ylabel, err);
}

co_status study_plot_boundary(const char *dir, const char *opt, const char *title, co_error *err)
{
    char data[4200], grid[4400], points[4400], png[4200];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    snprintf(grid, sizeof grid, "%s/boundary_%s_grid.dat", data, opt);
    snprintf(points, sizeof points, "%s/boundary_%s_points.dat", data, opt);
    snprintf(png, sizeof png, "%s/boundary_%s.png", dir, opt);
    return co_plot_boundary(png, title, grid, points, err);
}

/* `curvopt reproduce robustness`: every optimizer at its defaults on every model preset that
 * fits this machine, a scaled number of steps each, a few seeds; whether it diverged, stalled
 * or trained, its final test loss and accuracy, its time per step relative to Adam, and each
 * curvature method against the base method it extends. The curvature methods also run as
 * their papers publish them (`faithful=1`) and with one safeguard at a time, so the report
 * shows what each safeguard does; then a learning-rate sweep per method shows the range of
 * learning rates that trains. Not a paper's protocol: it answers issue 12's question of
 * whether the methods survive real networks. Sizes and definitions: docs/robustness.md. */
#include "experiments.h"
#include "json.h"
#include "run.h"
#include "study.h"
#include "train/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A run whose final test loss exceeds the untrained model's by this factor diverged, even if
 * every number stayed finite; one that removed less than STALL_GAIN of it, or of the loss of
 * the best constant prediction (a dead network's: the class prior, the mean pixel), did not
 * train. */
#define DIVERGE_FACTOR 1.5
#define STALL_GAIN 0.1
/* In the sweep a learning rate "trains" when it removes at least half the initial loss. */
#define TRAINS_GAIN 0.5

#define MAX_PRESETS 8
#define MAX_ENTRIES 40
#define MAX_SEEDS 8
#define MAX_LRS 16

typedef struct {
    const char *id, *title, *data, *model;
    co_loss_kind loss;
    int reconstruct, batch;
    int epochs, train_limit, test_limit; /* train_limit 0: all */
    int seeds;
    const char *metric; /* "acc" or "loss": what the comparison with the base uses */
    int ablations;      /* also the one-safeguard rows (too costly on the large networks) */
    double constant_loss; /* test loss of the best constant prediction; NAN until computed */
} preset;

typedef enum { ENTRY_DEFAULT, ENTRY_FAITHFUL, ENTRY_ABLATION, ENTRY_CANARY } entry_kind;

typedef struct {
    const char *label; /* also the run folder's name */
    const char *opt, *hparams;
    double lr; /* < 0: the optimizer's default */
    entry_kind kind;
    const char *base; /* label of the method this one extends (defaults only), NULL: none */
    const char *note;
} entry;

/* The methods at their defaults, each curvature method beside its base; then each as its
 * paper publishes it, then each safeguard alone (the others off). */
static const entry entries[] = {
    {"sgd", "sgd", NULL, -1, ENTRY_DEFAULT, NULL, "lr 1e-2, TSO-ALRA's lr"},
    {"sgd-momentum", "sgd", "momentum=0.9", -1, ENTRY_DEFAULT, NULL, "the OGR family's base"},
    {"adagrad", "adagrad", NULL, -1, ENTRY_DEFAULT, NULL, NULL},
    {"rmsprop", "rmsprop", NULL, -1, ENTRY_DEFAULT, NULL, NULL},
    {"adam", "adam", NULL, -1, ENTRY_DEFAULT, NULL, NULL},
    {"adamw", "adamw", NULL, -1, ENTRY_DEFAULT, NULL, NULL},
    {"amsgrad", "amsgrad", NULL, -1, ENTRY_DEFAULT, NULL, NULL},
    {"ogr1d", "ogr1d", NULL, -1, ENTRY_DEFAULT, "sgd-momentum", NULL},
    {"ogr1ds", "ogr1ds", NULL, -1, ENTRY_DEFAULT, "sgd-momentum", NULL},
    {"ogr1dc", "ogr1dc", NULL, -1, ENTRY_DEFAULT, "sgd-momentum", NULL},
    {"ogr-asgd", "ogr-asgd", NULL, -1, ENTRY_DEFAULT, "sgd-momentum", NULL},
    {"ogr-asgdc", "ogr-asgdc", NULL, -1, ENTRY_DEFAULT, "sgd-momentum", NULL},
    {"lama-adam", "lama-adam", NULL, -1, ENTRY_DEFAULT, "adam", NULL},
    {"quasi-adam", "quasi-adam", NULL, -1, ENTRY_DEFAULT, "adam", NULL},
    {"da-rmsprop", "da-rmsprop", NULL, -1, ENTRY_DEFAULT, "rmsprop", NULL},
    {"tso-alra", "tso-alra", NULL, -1, ENTRY_DEFAULT, "sgd", NULL},
    {"ogr1d.faithful", "ogr1d", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"ogr1ds.faithful", "ogr1ds", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"ogr1dc.faithful", "ogr1dc", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"ogr-asgd.faithful", "ogr-asgd", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"ogr-asgdc.faithful", "ogr-asgdc", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"da-rmsprop.faithful", "da-rmsprop", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"tso-alra.faithful", "tso-alra", "faithful=1", -1, ENTRY_FAITHFUL, NULL, NULL},
    {"ogr-asgdc.rate_growth", "ogr-asgdc", "rate_max=0,rate_growth=1.2", -1, ENTRY_ABLATION, NULL, NULL},
    {"da-rmsprop.gain_max", "da-rmsprop", "curv_clip=0,graft=0", -1, ENTRY_ABLATION, NULL, NULL},
    {"da-rmsprop.curv_clip", "da-rmsprop", "gain_max=0,graft=0", -1, ENTRY_ABLATION, NULL, NULL},
    {"da-rmsprop.graft", "da-rmsprop", "gain_max=0,curv_clip=0", -1, ENTRY_ABLATION, NULL, NULL},
    {"da-rmsprop.no_graft", "da-rmsprop", "graft=0", -1, ENTRY_ABLATION, NULL, NULL},
    {"tso-alra.refresh_tol", "tso-alra", "kl_clip=0", -1, ENTRY_ABLATION, NULL, NULL},
    {"tso-alra.kl_clip", "tso-alra", "refresh_tol=0", -1, ENTRY_ABLATION, NULL, NULL},
    /* Must diverge: shows that the report catches a divergence (the test checks it). */
    {"canary", "sgd", "momentum=0.99", 1000, ENTRY_CANARY, NULL, "SGD at lr 1000: must be reported diverged"},
};
#define NENTRIES ((int)(sizeof entries / sizeof entries[0]))

typedef enum { RUN_OK, RUN_STALLED, RUN_DIVERGED, RUN_FAILED, RUN_SKIPPED } run_status;
static const char *status_names[] = {"ok", "stalled", "diverged", "failed", "skipped"};

typedef struct {
    run_status status;
    double init_loss, test_loss, test_acc, train_loss;
    double sec_per_step; /* NAN when the run stopped early */
    long steps, stop_step; /* stop_step: the step a non-finite value stopped it at (0: none) */
    char message[600];
} run_result;

/* ---------------------------------------------------------------- presets */

static void presets_for(const co_reproduce_options *o, preset *p, int *n, preset *sweep, int *nsweep)
{
    int seeds = o->seeds;
    int q = o->quick;
    *n = 0;
    p[(*n)++] = (preset){"moons", "make_moons MLP 2-64-1", "moons", "mlp:2-64-1", CO_LOSS_BCE_LOGITS, 0, 32,
                         q ? 4 : 30, 0, 0, seeds ? seeds : (q ? 2 : 3), "acc", 1, NAN};
    p[(*n)++] = (preset){"mnist-lenet", "MNIST, quasi-adam-mnist (LeNet-5)", "mnist", "quasi-adam-mnist",
                         CO_LOSS_CROSS_ENTROPY, 0, 128, 1, q ? 20 * 128 : 0, q ? 256 : 10000, seeds ? seeds : (q ? 1 : 2),
                         "acc", 1, NAN};
    if (!q) {
        /* Three seeds: at their default lr RMSprop-like methods sometimes collapse this
         * autoencoder to the mean image (dead ReLUs, test MSE 0.1025) and sometimes not. The
         * one-safeguard rows are left out: TSO-ALRA's 3137-wide factor makes them costly. */
        p[(*n)++] = (preset){"mnist-ae", "MNIST reconstruction, quasi-adam-ae", "mnist", "quasi-adam-ae",
                             CO_LOSS_MSE, 1, 128, 1, 150 * 128, 2000, seeds ? seeds : 3, "loss", 0, NAN};
        p[(*n)++] = (preset){"fmnist-alexnet", "Fashion-MNIST, alexnet-28", "fashion-mnist", "alexnet-28",
                             CO_LOSS_CROSS_ENTROPY, 0, 128, 1, 50 * 128, 2000, seeds ? seeds : 2, "acc", 0, NAN};
        p[(*n)++] = (preset){"fmnist-vgg", "Fashion-MNIST, vgg-28", "fashion-mnist", "vgg-28", CO_LOSS_CROSS_ENTROPY,
                             0, 128, 1, 50 * 128, 2000, seeds ? seeds : 2, "acc", 0, NAN};
    }
    *nsweep = 0;
    sweep[(*nsweep)++] = p[0];
    sweep[0].seeds = 1;
    if (!q) {
        sweep[(*nsweep)] = p[1];
        sweep[*nsweep].id = "mnist-lenet";
        sweep[*nsweep].train_limit = 120 * 128;
        sweep[*nsweep].test_limit = 2000;
        sweep[(*nsweep)++].seeds = 1;
    }
}

static const double sweep_full[] = {1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1};
static const double sweep_quick[] = {1e-3, 1e-1, 10};

/* ---------------------------------------------------------------- data, read once */

/* The file datasets, each read once for the hundreds of runs (reading MNIST takes ~0.8 s). */
typedef struct {
    const char *name;
    co_dataset *train, *test;
} loaded;
static loaded cache[4];
static int ncache;

static co_status load_once(const char *name, const char *data_dir, const loaded **out, co_error *err)
{
    *out = NULL;
    if (strcmp(name, "moons") == 0) return CO_OK;
    for (int i = 0; i < ncache; i++)
        if (strcmp(cache[i].name, name) == 0) {
            *out = &cache[i];
            return CO_OK;
        }
    if (ncache == (int)(sizeof cache / sizeof cache[0])) return CO_OK;
    loaded l = {name, NULL, NULL};
    co_status st = co_dataset_load(name, data_dir, 1, &l.train, err);
    if (!st) st = co_dataset_load(name, data_dir, 0, &l.test, err);
    if (st) {
        co_dataset_free(l.train);
        return st;
    }
    cache[ncache] = l;
    *out = &cache[ncache++];
    return CO_OK;
}

static void free_cache(void)
{
    for (int i = 0; i < ncache; i++) {
        co_dataset_free(cache[i].train);
        co_dataset_free(cache[i].test);
    }
    ncache = 0;
}

/* ---------------------------------------------------------------- one run */

/* The test loss of predicting one constant, fitted on the training targets: the class
 * frequencies (cross-entropy), the positive rate (BCE), the mean of every target value (MSE).
 * A network whose units all died predicts (about) that. */
static double constant_loss(const co_dataset *train, const co_dataset *test, co_loss_kind loss)
{
    double l = 0;
    if (loss == CO_LOSS_MSE) {
        double m = 0;
        size_t n = (size_t)train->n * train->y_dim, nt = (size_t)test->n * test->y_dim;
        for (size_t i = 0; i < n; i++) m += train->y[i];
        m /= (double)n;
        for (size_t i = 0; i < nt; i++) l += (test->y[i] - m) * (test->y[i] - m);
        return l / (double)nt;
    }
    if (loss == CO_LOSS_BCE_LOGITS || loss == CO_LOSS_BCE) {
        double p = 0;
        for (int i = 0; i < train->n; i++) p += train->y[i];
        p /= train->n;
        for (int i = 0; i < test->n; i++) l -= test->y[i] > 0.5 ? log(p) : log(1 - p);
        return l / test->n;
    }
    int k = train->nclasses > 0 ? train->nclasses : 1;
    double *freq = calloc((size_t)k, sizeof *freq);
    if (!freq) return NAN;
    for (int i = 0; i < train->n; i++) freq[(int)train->y[i] % k] += 1.0 / train->n;
    for (int i = 0; i < test->n; i++) l -= log(fmax(freq[(int)test->y[i] % k], 1e-12));
    free(freq);
    return l / test->n;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static co_run_spec spec_of(const preset *p, const entry *e, uint64_t seed, double lr)
{
    co_run_spec s;
    co_run_spec_default(&s);
    s.data = p->data;
    s.model = p->model;
    s.loss = p->loss;
    s.reconstruct = p->reconstruct;
    s.batch = p->batch;
    s.epochs = p->epochs;
    s.train_limit = p->train_limit;
    s.test_limit = p->test_limit;
    s.opt = e->opt;
    s.hparams = e->hparams;
    s.lr = lr;
    s.seed = seed;
    return s;
}

/* Trains one configuration; a non-finite stop is a result (diverged), not an error. Errors
 * that are not the optimizer's (a missing dataset, I/O) are returned. */
static co_status run_one(preset *p, const entry *e, uint64_t seed, double lr, const char *dir, const char *data_dir,
                         run_result *r, co_error *err)
{
    memset(r, 0, sizeof *r);
    co_run_spec spec = spec_of(p, e, seed, lr);
    spec.data_dir = data_dir;
    const loaded *files;
    co_status st = load_once(p->data, data_dir, &files, err);
    if (st) return st;
    if (files) {
        spec.loaded_train = files->train;
        spec.loaded_test = files->test;
    }
    co_run run;
    st = co_run_prepare(&spec, &run, err);
    if (st) return st;
    double acc0;
    /* The untrained model's loss: what "diverged" and "stalled" are measured against. */
    if ((st = co_evaluate(run.model, run.test, spec.loss, 256, &r->init_loss, &acc0, err))) goto done;
    if (isnan(p->constant_loss)) p->constant_loss = constant_loss(run.train, run.test, spec.loss);
    if (dir && study_make_dirs(dir) != 0) {
        st = co_error_set(err, CO_EIO, "%s: cannot create: %s", dir, strerror(errno));
        goto done;
    }
    co_train_result res;
    double t0 = now_seconds();
    st = co_run_execute(&run, dir, 0, &res, err);
    double wall = now_seconds() - t0;
    r->steps = (long)co_optim_steps(run.opt);
    if (st == CO_ENUMERIC) {
        r->status = RUN_DIVERGED;
        r->stop_step = r->steps + 1;
        r->test_loss = r->test_acc = r->train_loss = r->sec_per_step = NAN;
        snprintf(r->message, sizeof r->message, "%s", err->msg);
        co_train_result_free(&res);
        st = CO_OK;
        goto done;
    }
    if (st) {
        co_train_result_free(&res);
        goto done;
    }
    r->test_loss = res.final_test_loss;
    r->test_acc = res.final_test_acc;
    r->train_loss = res.final_train_loss;
    /* Training alone: the loop evaluated the test set once per epoch; one more evaluation,
     * timed, stands for those. */
    double te = now_seconds(), l, a;
    st = co_evaluate(run.model, run.test, spec.loss, 256, &l, &a, err);
    double eval = now_seconds() - te;
    co_train_result_free(&res);
    if (st) goto done;
    r->sec_per_step = r->steps > 0 ? fmax(wall - eval * res.epochs_run, 0) / (double)r->steps : NAN;
    if (!isfinite(r->test_loss) || r->test_loss > DIVERGE_FACTOR * r->init_loss) r->status = RUN_DIVERGED;
    else if (r->test_loss > (1 - STALL_GAIN) * fmin(r->init_loss, p->constant_loss)) r->status = RUN_STALLED;
    else r->status = RUN_OK;
done:
    co_run_free(&run);
    return st;
}

/* ---------------------------------------------------------------- statistics */

static int collect(const run_result *rr, int n, int use_acc, double *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        double v = use_acc ? rr[i].test_acc : rr[i].test_loss;
        if ((rr[i].status == RUN_OK || rr[i].status == RUN_STALLED) && isfinite(v)) out[k++] = v;
    }
    return k;
}

static int count_status(const run_result *rr, int n, run_status s)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += rr[i].status == s;
    return k;
}

static double median_time(const run_result *rr, int n)
{
    double v[MAX_SEEDS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(rr[i].sec_per_step)) v[k++] = rr[i].sec_per_step;
    if (!k) return NAN;
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

static int find_label(const char *label)
{
    for (int i = 0; i < NENTRIES; i++)
        if (strcmp(entries[i].label, label) == 0) return i;
    return -1;
}

/* Verdict of a method against its base on a preset: "worse" when the base is better by more
 * than two standard errors of the difference, "better" the other way, otherwise "same". A
 * method with a diverged seed is "worse" unless its base diverged as often. */
static const char *verdict(const run_result *m, const run_result *b, int n, int use_acc, double *diff, double *se)
{
    double x[MAX_SEEDS], y[MAX_SEEDS];
    int nx = collect(m, n, use_acc, x), ny = collect(b, n, use_acc, y);
    *diff = *se = NAN;
    int dm = count_status(m, n, RUN_DIVERGED), db = count_status(b, n, RUN_DIVERGED);
    if (dm > db) return "worse (diverged)";
    if (db > dm) return "better (base diverged)";
    if (nx == 0 || ny == 0) return dm ? "both diverged" : "not compared";
    *diff = study_mean(x, nx) - study_mean(y, ny);
    *se = study_diff_se(x, nx, y, ny);
    /* Higher accuracy is better; a lower loss is. */
    double good = use_acc ? *diff : -*diff;
    if (nx < 2 || ny < 2) return good > 0 ? "better (one seed)" : good < 0 ? "worse (one seed)" : "same";
    if (good > 2 * *se) return "better";
    if (-good > 2 * *se) return "worse";
    return "same (within 2 s.e.)";
}

/* ---------------------------------------------------------------- report pieces */

static void fmt(char *b, size_t n, double v, const char *f)
{
    if (isfinite(v)) snprintf(b, n, f, v);
    else snprintf(b, n, "—");
}

static void status_cell(char *b, size_t n, const run_result *rr, int k)
{
    b[0] = 0;
    for (int i = 0; i < k; i++) {
        char one[48];
        if (rr[i].status == RUN_DIVERGED && rr[i].stop_step > 0)
            snprintf(one, sizeof one, "**diverged** (step %ld)", rr[i].stop_step);
        else if (rr[i].status == RUN_DIVERGED)
            snprintf(one, sizeof one, "**diverged**");
        else
            snprintf(one, sizeof one, "%s", status_names[rr[i].status]);
        size_t len = strlen(b);
        snprintf(b + len, n - len, "%s%s", i ? ", " : "", one);
    }
}

static void json_run(FILE *f, const run_result *r)
{
    fprintf(f, "{\"status\": \"%s\", \"init_loss\": ", status_names[r->status]);
    co_json_number(f, r->init_loss);
    fprintf(f, ", \"test_loss\": ");
    co_json_number(f, r->test_loss);
    fprintf(f, ", \"test_acc\": ");
    co_json_number(f, r->test_acc);
    fprintf(f, ", \"train_loss\": ");
    co_json_number(f, r->train_loss);
    fprintf(f, ", \"sec_per_step\": ");
    co_json_number(f, r->sec_per_step);
    fprintf(f, ", \"steps\": %ld, \"stop_step\": %ld, \"message\": ", r->steps, r->stop_step);
    co_json_string(f, r->message);
    fputc('}', f);
}

static const char *kind_name(entry_kind k)
{
    return k == ENTRY_DEFAULT ? "default" : k == ENTRY_FAITHFUL ? "faithful" : k == ENTRY_ABLATION ? "one safeguard" : "canary";
}

/* ---------------------------------------------------------------- figures */

/* A heat map, presets across and configurations down: colour = final test loss over the
 * untrained model's (green: trained, grey: stalled, red: diverged), text = accuracy or
 * status. */
static co_status plot_overview(const char *dir, const preset *p, int np, run_result (*res)[MAX_ENTRIES][MAX_SEEDS],
                               co_error *err)
{
    char data[4200], dat[4300], png[4200];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    snprintf(dat, sizeof dat, "%s/overview.dat", data);
    snprintf(png, sizeof png, "%s/overview.png", dir);
    FILE *f = fopen(dat, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create", dat);
    fprintf(f, "# x y ratio label (ratio: final test loss / untrained loss, mean over seeds; 2: diverged)\n");
    for (int i = 0; i < NENTRIES; i++) {
        int y = NENTRIES - 1 - i;
        for (int j = 0; j < np; j++) {
            const run_result *rr = res[j][i];
            int n = p[j].seeds, nd = count_status(rr, n, RUN_DIVERGED),
                nf = count_status(rr, n, RUN_FAILED) + count_status(rr, n, RUN_SKIPPED);
            double ratio = 0, acc = 0;
            int k = 0;
            for (int s = 0; s < n; s++)
                if (rr[s].status == RUN_OK || rr[s].status == RUN_STALLED) {
                    ratio += rr[s].test_loss / rr[s].init_loss;
                    acc += p[j].metric[0] == 'a' ? rr[s].test_acc : rr[s].test_loss;
                    k++;
                }
            char label[64];
            if (nf == n) {
                snprintf(label, sizeof label, "not run");
                ratio = NAN;
            } else if (nd) {
                snprintf(label, sizeof label, "diverged %d/%d", nd, n);
                ratio = 2;
            } else {
                ratio /= k;
                snprintf(label, sizeof label, p[j].metric[0] == 'a' ? "%.3f" : "%.4f", acc / k);
            }
            fprintf(f, "%d %d %g \"%s\"\n", j, y, isfinite(ratio) ? fmin(ratio, 2) : -1, label);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) return co_error_set(err, CO_EIO, "%s: write failed", dat);
    const char *xl[MAX_PRESETS], *yl[MAX_ENTRIES];
    for (int j = 0; j < np; j++) xl[j] = p[j].id;
    for (int i = 0; i < NENTRIES; i++) yl[i] = entries[i].label;
    return co_plot_status_map(png, "Final test accuracy (autoencoder: test MSE), mean over seeds", dat, xl, np, yl,
                              NENTRIES, err);
}

/* One row per configuration, the sweep's learning rates across: a filled circle where it
 * trains, a grey dot where it did not learn, a cross where it diverged; a square marks the
 * default learning rate. */
static co_status plot_sweep(const char *dir, const preset *p, long steps, const double *lrs, int nlr, const int *rows,
                            int nrows, run_result (*sw)[MAX_LRS], const double *defaults, co_error *err)
{
    char data[4200], dat[4300], png[4200], title[512];
    co_status st = co_plot_data_dir(dir, data, sizeof data, err);
    if (st) return st;
    snprintf(dat, sizeof dat, "%s/lr_sweep_%s.dat", data, p->id);
    snprintf(png, sizeof png, "%s/lr_sweep_%s.png", dir, p->id);
    FILE *f = fopen(dat, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create", dat);
    fprintf(f, "# lr row status (0 trains, 1 did not learn, 2 diverged)\n");
    for (int r = 0; r < nrows; r++)
        for (int k = 0; k < nlr; k++) {
            const run_result *x = &sw[r][k];
            int s = x->status == RUN_DIVERGED ? 2
                    : x->status == RUN_OK && x->test_loss <= (1 - TRAINS_GAIN) * x->init_loss ? 0
                                                                                               : 1;
            if (x->status != RUN_FAILED) fprintf(f, "%g %d %d\n", lrs[k], nrows - 1 - r, s);
        }
    fprintf(f, "\n\n# default lr per row\n");
    for (int r = 0; r < nrows; r++) fprintf(f, "%g %d\n", defaults[r], nrows - 1 - r);
    if (fclose(f) != 0) return co_error_set(err, CO_EIO, "%s: write failed", dat);
    /* The markers are explained in the report under the figure. */
    snprintf(title, sizeof title, "Learning rates that train: %s, %ld steps", p->title, steps);
    const char *yl[MAX_ENTRIES];
    for (int r = 0; r < nrows; r++) yl[r] = entries[rows[r]].label;
    return co_plot_lr_ranges(png, title, dat, lrs[0], lrs[nlr - 1], yl, nrows, err);
}

/* ---------------------------------------------------------------- the experiment */

/* Results of the main grid, [preset][entry][seed]; static: too large for the stack. */
static run_result grid[MAX_PRESETS][MAX_ENTRIES][MAX_SEEDS];
static run_result sweep_res[MAX_PRESETS][MAX_ENTRIES][MAX_LRS];

static co_status robustness(const char *dir, const co_reproduce_options *o, co_error *err);

co_status co_reproduce_robustness(const char *dir, const co_reproduce_options *o, co_error *err)
{
    co_status st = robustness(dir, o, err);
    free_cache();
    return st;
}

static co_status robustness(const char *dir, const co_reproduce_options *o, co_error *err)
{
    preset p[MAX_PRESETS], sp[MAX_PRESETS];
    int np, nsp;
    presets_for(o, p, &np, sp, &nsp);
    const double *lrs = o->quick ? sweep_quick : sweep_full;
    int nlr = o->quick ? (int)(sizeof sweep_quick / sizeof *lrs) : (int)(sizeof sweep_full / sizeof *lrs);
    if (study_make_dirs(dir) != 0) return co_error_set(err, CO_EIO, "%s: cannot create: %s", dir, strerror(errno));
    double t_start = now_seconds();
    char msg_preset[MAX_PRESETS][600];
    for (int j = 0; j < np; j++) {
        msg_preset[j][0] = 0;
        if (p[j].seeds > MAX_SEEDS) p[j].seeds = MAX_SEEDS;
        for (int i = 0; i < NENTRIES; i++) {
            const entry *e = &entries[i];
            for (int s = 0; s < p[j].seeds; s++) {
                char rdir[4200];
                snprintf(rdir, sizeof rdir, "%s/runs/%s/%s/seed%d", dir, p[j].id, e->label, s);
                run_result *r = &grid[j][i][s];
                if (e->kind == ENTRY_ABLATION && !p[j].ablations) {
                    memset(r, 0, sizeof *r);
                    r->status = RUN_SKIPPED;
                    r->test_loss = r->test_acc = r->init_loss = r->sec_per_step = NAN;
                    snprintf(r->message, sizeof r->message, "one-safeguard rows run on the smaller presets only");
                    continue;
                }
                co_status st = run_one(&p[j], e, (uint64_t)s, e->lr, rdir, o->data_dir, r, err);
                if (st == CO_ENOTFOUND || st == CO_EINVAL || st == CO_EFORMAT) {
                    /* The preset cannot run here (no dataset files): reported, the others go on. */
                    r->status = RUN_FAILED;
                    snprintf(r->message, sizeof r->message, "%s", err->msg);
                    snprintf(msg_preset[j], sizeof msg_preset[j], "%s", err->msg);
                } else if (st) {
                    return st;
                }
            }
            if (o->verbose) {
                char cell[512];
                status_cell(cell, sizeof cell, grid[j][i], p[j].seeds);
                fprintf(stderr, "  %-15s %-22s %s  test loss %.4g  (%.0f s so far)\n", p[j].id, e->label, cell,
                        grid[j][i][0].test_loss, now_seconds() - t_start);
            }
        }
    }
    /* The sweep: the defaults and the faithful versions, each over the grid of learning rates. */
    int rows[MAX_ENTRIES], nrows = 0;
    double defaults[MAX_ENTRIES];
    for (int i = 0; i < NENTRIES; i++)
        if (entries[i].kind == ENTRY_DEFAULT || entries[i].kind == ENTRY_FAITHFUL) {
            rows[nrows] = i;
            const co_optim_info *info = co_optim_find(entries[i].opt);
            defaults[nrows++] = info->hparams[0].def;
        }
    for (int j = 0; j < nsp; j++)
        for (int r = 0; r < nrows; r++) {
            for (int k = 0; k < nlr; k++) {
                run_result *x = &sweep_res[j][r][k];
                co_status st = run_one(&sp[j], &entries[rows[r]], 0, lrs[k], NULL, o->data_dir, x, err);
                if (st == CO_ENOTFOUND || st == CO_EINVAL || st == CO_EFORMAT) {
                    x->status = RUN_FAILED;
                    snprintf(x->message, sizeof x->message, "%s", err->msg);
                } else if (st) {
                    return st;
                }
            }
            if (o->verbose) fprintf(stderr, "  sweep %-12s %-22s (%.0f s so far)\n", sp[j].id, entries[rows[r]].label,
                                    now_seconds() - t_start);
        }
    double total = now_seconds() - t_start;

    /* ------------------------------------------------------------ figures */
    co_status fst = plot_overview(dir, p, np, grid, err);
    if (fst) fprintf(stderr, "curvopt reproduce: figure skipped: %s\n", err->msg);
    for (int j = 0; j < nsp; j++) {
        long steps = 0;
        for (int r = 0; r < nrows; r++)
            for (int k = 0; k < nlr; k++)
                if (sweep_res[j][r][k].status == RUN_OK || sweep_res[j][r][k].status == RUN_STALLED)
                    steps = sweep_res[j][r][k].steps;
        fst = plot_sweep(dir, &sp[j], steps, lrs, nlr, rows, nrows, sweep_res[j], defaults, err);
        if (fst) fprintf(stderr, "curvopt reproduce: figure skipped: %s\n", err->msg);
    }

    /* ------------------------------------------------------------ report.md and results.json */
    FILE *md, *js;
    co_status rst = study_open_reports(dir, &md, &js, err);
    if (rst) return rst;
    fprintf(md, "# Robustness: every optimizer at its defaults on every preset\n\n");
    if (o->quick) fprintf(md, "**Quick mode: tiny sizes, a smoke test of the study, not its result.**\n\n");
    fprintf(md, "Each configuration trains from PyTorch's default initialisation (seed k for seed k) with its "
                "`curvopt list` defaults; *faithful* rows run the paper's algorithm as published (`faithful=1`), "
                "*one safeguard* rows keep one of the default safeguards and switch the others off. A run "
                "**diverged** when it stopped on a non-finite value (the step is given) or ended with a test loss "
                "above %.1f× the untrained model's; it **stalled** when it removed less than %.0f%% of that loss or "
                "of the best constant prediction's (the class prior, the mean pixel: what a network whose units all "
                "died still achieves). "
                "Accuracy and loss are on the first test images (column `test`), after the scaled number of steps. "
                "Time per step is the training loop's wall time without evaluation, median over seeds, relative to "
                "Adam's on the same preset (OMP threads as set by the caller; a shared machine makes it noisy). "
                "Total wall time: %.0f s.\n\n",
            DIVERGE_FACTOR, 100 * STALL_GAIN, total);
    fprintf(md, "| preset | model | data | batch | steps | test images | seeds | constant-prediction test loss |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (int j = 0; j < np; j++) {
        long steps = grid[j][find_label("adam")][0].steps;
        char tests[32];
        if (p[j].test_limit > 0) snprintf(tests, sizeof tests, "%d", p[j].test_limit);
        else snprintf(tests, sizeof tests, "all");
        char cl[32];
        fmt(cl, sizeof cl, p[j].constant_loss, "%.4g");
        fprintf(md, "| %s | `%s` | %s | %d | %ld | %s | %d | %s |\n", p[j].id, p[j].model, p[j].data, p[j].batch, steps,
                tests, p[j].seeds, cl);
    }
    fprintf(md, "\n![overview](overview.png)\n\n");
    fprintf(js, "{\n  \"experiment\": \"robustness\",\n  \"quick\": %s,\n  \"seconds\": %.1f,\n", o->quick ? "true" : "false",
            total);
    fprintf(js, "  \"definitions\": {\"diverge_factor\": %g, \"stall_gain\": %g, \"trains_gain\": %g},\n", DIVERGE_FACTOR,
            STALL_GAIN, TRAINS_GAIN);
    fprintf(js, "  \"presets\": [");
    int adam = find_label("adam");
    int defaults_diverged = 0;
    char which[1024] = "";
    for (int j = 0; j < np; j++) {
        fprintf(md, "## %s\n\n", p[j].title);
        if (msg_preset[j][0]) fprintf(md, "Not run: %s\n\n", msg_preset[j]);
        fprintf(md, "| configuration | kind | status per seed | test acc | test loss | untrained loss | time / step vs Adam |\n"
                    "|---|---|---|---|---|---|---|\n");
        fprintf(js, "%s\n    {\"id\": \"%s\", \"model\": \"%s\", \"data\": \"%s\", \"batch\": %d, \"seeds\": %d, "
                    "\"metric\": \"%s\", \"constant_loss\": ",
                j ? "," : "", p[j].id, p[j].model, p[j].data, p[j].batch, p[j].seeds, p[j].metric);
        co_json_number(js, p[j].constant_loss);
        fprintf(js, ", \"configurations\": [");
        double t_adam = median_time(grid[j][adam], p[j].seeds);
        for (int i = 0; i < NENTRIES; i++) {
            const run_result *rr = grid[j][i];
            int n = p[j].seeds;
            double acc[MAX_SEEDS], loss[MAX_SEEDS];
            int na = collect(rr, n, 1, acc), nl = collect(rr, n, 0, loss);
            char cell[512], a[64], l[64], i0[32], t[32];
            status_cell(cell, sizeof cell, rr, n);
            if (na > 1) snprintf(a, sizeof a, "%.4f ± %.4f", study_mean(acc, na), study_std(acc, na));
            else fmt(a, sizeof a, na ? acc[0] : NAN, "%.4f");
            if (nl > 1) snprintf(l, sizeof l, "%.4g ± %.2g", study_mean(loss, nl), study_std(loss, nl));
            else fmt(l, sizeof l, nl ? loss[0] : NAN, "%.4g");
            fmt(i0, sizeof i0, rr[0].init_loss, "%.4g");
            double rel = median_time(rr, n) / t_adam;
            fmt(t, sizeof t, rel, "%.2f×");
            if (entries[i].kind == ENTRY_DEFAULT && count_status(rr, n, RUN_DIVERGED)) {
                defaults_diverged++;
                size_t len = strlen(which);
                snprintf(which + len, sizeof which - len, "%s%s on %s (%d of %d seeds)", len ? "; " : "",
                         entries[i].label, p[j].id, count_status(rr, n, RUN_DIVERGED), n);
            }
            fprintf(md, "| %s | %s | %s | %s | %s | %s | %s |\n", entries[i].label, kind_name(entries[i].kind), cell, a, l,
                    i0, t);
            fprintf(js, "%s\n      {\"label\": \"%s\", \"optimizer\": \"%s\", \"hparams\": ", i ? "," : "",
                    entries[i].label, entries[i].opt);
            co_json_string(js, entries[i].hparams ? entries[i].hparams : "");
            fprintf(js, ", \"lr\": ");
            co_json_number(js, entries[i].lr > 0 ? entries[i].lr : co_optim_find(entries[i].opt)->hparams[0].def);
            fprintf(js, ", \"kind\": \"%s\", \"time_vs_adam\": ", kind_name(entries[i].kind));
            co_json_number(js, rel);
            fprintf(js, ", \"runs\": [");
            for (int s = 0; s < n; s++) {
                if (s) fputs(", ", js);
                json_run(js, &rr[s]);
            }
            fputs("]}", js);
        }
        fprintf(js, "\n    ], \"against_base\": [");
        fprintf(md, "\nEach curvature method at its defaults against the base method it extends at the base's "
                    "defaults (%s; 2 s.e. of the difference over seeds):\n\n| method | base | difference | 2 s.e. | "
                    "verdict |\n|---|---|---|---|---|\n",
                p[j].metric[0] == 'a' ? "test accuracy, higher is better" : "test loss, lower is better");
        int first = 1;
        for (int i = 0; i < NENTRIES; i++) {
            if (entries[i].kind != ENTRY_DEFAULT || !entries[i].base) continue;
            int b = find_label(entries[i].base);
            double d, se;
            const char *v = verdict(grid[j][i], grid[j][b], p[j].seeds, p[j].metric[0] == 'a', &d, &se);
            char ds[32], ses[32];
            fmt(ds, sizeof ds, d, "%+.4f");
            fmt(ses, sizeof ses, 2 * se, "%.4f");
            fprintf(md, "| %s | %s | %s | %s | %s |\n", entries[i].label, entries[i].base, ds, ses, v);
            fprintf(js, "%s\n      {\"method\": \"%s\", \"base\": \"%s\", \"difference\": ", first ? "" : ",",
                    entries[i].label, entries[i].base);
            co_json_number(js, d);
            fprintf(js, ", \"se\": ");
            co_json_number(js, se);
            fprintf(js, ", \"verdict\": \"%s\"}", v);
            first = 0;
        }
        fprintf(js, "\n    ]}");
        fprintf(md, "\n");
    }
    fprintf(js, "\n  ],\n  \"defaults_diverged\": %d,\n  \"defaults_diverged_which\": ", defaults_diverged);
    co_json_string(js, which);
    fprintf(js, ",\n");
    fprintf(md, "## Summary\n\nConfigurations at their defaults with at least one diverged seed, over all presets: "
                "**%d**%s%s.\n\n",
            defaults_diverged, which[0] ? ": " : "", which);
    /* The sweep. */
    fprintf(md, "## Learning-rate sweep\n\nOne seed per point; a learning rate *trains* when the final test loss is at "
                "most %.0f%% of the untrained model's. The other hyperparameters stay at their defaults. For the OGR "
                "coordinate-wise methods (`ogr-asgd`, `ogr-asgdc`) `lr` is the paper's α (default 0.5).\n\n",
            100 * (1 - TRAINS_GAIN));
    fprintf(js, "  \"sweep\": {\"lrs\": ");
    co_json_array(js, lrs, nlr);
    fprintf(js, ", \"presets\": [");
    for (int j = 0; j < nsp; j++) {
        fprintf(md, "### %s\n\n![lr sweep](lr_sweep_%s.png)\n\n*Large green dot: trains; small grey dot: did not "
                    "learn that much; cross: diverged; square: the default learning rate.*\n\n"
                    "| configuration | default lr |",
                sp[j].title, sp[j].id);
        for (int k = 0; k < nlr; k++) fprintf(md, " %g |", lrs[k]);
        fprintf(md, " range that trains |\n|---|---|");
        for (int k = 0; k < nlr; k++) fprintf(md, "---|");
        fprintf(md, "---|\n");
        fprintf(js, "%s\n    {\"id\": \"%s\", \"rows\": [", j ? "," : "", sp[j].id);
        for (int r = 0; r < nrows; r++) {
            fprintf(md, "| %s | %g |", entries[rows[r]].label, defaults[r]);
            int lo = -1, hi = -1;
            fprintf(js, "%s\n      {\"label\": \"%s\", \"runs\": [", r ? "," : "", entries[rows[r]].label);
            for (int k = 0; k < nlr; k++) {
                const run_result *x = &sweep_res[j][r][k];
                int trains = x->status == RUN_OK && x->test_loss <= (1 - TRAINS_GAIN) * x->init_loss;
                if (trains) {
                    if (lo < 0) lo = k;
                    hi = k;
                }
                char c[32];
                if (x->status == RUN_DIVERGED) snprintf(c, sizeof c, "div");
                else if (x->status == RUN_FAILED) snprintf(c, sizeof c, "—");
                else snprintf(c, sizeof c, "%s%.2f", trains ? "**" : "", x->test_loss / x->init_loss);
                fprintf(md, " %s%s |", c, trains ? "**" : "");
                if (k) fputs(", ", js);
                json_run(js, x);
            }
            fprintf(js, "], \"trains_from\": ");
            co_json_number(js, lo >= 0 ? lrs[lo] : NAN);
            fprintf(js, ", \"trains_to\": ");
            co_json_number(js, hi >= 0 ? lrs[hi] : NAN);
            fputc('}', js);
            if (lo >= 0) fprintf(md, " %g – %g |\n", lrs[lo], lrs[hi]);
            else fprintf(md, " none |\n");
        }
        fprintf(js, "\n    ]}");
        fprintf(md, "\nCells: final test loss / untrained loss (bold: trains; `div`: diverged).\n\n");
    }
    fprintf(js, "\n  ]}\n}\n");
    int bad = fclose(md) != 0;
    bad |= fclose(js) != 0;
    return bad ? co_error_set(err, CO_EIO, "%s: writing the report failed", dir) : CO_OK;
}

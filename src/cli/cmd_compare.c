/* The default job: every chosen optimizer on the same make_moons data, over a few seeds of
 * initialisation and minibatch order: a ranked table on stdout and in DIR/table.md, and
 * figures that say at a glance which method is best, how fast it gets there and how stable
 * it is (summary.png), with the curves behind them (test_accuracy.png, the same against
 * training time: test_accuracy_time.png, train_loss.png). */
#include "commands.h"
#include "experiments/study.h"
#include "run_options.h"
#include "train/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An entry of --opts is NAME or NAME:K=V:K=V..., the optimizer with some hyperparameters
 * set (`tso-alra:T_cov=10:T_int=100:rank=64`), so that one method's settings can be compared
 * side by side; the whole entry labels its runs and curves. */
#define ENTRY_HP_SEP ':'
#define ENTRY_MAX_LEN 128

/* Five seeds keep the default job at about ten seconds on a 2-core machine (README). */
#define COMPARE_SEEDS 5

static int split_names(const char *list, char names[][ENTRY_MAX_LEN], int max)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        if (n == max) return -2;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= ENTRY_MAX_LEN) return -1;
        memcpy(names[n], p, len);
        names[n][len] = 0;
        n++;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

/* One optimizer's results over the seeds. */
typedef struct {
    const char *name; /* the entry's label */
    double lr;
    double acc, acc_sd, early, early_sd, test_loss, train_loss, seconds, seconds_sd;
    int failed;
} summary;

static void summarize(summary *u, const study_entry *e, const study_result *r, int early_epoch)
{
    memset(u, 0, sizeof *u);
    u->name = study_entry_label(e);
    u->lr = r->lr;
    u->failed = r->failure[0] != 0;
    if (u->failed) return;
    int n = r->nseeds;
    double early[STUDY_MAX_SEEDS], sec[STUDY_MAX_SEEDS];
    for (int k = 0; k < n; k++) {
        int ok = r->history[k] && early_epoch >= 1 && early_epoch <= r->history_epochs[k];
        early[k] = ok ? r->history[k][early_epoch - 1].test_acc : NAN;
        sec[k] = 0;
        for (int ep = 0; r->history[k] && ep < r->history_epochs[k]; ep++) sec[k] += r->history[k][ep].seconds;
    }
    u->acc = study_mean(r->acc, n);
    u->acc_sd = study_std(r->acc, n);
    u->early = study_mean(early, n);
    u->early_sd = study_std(early, n);
    u->test_loss = study_mean(r->test_loss, n);
    u->train_loss = study_mean(r->train_loss, n);
    u->seconds = study_mean(sec, n);
    u->seconds_sd = study_std(sec, n);
}

/* Best first: the highest mean test accuracy (the lowest test loss where there is no
 * accuracy); failed runs last. */
static int better_first(const void *pa, const void *pb)
{
    const summary *a = pa, *b = pb;
    if (a->failed != b->failed) return a->failed - b->failed;
    double ka = isnan(a->acc) ? -a->test_loss : a->acc, kb = isnan(b->acc) ? -b->test_loss : b->acc;
    return (ka < kb) - (ka > kb);
}

static void write_ranking_data(FILE *f, const summary *u, int n)
{
    fprintf(f, "# optimizer test_acc test_acc_std early_test_acc early_test_acc_std seconds seconds_std\n");
    for (int i = 0; i < n; i++)
        if (!u[i].failed)
            fprintf(f, "%s %.6g %.6g %.6g %.6g %.6g %.6g\n", u[i].name, u[i].acc, u[i].acc_sd, u[i].early,
                    u[i].early_sd, u[i].seconds, u[i].seconds_sd);
}

int cmd_compare(int argc, char **argv)
{
    run_options o;
    run_options_init(&o);
    const char *out = "runs/compare", *opts = NULL;
    int seeds = COMPARE_SEEDS, quiet = 0, faithful = 0;
    enum { NSPECS = RUN_OPTION_COUNT + 5 };
    arg_spec specs[NSPECS];
    run_options_specs(&o, specs);
    specs[RUN_OPTION_COUNT] = (arg_spec){"out", ARG_STR, &out, "DIR", "output folder (default runs/compare)", 1, 0};
    specs[RUN_OPTION_COUNT + 1] =
        (arg_spec){"opts", ARG_STR, &opts, "A,B,...",
                   "optimizers to compare (default: every one in curvopt list); NAME:K=V:K=V sets some of its "
                   "hyperparameters",
                   1, 0};
    specs[RUN_OPTION_COUNT + 2] = (arg_spec){
        "seeds", ARG_INT, &seeds, "N", "seeds per optimizer: --seed, --seed+1, ... (default 5)", 1, STUDY_MAX_SEEDS};
    specs[RUN_OPTION_COUNT + 3] = (arg_spec){"quiet", ARG_FLAG, &quiet, "", "no progress line on the terminal", 1, 0};
    specs[RUN_OPTION_COUNT + 4] = (arg_spec){
        "faithful", ARG_FLAG, &faithful, "", "every method as its paper publishes it (faithful=1: no safeguards)", 1, 0};
    int rc = args_parse("compare", "[--opts A,B,...] [--seeds N] [--out DIR] [options]", specs, NSPECS, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = run_options_finish("compare", &o)) || (rc = cli_check_out_dir("compare", out))) return rc;

    char names[STUDY_MAX_ENTRIES][ENTRY_MAX_LEN];
    int n = 0;
    if (opts) {
        n = split_names(opts, names, STUDY_MAX_ENTRIES);
        if (n == -2) return cli_fail("compare", "--opts: at most %d optimizers", STUDY_MAX_ENTRIES);
        if (n <= 0) return cli_fail("compare", "--opts '%s': expected names joined by commas", opts);
    } else {
        for (int i = 0; i < co_optim_count() && n < STUDY_MAX_ENTRIES; i++)
            snprintf(names[n++], ENTRY_MAX_LEN, "%s", co_optim_info_at(i)->name);
    }
    /* Each entry's optimizer name and hyperparameters: the --hp list first, the entry's own
     * after it (a later value wins). */
    char opt_names[STUDY_MAX_ENTRIES][ENTRY_MAX_LEN], hparams[STUDY_MAX_ENTRIES][600];
    for (int i = 0; i < n; i++) {
        memcpy(opt_names[i], names[i], ENTRY_MAX_LEN);
        char *sep = strchr(opt_names[i], ENTRY_HP_SEP);
        hparams[i][0] = 0;
        if (sep) {
            *sep = 0;
            if (!sep[1]) return cli_fail("compare", "--opts '%s': expected NAME:K=V[:K=V...]", names[i]);
            for (char *c = sep + 1; *c; c++)
                if (*c == ENTRY_HP_SEP) *c = ',';
            snprintf(hparams[i], sizeof hparams[i], "%s%s%s", o.spec.hparams ? o.spec.hparams : "",
                     o.spec.hparams ? "," : "", sep + 1);
        }
    }
    /* Validate every run before writing anything. */
    co_error err = {0};
    for (int i = 0; i < n; i++) {
        co_run_spec s = o.spec;
        s.opt = opt_names[i];
        if (hparams[i][0]) s.hparams = hparams[i];
        co_run run;
        if (co_run_prepare(&s, &run, &err)) return cli_fail("compare", "%s", err.msg);
        co_run_free(&run);
    }
    if (cli_mkdirs("compare", out)) return 1;

    static study s;
    memset(&s, 0, sizeof s);
    s.id = "compare";
    s.base = o.spec;
    s.seeds = seeds;
    s.seed0 = o.spec.seed;
    s.no_train_acc = 1;
    s.keep_history = 1;
    s.safeguards = !faithful;
    for (int i = 0; i < n; i++)
        s.entries[s.nentries++] =
            (study_entry){opt_names[i], 0, hparams[i][0] ? hparams[i] : NULL, NAN, NAN, NAN, 0, 1, names[i]};
    co_progress_line line;
    if (!quiet && isatty(STDOUT_FILENO)) {
        co_progress_line_init(&line, stdout, study_planned_runs(&s));
        s.progress = &line;
    }
    static study_result r[STUDY_MAX_ENTRIES];
    co_status st = study_run(&s, out, r, 0, &err);
    co_progress_line_clear(s.progress);
    if (st) {
        study_result_free(r, n);
        return cli_fail("compare", "%s", err.msg), 1;
    }

    int epochs = o.spec.epochs, early_epoch = epochs >= 10 ? (epochs + 5) / 10 : 1;
    summary u[STUDY_MAX_ENTRIES];
    int failures = 0;
    for (int i = 0; i < n; i++) {
        summarize(&u[i], &s.entries[i], &r[i], early_epoch);
        if (u[i].failed) {
            fprintf(stderr, "curvopt compare: %s: %s\n", names[i], r[i].failure);
            failures++;
        }
    }
    study_result_free(r, n);
    qsort(u, (size_t)n, sizeof *u, better_first);

    char header[600], data_name[160];
    if (strcmp(o.spec.data, "moons") == 0)
        snprintf(data_name, sizeof data_name, "make_moons n=%d noise=%g test=%g", o.spec.n, o.spec.noise,
                 o.spec.test_frac);
    else
        snprintf(data_name, sizeof data_name, "%s", o.spec.data);
    snprintf(header, sizeof header,
             "%s, %s, batch %d, %d epochs, %d seed(s) %llu..%llu of initialisation and minibatch order (the same data "
             "for all), each optimizer at its default hyperparameters%s%s",
             data_name, o.spec.model, o.spec.batch, epochs, seeds, (unsigned long long)o.spec.seed,
             (unsigned long long)(o.spec.seed + (uint64_t)seeds - 1),
             faithful ? " as its paper publishes it (faithful=1)" : " (safeguards on)",
             o.spec.lr >= 0 ? " (lr overridden)" : "");
    char table_path[4200];
    snprintf(table_path, sizeof table_path, "%s/table.md", out);
    FILE *table = fopen(table_path, "w");
    if (!table) return cli_fail("compare", "cannot create %s", table_path), 1;
    fprintf(table, "%s\n\nBest first (mean final test accuracy); ± is one standard deviation over the seeds.\n\n"
                   "| rank | optimizer | lr | test acc | test acc after epoch %d | test loss | train loss | "
                   "seconds per run |\n|---|---|---|---|---|---|---|---|\n",
            header, early_epoch);
    printf("%s\n\n%4s  %-12s %8s  %-17s  %-17s %9s %10s %8s\n", header, "rank", "optimizer", "lr", "test acc",
           "acc @ epoch", "test loss", "train loss", "s/run");
    for (int i = 0; i < n; i++) {
        if (u[i].failed) {
            fprintf(table, "| | %s | | failed (see stderr) | | | | |\n", u[i].name);
            printf("%4s  %-12s failed\n", "", u[i].name);
            continue;
        }
        fprintf(table, "| %d | %s | %g | %.4f ± %.4f | %.4f ± %.4f | %.4f | %.4f | %.3f |\n", i + 1, u[i].name,
                u[i].lr, u[i].acc, u[i].acc_sd, u[i].early, u[i].early_sd, u[i].test_loss, u[i].train_loss,
                u[i].seconds);
        printf("%4d  %-12s %8.3g  %.4f ± %.4f   %.4f ± %.4f  %9.4f %10.4f %8.3f\n", i + 1, u[i].name, u[i].lr,
               u[i].acc, u[i].acc_sd, u[i].early, u[i].early_sd, u[i].test_loss, u[i].train_loss, u[i].seconds);
    }
    fprintf(table, "\n![at a glance](summary.png)\n\n![test accuracy](test_accuracy.png)\n\n"
                   "![test accuracy against training time](test_accuracy_time.png)\n\n"
                   "![training loss](train_loss.png)\n");
    if (fclose(table) != 0) return cli_fail("compare", "%s: write failed", table_path), 1;
    if (failures == n) return 1;

    /* Figures: the ranking first, then the curves behind it. */
    char data[4200], dat[4400], png[4200], t1[160], t2[160], title[700];
    st = co_plot_data_dir(out, data, sizeof data, &err);
    if (st == CO_OK) {
        snprintf(dat, sizeof dat, "%s/summary.dat", data);
        FILE *f = fopen(dat, "w");
        if (!f) st = co_error_set(&err, CO_EIO, "%s: cannot create", dat);
        else {
            write_ranking_data(f, u, n);
            if (fclose(f) != 0) st = co_error_set(&err, CO_EIO, "%s: write failed", dat);
        }
    }
    if (st == CO_OK) {
        snprintf(t1, sizeof t1, "final test accuracy (± std, %d seeds)", seeds);
        snprintf(t2, sizeof t2, "test accuracy after epoch %d of %d", early_epoch, epochs);
        co_plot_metric metrics[3] = {{2, 3, t1, 0}, {4, 5, t2, 0}, {6, 7, "training seconds per run (log)", 1}};
        snprintf(png, sizeof png, "%s/summary.png", out);
        snprintf(title, sizeof title, "%s, %s: best on top", data_name, o.spec.model);
        st = co_plot_ranking(png, title, dat, n - failures, metrics, 3, &err);
    }
    if (st == CO_OK) {
        snprintf(title, sizeof title, "%s: test accuracy (mean over %d seeds, band ± std)", data_name, seeds);
        st = study_plot_curves(&s, r, out, "test_accuracy.png", title, STUDY_COL_TEST_ACC, "test accuracy", &err);
    }
    if (st == CO_OK) {
        snprintf(title, sizeof title, "%s: test accuracy against training time (mean over %d seeds)", data_name,
                 seeds);
        st = study_plot_curves_time(&s, r, out, "test_accuracy_time.png", title, STUDY_COL_TEST_ACC, "test accuracy",
                                    &err);
    }
    if (st == CO_OK) {
        snprintf(title, sizeof title, "%s: training loss (mean over %d seeds, band ± std)", data_name, seeds);
        st = study_plot_curves(&s, r, out, "train_loss.png", title, STUDY_COL_TRAIN_LOSS, "mean minibatch loss", &err);
    }
    if (st) fprintf(stderr, "curvopt compare: figures skipped: %s\n", err.msg);
    printf("\ntable: %s\nfigures: %s/summary.png %s/test_accuracy.png %s/test_accuracy_time.png %s/train_loss.png\n",
           table_path, out, out, out, out);
    return failures ? 1 : 0;
}

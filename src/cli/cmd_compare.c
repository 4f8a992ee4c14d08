/* The default job: every chosen optimizer on the same make_moons data and initialisation,
 * a table on stdout and in DIR/table.md, figures of test accuracy and training loss. */
#include "commands.h"
#include "run_options.h"
#include "train/plot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_OPTS 64

static int split_names(const char *list, char names[][64], int max)
{
    int n = 0;
    const char *p = list;
    while (*p && n < max) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= 64) return -1;
        memcpy(names[n], p, len);
        names[n][len] = 0;
        n++;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

int cmd_compare(int argc, char **argv)
{
    run_options o;
    run_options_init(&o);
    const char *out = "runs/compare", *opts = NULL;
    arg_spec specs[RUN_OPTION_COUNT + 2];
    run_options_specs(&o, specs);
    specs[RUN_OPTION_COUNT] = (arg_spec){"out", ARG_STR, &out, "DIR", "output folder (default runs/compare)", 1, 0};
    specs[RUN_OPTION_COUNT + 1] =
        (arg_spec){"opts", ARG_STR, &opts, "A,B,...", "optimizers to compare (default: every one in curvopt list)", 1, 0};
    int rc = args_parse("compare", "[--opts A,B,...] [--out DIR] [options]", specs, RUN_OPTION_COUNT + 2, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = run_options_finish("compare", &o)) || (rc = cli_check_out_dir("compare", out))) return rc;

    char names[MAX_OPTS][64];
    int n = 0;
    if (opts) {
        n = split_names(opts, names, MAX_OPTS);
        if (n <= 0) return cli_fail("compare", "--opts '%s': expected names joined by commas", opts);
    } else {
        for (int i = 0; i < co_optim_count() && n < MAX_OPTS; i++) snprintf(names[n++], 64, "%s", co_optim_info_at(i)->name);
    }
    /* Validate every run before writing anything. */
    co_error err = {0};
    for (int i = 0; i < n; i++) {
        co_run_spec s = o.spec;
        s.opt = names[i];
        co_run run;
        if (co_run_prepare(&s, &run, &err)) return cli_fail("compare", "%s", err.msg);
        co_run_free(&run);
    }
    if (cli_mkdirs("compare", out)) return 1;

    char table_path[4096];
    snprintf(table_path, sizeof table_path, "%s/table.md", out);
    FILE *table = fopen(table_path, "w");
    if (!table) return cli_fail("compare", "cannot create %s", table_path), 1;
    char header[512];
    snprintf(header, sizeof header,
             "make_moons n=%d noise=%g test=%g, %s, batch %d, %d epochs, seed %llu, each optimizer at its default "
             "hyperparameters%s",
             o.spec.n, o.spec.noise, o.spec.test_frac, o.spec.model, o.spec.batch, o.spec.epochs,
             (unsigned long long)o.spec.seed, o.spec.lr >= 0 ? " (lr overridden)" : "");
    fprintf(table, "%s\n\n| optimizer | lr | test acc | test loss | train loss | epochs to 80%% | seconds |\n"
                   "|---|---|---|---|---|---|---|\n", header);
    printf("%s\n\n%-12s %10s %9s %10s %11s %9s %8s\n", header, "optimizer", "lr", "test acc", "test loss", "train loss",
           "ep->80%", "seconds");
    co_plot_series acc[MAX_OPTS], loss[MAX_OPTS];
    static char csvs[MAX_OPTS][4300];
    int done[MAX_OPTS] = {0};
    int failures = 0;
    for (int i = 0; i < n; i++) {
        co_run_spec s = o.spec;
        s.opt = names[i];
        co_run run;
        co_train_result res;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", out, names[i]);
        if (co_run_prepare(&s, &run, &err) || co_run_execute(&run, dir, 0, &res, &err)) {
            fprintf(stderr, "curvopt compare: %s: %s\n", names[i], err.msg);
            fprintf(table, "| %s | | failed: %s | | | | |\n", names[i], err.msg);
            co_run_free(&run);
            failures++;
            continue;
        }
        double lr = co_optim_get(run.opt, 0, "lr");
        printf("%-12s %10.3g %9.4f %10.4f %11.4f %9d %8.2f\n", names[i], lr, res.final_test_acc, res.final_test_loss,
               res.final_train_loss, res.epochs_to_80, res.seconds);
        fprintf(table, "| %s | %g | %.4f | %.4f | %.4f | %d | %.2f |\n", names[i], lr, res.final_test_acc,
                res.final_test_loss, res.final_train_loss, res.epochs_to_80, res.seconds);
        snprintf(csvs[i], sizeof csvs[i], "%s/epochs.csv", dir);
        acc[i] = (co_plot_series){csvs[i], 1, 4, names[i], 0, 0};
        loss[i] = (co_plot_series){csvs[i], 1, 2, names[i], 0, 0};
        done[i] = 1;
        co_train_result_free(&res);
        co_run_free(&run);
    }
    fclose(table);
    if (failures == n) return 1;
    /* Keep only the runs that finished for the figures. */
    int m = 0;
    for (int i = 0; i < n; i++)
        if (done[i]) {
            acc[m] = acc[i];
            loss[m] = loss[i];
            m++;
        }
    char png[4200];
    snprintf(png, sizeof png, "%s/test_accuracy.png", out);
    co_status st = co_plot_lines(png, "make_moons: test accuracy", "epoch", "test accuracy", acc, m, &err);
    if (st == CO_OK) {
        snprintf(png, sizeof png, "%s/train_loss.png", out);
        st = co_plot_lines(png, "make_moons: training loss", "epoch", "mean minibatch loss", loss, m, &err);
    }
    if (st) fprintf(stderr, "curvopt compare: figures skipped: %s\n", err.msg);
    printf("\ntable: %s\nfigures: %s/test_accuracy.png %s/train_loss.png\n", table_path, out, out);
    return failures ? 1 : 0;
}

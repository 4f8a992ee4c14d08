#include "commands.h"
#include "core/file.h"
#include "run_options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ARGS 128

/* The command line of a run is kept in DIR/command.txt (one argument per line) so that
 * `--resume DIR` repeats it exactly; written atomically, as a run killed while writing it
 * must leave no empty file for --resume to read. */
static int save_command(const char *out, int argc, char **argv)
{
    char path[4200], text[65536];
    snprintf(path, sizeof path, "%s/command.txt", out);
    size_t len = 0;
    for (int i = 0; i < argc; i++) {
        int n = snprintf(text + len, sizeof text - len, "%s\n", argv[i]);
        if (n < 0 || (size_t)n >= sizeof text - len) return cli_fail("train", "command line too long for %s", path), 1;
        len += (size_t)n;
    }
    co_error err = {0};
    if (co_file_write_atomic(path, text, len, &err)) return cli_fail("train", "%s", err.msg), 1;
    return 0;
}

static int load_command(const char *dir, char *store, size_t cap, char **argv, int *argc)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/command.txt", dir);
    /* Rank 0's copy, in a distributed run (the others may not see its disk). */
    size_t n = 0;
    int status = 0;
    if (cli_rank() == 0) {
        FILE *f = fopen(path, "r");
        if (f) {
            n = fread(store, 1, cap - 1, f);
            fclose(f);
        } else {
            status = errno;
        }
    }
    if (cli_share_bytes(store, cap - 1, &n, &status)) return cli_fail("train", "--resume %s: could not share %s", dir, path);
    if (status) return cli_fail("train", "--resume %s: no %s (%s)", dir, path, strerror(status));
    store[n] = 0;
    *argc = 0;
    for (char *line = strtok(store, "\n"); line && *argc < MAX_ARGS; line = strtok(NULL, "\n")) argv[(*argc)++] = line;
    return 0;
}

/* After a stop on a NaN/Inf: what to try, from the optimizer's own hyperparameters (its
 * learning rate and, for a curvature method, the safeguards `curvopt list` marks). */
static void print_nonfinite_hint(const co_optim *opt)
{
    const co_optim_info *info = co_optim_info_of(opt);
    double lr = co_optim_get(opt, 0, "lr");
    fprintf(stderr, "what to try:\n  - a smaller learning rate: --lr %g (this run: %g)\n", lr / 10, lr);
    int faithful = co_optim_find_hparam(info, "faithful", NULL) && co_optim_get(opt, 0, "faithful") != 0;
    if (faithful)
        fprintf(stderr, "  - %s's safeguards: this run has faithful=1 (the paper's algorithm, every safeguard off); "
                        "without it (--hp faithful=0) they are on\n",
                info->name);
    int header = 0;
    for (int i = 0; i < info->nhparams; i++) {
        const co_hparam *h = &info->hparams[i];
        if (!(h->flags & CO_HP_SAFEGUARD)) continue;
        if (!header++)
            fprintf(stderr, "  - %s's safeguards (docs/optimizers/%s.md)%s:\n", info->name, info->name,
                    faithful ? ", off in this run" : "");
        double v = co_optim_get(opt, 0, h->name);
        fprintf(stderr, "      %s=%g (default %g%s): %s\n", h->name, v, h->def,
                !faithful && v == 0 && h->def != 0 ? "; off in this run" : "", h->doc);
    }
    fprintf(stderr, "  - global gradient-norm clipping: --clip 1; or --skip-nonfinite to skip such steps\n");
}

int cmd_train(int argc, char **argv)
{
    static char store[65536];
    char *resumed_argv[MAX_ARGS];
    int resume = 0;
    if (argc >= 2 && strcmp(argv[0], "--resume") == 0) {
        if (argc != 2) return cli_fail("train", "--resume DIR takes no other options (they are read from DIR/command.txt)");
        if (load_command(argv[1], store, sizeof store, resumed_argv, &argc)) return 2;
        argv = resumed_argv;
        resume = 1;
    }
    run_options o;
    run_options_init(&o);
    const char *out = NULL;
    int checkpoint_every = 0, skip_nonfinite = 0, quiet = 0, max_steps = 0;
    const char *shard = "blocks";
    enum { NSPECS = RUN_OPTION_COUNT + 6 };
    arg_spec specs[NSPECS];
    run_options_specs(&o, specs);
    specs[RUN_OPTION_COUNT] =
        (arg_spec){"out", ARG_STR, &out, "DIR", "output folder: epochs.csv, result.json, optim.state, model.params", 1, 0};
    specs[RUN_OPTION_COUNT + 1] = (arg_spec){"checkpoint-every", ARG_INT, &checkpoint_every, "N",
                                             "also checkpoint every N steps (always at epoch ends); resume with --resume DIR",
                                             0, 1e9};
    specs[RUN_OPTION_COUNT + 2] = (arg_spec){"skip-nonfinite", ARG_FLAG, &skip_nonfinite, "",
                                             "skip (and count) steps with a NaN/Inf loss or gradient instead of stopping", 1, 0};
    specs[RUN_OPTION_COUNT + 3] = (arg_spec){"quiet", ARG_FLAG, &quiet, "", "no progress line on the terminal", 1, 0};
    specs[RUN_OPTION_COUNT + 4] =
        (arg_spec){"max-steps", ARG_INT, &max_steps, "N", "stop after N optimizer steps (the epoch under way is the last)", 1, 1e9};
    specs[RUN_OPTION_COUNT + 5] = (arg_spec){"shard", ARG_STR, &shard, "S",
                                             "under mpirun: blocks (whole 32-sample blocks: bit-identical to one process, "
                                             "default) or even (balanced, equal to rounding)", 1, 0};
    int rc = args_parse("train", "--opt NAME --out DIR [options] | --resume DIR", specs, NSPECS, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (!o.spec.opt || !out) return cli_fail("train", "--opt and --out are required (see curvopt train --help)");
    if (strcmp(shard, "blocks") != 0 && strcmp(shard, "even") != 0)
        return cli_fail("train", "--shard %s: expected blocks or even", shard);
    if ((rc = run_options_finish("train", &o)) || (rc = cli_check_out_dir("train", out))) return rc;
    /* A GPU run checkpoints at epoch ends only (docs/cuda.md). */
    if (o.spec.device != CO_DEVICE_CPU && checkpoint_every)
        return cli_fail("train", "--device cuda: --checkpoint-every is not supported there yet (checkpoints are "
                                 "written at every epoch's end)");
    co_error err = {0};
    co_run run;
    /* Everything is validated before the output folder is touched. */
    if (co_run_prepare(&o.spec, &run, &err)) return cli_fail("train", "%s", err.msg);
    /* Rank 0 alone writes (the others train and check their copy). */
    int writer = cli_rank() == 0;
    if (writer && (cli_mkdirs("train", out) || (!resume && save_command(out, argc, argv)))) {
        co_run_free(&run);
        return 1;
    }
    char ckpt[4200], path[4200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ckpt", out);
    run.cfg.checkpoint_path = ckpt;
    run.cfg.checkpoint_every = checkpoint_every;
    run.cfg.resume = resume;
    run.cfg.skip_nonfinite = skip_nonfinite;
    run.cfg.max_steps = max_steps;
    run.cfg.collective = cli_collective();
    run.cfg.shard_even = strcmp(shard, "even") == 0;
    run.cfg.dist_check_every = cli_dist_check_every();
    co_train_result res;
    /* Progress only on a terminal, on rank 0: a log (stdout redirected) stays clean. */
    co_progress_line line, *progress = NULL;
    if (!quiet && writer && isatty(STDOUT_FILENO)) {
        co_progress_line_init(&line, stdout, 1);
        progress = &line;
    }
    co_status st = co_run_execute(&run, writer ? out : NULL, progress, &res, &err);
    co_progress_line_clear(progress);
    if (st == CO_OK && writer) {
        snprintf(path, sizeof path, "%s/optim.state", out);
        st = co_optim_save(run.opt, path, &err);
    }
    if (st == CO_OK && writer) {
        snprintf(path, sizeof path, "%s/model.params", out);
        st = co_model_save(run.model, path, &err);
    }
    if (st) {
        fprintf(stderr, "curvopt train: %s\n", err.msg);
        if (st == CO_ENUMERIC) print_nonfinite_hint(run.opt);
        co_train_result_free(&res);
        co_run_free(&run);
        return 1;
    }
    printf("%s: final test accuracy %.4f, test loss %.4f, train loss %.4f, epochs to 80%% %d, %.2f s%s -> %s\n",
           o.spec.opt, res.final_test_acc, res.final_test_loss, res.final_train_loss, res.epochs_to_80, res.seconds,
           res.resumed_from_epoch ? " (resumed)" : "", out);
    if (res.skipped_steps) printf("skipped %ld steps with non-finite values\n", res.skipped_steps);
    co_train_result_free(&res);
    co_run_free(&run);
    return 0;
}

#include "args.h"
#include "commands.h"
#include "experiments/experiments.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int cmd_reproduce(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: curvopt reproduce NAME [--out DIR] [--seeds N] [--quick]\n\nexperiments:\n");
        for (int i = 0; i < co_experiment_count(); i++)
            fprintf(f, "  %-12s %s\n", co_experiment_at(i)->name, co_experiment_at(i)->summary);
        return argc < 1 ? 2 : 0;
    }
    const co_experiment *e = co_experiment_find(argv[0]);
    if (!e) return cli_fail("reproduce", "unknown experiment '%s' (see curvopt reproduce --help)", argv[0]);
    char def_out[256];
    snprintf(def_out, sizeof def_out, "runs/%s", e->name);
    const char *out = def_out;
    co_reproduce_options o = {.verbose = 1};
    int quiet = 0;
    arg_spec specs[] = {
        {"out", ARG_STR, &out, "DIR", "output folder (default runs/NAME)", 1, 0},
        {"seeds", ARG_INT, &o.seeds, "N", "seeds per optimizer (default: the protocol's)", 1, 64},
        {"quick", ARG_FLAG, &o.quick, "", "fewer seeds/epochs/grid points: a smoke test, not a reproduction", 1, 0},
        {"quiet", ARG_FLAG, &quiet, "", "no progress: neither the terminal line nor the per-optimizer lines", 1, 0},
        {"checkpoint-every", ARG_INT, &o.checkpoint_every, "N", "checkpoint every run every N steps (and at epoch ends)", 1, 1e9},
        {"resume", ARG_FLAG, &o.resume, "", "continue an interrupted reproduction in --out from its checkpoints", 1, 0},
        {"data-dir", ARG_STR, &o.data_dir, "DIR", "look for dataset files here first (also $CURVOPT_DATA_DIR)", 1, 0},
        {"full", ARG_FLAG, &o.full, "", "the paper's whole schedule and data (protocols with a shorter default)", 1, 0},
        {"tune", ARG_FLAG, &o.tune, "", "run the paper's hyperparameter grids on a validation split", 1, 0},
    };
    int rc = args_parse("reproduce", "NAME [--out DIR] [--seeds N] [--quick] [--checkpoint-every N] [--resume] [--data-dir DIR] [--full] [--tune]",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc - 1, argv + 1);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_check_out_dir("reproduce", out))) return rc;
    /* Under mpirun every rank runs the protocol (each training run data-parallel); rank 0
     * writes the report, the others write their copies into a scratch folder. */
    o.collective = cli_collective();
    char scratch[] = "/tmp/curvopt-rank-XXXXXX";
    if (cli_rank() != 0) {
        if (!mkdtemp(scratch)) return cli_fail("reproduce", "cannot create a scratch folder in /tmp");
        out = scratch;
        quiet = 1;
    }
    o.verbose = !quiet;
    /* The run counter and ETA only on a terminal: a log (stdout redirected) stays clean. */
    co_progress_line line;
    if (!quiet && isatty(STDOUT_FILENO)) {
        co_progress_line_init(&line, stdout, 0);
        o.progress = &line;
    }
    co_error err = {0};
    if (o.verbose) fprintf(stderr, "reproduce %s -> %s\n", e->name, out);
    co_status st = e->run(out, &o, &err);
    co_progress_line_clear(o.progress);
    if (cli_rank() != 0) nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (st) {
        fprintf(stderr, "curvopt reproduce: %s\n", err.msg);
        return 1;
    }
    printf("%s/report.md\n", out);
    return 0;
}

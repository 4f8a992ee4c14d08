/* curvopt: train, compare, list. Usage errors exit 2 with one line on stderr and write
 * nothing; runtime failures exit 1. */
#include "commands.h"
#include "curvopt.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "curvopt %d.%d — curvature-aware optimizers and the experiments of their papers\n\n"
            "usage: curvopt COMMAND [options]   (curvopt COMMAND --help for its options)\n\n"
            "commands:\n"
            "  compare   train several optimizers on make_moons; table + figure (the default job)\n"
            "  reproduce rerun a paper's experiment: report.md, results.json, CSVs, figures\n"
            "  train     one training run, per-epoch CSV and final JSON\n"
            "  list      every optimizer with its hyperparameters, defaults and ranges\n",
            CO_VERSION_MAJOR, CO_VERSION_MINOR);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* Under mpirun, `train` and `reproduce` run data-parallel over the job's ranks. */
    if (strcmp(cmd, "train") == 0 || strcmp(cmd, "reproduce") == 0) {
        int rc = cli_dist_start(&argc, &argv);
        if (rc) return rc;
        rc = cmd[0] == 't' ? cmd_train(argc - 2, argv + 2) : cmd_reproduce(argc - 2, argv + 2);
        return cli_dist_end(rc);
    }
    if (cli_launcher_size() > 1) {
        fprintf(stderr, "curvopt %s: only train and reproduce run across the ranks of an MPI job\n", cmd);
        return 2;
    }
    if (strcmp(cmd, "list") == 0) return cmd_list(argc - 2, argv + 2);
    if (strcmp(cmd, "compare") == 0) return cmd_compare(argc - 2, argv + 2);
    fprintf(stderr, "curvopt: unknown command '%s' (compare, reproduce, train, list; see curvopt --help)\n", cmd);
    return 2;
}

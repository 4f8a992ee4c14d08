/* The subcommands of the curvopt CLI; each returns the process exit code
 * (0 ok, 1 runtime failure, 2 bad usage). */
#ifndef CO_CLI_COMMANDS_H
#define CO_CLI_COMMANDS_H

#include "curvopt.h"

int cmd_train(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);

/* Whether DIR can be used as an output folder: absent, or an existing directory. */
int cli_check_out_dir(const char *cmd, const char *dir);
int cli_mkdirs(const char *cmd, const char *dir);

/* Under mpirun (dist_cli.c): start MPI when launched as a rank (0, or an exit code), end it
 * with the command's exit code (a runtime failure aborts the whole job: the other ranks may
 * be waiting for this one). */
int cli_dist_start(int *argc, char ***argv);
int cli_dist_end(int rc);
/* The job's collective (NULL in one process), this process's rank, CURVOPT_DIST_CHECK, the
 * launcher's rank count (0 outside mpirun). */
const co_collective *cli_collective(void);
int cli_rank(void);
int cli_dist_check_every(void);
int cli_launcher_size(void);
/* Rank 0's buf[0..*len) and *status to every rank (no-op in one process); -1 on failure. */
int cli_share_bytes(char *buf, size_t cap, size_t *len, int *status);

#endif

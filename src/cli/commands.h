/* The subcommands of the curvopt CLI; each returns the process exit code
 * (0 ok, 1 runtime failure, 2 bad usage). */
#ifndef CO_CLI_COMMANDS_H
#define CO_CLI_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);

/* Whether DIR can be used as an output folder: absent, or an existing directory. */
int cli_check_out_dir(const char *cmd, const char *dir);
int cli_mkdirs(const char *cmd, const char *dir);

#endif

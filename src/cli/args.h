/* Table-driven option parsing for the subcommands: --name VALUE or --name=VALUE, every
 * value validated, one clear line on error. */
#ifndef CO_CLI_ARGS_H
#define CO_CLI_ARGS_H

#include <stdint.h>

typedef enum { ARG_STR, ARG_INT, ARG_DOUBLE, ARG_U64, ARG_FLAG } arg_type;

typedef struct {
    const char *name; /* without the leading -- */
    arg_type type;
    void *dest;
    const char *metavar;
    const char *help;
    double min, max; /* numeric range, inclusive; ignored when min > max */
} arg_spec;

/* Returns 0 on success, 1 if --help was given (usage printed), 2 on error (message printed). */
int args_parse(const char *cmd, const char *usage, const arg_spec *specs, int nspecs, int argc, char **argv);
void args_usage(const char *cmd, const char *usage, const arg_spec *specs, int nspecs);
/* Prints "curvopt CMD: message" to stderr and returns 2. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

/* The options shared by `train` and `compare` that describe a run. */
#ifndef CO_CLI_RUN_OPTIONS_H
#define CO_CLI_RUN_OPTIONS_H

#include "args.h"
#include "experiments/run.h"

typedef struct {
    co_run_spec spec;
    const char *act, *out_act, *loss, *device;
} run_options;

#define RUN_OPTION_COUNT 24
void run_options_init(run_options *o);
/* Fills specs[0..RUN_OPTION_COUNT) pointing into o. */
void run_options_specs(run_options *o, arg_spec *specs);
/* Resolves the string-valued options into o->spec; returns 0 or an exit code. */
int run_options_finish(const char *cmd, run_options *o);

#endif

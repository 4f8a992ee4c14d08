#include "commands.h"
#include "run_options.h"

#include <stdio.h>
#include <unistd.h>

int cmd_train(int argc, char **argv)
{
    run_options o;
    run_options_init(&o);
    const char *out = NULL;
    arg_spec specs[RUN_OPTION_COUNT + 1];
    run_options_specs(&o, specs);
    specs[RUN_OPTION_COUNT] = (arg_spec){"out", ARG_STR, &out, "DIR", "output folder: epochs.csv, result.json, optim.state", 1, 0};
    int rc = args_parse("train", "--opt NAME --out DIR [options]", specs, RUN_OPTION_COUNT + 1, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    /* --opt is parsed here so that it is required. */
    if (!o.spec.opt || !out) return cli_fail("train", "--opt and --out are required (see curvopt train --help)");
    if ((rc = run_options_finish("train", &o)) || (rc = cli_check_out_dir("train", out))) return rc;
    co_error err = {0};
    co_run run;
    /* Everything is validated before the output folder is touched. */
    if (co_run_prepare(&o.spec, &run, &err)) return cli_fail("train", "%s", err.msg);
    if (cli_mkdirs("train", out)) {
        co_run_free(&run);
        return 1;
    }
    co_train_result res;
    co_status st = co_run_execute(&run, out, isatty(2), &res, &err);
    if (st == CO_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/optim.state", out);
        st = co_optim_save(run.opt, path, &err);
    }
    if (st) {
        fprintf(stderr, "curvopt train: %s\n", err.msg);
        co_train_result_free(&res);
        co_run_free(&run);
        return 1;
    }
    printf("%s: final test accuracy %.4f, test loss %.4f, train loss %.4f, epochs to 80%% %d, %.2f s -> %s\n",
           o.spec.opt, res.final_test_acc, res.final_test_loss, res.final_train_loss, res.epochs_to_80, res.seconds, out);
    co_train_result_free(&res);
    co_run_free(&run);
    return 0;
}

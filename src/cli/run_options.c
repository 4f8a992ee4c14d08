#include "run_options.h"

#include <stdint.h>
#include <string.h>

void run_options_init(run_options *o)
{
    co_run_spec_default(&o->spec);
    o->act = "relu";
    o->out_act = "none";
    o->loss = "bce-logits";
    o->device = "cpu";
}

void run_options_specs(run_options *o, arg_spec *s)
{
    co_run_spec *p = &o->spec;
    const arg_spec specs[RUN_OPTION_COUNT] = {
        {"data", ARG_STR, &p->data, "NAME", "moons, mnist, fashion-mnist, cifar10, cifar100, svhn", 1, 0},
        {"data-dir", ARG_STR, &p->data_dir, "DIR", "look for dataset files here first (also $CURVOPT_DATA_DIR)", 1, 0},
        {"train-limit", ARG_INT, &p->train_limit, "N", "file datasets: keep the first N training samples (0: all)", 0, 1e9},
        {"test-limit", ARG_INT, &p->test_limit, "N", "file datasets: keep the first N test samples (0: all)", 0, 1e9},
        {"n", ARG_INT, &p->n, "N", "samples to generate (moons; default 1000)", 2, 1e8},
        {"noise", ARG_DOUBLE, &p->noise, "STD", "moons noise (default 0.2)", 0, 10},
        {"test-frac", ARG_DOUBLE, &p->test_frac, "F", "test fraction (default 0.2)", 0.001, 0.999},
        {"val-frac", ARG_DOUBLE, &p->val_frac, "F", "validation fraction of the training split (default 0)", 0, 0.999},
        {"standardize", ARG_FLAG, &p->standardize, "", "StandardScaler fitted on the training split", 1, 0},
        {"reconstruct", ARG_FLAG, &p->reconstruct, "", "targets = inputs (autoencoder; use --loss mse)", 1, 0},
        {"data-seed", ARG_U64, &p->data_seed, "S", "seed of data generation and splits (default 0)", 1, 0},
        {"model", ARG_STR, &p->model, "SPEC", "mlp:IN-H1-...-OUT (default mlp:2-64-1), a layer list, or a preset (docs/models.md)", 1, 0},
        {"act", ARG_STR, &o->act, "A", "hidden activation: relu, tanh, sigmoid, none (default relu)", 1, 0},
        {"out-act", ARG_STR, &o->out_act, "A", "output activation (default none: logits)", 1, 0},
        {"loss", ARG_STR, &o->loss, "L", "bce-logits, bce, cross-entropy, mse, nll (after logsoftmax) (default bce-logits)", 1, 0},
        {"opt", ARG_STR, &p->opt, "NAME", "optimizer (see curvopt list)", 1, 0},
        {"lr", ARG_DOUBLE, &p->lr, "LR", "learning rate (default: the optimizer's)", 0, 1e3},
        {"hp", ARG_STR, &p->hparams, "K=V,...", "optimizer hyperparameters (see curvopt list)", 1, 0},
        {"clip", ARG_DOUBLE, &p->clip, "NORM", "global gradient-norm clipping (default 0: off)", 0, 1e12},
        {"schedule", ARG_STR, &p->schedule, "S", "constant, step:E1,E2[:G], cosine[:MIN], invsqrt [+warmup:N]", 1, 0},
        {"epochs", ARG_INT, &p->epochs, "N", "epochs (default 100)", 0, 1000000},
        {"batch", ARG_INT, &p->batch, "B", "minibatch size (default 32)", 1, 1000000},
        {"seed", ARG_U64, &p->seed, "S", "seed of init, batch order and optimizer (default 0)", 1, 0},
        {"device", ARG_STR, &o->device, "D", "cpu (default) or cuda: model, data and optimizer on the GPU (docs/cuda.md)", 1, 0},
    };
    memcpy(s, specs, sizeof specs);
}

int run_options_finish(const char *cmd, run_options *o)
{
    co_error err = {0};
    if (co_parse_act(o->act, &o->spec.hidden, &err) || co_parse_act(o->out_act, &o->spec.output, &err) ||
        co_parse_loss(o->loss, &o->spec.loss, &err))
        return cli_fail(cmd, "%s", err.msg);
    if (strcmp(o->device, "cpu") == 0)
        o->spec.device = CO_DEVICE_CPU;
    else if (strcmp(o->device, "cuda") == 0)
        o->spec.device = CO_DEVICE_CUDA;
    else
        return cli_fail(cmd, "--device %s: expected cpu or cuda", o->device);
    if (o->spec.loss == CO_LOSS_BCE && o->spec.output != CO_ACT_SIGMOID)
        return cli_fail(cmd, "--loss bce takes probabilities: use --out-act sigmoid (or --loss bce-logits)");
    return 0;
}

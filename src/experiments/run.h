/* One training run described as data — dataset, model, optimizer, schedule, seeds — and
 * built with every input validated before anything is written. The CLI's `train`, the
 * default comparison and the paper reproductions all go through it. */
#ifndef CO_EXPERIMENTS_RUN_H
#define CO_EXPERIMENTS_RUN_H

#include "curvopt.h"
#include "train/progress.h"

typedef struct co_run_spec {
    const char *data; /* "moons", or a file dataset: mnist, fashion-mnist, cifar10, cifar100, svhn */
    const char *data_dir; /* where file datasets are looked for first (NULL: defaults) */
    /* Optional, borrowed: the file dataset `data` already loaded (training and test split);
     * its samples are copied instead of read again (studies run hundreds of short runs). */
    const co_dataset *loaded_train, *loaded_test;
    int train_limit, test_limit; /* > 0: keep only the first N samples (quick runs) */
    int n;
    double noise;
    double test_frac;
    double val_frac; /* carved from the training split; 0: none */
    int standardize; /* StandardScaler fitted on the training split */
    int reconstruct; /* targets = inputs (autoencoders): every split becomes (x, x), nclasses 0 */
    uint64_t data_seed; /* data generation and splits: the same for every optimizer */
    const char *model;  /* "mlp:2-64-1" */
    co_act hidden, output;
    co_loss_kind loss;
    const char *opt;
    double lr;           /* < 0: the optimizer's default */
    const char *hparams; /* "name=value,..." or NULL */
    double clip;         /* 0: no clipping */
    const char *schedule;
    int epochs, batch;
    uint64_t seed; /* init, minibatch order, optimizer randomness */
    const co_collective *collective; /* data-parallel over these ranks (NULL: one process) */
    co_device device; /* where the model, the data and the optimizer's steps are */
} co_run_spec;

typedef struct co_run {
    co_run_spec spec;
    co_dataset *train, *test, *val;
    co_model *model;
    co_optim *opt;
    co_train_config cfg;
} co_run;

void co_run_spec_default(co_run_spec *s);
co_status co_run_prepare(const co_run_spec *spec, co_run *run, co_error *err);
void co_run_free(co_run *run);
/* Trains; writes out_dir/epochs.csv and out_dir/result.json when out_dir is non-NULL. With a
 * progress line, the run is counted and named on it and reports its steps there. */
co_status co_run_execute(co_run *run, const char *out_dir, co_progress_line *progress, co_train_result *res,
                         co_error *err);

co_status co_parse_act(const char *s, co_act *out, co_error *err);
co_status co_parse_loss(const char *s, co_loss_kind *out, co_error *err);
const char *co_loss_name(co_loss_kind k);

#endif

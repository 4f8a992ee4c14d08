/* The papers' experiments, runnable by name (`curvopt reproduce NAME`). */
#ifndef CO_EXPERIMENTS_H
#define CO_EXPERIMENTS_H

#include "curvopt.h"
#include "train/progress.h"

typedef struct co_reproduce_options {
    int seeds;   /* 0: the protocol's own number */
    int quick;   /* fewer seeds, epochs and grid points: a smoke test, not a reproduction */
    int verbose; /* a line per finished optimizer (and per epoch of long runs) on stderr */
    /* Run k of n and the current run's progress (NULL: none). Each protocol tells it how
     * many runs it plans, and prints its own lines through co_progress_note. */
    co_progress_line *progress;
    /* Every seed's run keeps DIR/runs/OPT/seedK/checkpoint.ckpt (every N steps and at epoch
     * ends); with resume, finished runs are read back and interrupted ones continue. */
    int checkpoint_every;
    int resume;
    const char *data_dir; /* dataset files looked for here first (NULL: $CURVOPT_DATA_DIR, defaults) */
    int full; /* the paper's whole schedule and data where a protocol defaults to a shorter one */
    int tune; /* run the paper's hyperparameter grids on a validation split instead of its chosen values */
    const co_collective *collective; /* every training run data-parallel over these ranks (NULL: one process) */
} co_reproduce_options;

typedef struct co_experiment {
    const char *name, *summary;
    co_status (*run)(const char *dir, const co_reproduce_options *o, co_error *err);
} co_experiment;

int co_experiment_count(void);
const co_experiment *co_experiment_at(int i);
const co_experiment *co_experiment_find(const char *name);

/* One per protocol file. */
co_status co_reproduce_da_rmsprop(const char *dir, const co_reproduce_options *o, co_error *err);
co_status co_reproduce_lama_adam(const char *dir, const co_reproduce_options *o, co_error *err);
co_status co_reproduce_moons_all(const char *dir, const co_reproduce_options *o, co_error *err);
co_status co_reproduce_quasi_adam(const char *dir, const co_reproduce_options *o, co_error *err);
co_status co_reproduce_tso_alra(const char *dir, const co_reproduce_options *o, co_error *err);
/* Not a paper's protocol: every optimizer at its defaults on every preset (issue 12). */
co_status co_reproduce_robustness(const char *dir, const co_reproduce_options *o, co_error *err);

#endif

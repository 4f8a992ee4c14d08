/* A study: several optimizers on one protocol, each with its learning rate tuned on a
 * validation split carved from the training set (or fixed by the paper), then run over
 * several seeds; per-seed results, per-epoch curves with bands over seeds, tables. */
#ifndef CO_EXPERIMENTS_STUDY_H
#define CO_EXPERIMENTS_STUDY_H

#include "run.h"

#define STUDY_MAX_ENTRIES 32
#define STUDY_MAX_SEEDS 64
#define STUDY_MAX_GRID 16

typedef struct study_entry {
    const char *opt;
    double fixed_lr;     /* > 0: the paper's learning rate, no tuning */
    const char *hparams; /* NULL: defaults */
    /* The paper's numbers (NAN where it gives none). */
    double paper_acc, paper_e80, paper_std;
    int boundary; /* draw the decision boundary of its first seed */
    int default_lr; /* the base spec's lr (the optimizer's own default unless the base sets one): no tuning */
    const char *label; /* names its runs folder, curves and legend entry; NULL: opt */
} study_entry;

static inline const char *study_entry_label(const study_entry *e) { return e->label ? e->label : e->opt; }

typedef struct study_result {
    double lr; /* chosen */
    double grid_val_acc[STUDY_MAX_GRID], grid_val_loss[STUDY_MAX_GRID];
    int nseeds;
    double acc[STUDY_MAX_SEEDS], e80[STUDY_MAX_SEEDS], train_loss[STUDY_MAX_SEEDS], test_loss[STUDY_MAX_SEEDS];
    double loss_at[STUDY_MAX_SEEDS]; /* training loss at the study's report_epoch */
    double seconds;
    char failure[600]; /* non-empty when a run failed */
    /* With study.keep_history: each seed's per-epoch statistics (owned, study_result_free),
     * restored ones included when a run resumed from its checkpoint. */
    co_epoch_stats *history[STUDY_MAX_SEEDS];
    int history_epochs[STUDY_MAX_SEEDS];
} study_result;

typedef void (*study_epoch_hook)(co_optim *opt, const co_epoch_stats *s, int entry, int seed_index, void *ctx);

typedef struct study {
    const char *id, *title;
    co_run_spec base;
    int seeds;
    uint64_t seed0;
    int vary_data_seed; /* each seed also draws its own data set and split */
    double val_frac;
    double grid[STUDY_MAX_GRID];
    int ngrid;
    int tune_seeds;
    int report_epoch; /* 0: none */
    int checkpoint;       /* keep a checkpoint in each seed's run folder */
    int checkpoint_every; /* and write it every N steps too */
    int resume;           /* continue from those checkpoints */
    int no_train_acc;     /* skip the per-epoch training-accuracy pass (a forward pass over the training split) */
    int keep_history;     /* keep every seed's per-epoch statistics in study_result.history */
    /* 0 (the default): every method runs as its paper publishes it (`faithful=1` where the
     * method has that switch); 1: with its default safeguards. */
    int safeguards;
    study_entry entries[STUDY_MAX_ENTRIES];
    int nentries;
    study_epoch_hook hook;
    void *hook_ctx;
    co_progress_line *progress; /* where each run shows its progress (NULL: nowhere) */
} study;

/* Columns of the curves files: per epoch, the mean over seeds and mean ± std of each; then
 * the training time to the end of the epoch (evaluations excluded), mean over seeds. */
enum {
    STUDY_COL_TRAIN_LOSS = 2,
    STUDY_COL_TEST_ACC = 5,
    STUDY_COL_TRAIN_ACC = 8,
    STUDY_COL_TEST_LOSS = 11,
    STUDY_COL_SECONDS = 14
};

/* Runs every entry; writes DIR/runs/<opt>/seed<k>/{epochs.csv,result.json}, and for the
 * figures DIR/plots/curves_<opt>.csv (per-epoch mean and mean±std over seeds, the columns
 * above) and the decision-boundary data. */
co_status study_run(const study *s, const char *dir, study_result *results, int verbose, co_error *err);

void study_result_free(study_result *r, int n);

/* How many training runs study_run makes (tuning included): a progress line's total. */
int study_planned_runs(const study *s);

/* Mean validation accuracy and loss over s->tune_seeds of one configuration trained on the
 * training split less s->val_frac (a diverging run scores accuracy 0, loss +inf): the lr grid
 * uses it, and protocols that tune more than the learning rate call it themselves. */
co_status study_validate(const study *s, const char *opt, double lr, const char *hparams, double *acc, double *loss,
                         co_error *err);

/* mkdir -p; 0 or -1 (errno set). */
int study_make_dirs(const char *path);
/* DIR/report.md and DIR/results.json opened for writing (both or neither). */
co_status study_open_reports(const char *dir, FILE **md, FILE **json, co_error *err);

double study_mean(const double *x, int n);
double study_std(const double *x, int n); /* sample standard deviation (n-1) */
/* Standard error of mean(a) - mean(b) (Welch); 0 with one value on each side. */
double study_diff_se(const double *a, int na, const double *b, int nb);
/* mean(a) > mean(b) by more than two standard errors of the difference (any margin when
 * there is one value on each side: nothing to estimate the noise from). */
int study_clearly_greater(const double *a, int na, const double *b, int nb);
/* Mean over the seeds that reached 80%, and how many did. */
double study_e80_mean(const study_result *r, int *reached);

/* Figures from the files study_run wrote; entries whose runs failed are left out. Up to six
 * optimizers share one panel; more are drawn as small multiples (torch.optim's baselines,
 * Duda's OGR family, the other papers' methods) with Adam, when present, in black in each.
 * Losses are drawn on a log scale. */
co_status study_plot_curves(const study *s, const study_result *r, const char *dir, const char *png, const char *title,
                            int ycol_mean, const char *ylabel, co_error *err);
/* The same against the training time (STUDY_COL_SECONDS) instead of the epoch: what a user
 * who has a time budget, not an epoch budget, compares. */
co_status study_plot_curves_time(const study *s, const study_result *r, const char *dir, const char *png,
                                 const char *title, int ycol_mean, const char *ylabel, co_error *err);
co_status study_plot_boundary(const char *dir, const char *opt, const char *title, co_error *err);

#endif

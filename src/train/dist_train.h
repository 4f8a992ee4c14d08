/* The training loop's distributed half (co_train_config.collective): a rank's shard of each
 * minibatch evaluated and summed with the others, checkpoints through rank 0, and the debug
 * check that every rank holds the same parameters. Only co_collective callbacks: the engine
 * behind them (MPI in src/dist) is the caller's. */
#ifndef CO_TRAIN_DIST_TRAIN_H
#define CO_TRAIN_DIST_TRAIN_H

#include "checkpoint.h"

typedef struct co_shard_batch {
    co_model *model;
    const co_collective *coll;
    co_loss_kind loss;
    int y_dim;     /* targets per sample */
    int even;      /* co_shard's balanced split instead of whole blocks */
    int capturing; /* the model keeps K-FAC captures this epoch */
    co_group *groups;
    int ngroups;
    float *flat; /* every gradient, packed for one allreduce */
    size_t nparams;
    float *dout;
    int lo, hi; /* this rank's rows of the current minibatch */
} co_shard_batch;

co_status co_shard_batch_init(co_shard_batch *s, co_model *m, co_group *groups, int ngroups,
                              const co_collective *coll, co_loss_kind loss, int y_dim, int even, int max_batch,
                              co_error *err);
void co_shard_batch_free(co_shard_batch *s);
/* Collective: forward/backward of this rank's rows of the minibatch x, y (n samples), the
 * gradients summed over the ranks into the model's buffers; returns the minibatch's mean
 * loss (NaN on failure), on every rank the same. */
double co_shard_batch_eval(co_shard_batch *s, const float *x, const float *y, int n);
/* This rank's captures (an empty shard reports no rows). */
int co_shard_batch_capture(co_shard_batch *s, int group, co_capture *out);

/* Checkpoints: the optimizer state collected, then written by rank 0. */
co_status co_dist_checkpoint_save(const co_collective *c, const char *path, const co_model *m, co_optim *opt,
                                  const co_train_pos *pos, const co_epoch_stats *history, int nhistory, co_error *err);
/* Rank 0 reads the file (if it exists: *found) and sends its bytes; every rank parses them
 * and takes its share of the optimizer state. The same outcome, error included, everywhere. */
co_status co_dist_checkpoint_load(const co_collective *c, const char *path, co_model *m, co_optim *opt,
                                  co_train_pos *pos, co_epoch_stats *history, int max, int *nhistory, int *found,
                                  co_error *err);
/* CO_ENUMERIC when the ranks' parameters differ (a hash of every parameter byte). */
co_status co_dist_check_params(const co_collective *c, const co_group *groups, int ngroups, uint64_t step,
                               co_error *err);

#endif

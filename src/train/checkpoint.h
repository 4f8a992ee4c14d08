/* Training checkpoints: everything a run needs to continue bit-identically. */
#ifndef CO_TRAIN_CHECKPOINT_H
#define CO_TRAIN_CHECKPOINT_H

#include "curvopt.h"

/* Where the loop stands: the epoch under way, how many of its samples are done, the
 * shuffle stream as it was before this epoch's permutation (the order is re-drawn from it),
 * and the partial epoch's loss sums. */
typedef struct co_train_pos {
    int32_t epoch; /* 0-based epoch under way */
    int32_t samples_done;
    co_rng epoch_rng;
    double loss_sum;
    int64_t seen;
    int64_t skipped;
    int32_t epochs_to_80;
    int32_t reserved; /* keeps the struct free of padding: it is written byte for byte */
} co_train_pos;

co_status co_checkpoint_save(const char *path, const co_model *m, const co_optim *opt, const co_train_pos *pos,
                             const co_epoch_stats *history, int nhistory, co_error *err);
/* Loads into m/opt/pos and history[0..*nhistory) (history has room for max entries). The
 * whole file is checked before anything is changed. */
co_status co_checkpoint_load(const char *path, co_model *m, co_optim *opt, co_train_pos *pos, co_epoch_stats *history,
                             int max, int *nhistory, co_error *err);
/* co_checkpoint_load in two halves (a distributed run reads on rank 0 and parses everywhere):
 * the checked payload of the file (malloc'ed), and its parse (path names it in messages). */
co_status co_checkpoint_read(const char *path, void **buf, size_t *len, co_error *err);
co_status co_checkpoint_parse(const char *path, const void *buf, size_t len, co_model *m, co_optim *opt,
                              co_train_pos *pos, co_epoch_stats *history, int max, int *nhistory, co_error *err);

#endif

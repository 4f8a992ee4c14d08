/* What the training loop (train.c) and its GPU half (train_cuda.c) share: the clock, the
 * per-epoch CSV and the result's summary. */
#ifndef CO_TRAIN_LOOP_H
#define CO_TRAIN_LOOP_H

#include "curvopt.h"

double co_train_now(void); /* seconds, monotonic */
/* Creates path with the CSV's header line. */
co_status co_train_csv_open(const char *path, FILE **out, co_error *err);
/* One epoch's row, flushed. */
void co_train_csv_row(FILE *csv, const co_epoch_stats *s);
/* final_test_acc, final_test_loss and final_train_loss from the last epoch run. */
void co_train_result_finish(co_train_result *res);

#endif

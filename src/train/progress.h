/* A progress line on a terminal for a job of one or more training runs: run k of n, the
 * epoch, a bar of the epoch's steps, steps/s, the loss, the last test result and an ETA,
 * redrawn in place at most a few times a second. The CLI creates one only when its stdout
 * is a terminal (and not --quiet); the library and the experiments just pass it along, as
 * co_train's on_progress callback, and print their own lines through co_progress_note so
 * they do not land in the middle of it. Every function accepts NULL and then does nothing
 * (co_progress_note still prints). */
#ifndef CO_TRAIN_PROGRESS_H
#define CO_TRAIN_PROGRESS_H

#include "curvopt.h"

#include <stdio.h>

typedef struct co_progress_line {
    FILE *out;
    int width;       /* terminal columns */
    int run, runs;   /* run k of n; no run counter when the job is a single run */
    double job_start;
    double last_draw;
    int drawn;       /* a line is on the screen */
    char label[96];  /* what the current run is */
    char last_result[48];
} co_progress_line;

void co_progress_line_init(co_progress_line *p, FILE *out, int runs);
/* The number of runs, when it is known only later or changes (a part of a job is skipped). */
void co_progress_line_set_runs(co_progress_line *p, int runs);
/* A run begins: counts it and names it on the line. */
void co_progress_line_start_run(co_progress_line *p, const char *label);
/* co_train's on_progress callback; ctx is the co_progress_line. */
void co_progress_line_update(const co_train_progress *t, void *ctx);
/* Erases the line (it is redrawn by the next update): before anything else is printed. */
void co_progress_line_clear(co_progress_line *p);
/* Prints a line to f above the progress line. */
void co_progress_note(co_progress_line *p, FILE *f, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

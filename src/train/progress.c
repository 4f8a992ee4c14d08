#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Redraws closer together than this are skipped (seconds). */
#define REDRAW_INTERVAL 0.2
#define BAR_WIDTH 20

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int terminal_width(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

void co_progress_line_init(co_progress_line *p, FILE *out, int runs)
{
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->out = out;
    p->runs = runs;
    p->job_start = now_seconds();
}

void co_progress_line_set_runs(co_progress_line *p, int runs)
{
    if (p) p->runs = runs;
}

void co_progress_line_start_run(co_progress_line *p, const char *label)
{
    if (!p) return;
    p->run++;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->last_result[0] = 0;
}

void co_progress_line_clear(co_progress_line *p)
{
    if (!p || !p->drawn) return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = 0;
}

void co_progress_note(co_progress_line *p, FILE *f, const char *fmt, ...)
{
    co_progress_line_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

static void format_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 360000) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = lround(s);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* Appends to the line while it fits; what does not fit is cut (the label comes last). */
static void append(char *line, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *line, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(line);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + len, cap - len, fmt, ap);
    va_end(ap);
}

void co_progress_line_update(const co_train_progress *t, void *ctx)
{
    co_progress_line *p = ctx;
    if (!p) return;
    if (t->finished) {
        const co_epoch_stats *e = t->finished;
        if (!isnan(e->test_acc)) snprintf(p->last_result, sizeof p->last_result, "test acc %.4f", e->test_acc);
        else snprintf(p->last_result, sizeof p->last_result, "test loss %.4g", e->test_loss);
    }
    double now = now_seconds();
    /* An evaluation is announced whenever epochs take a second or more: it may take a while
     * (the test set of an image data set) and would otherwise leave the last step count up. */
    double epochs_run = t->steps > 0 ? (double)t->steps_run / t->steps : 0;
    int long_epochs = epochs_run > 0 && t->seconds / epochs_run >= 1;
    if (p->last_draw > 0 && now - p->last_draw < REDRAW_INTERVAL && !(t->evaluating && long_epochs)) return;
    p->last_draw = now;

    long total = (long)t->epochs * t->steps, done = (long)(t->epoch - 1) * t->steps + t->step;
    double rate = t->seconds > 0 ? t->steps_run / t->seconds : 0;
    double run_fraction = total > 0 ? (double)done / total : 1;
    double eta;
    if (p->runs > 1) {
        /* The job's share done so far, counting runs as equal: the rest at the same pace. */
        double f = (p->run - 1 + run_fraction) / p->runs, elapsed = now - p->job_start;
        eta = f > 0 && elapsed > 1 ? elapsed * (1 - f) / f : NAN;
    } else {
        eta = rate > 0 ? (total - done) / rate : NAN;
    }
    char line[512] = "", dur[32];
    if (p->runs > 1) append(line, sizeof line, "run %d/%d  ", p->run, p->runs);
    append(line, sizeof line, "epoch %d/%d ", t->epoch, t->epochs);
    if (t->evaluating) {
        append(line, sizeof line, "evaluating");
    } else {
        int fill = t->steps > 0 ? (int)(BAR_WIDTH * t->step / t->steps) : BAR_WIDTH;
        append(line, sizeof line, "[%.*s%.*s] %ld/%ld", fill, "####################", BAR_WIDTH - fill,
               "....................", t->step, t->steps);
    }
    /* Most wanted first: a narrow terminal cuts the end. */
    format_duration(dur, sizeof dur, eta);
    append(line, sizeof line, "  ETA %s", dur);
    if (rate > 0) append(line, sizeof line, rate >= 100 ? "  %.0f steps/s" : "  %.1f steps/s", rate);
    if (!isnan(t->loss)) append(line, sizeof line, "  loss %.4g", t->loss);
    if (p->last_result[0]) append(line, sizeof line, "  %s", p->last_result);
    if (p->label[0]) append(line, sizeof line, "  %s", p->label);
    int width = terminal_width(p->out);
    /* One column short of the width: a full line would wrap on some terminals, and a
     * wrapped line is not erased by the carriage return. */
    fprintf(p->out, "\r%.*s\033[K", width - 1, line);
    fflush(p->out);
    p->drawn = 1;
}

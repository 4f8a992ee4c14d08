#include "plot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

co_status co_plot_lines(const char *png, const char *title, const char *xlabel, const char *ylabel,
                        const co_plot_series *series, int n, co_error *err)
{
    char script[4096];
    snprintf(script, sizeof script, "%s.gp", png);
    FILE *f = fopen(script, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create: %s", script, strerror(errno));
    fprintf(f, "set terminal pngcairo size 900,560 font 'sans,11'\nset output '%s'\n", png);
    fprintf(f, "set termoption noenhanced\nset datafile separator ','\nset key outside right\nset grid\n");
    fprintf(f, "set title '%s'\nset xlabel '%s'\nset ylabel '%s'\nplot ", title, xlabel, ylabel);
    for (int i = 0; i < n; i++) {
        const co_plot_series *s = &series[i];
        if (s->band_lo > 0)
            fprintf(f, "'%s' every ::1 using %d:%d:%d with filledcurves fs transparent solid 0.2 noborder lc %d "
                       "notitle, ",
                    s->csv, s->xcol, s->band_lo, s->band_hi, i + 1);
        fprintf(f, "'%s' every ::1 using %d:%d with lines lw 2 lc %d title '%s'%s", s->csv, s->xcol, s->ycol, i + 1,
                s->label, i + 1 < n ? ", " : "\n");
    }
    if (fclose(f) != 0) return co_error_set(err, CO_EIO, "%s: write failed", script);
    if (!have_gnuplot())
        return co_error_set(err, CO_ENOTFOUND, "gnuplot is not installed (apt-get install gnuplot-nox); script left in %s",
                            script);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", script);
    if (system(cmd) != 0) return co_error_set(err, CO_EIO, "gnuplot failed on %s", script);
    return CO_OK;
}

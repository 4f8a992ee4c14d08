#include "plot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

static co_status run_gnuplot(const char *script, co_error *err)
{
    if (!have_gnuplot())
        return co_error_set(err, CO_ENOTFOUND, "gnuplot is not installed (apt-get install gnuplot-nox); script left in %s",
                            script);
    char cmd[8400];
    /* gnuplot's chatter goes to a log beside the script, named in the error if it fails. */
    snprintf(cmd, sizeof cmd, "gnuplot '%s' >'%s.log' 2>&1", script, script);
    if (system(cmd) != 0) return co_error_set(err, CO_EIO, "gnuplot failed on %s (see %s.log)", script, script);
    return CO_OK;
}

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
    return run_gnuplot(script, err);
}

co_status co_plot_boundary(const char *png, const char *title, const char *grid, const char *points, co_error *err)
{
    char script[4096], contour[4200];
    snprintf(script, sizeof script, "%s.gp", png);
    snprintf(contour, sizeof contour, "%s.contour", png);
    FILE *f = fopen(script, "w");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot create: %s", script, strerror(errno));
    /* The 0.5 level is traced into a table first, then drawn over the probability image. */
    fprintf(f, "set termoption noenhanced\n"
               "set contour base\nset cntrparam levels discrete 0.5\nunset surface\nset view map\n"
               "set table '%s'\nsplot '%s' using 1:2:3 with lines\nunset table\n"
               "set terminal pngcairo size 760,620 font 'sans,11'\nset output '%s'\n"
               "set title '%s'\nset xlabel 'x1'\nset ylabel 'x2'\nset cbrange [0:1]\nset cblabel 'P(class 1)'\n"
               "set palette defined (0 '#3b6fb6', 0.5 '#f7f7f7', 1 '#d1495b')\nset datafile separator whitespace\n"
               "plot '%s' using 1:2:3 with image notitle, '%s' using 1:2 with lines lw 2 lc rgb 'black' title 'p = 0.5', "
               "'%s' using 1:2:($3 > 0.5 ? 0x111111 : 0xffffff) with points pt 7 ps 0.8 lc rgb variable notitle, "
               "'%s' using 1:2 with points pt 6 ps 0.8 lc rgb 'black' title 'test points (filled: class 1)'\n",
            contour, grid, png, title, grid, contour, points, points);
    fclose(f);
    return run_gnuplot(script, err);
}

#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the look of every figure */

#define FONT "sans,11"
#define LINE_WIDTH 2
#define BAND_ALPHA 0.15
/* Markers on a line: about this many per series, so that a line is told from its
 * neighbours by colour, dash pattern and marker alike. */
#define MARKERS_PER_LINE 8

typedef struct {
    const char *colour, *dash;
    int point;
} line_style;

/* Okabe & Ito's colour-blind-safe palette (its yellow, unreadable on white, replaced by
 * brown and grey), each colour with its own dash pattern and marker. */
static const line_style styles[] = {
    {"#0072B2", "1", 7},          {"#D55E00", "2", 5},      {"#009E73", "4", 9},
    {"#CC79A7", "3", 11},         {"#E69F00", "5", 13},     {"#56B4E9", "(12,5)", 4},
    {"#8C510A", "(3,4,12,4)", 6}, {"#7F7F7F", "(20,6)", 8},
};
#define NSTYLES ((int)(sizeof styles / sizeof styles[0]))
static const line_style reference_style = {"#000000", "1", 2};

/* Layout in pixels. */
#define PANEL_WIDTH 520
#define SINGLE_WIDTH 860
#define PLOT_HEIGHT 380
#define KEY_ROW 22
/* A legend entry's width: its sample line and gap, and an average character of FONT. */
#define KEY_SAMPLE_WIDTH 60
#define KEY_CHAR_WIDTH 7

static void common_settings(FILE *f)
{
    fprintf(f, "set style fill transparent solid %g noborder\n"
               "set grid back lc rgb '#dddddd' lw 1\nset border 3 lc rgb '#404040'\nset tics nomirror out\n",
            BAND_ALPHA);
}

/* ---------------------------------------------------------------- scripts and where they live */

co_status co_plot_data_dir(const char *dir, char *out, size_t n, co_error *err)
{
    if ((size_t)snprintf(out, n, "%s/%s", dir, CO_PLOT_DATA_DIR) >= n)
        return co_error_set(err, CO_EINVAL, "%s: path too long", dir);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return co_error_set(err, CO_EIO, "%s: cannot create: %s", out, strerror(errno));
    return CO_OK;
}

typedef struct {
    char dir[4096];  /* the figure's folder */
    char data[4200]; /* its plots/ folder: the script's working directory */
    char name[512];  /* the figure's file name without .png */
    char script[4800];
    FILE *f;
} figure;

static co_status figure_open(figure *fg, const char *png, co_error *err)
{
    const char *slash = strrchr(png, '/');
    snprintf(fg->dir, sizeof fg->dir, "%.*s", slash ? (int)(slash - png) : 1, slash ? png : ".");
    snprintf(fg->name, sizeof fg->name, "%s", slash ? slash + 1 : png);
    size_t len = strlen(fg->name);
    if (len > 4 && strcmp(fg->name + len - 4, ".png") == 0) fg->name[len - 4] = 0;
    co_status st = co_plot_data_dir(fg->dir, fg->data, sizeof fg->data, err);
    if (st) return st;
    snprintf(fg->script, sizeof fg->script, "%s/%s.gp", fg->data, fg->name);
    fg->f = fopen(fg->script, "w");
    if (!fg->f) return co_error_set(err, CO_EIO, "%s: cannot create: %s", fg->script, strerror(errno));
    return CO_OK;
}

/* A path as the script, run from the plots folder, reaches it. */
static void rel_path(const figure *fg, const char *path, char *out, size_t n)
{
    size_t ld = strlen(fg->data), lf = strlen(fg->dir);
    if (strncmp(path, fg->data, ld) == 0 && path[ld] == '/') snprintf(out, n, "%s", path + ld + 1);
    else if (strcmp(fg->dir, ".") != 0 && strncmp(path, fg->dir, lf) == 0 && path[lf] == '/')
        snprintf(out, n, "../%s", path + lf + 1);
    else if (path[0] == '/') snprintf(out, n, "%s", path);
    else if (strcmp(fg->dir, ".") == 0) snprintf(out, n, "../%s", path);
    else {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(out, n, "%s/%s", cwd, path);
    }
}

/* A gnuplot string literal (single quotes; a quote inside is doubled). */
static void gp_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void gp_path(FILE *f, const figure *fg, const char *path)
{
    char rel[8400];
    rel_path(fg, path, rel, sizeof rel);
    gp_string(f, rel);
}

/* A shell word (single quotes; a quote inside closes, escapes and reopens). */
static void shell_word(char *out, size_t n, const char *s)
{
    size_t k = 0;
    if (n < 3) return;
    out[k++] = '\'';
    for (; *s && k + 6 < n; s++) {
        if (*s == '\'') {
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *s;
        }
    }
    out[k++] = '\'';
    out[k] = 0;
}

static co_status figure_run(figure *fg, co_error *err)
{
    if (fclose(fg->f) != 0) return co_error_set(err, CO_EIO, "%s: write failed", fg->script);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return co_error_set(err, CO_ENOTFOUND, "gnuplot is not installed (apt-get install gnuplot-nox); script left in %s",
                            fg->script);
    char dir[8500], name[1100], cmd[12000], log[4800];
    snprintf(log, sizeof log, "%s/%s.log", fg->data, fg->name);
    shell_word(dir, sizeof dir, fg->data);
    shell_word(name, sizeof name, fg->name);
    /* Run from the plots folder: the script's paths are relative to it. */
    snprintf(cmd, sizeof cmd, "cd %s && gnuplot %s.gp >%s.log 2>&1", dir, name, name);
    int rc = system(cmd);
    struct stat st;
    int said_something = stat(log, &st) == 0 && st.st_size > 0;
    if (rc != 0) return co_error_set(err, CO_EIO, "gnuplot failed on %s (see %s)", fg->script, log);
    /* The log stays only when gnuplot complained. */
    if (!said_something) unlink(log);
    return CO_OK;
}

/* The PNG goes beside the plots folder the script runs in. */
static void terminal(FILE *f, const figure *fg, int width, int height)
{
    char out[600];
    snprintf(out, sizeof out, "../%s.png", fg->name);
    fprintf(f, "set terminal pngcairo size %d,%d font '%s' noenhanced\nset output ", width, height, FONT);
    gp_string(f, out);
    fputc('\n', f);
}

/* ---------------------------------------------------------------- reading the data for the axes */

/* Minimum and maximum of a column over a file's data rows (with `positive`, values <= 0
 * left out: a log axis), folded into *mn, *mx; returns the number of rows. A CSV (comma
 * separated, a header line) or, with csv 0, whitespace-separated columns ('#' lines skipped). */
static int scan_column(const char *path, int csv, int col, int positive, double *mn, double *mx)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int rows = 0;
    for (int first = 1; getline(&line, &cap, f) > 0; first = 0) {
        if (csv ? first : line[0] == '#') continue;
        rows++;
        char *p = line;
        for (int c = 1; c < col && p; c++) {
            if (csv) {
                p = strchr(p, ',');
                if (p) p++;
            } else {
                p += strspn(p, " \t");
                p += strcspn(p, " \t\n");
                if (!*p || *p == '\n') p = NULL;
            }
        }
        if (!p) continue;
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || (positive && v <= 0)) continue;
        if (v < *mn) *mn = v;
        if (v > *mx) *mx = v;
    }
    free(line);
    fclose(f);
    return rows;
}

typedef struct {
    double x0, x1, y0, y1;
    int points; /* the most rows of any series */
} ranges;

static void scan_series(const co_plot_series *s, int logy, ranges *r)
{
    int rows = scan_column(s->csv, 1, s->xcol, 0, &r->x0, &r->x1);
    scan_column(s->csv, 1, s->ycol, logy, &r->y0, &r->y1);
    if (s->band_lo > 0) {
        scan_column(s->csv, 1, s->band_lo, logy, &r->y0, &r->y1);
        scan_column(s->csv, 1, s->band_hi, logy, &r->y0, &r->y1);
    }
    if (rows > r->points) r->points = rows;
}

/* Tics at 1, 2 and 5 times the powers of ten (the first `mantissas` of them) between lo and hi (at
 * most max); their count. */
static int log_tics(double lo, double hi, double *tics, int max, int mantissas)
{
    int n = 0;
    for (double decade = pow(10, floor(log10(lo))); decade <= hi && n < max; decade *= 10)
        for (int m = 0; m < mantissas && n < max; m++) {
            double v = decade * (m == 0 ? 1 : m == 1 ? 2 : 5);
            if (v >= lo && v <= hi) tics[n++] = v;
        }
    return n;
}

/* A log axis (`axis` 'x' or 'y') over [lo, hi] padded by (hi/lo)^pad_exp each side, labelled at
 * the tics of `mantissas`, where it has at least two of them to show; whether it was set. */
static int log_axis(FILE *f, char axis, double lo, double hi, double pad_exp, int mantissas)
{
    double tics[32], pad = hi > lo ? pow(hi / lo, pad_exp) : 1.5;
    int ntics = log_tics(lo / pad, hi * pad, tics, 32, mantissas);
    if (ntics < 2) return 0;
    fprintf(f, "set logscale %c\nset %crange [%.9g:%.9g]\nset %ctics (", axis, axis, lo / pad, hi * pad, axis);
    for (int i = 0; i < ntics; i++) fprintf(f, "%s%.3g", i ? ", " : "", tics[i]);
    fprintf(f, ")\n");
    return 1;
}

static void set_ranges(FILE *f, const ranges *r, int logy, int logx)
{
    if (!(r->x0 <= r->x1) || !(r->y0 <= r->y1)) return; /* no data: gnuplot's autoscale says so */
    /* Times spread over decades (a cheap method beside a costly one): a log x axis, where the
     * range has labels to show; over more than two decades the 2s and 5s crowd a panel's
     * labels: powers of ten only. */
    int over_two_decades = r->x1 > 100 * r->x0;
    if (!(logx && r->x0 > 0 && r->x1 >= 3 * r->x0 && log_axis(f, 'x', r->x0, r->x1, 0.03, over_two_decades ? 1 : 3))) {
        fprintf(f, "set xrange [%.9g:%.9g]\n", r->x0, r->x1 > r->x0 ? r->x1 : r->x0 + 1);
        if (r->x1 - r->x0 <= 12) fprintf(f, "set xtics 1\n"); /* a few epochs: no fractional ones */
    }
    /* A log axis only where it has labels to show: over a narrow range it is a linear one. */
    if (!(logy && r->y0 > 0 && log_axis(f, 'y', r->y0, r->y1, 0.04, 3))) {
        double pad = r->y1 > r->y0 ? 0.04 * (r->y1 - r->y0) : fabs(r->y0) * 0.1 + 0.1;
        fprintf(f, "set yrange [%.9g:%.9g]\n", r->y0 - pad, r->y1 + pad);
    }
}

static void plot_band(FILE *f, const figure *fg, const co_plot_series *s, const line_style *ls)
{
    gp_path(f, fg, s->csv);
    fprintf(f, " using %d:%d:%d with filledcurves lc rgb '%s' notitle, \\\n  ", s->xcol, s->band_lo, s->band_hi,
            ls->colour);
}

/* The line, its markers every `every` points starting at `offset` (series of one panel
 * start at different points, so that their markers do not sit on each other), and its
 * legend entry showing both. */
static void plot_line(FILE *f, const figure *fg, const co_plot_series *s, const line_style *ls, int every, int offset,
                      int last)
{
    gp_path(f, fg, s->csv);
    fprintf(f, " using %d:%d with lines lw %d lc rgb '%s' dt %s notitle, \\\n  ", s->xcol, s->ycol, LINE_WIDTH,
            ls->colour, ls->dash);
    gp_path(f, fg, s->csv);
    fprintf(f, " every %d::%d using %d:%d with points lc rgb '%s' pt %d ps 1.1 notitle, \\\n  ", every, offset,
            s->xcol, s->ycol, ls->colour, ls->point);
    fprintf(f, "keyentry with linespoints lw %d lc rgb '%s' dt %s pt %d ps 1.1 title ", LINE_WIDTH, ls->colour,
            ls->dash, ls->point);
    gp_string(f, s->label);
    fputs(last ? "\n" : ", \\\n  ", f);
}

/* ---------------------------------------------------------------- line figures */

co_status co_plot_panels(const char *png, const char *title, const char *xlabel, const char *ylabel, int log_axes,
                         const co_plot_panel *panels, int npanels, const co_plot_series *reference, co_error *err)
{
    if (npanels < 1) return co_error_set(err, CO_EINVAL, "%s: no panels", png);
    figure fg;
    co_status st = figure_open(&fg, png, err);
    if (st) return st;
    FILE *f = fg.f;
    int logy = (log_axes & CO_PLOT_LOGY) != 0;
    ranges r = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0};
    int single = npanels == 1, panel_w = single ? SINGLE_WIDTH : PANEL_WIDTH;
    /* Legend columns: as many as the longest label leaves room for (at most 3, 2 beside
     * other panels), so that no entry runs into the next panel. */
    size_t longest = reference ? strlen(reference->label) : 0;
    for (int p = 0; p < npanels; p++)
        for (int i = 0; i < panels[p].n; i++)
            if (strlen(panels[p].series[i].label) > longest) longest = strlen(panels[p].series[i].label);
    int cols = (panel_w - 90) / (KEY_SAMPLE_WIDTH + KEY_CHAR_WIDTH * (int)longest), max_cols = single ? 3 : 2;
    cols = cols < 1 ? 1 : cols > max_cols ? max_cols : cols;
    int rows = 1;
    for (int p = 0; p < npanels; p++) {
        for (int i = 0; i < panels[p].n; i++) scan_series(&panels[p].series[i], logy, &r);
        int entries = panels[p].n + (reference != NULL);
        if ((entries + cols - 1) / cols > rows) rows = (entries + cols - 1) / cols;
    }
    if (reference) scan_series(reference, logy, &r);
    int every = r.points / MARKERS_PER_LINE > 1 ? r.points / MARKERS_PER_LINE : 1;
    /* Fixed margins, so that the panels line up whatever their legends hold; the legends go
     * below the plots, never over the data. */
    int top = single ? 45 : 80, bottom = 70 + KEY_ROW * rows;
    int W = 20 + npanels * panel_w, H = top + PLOT_HEIGHT + bottom;
    terminal(f, &fg, W, H);
    fprintf(f, "set datafile separator ','\nset datafile columnheaders\n");
    common_settings(f);
    set_ranges(f, &r, logy, (log_axes & CO_PLOT_LOGX) != 0);
    fprintf(f, "set xlabel ");
    gp_string(f, xlabel);
    fputc('\n', f);
    if (single) {
        fprintf(f, "set title ");
        gp_string(f, title);
        fputc('\n', f);
    }
    fprintf(f, "set multiplot");
    if (!single) {
        fprintf(f, " title ");
        gp_string(f, title);
        fprintf(f, " font ',13'");
    }
    fputc('\n', f);
    for (int p = 0; p < npanels; p++) {
        const co_plot_panel *pn = &panels[p];
        double x0 = 10 + p * panel_w;
        fprintf(f, "set lmargin at screen %.4f\nset rmargin at screen %.4f\nset tmargin at screen %.4f\n"
                   "set bmargin at screen %.4f\n",
                (x0 + 75) / W, (x0 + panel_w - 15) / W, 1.0 - (double)top / H, (double)bottom / H);
        fprintf(f, "set key at screen %.4f,%.4f left top vertical maxrows %d Left reverse samplen 4 width 2\n",
                (x0 + 75) / W, (double)(bottom - 58) / H, rows);
        fprintf(f, "set ylabel ");
        gp_string(f, p == 0 ? ylabel : "");
        fputc('\n', f);
        if (!single) {
            fprintf(f, "set title ");
            gp_string(f, pn->title ? pn->title : "");
            fputc('\n', f);
        }
        fprintf(f, "plot ");
        if (reference && reference->band_lo > 0) plot_band(f, &fg, reference, &(line_style){"#808080", "1", 0});
        for (int i = 0; i < pn->n; i++)
            if (pn->series[i].band_lo > 0) plot_band(f, &fg, &pn->series[i], &styles[i % NSTYLES]);
        int lines = pn->n + (reference != NULL), k = 0;
#define MARKER_OFFSET(k) ((every / 2 + (k) * every / lines) % every)
        if (reference) plot_line(f, &fg, reference, &reference_style, every, MARKER_OFFSET(k++), pn->n == 0);
        for (int i = 0; i < pn->n; i++)
            plot_line(f, &fg, &pn->series[i], &styles[i % NSTYLES], every, MARKER_OFFSET(k++), i == pn->n - 1);
#undef MARKER_OFFSET
        if (!reference && pn->n == 0) fprintf(f, "NaN notitle\n");
    }
    fprintf(f, "unset multiplot\n");
    return figure_run(&fg, err);
}

co_status co_plot_lines(const char *png, const char *title, const char *xlabel, const char *ylabel,
                        const co_plot_series *series, int n, co_error *err)
{
    co_plot_panel one = {title, series, n};
    return co_plot_panels(png, title, xlabel, ylabel, 0, &one, 1, NULL, err);
}

/* ---------------------------------------------------------------- rankings */

/* The 1, 2 or 5 times a power of ten nearest above x (0 for no usable x). */
static double nice_step(double x)
{
    if (!(x > 0) || !isfinite(x)) return 0;
    double p = pow(10, floor(log10(x))), m = x / p;
    return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10);
}

co_status co_plot_ranking(const char *png, const char *title, const char *dat, int nrows, const co_plot_metric *metrics,
                          int nmetrics, co_error *err)
{
    if (nrows < 1 || nmetrics < 1) return co_error_set(err, CO_EINVAL, "%s: nothing to rank", png);
    figure fg;
    co_status st = figure_open(&fg, png, err);
    if (st) return st;
    FILE *f = fg.f;
    int names = 110, panel_w = 330, top = 80, bottom = 50, row_h = 26;
    int W = names + nmetrics * panel_w + 10, H = top + nrows * row_h + bottom;
    terminal(f, &fg, W, H);
    common_settings(f);
    /* Room around the extreme dots (graph offsets), few tics so that neighbours' labels do not meet. */
    fprintf(f, "set datafile separator whitespace\nset key off\nset yrange [%g:0.6]\nset ytics 1 scale 0\n"
               "set xtics scale 0.5\nset offsets graph 0.08, graph 0.08, 0, 0\n"
               "set grid xtics ytics\nset multiplot title ",
            -(nrows - 0.4));
    gp_string(f, title);
    fprintf(f, " font ',13'\n");
    for (int m = 0; m < nmetrics; m++) {
        const co_plot_metric *mt = &metrics[m];
        double x0 = names + m * panel_w;
        fprintf(f, "set lmargin at screen %.4f\nset rmargin at screen %.4f\nset tmargin at screen %.4f\n"
                   "set bmargin at screen %.4f\n",
                x0 / W, (x0 + panel_w - 50) / W, 1.0 - (double)top / H, (double)bottom / H);
        fprintf(f, "%s\n", mt->logx ? "set logscale x" : "unset logscale x");
        if (mt->logx) {
            fprintf(f, "set xtics autofreq\n");
        } else {
            /* About four labelled tics: a narrow panel has no room for gnuplot's choice. */
            double lo = INFINITY, hi = -INFINITY, sd_lo = INFINITY, sd_hi = 0;
            scan_column(dat, 0, mt->mean_col, 0, &lo, &hi);
            if (mt->std_col > 0) scan_column(dat, 0, mt->std_col, 0, &sd_lo, &sd_hi);
            double step = nice_step((hi - lo + 2 * sd_hi) / 4);
            if (step > 0) fprintf(f, "set xtics %.9g\n", step);
            else fprintf(f, "set xtics autofreq\n");
        }
        fprintf(f, "set title ");
        gp_string(f, mt->title);
        fputc('\n', f);
        /* Names on the first panel only; the rows line up across panels. */
        fprintf(f, "plot ");
        gp_path(f, &fg, dat);
        if (mt->std_col > 0)
            fprintf(f, " using %d:(-$0):(($%d)-($%d)):(($%d)+($%d))%s with xerrorbars lw 2 pt 7 ps 1.3 lc rgb '%s'\n",
                    mt->mean_col, mt->mean_col, mt->std_col, mt->mean_col, mt->std_col,
                    m == 0 ? ":ytic(1)" : ":ytic('')", styles[0].colour);
        else
            fprintf(f, " using %d:(-$0)%s with points pt 7 ps 1.3 lc rgb '%s'\n", mt->mean_col,
                    m == 0 ? ":ytic(1)" : ":ytic('')", styles[0].colour);
    }
    fprintf(f, "unset multiplot\n");
    return figure_run(&fg, err);
}

/* ---------------------------------------------------------------- decision boundaries */

co_status co_plot_boundary(const char *png, const char *title, const char *grid, const char *points, co_error *err)
{
    figure fg;
    co_status st = figure_open(&fg, png, err);
    if (st) return st;
    FILE *f = fg.f;
    /* The 0.5 level is traced into a table first, then drawn over the probability image. */
    fprintf(f, "set termoption noenhanced\nset contour base\nset cntrparam levels discrete 0.5\nunset surface\n"
               "set view map\nset table ");
    fprintf(f, "'%s.contour'\nsplot ", fg.name);
    gp_path(f, &fg, grid);
    fprintf(f, " using 1:2:3 with lines\nunset table\n");
    terminal(f, &fg, 760, 700);
    fprintf(f, "set title ");
    gp_string(f, title);
    /* The legend goes below the map, outside the plotted region. */
    fprintf(f, "\nset xlabel 'x1'\nset ylabel 'x2'\nset cbrange [0:1]\nset cblabel 'P(class 1)'\n"
               "set palette defined (0 '#3b6fb6', 0.5 '#f7f7f7', 1 '#d1495b')\nset datafile separator whitespace\n"
               "set bmargin 6\nset key at screen 0.5,0.015 center bottom horizontal\nset autoscale fix\n"
               "plot ");
    gp_path(f, &fg, grid);
    fprintf(f, " using 1:2:3 with image notitle, '%s.contour' using 1:2 with lines lw 2 lc rgb 'black' "
               "title 'p = 0.5', ",
            fg.name);
    gp_path(f, &fg, points);
    fprintf(f, " using 1:2:($3 > 0.5 ? 0x111111 : 0xffffff) with points pt 7 ps 0.8 lc rgb variable notitle, ");
    gp_path(f, &fg, points);
    fprintf(f, " using 1:2 with points pt 6 ps 0.8 lc rgb 'black' title 'test points (filled: class 1)'\n");
    return figure_run(&fg, err);
}

/* ---------------------------------------------------------------- robustness figures */

/* set [xy]tics ('label' 0, 'label' 1, ...), the first label at position first and each next
 * one step further. */
static void named_tics(FILE *f, const char *axis, const char *const *labels, int n, int first, int step)
{
    fprintf(f, "set %stics (", axis);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        gp_string(f, labels[i]);
        fprintf(f, " %d", first + step * i);
    }
    fputs(")\n", f);
}

co_status co_plot_status_map(const char *png, const char *title, const char *dat, const char *const *xlabels, int nx,
                             const char *const *ylabels, int ny, co_error *err)
{
    figure fg;
    co_status st = figure_open(&fg, png, err);
    if (st) return st;
    FILE *f = fg.f;
    terminal(f, &fg, 480 + 150 * nx, 150 + 22 * ny);
    fprintf(f, "set title ");
    gp_string(f, title);
    fprintf(f, "\nset cbrange [-1:2]\nset cblabel 'final test loss / untrained (2: diverged, -1: not run)'\n"
               "set palette defined (-1 '#ffffff', -0.01 '#ffffff', 0 '#1a9850', 0.5 '#a6d96a', 0.9 '#e0e0e0', "
               "1.5 '#f46d43', 2 '#a50026')\nset tics nomirror\nset xrange [-0.5:%f]\nset yrange [-0.5:%f]\n",
            nx - 0.5, ny - 0.5);
    named_tics(f, "x", xlabels, nx, 0, 1);
    named_tics(f, "y", ylabels, ny, ny - 1, -1);
    fprintf(f, "plot ");
    gp_path(f, &fg, dat);
    fprintf(f, " using 1:2:3 with image notitle, '' using 1:2:4 with labels font ',9' notitle\n");
    return figure_run(&fg, err);
}

co_status co_plot_lr_ranges(const char *png, const char *title, const char *dat, double lr_lo, double lr_hi,
                            const char *const *ylabels, int ny, co_error *err)
{
    figure fg;
    co_status st = figure_open(&fg, png, err);
    if (st) return st;
    FILE *f = fg.f;
    terminal(f, &fg, SINGLE_WIDTH + 60, 150 + 22 * ny);
    common_settings(f);
    fprintf(f, "set title ");
    gp_string(f, title);
    fprintf(f, "\nset logscale x\nset xrange [%g:%g]\nset xlabel 'learning rate'\nset yrange [-0.5:%f]\n"
               "set key off\nset grid xtics\n",
            lr_lo / 2, lr_hi * 2, ny - 0.5);
    named_tics(f, "y", ylabels, ny, ny - 1, -1);
    fprintf(f, "plot ");
    gp_path(f, &fg, dat);
    fprintf(f, " index 0 using 1:($3==0?$2:1/0) with points pt 7 ps 1.6 lc rgb '%s', "
               "'' index 0 using 1:($3==1?$2:1/0) with points pt 7 ps 0.8 lc rgb '#999999', "
               "'' index 0 using 1:($3==2?$2:1/0) with points pt 2 ps 1.4 lw 2 lc rgb '%s', "
               "'' index 1 using 1:2 with points pt 4 ps 2.2 lw 1.5 lc rgb 'black'\n",
            styles[2].colour, styles[1].colour);
    return figure_run(&fg, err);
}

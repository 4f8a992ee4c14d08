/* Figures through gnuplot (PNG), styled here and nowhere else. A figure DIR/NAME.png keeps
 * its gnuplot script and the data it draws in DIR/plots/ (co_plot_data_dir), with paths
 * relative to that folder: `cd DIR/plots && gnuplot NAME.gp` redraws it, restyled if the
 * script was edited. gnuplot's own output is kept (plots/NAME.log) only when it failed or
 * complained. Every function returns CO_ENOTFOUND when gnuplot is not installed (the
 * script is still written) and CO_EIO when gnuplot failed. */
#ifndef CO_TRAIN_PLOT_H
#define CO_TRAIN_PLOT_H

#include "curvopt.h"

#include <stddef.h>

#define CO_PLOT_DATA_DIR "plots"

typedef struct co_plot_series {
    const char *csv;      /* file with a header line, comma separated */
    int xcol, ycol;       /* 1-based columns */
    const char *label;
    int band_lo, band_hi; /* optional columns of a shaded band (0: none) */
} co_plot_series;

typedef struct co_plot_panel {
    const char *title;
    const co_plot_series *series;
    int n;
} co_plot_panel;

/* One metric of a ranking: a column of means and one of standard deviations (0: none). */
typedef struct co_plot_metric {
    int mean_col, std_col; /* 1-based columns of the data file */
    const char *title;
    int logx;
} co_plot_metric;

/* DIR/plots, created if absent, into out: where a figure of DIR keeps its script and data. */
co_status co_plot_data_dir(const char *dir, char *out, size_t n, co_error *err);

/* Lines of CSV columns in one panel, each series with its own colour, dash pattern and
 * marker; the legend below the data. */
co_status co_plot_lines(const char *png, const char *title, const char *xlabel, const char *ylabel,
                        const co_plot_series *series, int n, co_error *err);

/* log_axes of co_plot_panels: either axis on a log scale (where its data span enough of it). */
enum { CO_PLOT_LOGY = 1, CO_PLOT_LOGX = 2 };

/* Small multiples: panels side by side on the same axis ranges, each with `reference`
 * (NULL: none) drawn in black behind its own series, each with its legend below it in as
 * many columns as its longest label leaves room for. */
co_status co_plot_panels(const char *png, const char *title, const char *xlabel, const char *ylabel, int log_axes,
                         const co_plot_panel *panels, int npanels, const co_plot_series *reference, co_error *err);

/* A ranking at a glance: one row per line of `dat` (whitespace separated, the name in column
 * 1, '#' lines skipped) from the top down, one panel per metric with the mean as a dot and
 * mean ± std as a bar. */
co_status co_plot_ranking(const char *png, const char *title, const char *dat, int nrows, const co_plot_metric *metrics,
                          int nmetrics, co_error *err);

/* A classifier's probability map (grid: "x y p" rows, blank line between grid rows) with
 * the 0.5 contour and the labelled points ('x y label' rows) on top. */
co_status co_plot_boundary(const char *png, const char *title, const char *grid, const char *points, co_error *err);

/* A status map: nx columns by ny rows of cells (`dat`: whitespace rows "x y value label",
 * x in 0..nx-1 from the left, y in 0..ny-1 from the bottom, the label a quoted string written
 * in the cell). value is a final loss over the untrained model's: green where it fell, grey
 * near 1, red above; 2 means diverged and -1 not run (white). */
co_status co_plot_status_map(const char *png, const char *title, const char *dat, const char *const *xlabels, int nx,
                             const char *const *ylabels, int ny, co_error *err);

/* Which learning rates train, one row per method from the top down: `dat` holds, in its
 * first block (index 0), rows "lr row status" (status 0 trains, 1 did not learn, 2 diverged;
 * row 0 at the bottom) and in its second (index 1) rows "lr row" marking each default. */
co_status co_plot_lr_ranges(const char *png, const char *title, const char *dat, double lr_lo, double lr_hi,
                            const char *const *ylabels, int ny, co_error *err);

#endif

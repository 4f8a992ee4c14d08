/* Figures through gnuplot: line plots of CSV columns, PNG output. */
#ifndef CO_TRAIN_PLOT_H
#define CO_TRAIN_PLOT_H

#include "curvopt.h"

typedef struct co_plot_series {
    const char *csv;   /* file with a header line, comma separated */
    int xcol, ycol;    /* 1-based columns */
    const char *label;
    int band_lo, band_hi; /* optional columns of a shaded band (0: none) */
} co_plot_series;

/* Writes png (and png with .gp appended: the script, for re-rendering). CO_ENOTFOUND
 * when gnuplot is not installed. */
co_status co_plot_lines(const char *png, const char *title, const char *xlabel, const char *ylabel,
                        const co_plot_series *series, int n, co_error *err);

/* A classifier's probability map (grid: "x y p" rows, blank line between grid rows) with
 * the 0.5 contour and the labelled points ('x y label' rows) on top. */
co_status co_plot_boundary(const char *png, const char *title, const char *grid, const char *points, co_error *err);

#endif

/* Writes small SVHN-format .mat files (MATLAB v5 through libmatio): X(row, col, ch, s) as
 * uint8 or double, labels in any of three numeric classes, optionally compressed, and the
 * malformed variants the loader must refuse. SV_N samples; pixels from sv_pixel. */
#ifndef CO_TEST_SVHN_WRITER_H
#define CO_TEST_SVHN_WRITER_H

#include <matio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SV_N = 3 };

/* X(row, col, ch, s) as MATLAB stores it (column-major). */
static inline unsigned char sv_pixel(int row, int col, int ch, int s)
{
    return (unsigned char)((row * 3 + col * 5 + ch * 80 + s * 19) % 256);
}

typedef struct {
    enum matio_classes x_class;
    int x_rank;
    size_t x_dims[4];
    size_t y_n;
    double labels[SV_N + 1];
    enum matio_classes y_class;
    int write_y;
    int compress;
} sv_spec;

static inline sv_spec sv_default(void)
{
    sv_spec s = {MAT_C_UINT8, 4, {32, 32, 3, SV_N}, SV_N, {1, 10, 5, 7}, MAT_C_DOUBLE, 1, 0};
    return s;
}

static inline void write_svhn(const char *path, const sv_spec *s)
{
    size_t count = s->x_dims[0] * s->x_dims[1] * s->x_dims[2] * (s->x_rank == 4 ? s->x_dims[3] : 1);
    unsigned char *x8 = malloc(count);
    double *xd = malloc(count * sizeof *xd);
    for (size_t i = 0; i < count; i++) {
        size_t row = i % 32, col = (i / 32) % 32, ch = (i / 1024) % 3, smp = i / 3072;
        x8[i] = sv_pixel((int)row, (int)col, (int)ch, (int)smp);
        xd[i] = x8[i];
    }
    mat_t *mat = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    if (!mat) exit(2);
    size_t xdims[4];
    memcpy(xdims, s->x_dims, sizeof xdims);
    matvar_t *X = s->x_class == MAT_C_UINT8 ? Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, s->x_rank, xdims, x8, 0)
                                             : Mat_VarCreate("X", MAT_C_DOUBLE, MAT_T_DOUBLE, s->x_rank, xdims, xd, 0);
    enum matio_compression comp = s->compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
    if (!X || Mat_VarWrite(mat, X, comp) != 0) exit(2);
    Mat_VarFree(X);
    if (s->write_y) {
        size_t ydims[2] = {s->y_n, 1};
        unsigned char y8[SV_N + 1];
        int16_t y16[SV_N + 1];
        double yd[SV_N + 1];
        for (size_t i = 0; i < s->y_n; i++) y8[i] = (unsigned char)s->labels[i], y16[i] = (int16_t)s->labels[i];
        memcpy(yd, s->labels, sizeof yd);
        matvar_t *y = s->y_class == MAT_C_UINT8   ? Mat_VarCreate("y", MAT_C_UINT8, MAT_T_UINT8, 2, ydims, y8, 0)
                      : s->y_class == MAT_C_INT16 ? Mat_VarCreate("y", MAT_C_INT16, MAT_T_INT16, 2, ydims, y16, 0)
                                                  : Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, ydims, yd, 0);
        if (!y || Mat_VarWrite(mat, y, comp) != 0) exit(2);
        Mat_VarFree(y);
    }
    Mat_Close(mat);
    free(x8);
    free(xd);
}

#endif

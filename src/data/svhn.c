/* SVHN cropped digits (train_32x32.mat, test_32x32.mat): MATLAB v5 files read with
 * libmatio. X is uint8 32x32x3xN in MATLAB's column-major order (row fastest, then column,
 * channel, sample); y is Nx1 with labels 1..10, where 10 stands for the digit 0 — the
 * loader maps it to class 0 so that class k is digit k, as torchvision's SVHN does. */
#include "data/formats.h"

#include <matio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <threads.h>
#include <zlib.h>

enum { SVHN_SIDE = 32, SVHN_PIXELS = 3 * SVHN_SIDE * SVHN_SIDE };

/* matio reports through a process-wide log function that prints by default; the library
 * must not print, so its last message is kept per thread and quoted in our error line. */
static _Thread_local char matio_message[200];

static void matio_log(int level, char *message)
{
    (void)level;
    snprintf(matio_message, sizeof matio_message, "%s", message ? message : "");
}

static once_flag matio_log_once = ONCE_FLAG_INIT;

static void install_matio_log(void)
{
    Mat_LogInitFunc("curvopt", matio_log);
}

static uint32_t get32(const unsigned char *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

enum { MI_INT8 = 1, MI_INT32 = 5, MI_UINT32 = 6, MI_MATRIX = 14, MI_COMPRESSED = 15 };
enum { MX_DOUBLE = 6, MX_UINT64 = 15, MX_COMPLEX = 0x800 };
/* The head of a matrix element that holds all its tags: flags 16, dims 8 + 4 x 32,
 * name 8 + 64, data tag 8. */
enum { MATRIX_HEAD = 512, MAX_RANK = 32, MAX_NAME = 63 };

/* Where a matrix element lies, for messages. */
typedef struct mat_where {
    const char *path;
    size_t element;  /* file offset of the element's tag */
    int compressed;  /* offsets count decompressed bytes of that element */
} mat_where;

static co_status matrix_error(co_error *err, const mat_where *w, size_t off, const char *what)
{
    if (w->compressed)
        return co_error_set(err, CO_EFORMAT, "%s: compressed element at byte %zu, decompressed byte %zu: %s", w->path,
                            w->element, off, what);
    return co_error_set(err, CO_EFORMAT, "%s: byte %zu: %s", w->path, w->element + off, what);
}

/* One sub-element tag at off (offsets from the matrix tag): its type, size, where its data
 * starts and where the next sub-element starts (data padded to 8 bytes; a small element
 * packs up to 4 bytes of data into the tag). 0 when the tag is not inside the element. */
static int subelement(const unsigned char *m, size_t have, size_t end, size_t off, int be, uint32_t *type,
                      uint32_t *nbytes, size_t *data, size_t *next)
{
    if (off + 8 > end || off + 8 > have) return 0;
    uint32_t word = get32(m + off, be);
    if (word >> 16) {
        *type = word & 0xffff;
        *nbytes = word >> 16;
        *data = off + 4;
        *next = off + 8;
        return *nbytes <= 4;
    }
    *type = word;
    *nbytes = get32(m + off + 4, be);
    *data = off + 8;
    *next = off + 8 + (((size_t)*nbytes + 7) & ~(size_t)7);
    return *next <= end;
}

static size_t mi_size(uint32_t type)
{
    switch (type) {
    case 1: case 2: return 1;   /* int8, uint8 */
    case 3: case 4: return 2;   /* int16, uint16 */
    case 5: case 6: case 7: return 4; /* int32, uint32, single */
    case 9: case 12: case 13: return 8; /* double, int64, uint64 */
    default: return 0;
    }
}

/* Checks a numeric matrix element (m: its first `have` bytes from the tag on, `end` bytes in
 * all): array flags, dimensions (rank 2..32), a name of 1..63 characters, and a real part
 * whose size is exactly the product of the dimensions times its type's size and which ends
 * the element. Cells, structs, sparse and complex arrays are refused: SVHN has none. */
static co_status check_matrix(const unsigned char *m, size_t have, size_t end, int be, const mat_where *w,
                              co_error *err)
{
    uint32_t type, nbytes;
    size_t data, next, off = 8;
    char what[160];
    if (!subelement(m, have, end, off, be, &type, &nbytes, &data, &next) || type != MI_UINT32 || nbytes != 8 ||
        data + 8 > have)
        return matrix_error(err, w, off, "array flags missing (expected an 8-byte uint32 element)");
    uint32_t flags = get32(m + data, be), cls = flags & 0xff;
    if (cls < MX_DOUBLE || cls > MX_UINT64 || (flags & MX_COMPLEX)) {
        snprintf(what, sizeof what, "array class %u%s, expected a real numeric array (class 6 to 15)", cls,
                 flags & MX_COMPLEX ? " (complex)" : "");
        return matrix_error(err, w, data, what);
    }
    off = next;
    if (!subelement(m, have, end, off, be, &type, &nbytes, &data, &next) || type != MI_INT32 || nbytes % 4 != 0 ||
        nbytes / 4 < 2 || nbytes / 4 > MAX_RANK || data + nbytes > have) {
        snprintf(what, sizeof what, "dimensions element of type %u and %u bytes, expected int32 with 2 to %d values",
                 type, nbytes, MAX_RANK);
        return matrix_error(err, w, off, what);
    }
    size_t count = 1;
    for (uint32_t i = 0; i < nbytes / 4; i++) {
        int32_t d = (int32_t)get32(m + data + 4 * i, be);
        if (d < 0 || __builtin_mul_overflow(count, (size_t)d, &count)) {
            snprintf(what, sizeof what, "dimension %u is %d (negative or overflowing)", i, d);
            return matrix_error(err, w, data + 4 * i, what);
        }
    }
    off = next;
    if (!subelement(m, have, end, off, be, &type, &nbytes, &data, &next) || type != MI_INT8 || nbytes < 1 ||
        nbytes > MAX_NAME || data + nbytes > have) {
        snprintf(what, sizeof what, "name element of type %u and %u bytes, expected int8 with 1 to %d characters",
                 type, nbytes, MAX_NAME);
        return matrix_error(err, w, off, what);
    }
    for (uint32_t i = 0; i < nbytes; i++)
        if (m[data + i] < 0x21 || m[data + i] > 0x7e)
            return matrix_error(err, w, data + i, "variable name has a non-printable character");
    off = next;
    size_t elem, want;
    if (!subelement(m, have, end, off, be, &type, &nbytes, &data, &next) || (elem = mi_size(type)) == 0 ||
        __builtin_mul_overflow(count, elem, &want) || want != nbytes) {
        snprintf(what, sizeof what, "data element of type %u and %u bytes, expected a numeric type holding the %zu values the dimensions promise",
                 type, nbytes, count);
        return matrix_error(err, w, off, what);
    }
    if (next != end) {
        snprintf(what, sizeof what, "%zu bytes after the data, expected the element to end there", end - next);
        return matrix_error(err, w, next, what);
    }
    return CO_OK;
}

/* Inflates one miCOMPRESSED element of `len` bytes at the current position to its end:
 * the zlib stream must end exactly there (Adler-32 checked by zlib) and hold one miMATRIX
 * element whose tag accounts for every decompressed byte. */
static co_status check_compressed(FILE *f, const char *path, size_t at, size_t len, int big_endian, co_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) return co_error_set(err, CO_ENOMEM, "%s: cannot initialise zlib", path);
    unsigned char in[1 << 15], out[1 << 15], head[MATRIX_HEAD];
    size_t left = len, produced = 0;
    int r = Z_OK;
    co_status st = CO_OK;
    while (r != Z_STREAM_END) {
        if (z.avail_in == 0) {
            if (left == 0) break;
            size_t want = left < sizeof in ? left : sizeof in;
            if (fread(in, 1, want, f) != want) {
                st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: compressed element truncated (expected %zu bytes)",
                                  path, at, len);
                goto done;
            }
            left -= want;
            z.next_in = in;
            z.avail_in = (uInt)want;
        }
        z.next_out = out;
        z.avail_out = sizeof out;
        r = inflate(&z, Z_NO_FLUSH);
        size_t got = sizeof out - z.avail_out;
        for (size_t i = 0; i < got && produced + i < sizeof head; i++) head[produced + i] = out[i];
        produced += got;
        if (r != Z_OK && r != Z_STREAM_END && !(r == Z_BUF_ERROR && z.avail_in == 0 && left > 0)) {
            st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: corrupt compressed element (%s)", path, at,
                              z.msg ? z.msg : "invalid data");
            goto done;
        }
    }
    if (r != Z_STREAM_END) {
        st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: compressed element ends before its zlib stream does", path,
                          at);
        goto done;
    }
    if (z.avail_in != 0 || left != 0) {
        st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: %zu bytes after the zlib stream inside a %zu-byte element",
                          path, at, (size_t)z.avail_in + left, len);
        goto done;
    }
    if (produced < 8 || get32(head, big_endian) != MI_MATRIX || produced - 8 != get32(head + 4, big_endian)) {
        st = co_error_set(err, CO_EFORMAT,
                          "%s: byte %zu: compressed element holds %zu bytes, expected one miMATRIX element that fills them",
                          path, at, produced);
        goto done;
    }
    mat_where w = {path, at, 1};
    st = check_matrix(head, produced < sizeof head ? produced : sizeof head, produced, big_endian, &w, err);
done:
    inflateEnd(&z);
    return st;
}

/* Walks the top-level data elements: each must be a matrix or a compressed matrix lying
 * wholly inside the file, and they must end exactly at the end of the file. matio does not
 * check this (a short read of uncompressed data goes unnoticed), so a truncated file would
 * otherwise load with garbage in its last bytes. */
static co_status check_elements(FILE *f, const char *path, size_t file_size, int big_endian, co_error *err)
{
    size_t at = 128;
    while (at < file_size) {
        unsigned char tag[8];
        if (file_size - at < 8 || fseek(f, (long)at, SEEK_SET) != 0 || fread(tag, 1, 8, f) != 8)
            return co_error_set(err, CO_EFORMAT, "%s: byte %zu: %zu stray bytes, expected an 8-byte data element tag",
                                path, at, file_size - at);
        uint32_t type = get32(tag, big_endian), nbytes = get32(tag + 4, big_endian);
        if (type != MI_MATRIX && type != MI_COMPRESSED)
            return co_error_set(err, CO_EFORMAT, "%s: byte %zu: data element type %u, expected miMATRIX (14) or miCOMPRESSED (15)",
                                path, at, type);
        if (nbytes > file_size - at - 8)
            return co_error_set(err, CO_EFORMAT, "%s: byte %zu: element of %u bytes, only %zu left in the file (truncated)",
                                path, at, nbytes, file_size - at - 8);
        co_status st;
        if (type == MI_COMPRESSED) {
            st = check_compressed(f, path, at, nbytes, big_endian, err);
        } else {
            unsigned char head[MATRIX_HEAD];
            size_t have = 8 + (size_t)nbytes < sizeof head ? 8 + (size_t)nbytes : sizeof head;
            memcpy(head, tag, 8);
            if (fread(head + 8, 1, have - 8, f) != have - 8)
                return co_error_set(err, CO_EIO, "%s: byte %zu: short read", path, at);
            mat_where w = {path, at, 0};
            st = check_matrix(head, have, 8 + (size_t)nbytes, big_endian, &w, err);
        }
        if (st) return st;
        at += 8 + (size_t)nbytes;
    }
    return CO_OK;
}

/* Refuses anything but a well-formed MATLAB v5 file before matio sees it: matio would hand
 * a v7.3 header to HDF5 and anything else to its v4 reader, and it trusts the sizes in the
 * file (a forged dimensions tag makes it allocate gigabytes). */
static co_status check_header(const char *path, size_t *file_size, co_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return co_error_set(err, CO_EIO, "%s: cannot open: not a readable regular file", path);
    if ((unsigned long long)sb.st_size > CO_DATA_MAX_FILE_BYTES)
        return co_error_set(err, CO_EFORMAT, "%s: %lld bytes, larger than the %zu-byte limit for a dataset file", path,
                            (long long)sb.st_size, CO_DATA_MAX_FILE_BYTES);
    *file_size = (size_t)sb.st_size;
    unsigned char h[128] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot open", path);
    size_t got = fread(h, 1, sizeof h, f);
    co_status st = CO_OK;
    unsigned version = 0;
    int big_endian = h[126] == 'M' && h[127] == 'I';
    if (got < sizeof h)
        st = co_error_set(err, CO_EFORMAT, "%s: %zu bytes, too short for a MATLAB v5 header (expected at least 128)",
                          path, got);
    else if (!big_endian && !(h[126] == 'I' && h[127] == 'M'))
        st = co_error_set(err, CO_EFORMAT, "%s: byte 126: endian indicator %02x %02x, expected \"IM\" or \"MI\" (not a MATLAB v5 file)",
                          path, h[126], h[127]);
    else if ((version = big_endian ? (unsigned)h[124] << 8 | h[125] : h[124] | (unsigned)h[125] << 8) != 0x0100)
        st = co_error_set(err, CO_EFORMAT, "%s: byte 124: MAT-file version 0x%04x, expected 0x0100 (MATLAB v5%s)", path,
                          version, version == 0x0200 ? "; v7.3/HDF5 files are not supported, save with -v7" : "");
    else
        st = check_elements(f, path, *file_size, big_endian, err);
    fclose(f);
    return st;
}

static const char *class_name(enum matio_classes c)
{
    switch (c) {
    case MAT_C_DOUBLE: return "double";
    case MAT_C_SINGLE: return "single";
    case MAT_C_UINT8: return "uint8";
    case MAT_C_INT8: return "int8";
    case MAT_C_UINT16: return "uint16";
    case MAT_C_INT16: return "int16";
    case MAT_C_UINT32: return "uint32";
    case MAT_C_INT32: return "int32";
    case MAT_C_UINT64: return "uint64";
    case MAT_C_INT64: return "int64";
    case MAT_C_CELL: return "cell";
    case MAT_C_STRUCT: return "struct";
    case MAT_C_CHAR: return "char";
    case MAT_C_SPARSE: return "sparse";
    default: return "other";
    }
}

/* Bytes per element of a numeric class as matio stores it in memory. */
static size_t class_size(enum matio_classes c)
{
    switch (c) {
    case MAT_C_DOUBLE: case MAT_C_INT64: case MAT_C_UINT64: return 8;
    case MAT_C_SINGLE: case MAT_C_INT32: case MAT_C_UINT32: return 4;
    case MAT_C_INT16: case MAT_C_UINT16: return 2;
    default: return 1;
    }
}

/* Element i of a real numeric variable, as a double. */
static double element(const matvar_t *v, size_t i)
{
    const void *p = v->data;
    switch (v->class_type) {
    case MAT_C_DOUBLE: return ((const double *)p)[i];
    case MAT_C_SINGLE: return ((const float *)p)[i];
    case MAT_C_INT8: return ((const int8_t *)p)[i];
    case MAT_C_INT16: return ((const int16_t *)p)[i];
    case MAT_C_UINT16: return ((const uint16_t *)p)[i];
    case MAT_C_INT32: return ((const int32_t *)p)[i];
    case MAT_C_UINT32: return ((const uint32_t *)p)[i];
    case MAT_C_INT64: return (double)((const int64_t *)p)[i];
    case MAT_C_UINT64: return (double)((const uint64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

static void format_dims(const matvar_t *v, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    if (!v->dims) {
        snprintf(buf, len, "(none)");
        return;
    }
    for (int i = 0; i < v->rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%zu", i ? "x" : "", v->dims[i]);
}

/* Bytes the variable's data takes, or 0 when that overflows. */
static size_t data_bytes(const matvar_t *v, size_t elem)
{
    size_t n = elem;
    for (int i = 0; i < v->rank; i++)
        if (__builtin_mul_overflow(n, v->dims[i], &n)) return 0;
    return n;
}

/* Reads a variable's header only, checks class and shape, then reads the data once the
 * size it implies is possible for a file of this size. */
static co_status read_var(mat_t *mat, const char *path, size_t file_size, const char *name, int rank,
                          const size_t *dims, const enum matio_classes *classes, int nclasses, matvar_t **out,
                          co_error *err)
{
    *out = NULL;
    matio_message[0] = 0;
    matvar_t *info = Mat_VarReadInfo(mat, name);
    if (!info)
        return co_error_set(err, CO_EFORMAT, "%s: no readable variable '%s'%s%s", path, name,
                            matio_message[0] ? ": matio: " : "", matio_message);
    char found[128];
    format_dims(info, found, sizeof found);
    co_status st = CO_OK;
    int class_ok = 0;
    for (int i = 0; i < nclasses; i++) class_ok |= info->class_type == classes[i];
    if (!class_ok || info->isComplex || info->isLogical) {
        st = co_error_set(err, CO_EFORMAT, "%s: variable %s: class %s%s, expected real %s%s", path, name,
                          info->isComplex ? "complex " : info->isLogical ? "logical " : "", class_name(info->class_type),
                          class_name(classes[0]), nclasses > 1 ? " or another numeric class" : "");
        goto done;
    }
    int shape_ok = info->rank == rank && info->dims != NULL;
    for (int i = 0; shape_ok && i < rank; i++) shape_ok = dims[i] == 0 ? info->dims[i] > 0 : info->dims[i] == dims[i];
    if (!shape_ok) {
        char want[128];
        size_t used = 0;
        for (int i = 0; i < rank; i++) {
            char d[24];
            if (dims[i]) snprintf(d, sizeof d, "%zu", dims[i]);
            else snprintf(d, sizeof d, "N");
            used += (size_t)snprintf(want + used, sizeof want - used, "%s%s", i ? "x" : "", d);
        }
        st = co_error_set(err, CO_EFORMAT, "%s: variable %s: rank %d dims %s, expected rank %d dims %s (N >= 1)", path,
                          name, info->rank, found, rank, want);
        goto done;
    }
    size_t elem = class_size(info->class_type);
    size_t bytes = data_bytes(info, elem);
    /* Deflate expands at most about 1032:1, so a larger claim cannot be backed by the file. */
    size_t possible = file_size > CO_DATA_MAX_FILE_BYTES / 1032 ? CO_DATA_MAX_FILE_BYTES : file_size * 1032;
    if (bytes == 0 || bytes > possible) {
        st = co_error_set(err, CO_EFORMAT, "%s: variable %s: dims %s need %s bytes, more than a %zu-byte file can hold",
                          path, name, found, bytes ? "that many" : "overflowing", file_size);
        goto done;
    }
    matio_message[0] = 0;
    matvar_t *v = Mat_VarRead(mat, name);
    if (!v || !v->data || !v->dims || v->rank != rank || v->class_type != info->class_type ||
        (size_t)v->data_size != elem || v->nbytes != bytes || data_bytes(v, elem) != bytes) {
        st = co_error_set(err, CO_EFORMAT, "%s: variable %s: data unreadable or not the %zu bytes its header promises%s%s",
                          path, name, bytes, matio_message[0] ? ": matio: " : "", matio_message);
        Mat_VarFree(v);
        goto done;
    }
    *out = v;
done:
    Mat_VarFree(info);
    return st;
}

static co_status convert(const char *path, const matvar_t *X, const matvar_t *y, co_dataset **out, co_error *err)
{
    size_t n = X->dims[3];
    if (y->dims[0] != n)
        return co_error_set(err, CO_EFORMAT, "%s: variable y has %zu labels, X has %zu images (expected equal counts)",
                            path, y->dims[0], n);
    if (n > (size_t)INT32_MAX / SVHN_PIXELS)
        return co_error_set(err, CO_EFORMAT, "%s: %zu images, more than this library indexes", path, n);
    float *labels = malloc(n * sizeof *labels);
    if (!labels) return co_error_set(err, CO_ENOMEM, "%s: out of memory for %zu labels", path, n);
    for (size_t i = 0; i < n; i++) {
        double v = element(y, i);
        if (!(v >= 1 && v <= 10) || v != floor(v)) {
            free(labels);
            return co_error_set(err, CO_EFORMAT, "%s: variable y, element %zu: label %g, expected an integer 1 to 10", path,
                                i, v);
        }
        labels[i] = v == 10 ? 0.0f : (float)v;
    }
    co_dataset *d = co_dataset_new((int)n, SVHN_PIXELS, 1, err);
    if (!d) {
        free(labels);
        return err ? err->code : CO_ENOMEM;
    }
    d->nclasses = 10;
    d->c = 3;
    d->h = SVHN_SIDE;
    d->w = SVHN_SIDE;
    memcpy(d->y, labels, n * sizeof *labels);
    free(labels);
    const unsigned char *px = X->data;
    enum { plane = SVHN_SIDE * SVHN_SIDE };
    for (size_t s = 0; s < n; s++) {
        const unsigned char *src = px + s * SVHN_PIXELS;
        float *dst = d->x + s * SVHN_PIXELS;
        /* MATLAB stores X(row, col, ch, s) at row + 32 col + 1024 ch + 3072 s; the dataset is
         * channel-first with rows of 32 (ch, row, col). */
        for (int ch = 0; ch < 3; ch++)
            for (int row = 0; row < SVHN_SIDE; row++)
                for (int col = 0; col < SVHN_SIDE; col++)
                    dst[ch * plane + row * SVHN_SIDE + col] = (float)src[ch * plane + col * SVHN_SIDE + row] / 255.0f;
    }
    *out = d;
    return CO_OK;
}

co_status co_svhn_load_file(const char *path, co_dataset **out, co_error *err)
{
    *out = NULL;
    call_once(&matio_log_once, install_matio_log);
    size_t file_size;
    co_status st = check_header(path, &file_size, err);
    if (st) return st;
    matio_message[0] = 0;
    mat_t *mat = Mat_Open(path, MAT_ACC_RDONLY);
    if (!mat)
        return co_error_set(err, CO_EFORMAT, "%s: not a readable MATLAB v5 file%s%s", path,
                            matio_message[0] ? ": matio: " : "", matio_message);
    matvar_t *X = NULL, *y = NULL;
    static const size_t x_dims[4] = {SVHN_SIDE, SVHN_SIDE, 3, 0}, y_dims[2] = {0, 1};
    static const enum matio_classes x_classes[] = {MAT_C_UINT8};
    /* MATLAB saves labels as double by default; any real numeric class holding 1..10 will do. */
    static const enum matio_classes y_classes[] = {MAT_C_UINT8,  MAT_C_DOUBLE, MAT_C_SINGLE, MAT_C_INT8,
                                                   MAT_C_INT16,  MAT_C_UINT16, MAT_C_INT32,  MAT_C_UINT32,
                                                   MAT_C_INT64,  MAT_C_UINT64};
    st = read_var(mat, path, file_size, "X", 4, x_dims, x_classes, 1, &X, err);
    if (st == CO_OK) st = read_var(mat, path, file_size, "y", 2, y_dims, y_classes,
                                         (int)(sizeof y_classes / sizeof y_classes[0]), &y, err);
    if (st == CO_OK) st = convert(path, X, y, out, err);
    Mat_VarFree(X);
    Mat_VarFree(y);
    Mat_Close(mat);
    return st;
}

int co_svhn_dir_has(const char *dir, int train)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, train ? "train_32x32.mat" : "test_32x32.mat");
    return co_data_file_exists(path);
}

co_status co_svhn_load_dir(const char *dir, int train, co_dataset **out, co_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, train ? "train_32x32.mat" : "test_32x32.mat");
    if (!co_data_file_exists(path)) {
        *out = NULL;
        return co_error_set(err, CO_ENOTFOUND, "%s: not found (SVHN cropped digits)", path);
    }
    return co_svhn_load_file(path, out, err);
}

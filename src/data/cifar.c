/* CIFAR-10 and CIFAR-100 binary batches: fixed-size records with no header, so the file
 * size itself is the only structure to check, plus every label byte. */
#include "data/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE };

/* Label bytes per record: CIFAR-10 has one, CIFAR-100 a coarse (20 superclasses) and a
 * fine (100 classes) one. */
static int label_bytes(int nclasses)
{
    return nclasses == 100 ? 2 : 1;
}

/* Checks one batch and returns its record count through *n. */
static co_status check_batch(const unsigned char *buf, size_t len, const char *name, int nclasses, size_t *n,
                             co_error *err)
{
    size_t rec = (size_t)label_bytes(nclasses) + CIFAR_PIXELS;
    if (len == 0) return co_error_set(err, CO_EFORMAT, "%s: empty file (expected %zu-byte records)", name, rec);
    if (len % rec != 0)
        return co_error_set(err, CO_EFORMAT,
                            "%s: %zu bytes is not a whole number of %zu-byte CIFAR-%d records (%zu records and %zu bytes left over)",
                            name, len, rec, nclasses, len / rec, len % rec);
    *n = len / rec;
    for (size_t i = 0; i < *n; i++) {
        const unsigned char *r = buf + i * rec;
        if (nclasses == 100 && r[0] >= 20)
            return co_error_set(err, CO_EFORMAT, "%s: byte %zu: record %zu has coarse label %u, expected 0 to 19", name,
                                i * rec, i, r[0]);
        unsigned label = r[rec - CIFAR_PIXELS - 1];
        if (label >= (unsigned)nclasses)
            return co_error_set(err, CO_EFORMAT, "%s: byte %zu: record %zu has label %u, expected 0 to %d", name,
                                i * rec + rec - CIFAR_PIXELS - 1, i, label, nclasses - 1);
    }
    return CO_OK;
}

/* Converts n checked records; the pixel layout (R plane, G plane, B plane, rows of 32) is
 * already channel-first. */
static void fill(co_dataset *d, size_t first, const unsigned char *buf, size_t n, int nclasses)
{
    size_t lb = (size_t)label_bytes(nclasses), rec = lb + CIFAR_PIXELS;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *r = buf + i * rec;
        float *x = d->x + (first + i) * CIFAR_PIXELS;
        for (int k = 0; k < CIFAR_PIXELS; k++) x[k] = (float)r[lb + k] / 255.0f;
        d->y[first + i] = (float)r[lb - 1];
    }
}

static co_dataset *new_images(size_t n, int nclasses, const char *name, co_error *err)
{
    if (n > (size_t)INT32_MAX / CIFAR_PIXELS) {
        co_error_set(err, CO_EFORMAT, "%s: %zu records, more than this library indexes", name, n);
        return NULL;
    }
    co_dataset *d = co_dataset_new((int)n, CIFAR_PIXELS, 1, err);
    if (!d) return NULL;
    d->nclasses = nclasses;
    d->c = 3;
    d->h = CIFAR_SIDE;
    d->w = CIFAR_SIDE;
    return d;
}

co_status co_cifar_load_mem(const unsigned char *buf, size_t len, const char *name, int nclasses, co_dataset **out,
                            co_error *err)
{
    *out = NULL;
    if (nclasses != 10 && nclasses != 100)
        return co_error_set(err, CO_EINVAL, "CIFAR with %d classes: expected 10 or 100", nclasses);
    size_t n;
    co_status st = check_batch(buf, len, name, nclasses, &n, err);
    if (st) return st;
    co_dataset *d = new_images(n, nclasses, name, err);
    if (!d) return err ? err->code : CO_ENOMEM;
    fill(d, 0, buf, n, nclasses);
    *out = d;
    return CO_OK;
}

enum { CIFAR_MAX_FILES = 5 };

/* The batch files of a split; returns how many. */
static int batch_files(const char *dir, int nclasses, int train, char paths[CIFAR_MAX_FILES][4200])
{
    if (nclasses == 100) {
        snprintf(paths[0], 4200, "%s/%s", dir, train ? "train.bin" : "test.bin");
        return 1;
    }
    if (!train) {
        snprintf(paths[0], 4200, "%s/test_batch.bin", dir);
        return 1;
    }
    for (int i = 0; i < CIFAR_MAX_FILES; i++) snprintf(paths[i], 4200, "%s/data_batch_%d.bin", dir, i + 1);
    return CIFAR_MAX_FILES;
}

int co_cifar_dir_has(const char *dir, int nclasses, int train)
{
    char paths[CIFAR_MAX_FILES][4200];
    batch_files(dir, nclasses, train, paths);
    return co_data_file_exists(paths[0]);
}

co_status co_cifar_load_dir(const char *dir, int nclasses, int train, co_dataset **out, co_error *err)
{
    *out = NULL;
    if (nclasses != 10 && nclasses != 100)
        return co_error_set(err, CO_EINVAL, "CIFAR with %d classes: expected 10 or 100", nclasses);
    char paths[CIFAR_MAX_FILES][4200];
    int nfiles = batch_files(dir, nclasses, train, paths);
    unsigned char *bufs[CIFAR_MAX_FILES] = {0};
    size_t lens[CIFAR_MAX_FILES], counts[CIFAR_MAX_FILES], total = 0;
    co_status st = CO_OK;
    /* Every file is checked before the float copy is allocated, so a bad last batch costs
     * no more than the raw bytes. */
    for (int i = 0; i < nfiles && st == CO_OK; i++) {
        if (!co_data_file_exists(paths[i])) {
            st = co_error_set(err, CO_ENOTFOUND, "%s: not found (CIFAR-%d %s split)", paths[i], nclasses,
                              train ? "training" : "test");
            break;
        }
        st = co_data_read_file(paths[i], CO_DATA_MAX_FILE_BYTES, &bufs[i], &lens[i], err);
        if (st == CO_OK) st = check_batch(bufs[i], lens[i], paths[i], nclasses, &counts[i], err);
        if (st == CO_OK) total += counts[i];
    }
    co_dataset *d = NULL;
    if (st == CO_OK) {
        d = new_images(total, nclasses, dir, err);
        if (!d) st = err ? err->code : CO_ENOMEM;
    }
    if (st == CO_OK) {
        size_t first = 0;
        for (int i = 0; i < nfiles; i++) {
            fill(d, first, bufs[i], counts[i], nclasses);
            first += counts[i];
        }
        *out = d;
    }
    for (int i = 0; i < nfiles; i++) free(bufs[i]);
    return st;
}

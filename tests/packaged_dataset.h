/* Checks a packaged dataset (installed by scripts/fetch-data.sh) against its published
 * facts: sample counts, per-class counts, first labels and pixel statistics. A dataset
 * that is not installed makes the test exit 77, which ctest reports as skipped. */
#ifndef CO_TEST_PACKAGED_DATASET_H
#define CO_TEST_PACKAGED_DATASET_H

#include "curvopt.h"
#include "test_util.h"

typedef struct packaged_facts {
    const char *name;
    int n[2];               /* train, test */
    int class_counts[2][10];
    int first_label[2];
    double mean, std;       /* training pixels, on the [0, 1] scale */
} packaged_facts;

static int check_packaged(const packaged_facts *f)
{
    /* Only the installed location counts here, not a user's override. */
    unsetenv("CURVOPT_DATA_DIR");
    for (int split = 0; split < 2; split++) {
        co_error e = {0};
        co_dataset *d = NULL;
        co_status st = co_dataset_load(f->name, NULL, split == 0, &d, &e);
        if (st == CO_ENOTFOUND && split == 0) {
            printf("SKIP: %s is not installed: %s\n", f->name, e.msg);
            return 77;
        }
        CHECK(st == CO_OK, "%s split %d: %s", f->name, split, e.msg);
        if (!d) continue;
        CHECK(d->n == f->n[split] && d->x_dim == 784 && d->c == 1 && d->h == 28 && d->w == 28 && d->nclasses == 10,
              "%s: %d samples of %dx%dx%d", f->name, d->n, d->c, d->h, d->w);
        int counts[10] = {0}, bad_labels = 0;
        for (int i = 0; i < d->n; i++) {
            int y = (int)d->y[i];
            if (y < 0 || y > 9 || (float)y != d->y[i]) bad_labels++;
            else counts[y]++;
        }
        CHECK(bad_labels == 0, "%s: %d labels outside 0..9", f->name, bad_labels);
        for (int c = 0; c < 10; c++)
            CHECK(counts[c] == f->class_counts[split][c], "%s split %d class %d: %d samples, expected %d", f->name,
                  split, c, counts[c], f->class_counts[split][c]);
        CHECK(d->y[0] == (float)f->first_label[split], "%s: first label %g, expected %d", f->name, d->y[0],
              f->first_label[split]);
        if (split == 0) {
            double s = 0, s2 = 0, lo = 1, hi = 0;
            size_t total = (size_t)d->n * d->x_dim;
            for (size_t i = 0; i < total; i++) {
                s += d->x[i];
                s2 += (double)d->x[i] * d->x[i];
                lo = d->x[i] < lo ? d->x[i] : lo;
                hi = d->x[i] > hi ? d->x[i] : hi;
            }
            double mean = s / total, std = sqrt(s2 / total - mean * mean);
            printf("%s: %d training images, pixel mean %.4f std %.4f, range [%g, %g]\n", f->name, d->n, mean, std, lo,
                   hi);
            CHECK(lo == 0 && hi == 1, "%s: pixel range [%g, %g], expected [0, 1]", f->name, lo, hi);
            CHECK_CLOSE(mean, f->mean, 1e-3, "training pixel mean");
            CHECK_CLOSE(std, f->std, 1e-3, "training pixel std");
        }
        co_dataset_free(d);
    }
    return co_test_finish();
}

#endif

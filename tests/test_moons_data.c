/* make_moons' construction, splits, StandardScaler, the minibatch loader, schedules. */
#include "test_util.h"

#include <curvopt.h>

static void test_moons(void)
{
    for (int n = 9; n <= 10; n++) {
        co_dataset *d = co_make_moons(n * 100 + 1, 0.0, 5, NULL);
        int ones = 0, sorted = 1;
        for (int i = 0; i < d->n; i++) {
            double x = d->x[2 * i], y = d->x[2 * i + 1];
            ones += d->y[i] == 1.0f;
            if (i > 0 && d->y[i] < d->y[i - 1]) sorted = 0;
            if (d->y[i] == 0.0f) {
                CHECK(fabs(hypot(x, y) - 1) < 1e-6 && y >= -1e-6, "outer point (%g, %g) off the upper unit circle", x, y);
            } else {
                CHECK(fabs(hypot(x - 1, y - 0.5) - 1) < 1e-6 && y <= 0.5 + 1e-6,
                      "inner point (%g, %g) off the lower circle around (1, 0.5)", x, y);
            }
        }
        CHECK(ones == d->n - d->n / 2, "%d inner points of %d", ones, d->n);
        CHECK(!sorted, "labels not shuffled");
        co_dataset_free(d);
    }
    /* Noise 0.2: the distance from the curve has a spread near 0.2. */
    co_dataset *clean = co_make_moons(4000, 0.0, 6, NULL), *noisy = co_make_moons(4000, 0.2, 6, NULL);
    double s = 0;
    for (int i = 0; i < 8000; i++) s += pow(noisy->x[i] - clean->x[i], 2);
    double sd = sqrt(s / 8000);
    CHECK(fabs(sd - 0.2) < 0.01, "noise std %.4f, expected 0.2", sd);
    /* The same seen without the clean set: a point's distance from its own circle has, to
     * fourth order in the noise, a mean square of s^2 - s^4/4, a root mean square of 0.199;
     * the sampling error of 4000 points is about 0.002. */
    double r2 = 0;
    for (int i = 0; i < 4000; i++) {
        double x = noisy->x[2 * i], y = noisy->x[2 * i + 1];
        double r = noisy->y[i] == 0.0f ? hypot(x, y) : hypot(x - 1, y - 0.5);
        r2 += (r - 1) * (r - 1);
    }
    double rms = sqrt(r2 / 4000);
    CHECK(rms > 0.185 && rms < 0.215, "distance from the circles: root mean square %.4f, expected ~0.199", rms);
    printf("noise 0.2: displacement std %.4f, distance from the circles rms %.4f\n", sd, rms);
    co_dataset *again = co_make_moons(4000, 0.2, 6, NULL), *other = co_make_moons(4000, 0.2, 7, NULL);
    CHECK(memcmp(again->x, noisy->x, 8000 * sizeof(float)) == 0, "same seed, different data");
    CHECK(memcmp(other->x, noisy->x, 8000 * sizeof(float)) != 0, "different seed, same data");
    co_dataset_free(clean);
    co_dataset_free(noisy);
    co_dataset_free(again);
    co_dataset_free(other);
    co_error err;
    CHECK(co_make_moons(1, 0.2, 0, &err) == NULL && err.code == CO_EINVAL, "1 sample accepted");
    CHECK(co_make_moons(10, -1, 0, &err) == NULL && err.code == CO_EINVAL, "negative noise accepted");
}

static void test_split_and_scaler(void)
{
    /* scikit-learn's train_test_split(test_size=f): n_test = ceil(f * n) in double, so
     * 0.07 * 100 = 7.000000000000001 gives 8. */
    const struct {
        int n;
        double frac;
        int n_test;
    } sizes[] = {{1001, 0.3, 301}, {1000, 0.3, 300}, {10, 0.25, 3}, {10, 0.2, 2},
                 {7, 0.5, 4},      {3, 0.1, 1},      {100, 0.07, 8}, {200, 0.35, 70}};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int n = sizes[c].n;
        co_dataset *d = co_make_moons(n, 0.2, 1, NULL), *tr, *te;
        /* Tag each sample so the parts can be traced back. */
        for (int i = 0; i < n; i++) d->x[2 * i] = (float)i;
        CHECK(co_dataset_split(d, sizes[c].frac, 2, &tr, &te, NULL) == CO_OK, "split");
        CHECK(te->n == sizes[c].n_test && tr->n == n - sizes[c].n_test, "n=%d frac=%g: %d train / %d test, expected %d test",
              n, sizes[c].frac, tr->n, te->n, sizes[c].n_test);
        int *seen = calloc((size_t)n, sizeof *seen), bad = 0, labels_bad = 0;
        for (int i = 0; i < tr->n; i++) {
            int id = (int)tr->x[2 * i];
            seen[id]++;
            labels_bad += tr->y[i] != d->y[id] || tr->x[2 * i + 1] != d->x[2 * id + 1];
        }
        for (int i = 0; i < te->n; i++) {
            int id = (int)te->x[2 * i];
            seen[id]++;
            labels_bad += te->y[i] != d->y[id] || te->x[2 * i + 1] != d->x[2 * id + 1];
        }
        for (int i = 0; i < n; i++) bad += seen[i] != 1;
        CHECK(bad == 0, "n=%d: %d samples missing or duplicated across the split", n, bad);
        CHECK(labels_bad == 0, "n=%d: %d samples lost their label or features in the split", n, labels_bad);
        free(seen);
        /* The same seed splits the same way; another seed differently. */
        co_dataset *tr2, *te2;
        co_dataset_split(d, sizes[c].frac, 2, &tr2, &te2, NULL);
        CHECK(memcmp(te->x, te2->x, (size_t)te->n * 2 * sizeof(float)) == 0, "n=%d: split not a function of the seed", n);
        co_dataset_free(tr2);
        co_dataset_free(te2);
        if (n >= 100) {
            co_dataset_split(d, sizes[c].frac, 3, &tr2, &te2, NULL);
            CHECK(memcmp(te->x, te2->x, (size_t)te->n * 2 * sizeof(float)) != 0, "n=%d: seeds 2 and 3 split alike", n);
            co_dataset_free(tr2);
            co_dataset_free(te2);
        }
        co_dataset_free(tr);
        co_dataset_free(te);
        co_dataset_free(d);
    }
    co_dataset *d = co_make_moons(10, 0.2, 1, NULL), *tr, *te;
    co_error err;
    CHECK(co_dataset_split(d, 0.0, 2, &tr, &te, &err) == CO_EINVAL && !tr && !te, "test fraction 0 accepted");
    CHECK(co_dataset_split(d, 1.0, 2, &tr, &te, &err) == CO_EINVAL, "test fraction 1 accepted");
    CHECK(co_dataset_split(d, 0.95, 2, &tr, &te, &err) == CO_EINVAL, "an empty training part accepted");
    co_dataset_free(d);

    /* StandardScaler fitted on the training part: that part has mean 0 and population std 1
     * per feature; the test part is moved by the training statistics; a constant feature
     * keeps scale 1. */
    d = co_make_moons(500, 0.2, 3, NULL);
    co_dataset_split(d, 0.3, 4, &tr, &te, NULL);
    co_dataset *te_raw = co_dataset_subset(te, (int[]){0, 1}, 2, NULL);
    co_scaler sc = {0};
    CHECK(co_scaler_fit(&sc, tr, NULL) == CO_OK, "fit");
    co_scaler_apply(&sc, tr);
    co_scaler_apply(&sc, te);
    for (int j = 0; j < 2; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < tr->n; i++) m += tr->x[2 * i + j];
        m /= tr->n;
        for (int i = 0; i < tr->n; i++) v += pow(tr->x[2 * i + j] - m, 2);
        CHECK(fabs(m) < 1e-6 && fabs(sqrt(v / tr->n) - 1) < 1e-5, "feature %d standardised: mean %.3g std %.7f", j, m,
              sqrt(v / tr->n));
        for (int i = 0; i < 2; i++)
            CHECK_CLOSE(te->x[2 * i + j], (te_raw->x[2 * i + j] - sc.mean[j]) / sc.scale[j], 1e-6,
                        "test part moved by the training statistics");
    }
    co_scaler_free(&sc);
    co_dataset_free(te_raw);
    co_dataset_free(tr);
    co_dataset_free(te);
    for (int i = 0; i < d->n; i++) d->x[2 * i + 1] = 3.0f; /* a constant feature */
    CHECK(co_scaler_fit(&sc, d, NULL) == CO_OK, "fit");
    CHECK(sc.scale[1] == 1.0 && sc.mean[1] == 3.0, "constant feature: mean %g scale %g, expected 3 and 1", sc.mean[1],
          sc.scale[1]);
    co_scaler_apply(&sc, d);
    int nonzero = 0;
    for (int i = 0; i < d->n; i++) nonzero += d->x[2 * i + 1] != 0.0f;
    CHECK(nonzero == 0, "a constant feature became %d non-zero values", nonzero);
    co_scaler_free(&sc);
    co_dataset_free(d);
    d = co_dataset_new(0, 2, 1, NULL);
    co_scaler empty = {0};
    co_error err2;
    CHECK(co_scaler_fit(&empty, d, &err2) == CO_EINVAL && !empty.mean && !empty.scale,
          "fit on no samples: not refused, or it left allocations behind");
    co_dataset_free(d);
}

/* One epoch's sample order; returns the number of batches and the last one's size. */
static int epoch_order(co_loader *l, int *order, int n, int *last)
{
    co_loader_start_epoch(l);
    int k = 0, b, batches = 0;
    while ((b = co_loader_next(l)) > 0) {
        for (int i = 0; i < b; i++) {
            int id = (int)l->xb[2 * i];
            CHECK(l->yb[i] == l->data->y[id], "sample %d travelled without its label", id);
            if (k < n) order[k] = id;
            k++;
        }
        batches++;
        *last = b;
    }
    CHECK(k == n, "an epoch yielded %d samples of %d", k, n);
    return batches;
}

static void test_loader(void)
{
    enum { N = 103 };
    co_dataset *d = co_make_moons(N, 0.1, 1, NULL);
    for (int i = 0; i < d->n; i++) d->x[2 * i] = (float)i;
    co_loader l;
    CHECK(co_loader_init(&l, d, 10, 1, 9, NULL) == CO_OK, "loader");
    int orders[3][N];
    for (int e = 0; e < 3; e++) {
        int last = 0, batches = epoch_order(&l, orders[e], N, &last);
        int count[N] = {0}, bad = 0;
        for (int i = 0; i < N; i++) count[orders[e][i]]++;
        for (int i = 0; i < N; i++) bad += count[i] != 1;
        CHECK(bad == 0, "epoch %d: %d samples not seen exactly once", e, bad);
        CHECK(batches == 11 && last == 3, "%d batches, last of %d (expected 11, 3)", batches, last);
        CHECK(co_loader_next(&l) == 0, "the loader goes on past the end of the epoch");
    }
    CHECK(memcmp(orders[0], orders[1], sizeof orders[0]) != 0 && memcmp(orders[1], orders[2], sizeof orders[0]) != 0,
          "the order did not change between epochs");
    int sorted = 1;
    for (int i = 1; i < N; i++) sorted &= orders[0][i] > orders[0][i - 1];
    CHECK(!sorted, "shuffled epoch in the original order");
    /* The same seed replays every epoch's order; another seed gives another order. */
    co_loader l2;
    co_loader_init(&l2, d, 10, 1, 9, NULL);
    int replay[N], last;
    for (int e = 0; e < 3; e++) {
        epoch_order(&l2, replay, N, &last);
        CHECK(memcmp(replay, orders[e], sizeof replay) == 0, "epoch %d's order is not a function of the seed", e);
    }
    co_loader_free(&l2);
    co_loader_init(&l2, d, 10, 1, 10, NULL);
    epoch_order(&l2, replay, N, &last);
    CHECK(memcmp(replay, orders[0], sizeof replay) != 0, "seeds 9 and 10 give the same order");
    co_loader_free(&l2);
    /* Without shuffling: the dataset's order; a batch larger than the set: one batch. */
    co_loader_init(&l2, d, 1000, 0, 9, NULL);
    int batches = epoch_order(&l2, replay, N, &last);
    int in_order = 1;
    for (int i = 0; i < N; i++) in_order &= replay[i] == i;
    CHECK(in_order && batches == 1 && last == N, "unshuffled, batch 1000: %d batches, last %d, in order %d", batches,
          last, in_order);
    co_loader_free(&l2);
    co_error err;
    CHECK(co_loader_init(&l2, d, 0, 1, 9, &err) == CO_EINVAL, "batch 0 accepted");
    co_loader_free(&l);
    co_dataset_free(d);
}

static void test_schedules(void)
{
    co_schedule s;
    CHECK(co_schedule_parse(&s, "constant", 10, NULL) == CO_OK, "parse constant");
    CHECK(co_schedule_scale(&s, 0, 0) == 1.0 && co_schedule_scale(&s, 9, 12345) == 1.0, "constant");
    CHECK(co_schedule_parse(&s, "", 10, NULL) == CO_OK && co_schedule_scale(&s, 5, 5) == 1.0, "empty is constant");
    /* torch MultiStepLR(milestones=[81, 122], gamma=0.1): epochs 0..80 at 1, 81..121 at 0.1,
     * from 122 at 0.01. */
    CHECK(co_schedule_parse(&s, "step:81,122:0.1", 164, NULL) == CO_OK, "parse step");
    CHECK(co_schedule_scale(&s, 0, 0) == 1.0 && co_schedule_scale(&s, 80, 0) == 1.0 &&
              fabs(co_schedule_scale(&s, 81, 0) - 0.1) < 1e-15 && fabs(co_schedule_scale(&s, 121, 0) - 0.1) < 1e-15 &&
              fabs(co_schedule_scale(&s, 122, 0) - 0.01) < 1e-15 && fabs(co_schedule_scale(&s, 163, 0) - 0.01) < 1e-15,
          "MultiStepLR semantics");
    CHECK(co_schedule_parse(&s, "step:3", 10, NULL) == CO_OK && co_schedule_scale(&s, 2, 0) == 1.0 &&
              fabs(co_schedule_scale(&s, 3, 0) - 0.1) < 1e-15,
          "step's default gamma is torch's 0.1");
    CHECK(co_schedule_parse(&s, "step:2,5:0.5", 10, NULL) == CO_OK && co_schedule_scale(&s, 4, 0) == 0.5 &&
              co_schedule_scale(&s, 5, 0) == 0.25,
          "step with gamma 0.5");
    /* CosineAnnealingLR(T_max = total epochs, eta_min = MIN * lr). */
    CHECK(co_schedule_parse(&s, "cosine:0.1", 10, NULL) == CO_OK, "parse cosine");
    int cos_bad = 0;
    for (int e = 0; e <= 10; e++) cos_bad += fabs(co_schedule_scale(&s, e, 0) - (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * e / 10)))) > 1e-12;
    CHECK(cos_bad == 0 && co_schedule_scale(&s, 0, 0) == 1.0, "cosine:0.1 off the formula at %d epochs", cos_bad);
    CHECK(co_schedule_parse(&s, "cosine", 4, NULL) == CO_OK && fabs(co_schedule_scale(&s, 2, 0) - 0.5) < 1e-15 &&
              fabs(co_schedule_scale(&s, 4, 0)) < 1e-15,
          "cosine to 0");
    /* invsqrt: 1/sqrt(t) with t the 1-based optimizer step. */
    CHECK(co_schedule_parse(&s, "invsqrt", 10, NULL) == CO_OK, "parse invsqrt");
    CHECK(co_schedule_scale(&s, 0, 0) == 1.0 && fabs(co_schedule_scale(&s, 0, 3) - 0.5) < 1e-15 &&
              fabs(co_schedule_scale(&s, 7, 99) - 0.1) < 1e-15,
          "invsqrt");
    /* Linear warm-up over the first N steps, (t+1)/N, then the schedule itself. */
    CHECK(co_schedule_parse(&s, "constant+warmup:4", 10, NULL) == CO_OK && co_schedule_scale(&s, 0, 0) == 0.25 &&
              co_schedule_scale(&s, 0, 2) == 0.75 && co_schedule_scale(&s, 0, 3) == 1.0 &&
              co_schedule_scale(&s, 0, 100) == 1.0,
          "warm-up");
    CHECK(co_schedule_parse(&s, "step:1:0.5+warmup:2", 10, NULL) == CO_OK && co_schedule_scale(&s, 1, 0) == 0.25 &&
              co_schedule_scale(&s, 1, 1) == 0.5,
          "warm-up multiplies the step schedule");
    const char *bad[] = {"wiggle",          "step:",     "step:10,x",     "step:10:2",          "step:0",
                         "step:10:0",       "step:10:",  "step:-3",       "cosine:2",           "cosine:-0.1",
                         "cosine:",         "cosinex",   "invsqrtx",      "constant+warmup:-1", "constant+foo",
                         "constant+warmup:", "constant+warmup:3x", "constant:1", "step:10,", "step:10,,20",
                         "step: 10",        "step:+10",  "step:10,+20"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        co_error err = {0};
        CHECK(co_schedule_parse(&s, bad[i], 10, &err) == CO_EINVAL && err.msg[0], "'%s' accepted", bad[i]);
    }
}

int main(void)
{
    test_moons();
    test_split_and_scaler();
    test_loader();
    test_schedules();
    return co_test_finish();
}

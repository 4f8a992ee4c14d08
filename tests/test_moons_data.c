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
    co_dataset *d = co_make_moons(1001, 0.2, 1, NULL), *tr, *te;
    /* Tag each sample so the parts can be traced back. */
    for (int i = 0; i < d->n; i++) d->x[2 * i] = (float)i;
    CHECK(co_dataset_split(d, 0.3, 2, &tr, &te, NULL) == CO_OK, "split");
    CHECK(te->n == 301 && tr->n == 700, "sizes %d/%d, expected ceil(0.3 * 1001) = 301 test", tr->n, te->n);
    static int seen[1001];
    for (int i = 0; i < tr->n; i++) seen[(int)tr->x[2 * i]]++;
    for (int i = 0; i < te->n; i++) seen[(int)te->x[2 * i]]++;
    int bad = 0;
    for (int i = 0; i < 1001; i++) bad += seen[i] != 1;
    CHECK(bad == 0, "%d samples missing or duplicated across the split", bad);
    co_dataset_free(tr);
    co_dataset_free(te);
    co_dataset_free(d);
    d = co_make_moons(500, 0.2, 3, NULL);
    for (int i = 0; i < d->n; i++) d->x[2 * i + 1] = 3.0f; /* a constant feature */
    co_scaler sc = {0};
    CHECK(co_scaler_fit(&sc, d, NULL) == CO_OK, "fit");
    CHECK(sc.scale[1] == 1.0, "constant feature scale %g, expected 1", sc.scale[1]);
    co_scaler_apply(&sc, d);
    double m = 0, v = 0;
    for (int i = 0; i < d->n; i++) m += d->x[2 * i];
    m /= d->n;
    for (int i = 0; i < d->n; i++) v += pow(d->x[2 * i] - m, 2);
    CHECK(fabs(m) < 1e-6 && fabs(sqrt(v / d->n) - 1) < 1e-5, "standardised mean %.3g std %.6f", m, sqrt(v / d->n));
    co_scaler_free(&sc);
    co_dataset_free(d);
}

static void test_loader(void)
{
    co_dataset *d = co_make_moons(103, 0.1, 1, NULL);
    for (int i = 0; i < d->n; i++) d->x[2 * i] = (float)i;
    co_loader l;
    CHECK(co_loader_init(&l, d, 10, 1, 9, NULL) == CO_OK, "loader");
    int first_order[103], second_order[103];
    for (int e = 0; e < 2; e++) {
        co_loader_start_epoch(&l);
        int count[103] = {0}, k = 0, b, batches = 0, last = 0;
        while ((b = co_loader_next(&l)) > 0) {
            for (int i = 0; i < b; i++) {
                int id = (int)l.xb[2 * i];
                count[id]++;
                (e ? second_order : first_order)[k++] = id;
            }
            batches++;
            last = b;
        }
        int bad = 0;
        for (int i = 0; i < 103; i++) bad += count[i] != 1;
        CHECK(bad == 0 && k == 103, "epoch %d: %d samples not seen exactly once", e, bad);
        CHECK(batches == 11 && last == 3, "%d batches, last of %d (expected 11, 3)", batches, last);
    }
    CHECK(memcmp(first_order, second_order, sizeof first_order) != 0, "the order did not change between epochs");
    co_loader l2;
    co_loader_init(&l2, d, 10, 1, 9, NULL);
    co_loader_start_epoch(&l2);
    co_loader_next(&l2);
    CHECK((int)l2.xb[0] == first_order[0] && (int)l2.xb[2] == first_order[1], "the order is not a function of the seed");
    co_loader_free(&l);
    co_loader_free(&l2);
    co_dataset_free(d);
}

static void test_schedules(void)
{
    co_schedule s;
    CHECK(co_schedule_parse(&s, "step:81,122:0.1", 164, NULL) == CO_OK, "parse step");
    CHECK(co_schedule_scale(&s, 80, 0) == 1.0 && fabs(co_schedule_scale(&s, 81, 0) - 0.1) < 1e-15 &&
              fabs(co_schedule_scale(&s, 122, 0) - 0.01) < 1e-15,
          "MultiStepLR semantics");
    CHECK(co_schedule_parse(&s, "cosine:0.1", 10, NULL) == CO_OK, "parse cosine");
    CHECK(co_schedule_scale(&s, 0, 0) == 1.0 && fabs(co_schedule_scale(&s, 5, 0) - 0.55) < 1e-12 &&
              fabs(co_schedule_scale(&s, 10, 0) - 0.1) < 1e-12,
          "cosine");
    CHECK(co_schedule_parse(&s, "invsqrt", 10, NULL) == CO_OK && fabs(co_schedule_scale(&s, 0, 3) - 0.5) < 1e-15,
          "invsqrt at step 4");
    CHECK(co_schedule_parse(&s, "constant+warmup:4", 10, NULL) == CO_OK && co_schedule_scale(&s, 0, 0) == 0.25 &&
              co_schedule_scale(&s, 0, 3) == 1.0 && co_schedule_scale(&s, 0, 100) == 1.0,
          "warm-up");
    const char *bad[] = {"wiggle", "step:", "step:10,x", "step:10:2", "cosine:2", "constant+warmup:-1", "constant+foo"};
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

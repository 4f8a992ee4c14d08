/* Memory-bandwidth efficiency of the element-wise optimizers over 16M parameters.
 *
 * Bytes are counted as STREAM counts them: every array element the kernel must read once
 * plus every element it must write once.
 *   adam / adamw : read p, g, m, v; write p, m, v           28 B/param
 *   rmsprop      : read p, g, v;    write p, v (defaults)   20 B/param
 *   sgd momentum : read p, g, buf;  write p, buf            20 B/param
 *   triad        : a[i] = b[i] + s*c[i] in double, read b, c; write a   24 B/element
 * The triad runs here, OpenMP-parallel with the same thread count as the optimizers,
 * over three 128 MiB arrays (4x the 32 MiB L3), in two forms:
 *   - plain stores (STREAM as compiled by most people). Its stores go to an array it does
 *     not read, so a write-allocate cache really moves 32 B/element; STREAM still counts 24.
 *   - non-temporal (streaming) stores, which bypass write-allocate: 24 B/element real.
 * The optimizers write only arrays they have just read, so their counted bytes are their
 * real traffic. The reference "machine bandwidth" is therefore the higher of the two
 * real-traffic triad figures (non-temporal at 24 B, plain at 32 B); "% of triad" is also
 * printed against plain STREAM-convention triad, which flatters the optimizers.
 * On this machine kernels that write back the lines they just read (every optimizer here)
 * sustain more than either triad, so a third reference is printed: the in-place update
 * a[i] += s*b[i] (read a, b; write a: 24 B/element, all real), the ceiling for that
 * access pattern.
 *
 * Usage: bench_optim_bandwidth [threads]   (default 1, or $BENCH_THREADS) */
#include "timing.h"
#include "curvopt.h"
#include "core/alloc.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

#define NPARAM ((size_t)16 << 20)
#define TRIAD_N ((size_t)16 << 20)
#define REPS 25
#define WARMUP 3

static double triad_seconds(double *a, const double *b, const double *c, size_t n, double s)
{
    double t0 = bench_now();
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
    return bench_now() - t0;
}

/* The same triad with streaming stores; a must be 64-byte aligned and n a multiple of 8. */
static double triad_nt_seconds(double *a, const double *b, const double *c, size_t n, double s)
{
    double t0 = bench_now();
#if defined(__AVX512F__)
    const __m512d vs = _mm512_set1_pd(s);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 8)
        _mm512_stream_pd(a + i, _mm512_add_pd(_mm512_loadu_pd(b + i), _mm512_mul_pd(vs, _mm512_loadu_pd(c + i))));
#elif defined(__AVX__)
    const __m256d vs = _mm256_set1_pd(s);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 4)
        _mm256_stream_pd(a + i, _mm256_add_pd(_mm256_loadu_pd(b + i), _mm256_mul_pd(vs, _mm256_loadu_pd(c + i))));
#else
    const __m128d vs = _mm_set1_pd(s);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 2)
        _mm_stream_pd(a + i, _mm_add_pd(_mm_loadu_pd(b + i), _mm_mul_pd(vs, _mm_loadu_pd(c + i))));
#endif
    _mm_sfence();
    return bench_now() - t0;
}

static double update_seconds(double *a, const double *b, const double *c, size_t n, double s)
{
    (void)c;
    double t0 = bench_now();
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) a[i] += s * b[i];
    return bench_now() - t0;
}

typedef double (*triad_fn)(double *, const double *, const double *, size_t, double);

/* Median and best seconds over REPS runs after WARMUP. */
static void time_triad(triad_fn f, double *a, const double *b, const double *c, double *med, double *best)
{
    double tt[REPS];
    for (int r = 0; r < WARMUP + REPS; r++) {
        double s = f(a, b, c, TRIAD_N, 3.0);
        if (r >= WARMUP) tt[r - WARMUP] = s;
    }
    bench_consume(a[TRIAD_N / 3]);
    *best = bench_min(tt, REPS);
    *med = bench_median(tt, REPS);
}

typedef struct {
    const char *name, *hparams, *label;
    double bytes_per_param;
} case_t;

/* Fastest seconds seen so far for the three reference kernels. */
typedef struct {
    double plain, nt, update;
} refs_t;

static void time_refs(refs_t *best, double *a, const double *b, const double *c)
{
    double med, mn;
    time_triad(triad_seconds, a, b, c, &med, &mn);
    if (mn < best->plain) best->plain = mn;
    time_triad(triad_nt_seconds, a, b, c, &med, &mn);
    if (mn < best->nt) best->nt = mn;
    time_triad(update_seconds, a, b, c, &med, &mn);
    if (mn < best->update) best->update = mn;
}

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));

    double *a = aligned_alloc(64, TRIAD_N * sizeof(double)), *b = aligned_alloc(64, TRIAD_N * sizeof(double)),
           *c = aligned_alloc(64, TRIAD_N * sizeof(double));
    float *p = co_falloc(NPARAM), *g = co_falloc(NPARAM);
    if (!a || !b || !c || !p || !g) return 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < TRIAD_N; i++) {
        a[i] = 0;
        b[i] = 1.0 + (double)(i % 7);
        c[i] = 2.0 - (double)(i % 5);
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < NPARAM; i++) {
        p[i] = 0.01f * (float)((i * 2654435761u) % 1000) - 5.0f;
        g[i] = 1e-3f * (float)((i * 40503u) % 2001) - 1.0f;
    }
    /* The machine is shared: the references run before and after the optimizers and the
     * fastest run of each counts, as STREAM reports its best rate. */
    refs_t ref = {1e30, 1e30, 1e30};
    time_refs(&ref, a, b, c);

    co_group grp = {.name = "flat", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {p}, .grad = {g},
                    .size = {NPARAM}};
    const case_t cases[] = {
        {"adam", "lr=1e-3", "adam", 28},
        {"adamw", "lr=1e-3,weight_decay=1e-2", "adamw", 28},
        {"rmsprop", "lr=1e-2", "rmsprop", 20},
        {"sgd", "lr=1e-2,momentum=0.9", "sgd_momentum", 20},
    };
    enum { NCASES = sizeof cases / sizeof cases[0] };
    double best[NCASES], med[NCASES];
    for (int k = 0; k < NCASES; k++) {
        co_error err = {0};
        co_optim *o = co_optim_new(cases[k].name, &grp, 1, cases[k].hparams, 0, &err);
        if (!o) {
            fprintf(stderr, "bench_optim_bandwidth: %s\n", err.msg);
            return 1;
        }
        double ts[REPS];
        for (int r = 0; r < WARMUP + REPS; r++) {
            double t0 = bench_now();
            co_optim_step(o, NULL, &err);
            double t1 = bench_now();
            if (r >= WARMUP) ts[r - WARMUP] = t1 - t0;
        }
        best[k] = bench_min(ts, REPS);
        med[k] = bench_median(ts, REPS);
        co_optim_free(o);
    }
    bench_consume(p[NPARAM / 2]);
    time_refs(&ref, a, b, c);

    double elems = (double)TRIAD_N;
    double stream_gbs = 24 * elems / ref.plain * 1e-9;
    double plain_real = 32 * elems / ref.plain * 1e-9, nt_real = 24 * elems / ref.nt * 1e-9;
    double ref_gbs = plain_real > nt_real ? plain_real : nt_real;
    double update_gbs = 24 * elems / ref.update * 1e-9;
    printf("threads %d (best of %d runs, before and after): triad plain stores %.2f GB/s (STREAM 24 B/elem; "
           "%.2f GB/s real at 32 B), non-temporal %.2f GB/s (24 B real) -> reference %.2f GB/s; "
           "in-place update %.2f GB/s\n",
           threads, 2 * REPS, stream_gbs, plain_real, nt_real, ref_gbs, update_gbs);
    printf("RESULT triad stream threads=%d gbs=%.3f gbs_real=%.3f nt_gbs=%.3f ref_gbs=%.3f update_gbs=%.3f\n",
           threads, stream_gbs, plain_real, nt_real, ref_gbs, update_gbs);
    for (int k = 0; k < NCASES; k++) {
        double bytes = cases[k].bytes_per_param * (double)NPARAM;
        double gbs = bytes / best[k] * 1e-9;
        printf("threads %d: %-13s %7.2f ms/step best (%.2f median), %6.2f GB/s = %5.1f%% of reference, "
               "%5.1f%% of STREAM-convention triad, %5.1f%% of in-place update\n",
               threads, cases[k].label, best[k] * 1e3, med[k] * 1e3, gbs, 100 * gbs / ref_gbs,
               100 * gbs / stream_gbs, 100 * gbs / update_gbs);
        printf("RESULT optim_bw %s threads=%d ms=%.4f ms_median=%.4f gbs=%.3f pct_ref=%.2f pct_stream=%.2f "
               "pct_update=%.2f\n",
               cases[k].label, threads, best[k] * 1e3, med[k] * 1e3, gbs, 100 * gbs / ref_gbs,
               100 * gbs / stream_gbs, 100 * gbs / update_gbs);
    }
    free(a);
    free(b);
    free(c);
    free(p);
    free(g);
    return 0;
}

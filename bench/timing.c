#include "timing.h"

#include <cblas.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_min(const double *v, size_t n)
{
    double m = v[0];
    for (size_t i = 1; i < n; i++)
        if (v[i] < m) m = v[i];
    return m;
}

int bench_set_threads(int n)
{
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

int bench_threads_arg(int argc, char **argv)
{
    const char *s = argc > 1 ? argv[1] : getenv("BENCH_THREADS");
    int n = s ? atoi(s) : 1;
    return n > 0 ? n : 1;
}

static volatile double sink;
void bench_consume(double x) { sink += x; }

double bench_core_handoff_ns(void)
{
    if (omp_get_max_threads() < 2) return 0;
    enum { ROUNDS = 30000, REPEATS = 7 };
    static _Atomic long turn;
    double best = 0;
    /* The least of a few repeats: a preempted thread only ever adds time. */
    for (int rep = 0; rep < REPEATS; rep++) {
        double ns = 0;
        atomic_store(&turn, 0);
#pragma omp parallel num_threads(2)
        {
            long me = omp_get_thread_num();
#pragma omp barrier
            double t0 = omp_get_wtime();
            for (long i = 0; i < ROUNDS; i++) {
                while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + me) {
                }
                atomic_store_explicit(&turn, 2 * i + me + 1, memory_order_release);
            }
            if (me == 0) ns = (omp_get_wtime() - t0) / (2.0 * ROUNDS) * 1e9;
        }
        if (rep == 0 || ns < best) best = ns;
    }
    return best;
}

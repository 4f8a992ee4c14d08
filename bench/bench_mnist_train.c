/* Training throughput of the MNIST classifier (preset quasi-adam-mnist: LeNet-5 sized,
 * 61,706 parameters) at batch 256: forward, softmax cross-entropy, backward, Adam step,
 * through the public API, as the training loop runs it (no K-FAC capture, so the
 * convolutions take their direct path). Reported: images/s of the median step, and the
 * GFLOP/s that represents against the machine's SGEMM peak, measured here with the same
 * thread count (cblas_sgemm on square matrices, best of several).
 *
 * FLOPs counted: 2 per multiply-add of the convolutions and linear layers, forward, weight
 * gradient and input gradient (none for the first layer's input, which the model never
 * computes); pools, activations, bias terms, the loss and Adam are not counted. Per image:
 *   conv1 1->6 5x5 p2 on 28x28: 6 * 25 * 784   = 117,600 MAC
 *   conv2 6->16 5x5 on 14x14:  16 * 150 * 100 = 240,000 MAC
 *   fc 400-120-84-10:                            58,920 MAC
 * forward 416,520 MAC; backward 2 x 416,520 - 117,600 (conv1 has no input gradient);
 * in all 2 x (3 x 416,520 - 117,600) = 2,264,400 FLOP per image.
 *
 * Batches cycle through 16 fixed random batches (uniform [0,1) pixels, random labels):
 * only the shapes matter for time, and 16 x 0.8 MB keeps the input from sitting in L2.
 *
 * Usage: bench_mnist_train [threads [steps]]   (default 1, or $BENCH_THREADS; 300 steps).
 * steps = 0 measures the SGEMM peak only; a negative count runs -steps training steps
 * without it (for profiling the step alone). */
#include "timing.h"
#include "curvopt.h"
#include "core/alloc.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#define BATCH 256
#define NBATCH 16
#define WARMUP 30
#define STEPS 300
#define MAX_STEPS 100000
#define FLOP_PER_IMAGE 2264400.0

/* Best GFLOP/s of cblas_sgemm C = A B on n x n matrices. */
static double sgemm_peak(int n, int reps)
{
    size_t nn = (size_t)n * n;
    float *a = co_falloc(nn), *b = co_falloc(nn), *c = co_falloc(nn);
    if (!a || !b || !c) return 0;
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = bench_now() - t0;
        if (r > 0 && t < best) best = t; /* the first run warms the pages and BLAS's buffers */
    }
    bench_consume(c[nn / 2]);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = bench_set_threads(bench_threads_arg(argc, argv));
    int steps = argc > 2 ? atoi(argv[2]) : STEPS, want_peak = steps >= 0;
    if (steps < 0) steps = -steps;
    if (steps > MAX_STEPS) steps = MAX_STEPS;
    co_error err = {0};
    /* Before any BLAS call: OpenBLAS's threads keep spinning for a while after one. */
    if (threads > 1) {
        double ns = bench_core_handoff_ns();
        printf("cache line handed between threads 0 and 1: %.0f ns one way\n", ns);
        printf("RESULT core_handoff curvopt threads=%d ns=%.1f\n", threads, ns);
    }

    double peak = 0;
    for (int n = 2048; want_peak && n <= 4096; n *= 2) {
        double g = sgemm_peak(n, n == 2048 ? 5 : 3);
        printf("sgemm %d x %d, %d thread(s): %.1f GFLOP/s\n", n, n, threads, g);
        if (g > peak) peak = g;
    }
    if (want_peak) printf("RESULT sgemm_peak curvopt threads=%d gflops=%.2f\n", threads, peak);
    if (steps == 0) return 0;

    co_model *model = co_model_new("quasi-adam-mnist", &err);
    if (!model) {
        fprintf(stderr, "bench_mnist_train: %s\n", err.msg);
        return 1;
    }
    co_model_init(model, 0);
    int ng = co_model_ngroups(model);
    co_group groups[16];
    co_model_groups(model, groups);
    co_optim *opt = co_optim_new("adam", groups, ng, "lr=1e-3", 0, &err);
    if (!opt) {
        fprintf(stderr, "bench_mnist_train: %s\n", err.msg);
        return 1;
    }
    co_model_set_capture(model, 0);
    int in = co_model_in_size(model), out = co_model_out_size(model);
    float *x = co_falloc((size_t)NBATCH * BATCH * in), *y = co_falloc((size_t)NBATCH * BATCH);
    float *dout = co_falloc((size_t)BATCH * out);
    double *t = malloc((size_t)steps * sizeof *t);
    if (!x || !y || !dout || !t) return 1;
    co_rng r;
    co_rng_seed(&r, 1, CO_STREAM_DATA);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH * in; i++) x[i] = (float)co_rng_uniform(&r);
    for (size_t i = 0; i < (size_t)NBATCH * BATCH; i++) y[i] = (float)co_rng_below(&r, (uint64_t)out);

    double loss_sum = 0, cpu0 = 0;
    for (int s = 0; s < WARMUP + steps; s++) {
        if (s == WARMUP) cpu0 = bench_cpu();
        int b = s % NBATCH;
        const float *xb = x + (size_t)b * BATCH * in, *yb = y + (size_t)b * BATCH;
        double t0 = bench_now();
        const float *o = co_model_forward(model, xb, BATCH, 1, &err);
        double loss = co_loss(CO_LOSS_CROSS_ENTROPY, o, yb, BATCH, out, dout);
        co_model_backward(model, dout);
        co_status st = co_optim_step(opt, NULL, &err);
        double t1 = bench_now();
        if (st) {
            fprintf(stderr, "bench_mnist_train: %s\n", err.msg);
            return 1;
        }
        loss_sum += loss;
        if (s >= WARMUP) t[s - WARMUP] = t1 - t0;
    }
    double cpu_ms = (bench_cpu() - cpu0) / steps * 1e3;
    bench_consume(loss_sum);
    double med = bench_median(t, (size_t)steps), mn = bench_min(t, (size_t)steps);
    double ips = BATCH / med, gflops = ips * FLOP_PER_IMAGE * 1e-9;
    printf("quasi-adam-mnist (%zu params) batch %d, adam, %d thread(s): median step %.3f ms (min %.3f), "
           "%.0f images/s, %.1f GFLOP/s (CPU time %.3f ms per step)",
           co_model_param_count(model), BATCH, threads, med * 1e3, mn * 1e3, ips, gflops, cpu_ms);
    if (peak > 0) printf(" = %.0f%% of sgemm peak %.1f", 100 * gflops / peak, peak);
    printf("\nRESULT mnist_train curvopt threads=%d batch=%d step_ms=%.4f step_ms_min=%.4f images_s=%.1f "
           "gflops=%.3f cpu_ms=%.4f\n",
           threads, BATCH, med * 1e3, mn * 1e3, ips, gflops, cpu_ms);
    free(x);
    free(y);
    free(dout);
    free(t);
    co_optim_free(opt);
    co_model_free(model);
    return 0;
}

/* The optimizers' step on the GPU against the device's own copy bandwidth, measured in the
 * same run: a device-to-device copy of 256 MiB, then each method's fused step over
 * 16,777,216 parameters held as one tensor and as 64. Bytes counted per parameter: what the
 * update must read and write (Adam: p, g, m, v read, p, m, v written = 28 bytes), so
 * of_copy is the share of the copy's bandwidth the step reaches. Timed with CUDA events,
 * median of 7 repetitions of 50 steps after 10 warm-ups. bench/torch_cuda_bench.py adam is
 * PyTorch's side.
 *   RESULT cuda_copy d2d device=cuda gbps=...
 *   RESULT cuda_optim <method> device=cuda tensors=<n> us=... gbps=... of_copy=...     */
#include "curvopt.h"
#include "timing.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM (16u << 20)
#define REPS 7
#define STEPS 50

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_cuda_optim: %s: %s\n", what, msg);
    exit(1);
}

static double event_ms(cudaEvent_t a, cudaEvent_t b)
{
    float ms = 0;
    cudaEventSynchronize(b);
    cudaEventElapsedTime(&ms, a, b);
    return ms;
}

static double copy_gbps(void)
{
    size_t bytes = (size_t)64 << 22; /* 256 MiB */
    void *src, *dst;
    if (cudaMalloc(&src, bytes) != cudaSuccess || cudaMalloc(&dst, bytes) != cudaSuccess) die("copy", "cudaMalloc");
    cudaMemset(src, 1, bytes);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 5; i++) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0);
    double ms[REPS];
    for (int r = 0; r < REPS; r++) {
        cudaEventRecord(a, 0);
        for (int i = 0; i < 20; i++) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(b, 0);
        ms[r] = event_ms(a, b) / 20;
    }
    cudaFree(src);
    cudaFree(dst);
    return 2.0 * (double)bytes / (bench_median(ms, REPS) * 1e-3) / 1e9;
}

static void bench_method(const char *name, const char *hparams, int ntensors, double bytes_per_param, double copy)
{
    co_error err = {0};
    size_t per = NPARAM / (size_t)ntensors;
    co_group *groups = calloc((size_t)ntensors, sizeof *groups);
    float *host = malloc(per * sizeof *host);
    for (size_t i = 0; i < per; i++) host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int t = 0; t < ntensors; t++) {
        groups[t].kind = CO_GROUP_DENSE;
        groups[t].ntensors = 1;
        groups[t].size[0] = per;
        groups[t].param[0] = co_device_alloc(CO_DEVICE_CUDA, per * sizeof(float), &err);
        groups[t].grad[0] = co_device_alloc(CO_DEVICE_CUDA, per * sizeof(float), &err);
        if (!groups[t].param[0] || !groups[t].grad[0]) die(name, err.msg);
        co_device_copy(groups[t].param[0], CO_DEVICE_CUDA, host, CO_DEVICE_CPU, per * sizeof(float), NULL);
        co_device_copy(groups[t].grad[0], CO_DEVICE_CUDA, host, CO_DEVICE_CPU, per * sizeof(float), NULL);
    }
    co_optim *o = co_optim_new_on(CO_DEVICE_CUDA, name, groups, ntensors, hparams, NULL, 0, &err);
    if (!o) die(name, err.msg);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 10; i++)
        if (co_optim_step(o, NULL, &err) != CO_OK) die(name, err.msg);
    double ms[REPS];
    for (int r = 0; r < REPS; r++) {
        cudaEventRecord(a, 0);
        for (int i = 0; i < STEPS; i++) co_optim_step(o, NULL, &err);
        cudaEventRecord(b, 0);
        ms[r] = event_ms(a, b) / STEPS;
    }
    if (co_device_synchronize(CO_DEVICE_CUDA, &err) != CO_OK) die(name, err.msg);
    double step_ms = bench_median(ms, REPS);
    double gbps = bytes_per_param * NPARAM / (step_ms * 1e-3) / 1e9;
    printf("%-8s %-40s %2d tensors: %8.1f us/step  %7.0f GB/s  %5.1f%% of the copy\n", name, hparams, ntensors,
           step_ms * 1e3, gbps, 100 * gbps / copy);
    printf("RESULT cuda_optim %s device=cuda tensors=%d us=%.2f gbps=%.1f of_copy=%.4f\n", name, ntensors,
           step_ms * 1e3, gbps, gbps / copy);
    co_optim_free(o);
    for (int t = 0; t < ntensors; t++) {
        co_device_free(CO_DEVICE_CUDA, groups[t].param[0]);
        co_device_free(CO_DEVICE_CUDA, groups[t].grad[0]);
    }
    free(groups);
    free(host);
}

int main(void)
{
    co_error err;
    if (co_cuda_check(&err) != CO_OK) {
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double copy = copy_gbps();
    printf("%s: device-to-device copy %.0f GB/s (bytes read + written)\n", prop.name, copy);
    printf("RESULT cuda_copy d2d device=cuda gpu=\"%s\" gbps=%.1f\n", prop.name, copy);
    static const struct {
        const char *name, *hparams;
        double bytes;
    } m[] = {
        {"adam", "lr=1e-3", 28},
        {"adamw", "lr=1e-3", 28},
        {"sgd", "lr=1e-2,momentum=0.9", 20},
        {"rmsprop", "lr=1e-3", 20},
        {"adagrad", "lr=1e-2", 20},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        bench_method(m[i].name, m[i].hparams, 1, m[i].bytes, copy);
        bench_method(m[i].name, m[i].hparams, 64, m[i].bytes, copy);
    }
    return 0;
}

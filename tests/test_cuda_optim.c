/* The optimizers on a GPU against the same optimizers on the CPU (docs/cuda.md): every method
 * with a CUDA step, in each of its variants, takes 100 steps on both devices from the same
 * parameters, the gradients computed on the host from each device's own parameters; the
 * parameters must agree BIT FOR BIT after every step (the kernels call the CPU's element
 * updates with the same roundings, torch_ops.h; tolerance 0). Then the state moves: saved on
 * the GPU and loaded on the CPU (and the reverse) mid-run, both runs continue in agreement.
 * Tensors span several of the kernel's chunks and have odd sizes; one optimizer has more
 * groups than one launch takes. Without a CUDA build or a GPU the test says why and skips. */
#include "test_util.h"

#include "curvopt.h"

#include <stdint.h>

#define STEPS 100

/* Sizes that cross the kernel's 16384-element chunks, odd tails, a single element. */
static const size_t SIZES[] = {40000, 17, 1, 16384, 333};
#define NTENSORS (sizeof SIZES / sizeof SIZES[0])

typedef struct {
    co_device dev;
    int ngroups;
    co_group *groups;
    float **p, **g; /* per tensor, on dev */
    size_t *n;
    int ntensors;
} world;

/* ngroups groups sharing the tensors SIZES round-robin (2 groups: 3 and 2 tensors; 3: 2, 2, 1). */
static world world_new(co_device dev, int ngroups, int ntensors, const size_t *sizes)
{
    world w = {dev, ngroups, calloc((size_t)ngroups, sizeof(co_group)), calloc((size_t)ntensors, sizeof(float *)),
               calloc((size_t)ntensors, sizeof(float *)), calloc((size_t)ntensors, sizeof(size_t)), ntensors};
    for (int i = 0; i < ntensors; i++) {
        w.n[i] = sizes[i];
        w.p[i] = co_device_alloc(dev, sizes[i] * sizeof(float), NULL);
        w.g[i] = co_device_alloc(dev, sizes[i] * sizeof(float), NULL);
        co_group *gr = &w.groups[i % ngroups];
        gr->kind = CO_GROUP_DENSE;
        gr->param[gr->ntensors] = w.p[i];
        gr->grad[gr->ntensors] = w.g[i];
        gr->size[gr->ntensors] = sizes[i];
        gr->ntensors++;
    }
    return w;
}

static void world_free(world *w)
{
    for (int i = 0; i < w->ntensors; i++) {
        co_device_free(w->dev, w->p[i]);
        co_device_free(w->dev, w->g[i]);
    }
    free(w->groups);
    free(w->p);
    free(w->g);
    free(w->n);
}

static void put(world *w, int i, const float *host)
{
    co_device_copy(w->p[i], w->dev, host, CO_DEVICE_CPU, w->n[i] * sizeof(float), NULL);
}

static void get(const world *w, int i, float *host)
{
    co_device_copy(host, CO_DEVICE_CPU, w->p[i], w->dev, w->n[i] * sizeof(float), NULL);
}

/* A gradient that depends on the parameters (so a difference would grow) and on the step,
 * with a wide range of magnitudes and signs; computed on the host for both devices. */
static void gradient(const float *p, float *g, size_t n, int step, int tensor)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(step * 131 + tensor);
        h ^= h >> 29;
        double noise = (double)(h % 2001) / 1000.0 - 1.0;
        g[i] = (float)(0.5 * p[i] + noise * pow(10.0, (double)(int)(h % 5) - 2.0));
    }
}

static void set_grads(world *w, int step, float *host_p, float *host_g)
{
    for (int i = 0; i < w->ntensors; i++) {
        get(w, i, host_p);
        gradient(host_p, host_g, w->n[i], step, i);
        co_device_copy(w->g[i], w->dev, host_g, CO_DEVICE_CPU, w->n[i] * sizeof(float), NULL);
    }
}

/* First tensor and element where the two worlds' parameters differ, or -1. */
static int first_difference(const world *a, const world *b, float *ha, float *hb, size_t *at, double *diff)
{
    for (int i = 0; i < a->ntensors; i++) {
        get(a, i, ha);
        get(b, i, hb);
        for (size_t k = 0; k < a->n[i]; k++)
            if (memcmp(&ha[k], &hb[k], sizeof(float)) != 0) {
                *at = k;
                *diff = (double)ha[k] - (double)hb[k];
                return i;
            }
    }
    return -1;
}

/* The two runs being compared and the host buffers of their comparison. */
typedef struct {
    world cpu, gpu;
    co_optim *oc, *og;
    float *hp, *hg, *hq; /* parameters, gradients, the other side's parameters */
} pair;

static void pair_free(pair *r)
{
    co_optim_free(r->oc);
    co_optim_free(r->og);
    world_free(&r->cpu);
    world_free(&r->gpu);
    free(r->hp);
    free(r->hg);
    free(r->hq);
}

typedef struct {
    const char *name, *hparams;
    double clip;
} variant;

static const variant VARIANTS[] = {
    {"sgd", "lr=0.01", 0},
    {"sgd", "lr=0.01,momentum=0.9,weight_decay=1e-3", 0},
    {"sgd", "lr=0.01,momentum=0.9,dampening=0.1", 0},
    {"sgd", "lr=0.01,momentum=0.9,nesterov=1,maximize=1", 0},
    {"adagrad", "lr=0.05,lr_decay=1e-3,initial_accumulator_value=0.1,weight_decay=1e-2", 0},
    {"rmsprop", "lr=1e-3", 0},
    {"rmsprop", "lr=1e-3,centered=1,momentum=0.9,weight_decay=1e-3", 0},
    {"rmsprop", "lr=1e-3,centered=1", 0.5},
    {"adam", "lr=1e-3", 0},
    {"adam", "lr=1e-3,weight_decay=1e-2,beta2=0.9999", 1.0},
    {"adamw", "lr=1e-3", 0},
    {"amsgrad", "lr=1e-3,maximize=1", 0},
    /* ogr-asgd: each safeguard alone and together (with L2, maximize and clipping), faithful=1
     * switching them off, the other hyperparameters moved. */
    {"ogr-asgd", "", 0},
    {"ogr-asgd", "faithful=1,rate_growth=1.5,rate_max=2", 0},
    {"ogr-asgd", "rate_growth=1.5", 0},
    {"ogr-asgd", "rate_max=2,rate_growth=3,weight_decay=1e-2,maximize=1", 0.5},
    {"ogr-asgd", "lr=0.1,beta=0.99,sigma_theta0=0.1,sigma_g0=0.5,eps=1e-6,delta=1e-2", 0},
    /* ogr-asgdc: rate_max on (its default) and off, with and without rate_growth; var_theta
     * 0 from the start (sigma_theta0=0: lambda 0, an infinite noise term, no step). */
    {"ogr-asgdc", "", 0},
    {"ogr-asgdc", "faithful=1", 0},
    {"ogr-asgdc", "rate_max=0", 0},
    {"ogr-asgdc", "rate_max=0,rate_growth=1.2", 0},
    {"ogr-asgdc", "rate_growth=2,weight_decay=1e-3,gamma=1,lambda_min=1e-4", 1.0},
    {"ogr-asgdc", "sigma_theta0=0,rate_growth=2", 0},
};

static void compare(const variant *v, int ngroups)
{
    size_t most = 0;
    for (size_t i = 0; i < NTENSORS; i++) most = SIZES[i] > most ? SIZES[i] : most;
    float *hp = malloc(most * sizeof *hp), *hg = malloc(most * sizeof *hg), *hq = malloc(most * sizeof *hq);
    world cpu = world_new(CO_DEVICE_CPU, ngroups, NTENSORS, SIZES);
    world gpu = world_new(CO_DEVICE_CUDA, ngroups, NTENSORS, SIZES);
    for (int i = 0; i < (int)NTENSORS; i++) {
        for (size_t k = 0; k < SIZES[i]; k++) hp[k] = (float)sin(0.37 * (double)k + i) * (k % 7 == 0 ? 100.f : 1.f);
        put(&cpu, i, hp);
        put(&gpu, i, hp);
    }
    co_error err = {0};
    co_optim *oc = co_optim_new_on(CO_DEVICE_CPU, v->name, cpu.groups, ngroups, v->hparams, NULL, 7, &err);
    co_optim *og = co_optim_new_on(CO_DEVICE_CUDA, v->name, gpu.groups, ngroups, v->hparams, NULL, 7, &err);
    CHECK(oc && og, "%s %s: %s", v->name, v->hparams, err.msg);
    if (!oc || !og) goto done;
    co_optim_set_clip(oc, v->clip);
    co_optim_set_clip(og, v->clip);
    int bad = -1;
    for (int step = 0; step < STEPS && bad < 0; step++) {
        /* Halfway, the state changes device: GPU -> CPU -> GPU, through the saved bytes. */
        if (step == STEPS / 2) {
            size_t len = co_optim_state_size(og);
            void *buf = malloc(len);
            CHECK(co_optim_state_to_buffer(og, buf, len, &err) == CO_OK, "save on GPU: %s", err.msg);
            co_optim *moved = co_optim_new_on(CO_DEVICE_CPU, v->name, cpu.groups, ngroups, v->hparams, NULL, 7, &err);
            CHECK(moved && co_optim_state_from_buffer(moved, buf, len, &err) == CO_OK, "load on CPU: %s", err.msg);
            size_t len2 = moved ? co_optim_state_size(moved) : 0;
            void *buf2 = malloc(len2 ? len2 : 1);
            CHECK(moved && co_optim_state_to_buffer(moved, buf2, len2, &err) == CO_OK, "save on CPU: %s", err.msg);
            CHECK(len == len2 && memcmp(buf, buf2, len) == 0, "%s: the state's bytes changed on the way", v->name);
            CHECK(co_optim_state_from_buffer(og, buf2, len2, &err) == CO_OK, "load on GPU: %s", err.msg);
            /* The CPU run continues with the optimizer that came from the GPU. */
            if (moved) {
                co_optim_free(oc);
                oc = moved;
            }
            free(buf);
            free(buf2);
        }
        set_grads(&cpu, step, hq, hg);
        set_grads(&gpu, step, hq, hg);
        co_status sc = co_optim_step(oc, NULL, &err);
        co_status sg = co_optim_step(og, NULL, &err);
        CHECK(sc == CO_OK && sg == CO_OK, "%s step %d: %s", v->name, step, err.msg);
        CHECK(co_device_synchronize(CO_DEVICE_CUDA, &err) == CO_OK, "%s step %d: %s", v->name, step, err.msg);
        size_t at;
        double diff;
        bad = first_difference(&cpu, &gpu, hp, hq, &at, &diff);
        CHECK(bad < 0, "%s %s (%d groups, clip %g): step %d: tensor %d element %zu differs by %.3g", v->name,
              v->hparams, ngroups, v->clip, step + 1, bad, bad < 0 ? 0 : at, bad < 0 ? 0 : diff);
    }
    if (bad < 0) printf("ok %-8s %-72s clip %-3g %d groups: %d steps bit-identical\n", v->name, v->hparams, v->clip,
                        ngroups, STEPS);
done:
    pair_free(&(pair){cpu, gpu, oc, og, hp, hg, hq});
}

/* More groups than one launch holds (CO_MT_GROUPS_PER_LAUNCH = 512): several windows. */
static void many_groups(void)
{
    enum { N = 1100 };
    size_t sizes[N];
    for (int i = 0; i < N; i++) sizes[i] = 1 + (size_t)(i * 37 % 300);
    float *hp = malloc(400 * sizeof *hp), *hg = malloc(400 * sizeof *hg), *hq = malloc(400 * sizeof *hq);
    world cpu = world_new(CO_DEVICE_CPU, N, N, sizes), gpu = world_new(CO_DEVICE_CUDA, N, N, sizes);
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < sizes[i]; k++) hp[k] = (float)cos((double)k + i);
        put(&cpu, i, hp);
        put(&gpu, i, hp);
    }
    co_error err = {0};
    co_optim *oc = co_optim_new_on(CO_DEVICE_CPU, "adam", cpu.groups, N, "lr=1e-2", NULL, 1, &err);
    co_optim *og = co_optim_new_on(CO_DEVICE_CUDA, "adam", gpu.groups, N, "lr=1e-2", NULL, 1, &err);
    CHECK(oc && og, "adam over %d groups: %s", N, err.msg);
    /* Per-group hyperparameters must reach their own group in every window. */
    for (int g = 0; g < N && oc && og; g += 97) {
        co_optim_set(oc, g, "lr", 1e-3 * (1 + g % 5), NULL);
        co_optim_set(og, g, "lr", 1e-3 * (1 + g % 5), NULL);
    }
    int bad = -1;
    for (int step = 0; step < 5 && oc && og && bad < 0; step++) {
        set_grads(&cpu, step, hq, hg);
        set_grads(&gpu, step, hq, hg);
        CHECK(co_optim_step(oc, NULL, &err) == CO_OK && co_optim_step(og, NULL, &err) == CO_OK, "%s", err.msg);
        size_t at;
        double diff;
        bad = first_difference(&cpu, &gpu, hp, hq, &at, &diff);
        CHECK(bad < 0, "adam, %d groups: step %d: tensor %d differs", N, step + 1, bad);
    }
    if (bad < 0) printf("ok adam over %d groups (3 launches a step): bit-identical\n", N);
    pair_free(&(pair){cpu, gpu, oc, og, hp, hg, hq});
}

int main(void)
{
    co_error err = {0};
    float x = 0, dx = 0;
    co_group g = {.name = "w", .kind = CO_GROUP_DENSE, .ntensors = 1, .param = {&x}, .grad = {&dx}, .size = {1}};
    if (co_cuda_check(&err) != CO_OK) {
        /* What a caller meets without a GPU: a clear refusal, never a crash. */
        co_optim *o = co_optim_new_on(CO_DEVICE_CUDA, "adam", &g, 1, NULL, NULL, 0, &err);
        CHECK(o == NULL && err.code == CO_ENOTFOUND && strstr(err.msg, "CUDA"), "refusal: %s", err.msg);
        printf("skipped: %s\n", err.msg);
        return co_test_failed ? 1 : 77;
    }
    /* A method without a CUDA step is refused with the list of those that have one. */
    co_optim *o = co_optim_new_on(CO_DEVICE_CUDA, "lama-adam", &g, 1, NULL, NULL, 0, &err);
    CHECK(o == NULL && err.code == CO_EINVAL && strstr(err.msg, "adam"), "lama-adam on CUDA: %s", err.msg);
    co_optim_free(o);
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++) {
        /* Not 1: one group holds at most CO_GROUP_MAX_TENSORS (4) of the 5 tensors. */
        compare(&VARIANTS[i], 2);
        compare(&VARIANTS[i], 3);
    }
    many_groups();
    return co_test_finish();
}

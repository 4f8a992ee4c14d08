/* Models on a GPU against the same models on the CPU (docs/cuda.md):
 *  - every layer kind with a CUDA implementation, in a small model per kind: one forward and
 *    one backward of the same batch from the same weights; outputs and every parameter
 *    gradient agree to 1e-3 of the largest value (cuBLAS and cuDNN add in other orders than
 *    the CPU's GEMMs: a sum of ~2e5 terms, conv1's weight gradient at batch 256, can differ by
 *    a few 1e-5 of its size; a max-pool or ReLU near-tie decided the other way moves one
 *    term by ~1e-3);
 *  - a whole short training run (LeNet-5 on synthetic MNIST-shaped data with SGD momentum;
 *    the moons MLP with Adam) on both devices, the same order of minibatches: the final test
 *    losses agree to 0.01 + 5% and the accuracies to 0.03 (rounding differences grow over
 *    hundreds of steps, the trajectories do not have to be the same to the bit);
 *  - the state moved: trained on the GPU, parameters and optimizer state carried to a CPU
 *    model and optimizer, which continue in agreement with the GPU run;
 *  - checkpoints: a GPU run stopped after 2 epochs and resumed from its checkpoint by a fresh
 *    model and optimizer ends with the uninterrupted 4-epoch run's parameters bit for bit (the
 *    GPU path is deterministic: cuDNN's deterministic algorithms, cuBLAS with its own
 *    workspace, our sums in a fixed order).
 * Without a CUDA build or a GPU the test says why and skips. */
#include "test_util.h"

#include "curvopt.h"

#include <unistd.h>

static co_dataset *synthetic(int n, int c, int hw, int classes, uint64_t seed)
{
    co_dataset *d = co_dataset_new(n, c * hw * hw, 1, NULL);
    co_rng r;
    co_rng_seed(&r, seed, CO_STREAM_DATA);
    d->c = c, d->h = hw, d->w = hw, d->nclasses = classes;
    /* Each class a bright blob at its own place plus noise: learnable in a few epochs. */
    for (int i = 0; i < n; i++) {
        int label = (int)co_rng_below(&r, (uint64_t)classes);
        d->y[i] = (float)label;
        for (int k = 0; k < d->x_dim; k++) {
            int px = k % hw, py = (k / hw) % hw;
            int cx = 4 + (label * 7) % (hw - 8), cy = 4 + (label * 3) % (hw - 8);
            double blob = (px - cx) * (px - cx) + (py - cy) * (py - cy) < 16 ? 1.0 : 0.0;
            d->x[(size_t)i * d->x_dim + k] = (float)(blob + 0.3 * co_rng_normal(&r));
        }
    }
    return d;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* The GPU's n floats at dev against the CPU's at ref, to 1e-3 of ref's largest value; returns
 * the difference relative to that. host: n floats of scratch. */
static double agree(const char *spec, const char *what, const float *ref, const float *dev, float *host, size_t n)
{
    co_device_copy(host, CO_DEVICE_CPU, dev, CO_DEVICE_CUDA, n * sizeof(float), NULL);
    double scale = fmax(max_abs(ref, n), 1e-30), d = max_diff(ref, host, n);
    CHECK(d <= 1e-3 * scale, "%s %s: max difference %.3g of %.3g", spec, what, d, scale);
    return d / scale;
}

/* One forward and backward of spec on both devices. */
static void layer_case(const char *spec, int in_size, int batch)
{
    co_error err = {0};
    co_model *cpu = co_model_new(spec, &err), *gpu = co_model_new(spec, &err);
    CHECK(cpu && gpu, "%s: %s", spec, err.msg);
    if (!cpu || !gpu) return;
    co_model_init(cpu, 3);
    co_model_init(gpu, 3);
    CHECK(co_model_to_device(gpu, CO_DEVICE_CUDA, &err) == CO_OK, "%s to cuda: %s", spec, err.msg);
    int out_size = co_model_out_size(cpu);
    size_t nx = (size_t)batch * in_size, ny = (size_t)batch * out_size;
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy), *y_gpu = malloc(ny * sizeof *y_gpu);
    co_rng r;
    co_rng_seed(&r, 11, CO_STREAM_DATA);
    for (size_t i = 0; i < nx; i++) x[i] = (float)co_rng_normal(&r);
    for (size_t i = 0; i < ny; i++) dy[i] = (float)co_rng_normal(&r) / (float)batch;
    float *dx_dev = co_device_alloc(CO_DEVICE_CUDA, nx * sizeof(float), &err);
    float *dy_dev = co_device_alloc(CO_DEVICE_CUDA, ny * sizeof(float), &err);
    co_device_copy(dx_dev, CO_DEVICE_CUDA, x, CO_DEVICE_CPU, nx * sizeof(float), &err);
    co_device_copy(dy_dev, CO_DEVICE_CUDA, dy, CO_DEVICE_CPU, ny * sizeof(float), &err);
    const float *y_cpu = co_model_forward(cpu, x, batch, 1, &err);
    const float *y_dev = co_model_forward(gpu, dx_dev, batch, 1, &err);
    CHECK(y_cpu && y_dev, "%s forward: %s", spec, err.msg);
    if (y_cpu && y_dev) {
        double d = agree(spec, "forward", y_cpu, y_dev, y_gpu, ny);
        co_model_backward(cpu, dy);
        co_model_backward(gpu, dy_dev);
        int ng = co_model_ngroups(cpu);
        co_group *gc = calloc((size_t)ng, sizeof *gc), *gg = calloc((size_t)ng, sizeof *gg);
        co_model_groups(cpu, gc);
        co_model_groups(gpu, gg);
        double worst = 0;
        for (int g = 0; g < ng; g++)
            for (int k = 0; k < gc[g].ntensors; k++) {
                size_t n = gc[g].size[k];
                float *h = malloc(n * sizeof *h);
                char what[64];
                snprintf(what, sizeof what, "gradient of group %d tensor %d", g, k);
                worst = fmax(worst, agree(spec, what, gc[g].grad[k], gg[g].grad[k], h, n));
                free(h);
            }
        /* Eval mode after that training step: batch norm's running statistics (the unbiased
         * variance) were updated alike. */
        const float *e_cpu = co_model_forward(cpu, x, batch, 0, &err);
        const float *e_dev = co_model_forward(gpu, dx_dev, batch, 0, &err);
        CHECK(e_cpu && e_dev, "%s eval forward: %s", spec, err.msg);
        if (e_cpu && e_dev) agree(spec, "eval forward", e_cpu, e_dev, y_gpu, ny);
        /* Batch norm's running statistics (the unbiased variance: 4% apart from the biased one
         * for the flat layer's 24 values per channel) come back with the model. */
        size_t ns = co_model_state_size(cpu);
        if (ns) {
            float *sc = malloc(ns), *sg = malloc(ns);
            co_model_get_state(cpu, sc);
            co_model_get_state(gpu, sg); /* read from the GPU */
            size_t nf = ns / sizeof(float);
            double ss = fmax(max_abs(sc, nf), 1e-30), sd = max_diff(sc, sg, nf);
            CHECK(sd <= 1e-4 * ss, "%s running statistics: max difference %.3g of %.3g", spec, sd, ss);
            CHECK(co_model_to_device(gpu, CO_DEVICE_CPU, &err) == CO_OK, "%s back to the CPU: %s", spec, err.msg);
            float *back = malloc(ns);
            co_model_get_state(gpu, back);
            CHECK(memcmp(back, sg, ns) == 0, "%s: the running statistics changed on the way back", spec);
            free(back);
            free(sc);
            free(sg);
        }
        printf("ok layers %-60s forward %.1e, gradients %.1e of their scale\n", spec, d, worst);
        free(gc);
        free(gg);
    }
    co_device_free(CO_DEVICE_CUDA, dx_dev);
    co_device_free(CO_DEVICE_CUDA, dy_dev);
    free(x);
    free(dy);
    free(y_gpu);
    co_model_free(cpu);
    co_model_free(gpu);
}

typedef struct {
    co_model *m;
    co_optim *o;
} trainer;

static trainer trainer_new(const char *spec, co_device dev, const char *opt, const char *hp)
{
    co_error err = {0};
    trainer t = {co_model_new(spec, &err), NULL};
    CHECK(t.m != NULL, "%s: %s", spec, err.msg);
    co_model_init(t.m, 5);
    if (dev == CO_DEVICE_CUDA) CHECK(co_model_to_device(t.m, dev, &err) == CO_OK, "%s", err.msg);
    int ng = co_model_ngroups(t.m);
    co_group *g = calloc((size_t)ng, sizeof *g);
    co_model_groups(t.m, g);
    t.o = co_optim_new_on(dev, opt, g, ng, hp, NULL, 5, &err);
    CHECK(t.o != NULL, "%s on %d: %s", opt, (int)dev, err.msg);
    free(g);
    return t;
}

/* ckpt: the checkpoint file (NULL: none), written at epoch ends and resumed from when resume. */
static co_train_result run_ckpt(trainer *t, const co_dataset *tr, const co_dataset *te, co_loss_kind loss, int epochs,
                                int batch, uint64_t seed, const char *ckpt, int resume)
{
    co_train_config cfg;
    co_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = batch;
    cfg.seed = seed;
    cfg.loss = loss;
    cfg.checkpoint_path = ckpt;
    cfg.resume = resume;
    co_train_result r;
    co_error err = {0};
    CHECK(co_train(t->m, t->o, tr, te, &cfg, &r, &err) == CO_OK, "train: %s", err.msg);
    return r;
}

static co_train_result run(trainer *t, const co_dataset *tr, const co_dataset *te, co_loss_kind loss, int epochs,
                           int batch, uint64_t seed)
{
    return run_ckpt(t, tr, te, loss, epochs, batch, seed, NULL, 0);
}

static void checkpoint_resume(void)
{
    co_dataset *tr = synthetic(640, 1, 28, 10, 5), *te = synthetic(128, 1, 28, 10, 6);
    char path[] = "/tmp/curvopt-cuda-ckpt-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    unlink(path);
    trainer whole = trainer_new("quasi-adam-mnist", CO_DEVICE_CUDA, "sgd", "lr=0.05,momentum=0.9");
    trainer first = trainer_new("quasi-adam-mnist", CO_DEVICE_CUDA, "sgd", "lr=0.05,momentum=0.9");
    trainer rest = trainer_new("quasi-adam-mnist", CO_DEVICE_CUDA, "sgd", "lr=0.05,momentum=0.9");
    co_train_result a = run_ckpt(&whole, tr, te, CO_LOSS_CROSS_ENTROPY, 4, 64, 13, NULL, 0);
    co_train_result b = run_ckpt(&first, tr, te, CO_LOSS_CROSS_ENTROPY, 2, 64, 13, path, 0);
    co_train_result c = run_ckpt(&rest, tr, te, CO_LOSS_CROSS_ENTROPY, 4, 64, 13, path, 1);
    CHECK(c.resumed_from_epoch == 3 && c.epochs_run == 4, "resumed from epoch %d, %d epochs", c.resumed_from_epoch,
          c.epochs_run);
    size_t np = co_model_param_count(whole.m);
    float *pa = malloc(np * sizeof *pa), *pc = malloc(np * sizeof *pc);
    co_model_get_params(whole.m, pa);
    co_model_get_params(rest.m, pc);
    int same = memcmp(pa, pc, np * sizeof *pa) == 0;
    CHECK(same && co_optim_steps(whole.o) == co_optim_steps(rest.o),
          "resumed run: parameters %s the uninterrupted run's, steps %llu vs %llu", same ? "equal" : "differ from",
          (unsigned long long)co_optim_steps(rest.o), (unsigned long long)co_optim_steps(whole.o));
    if (same) printf("ok checkpoint after 2 epochs, resumed to 4: bit-identical to the uninterrupted run\n");
    unlink(path);
    free(pa);
    free(pc);
    co_train_result_free(&a);
    co_train_result_free(&b);
    co_train_result_free(&c);
    trainer *all[] = {&whole, &first, &rest};
    for (int i = 0; i < 3; i++) {
        co_optim_free(all[i]->o);
        co_model_free(all[i]->m);
    }
    co_dataset_free(tr);
    co_dataset_free(te);
}

static void compare_runs(const char *what, const co_train_result *a, const co_train_result *b)
{
    double dl = fabs(a->final_test_loss - b->final_test_loss);
    double da = fabs(a->final_test_acc - b->final_test_acc);
    CHECK(dl <= 0.01 + 0.05 * fabs(a->final_test_loss) && da <= 0.03, "%s: CPU loss %.6f acc %.4f, GPU loss %.6f acc %.4f", what, a->final_test_loss,
          a->final_test_acc, b->final_test_loss, b->final_test_acc);
    printf("ok training %-44s CPU loss %.5f acc %.4f | GPU loss %.5f acc %.4f (%.2f s vs %.2f s)\n", what,
           a->final_test_loss, a->final_test_acc, b->final_test_loss, b->final_test_acc, a->seconds, b->seconds);
}

/* The same training run on both devices, compared (compare_runs). */
static void both_devices(const char *what, const char *spec, const char *opt, const char *hp, const co_dataset *tr,
                         const co_dataset *te, co_loss_kind loss, int epochs, int batch, uint64_t seed)
{
    trainer c = trainer_new(spec, CO_DEVICE_CPU, opt, hp), g = trainer_new(spec, CO_DEVICE_CUDA, opt, hp);
    co_train_result a = run(&c, tr, te, loss, epochs, batch, seed), b = run(&g, tr, te, loss, epochs, batch, seed);
    compare_runs(what, &a, &b);
    co_train_result_free(&a);
    co_train_result_free(&b);
    trainer *both[] = {&c, &g};
    for (int i = 0; i < 2; i++) {
        co_optim_free(both[i]->o);
        co_model_free(both[i]->m);
    }
}

static void training(void)
{
    co_dataset *tr = synthetic(2048, 1, 28, 10, 1), *te = synthetic(512, 1, 28, 10, 2);
    trainer c = trainer_new("quasi-adam-mnist", CO_DEVICE_CPU, "sgd", "lr=0.05,momentum=0.9");
    trainer g = trainer_new("quasi-adam-mnist", CO_DEVICE_CUDA, "sgd", "lr=0.05,momentum=0.9");
    co_train_result rc = run(&c, tr, te, CO_LOSS_CROSS_ENTROPY, 3, 64, 9);
    co_train_result rg = run(&g, tr, te, CO_LOSS_CROSS_ENTROPY, 3, 64, 9);
    compare_runs("quasi-adam-mnist, sgd momentum, 3 epochs", &rc, &rg);
    CHECK(rg.final_test_acc > 0.5, "the GPU run did not learn: accuracy %.3f", rg.final_test_acc);
    co_train_result_free(&rc);
    co_train_result_free(&rg);

    /* The state moves: the GPU run's parameters and optimizer state continue on the CPU. */
    size_t np = co_model_param_count(g.m), len = co_optim_state_size(g.o);
    float *params = malloc(np * sizeof *params);
    void *state = malloc(len);
    co_error err = {0};
    co_model_get_params(g.m, params);
    CHECK(co_optim_state_to_buffer(g.o, state, len, &err) == CO_OK, "%s", err.msg);
    trainer moved = trainer_new("quasi-adam-mnist", CO_DEVICE_CPU, "sgd", "lr=0.05,momentum=0.9");
    co_model_set_params(moved.m, params);
    CHECK(co_optim_state_from_buffer(moved.o, state, len, &err) == CO_OK, "GPU state on the CPU: %s", err.msg);
    CHECK(co_optim_steps(moved.o) == co_optim_steps(g.o), "steps %llu vs %llu",
          (unsigned long long)co_optim_steps(moved.o), (unsigned long long)co_optim_steps(g.o));
    co_train_result rm = run(&moved, tr, te, CO_LOSS_CROSS_ENTROPY, 1, 64, 10);
    co_train_result rg2 = run(&g, tr, te, CO_LOSS_CROSS_ENTROPY, 1, 64, 10);
    compare_runs("one more epoch: CPU from the GPU's state", &rm, &rg2);
    co_train_result_free(&rm);
    co_train_result_free(&rg2);
    /* And back: the model leaves the GPU with its parameters. */
    float *on_gpu = malloc(np * sizeof *on_gpu), *back = malloc(np * sizeof *back);
    co_model_get_params(g.m, on_gpu);
    CHECK(co_model_to_device(g.m, CO_DEVICE_CPU, &err) == CO_OK, "%s", err.msg);
    co_model_get_params(g.m, back);
    CHECK(memcmp(on_gpu, back, np * sizeof *back) == 0, "the parameters changed on the way back to the CPU");
    co_optim_free(g.o); /* its slots are on the GPU still: only its groups' buffers went back */
    free(on_gpu);
    free(back);
    free(params);
    free(state);
    co_optim_free(c.o);
    co_optim_free(moved.o);
    co_model_free(c.m);
    co_model_free(g.m);
    co_model_free(moved.m);
    co_dataset_free(tr);
    co_dataset_free(te);

    /* Batch norm and residual blocks inside the captured step. */
    tr = synthetic(1024, 1, 28, 10, 3);
    te = synthetic(256, 1, 28, 10, 4);
    both_devices("bn + residual blocks, sgd momentum, 2 epochs",
                 "in:1x28x28 conv:8:3:p1:nobias bn relu res:8 res:16:s2 gap fc:10", "sgd", "lr=0.05,momentum=0.9", tr,
                 te, CO_LOSS_CROSS_ENTROPY, 2, 64, 11);
    co_dataset_free(tr);
    co_dataset_free(te);

    /* The moons MLP with Adam, batch 32: the CUDA graph path with a short last batch. */
    co_dataset *all = co_make_moons(1000, 0.2, 0, NULL), *mtr, *mte;
    co_dataset_split(all, 0.2, 0, &mtr, &mte, NULL);
    both_devices("moons mlp:2-64-1, adam, 20 epochs", "mlp:2-64-1", "adam", "lr=1e-2", mtr, mte, CO_LOSS_BCE_LOGITS,
                 20, 32, 4);
    co_dataset_free(all);
    co_dataset_free(mtr);
    co_dataset_free(mte);
}

int main(void)
{
    co_error err = {0};
    if (co_cuda_check(&err) != CO_OK) {
        co_model *m = co_model_new("mlp:2-4-1", NULL);
        CHECK(co_model_to_device(m, CO_DEVICE_CUDA, &err) != CO_OK && strstr(err.msg, "CUDA"), "refusal: %s",
              err.msg);
        co_model_free(m);
        printf("skipped: %s\n", err.msg);
        return co_test_failed ? 1 : 77;
    }
    /* A layer without a CUDA implementation is named. */
    co_model *drop = co_model_new("in:1x8x8 conv:4:3 dropout:0.5 flatten fc:2", &err);
    CHECK(drop && co_model_to_device(drop, CO_DEVICE_CUDA, &err) == CO_EINVAL &&
              strstr(err.msg, "no CUDA implementation"),
          "dropout on CUDA: %s", err.msg);
    co_model_free(drop);
    layer_case("mlp:20-32-16-3", 20, 37);
    layer_case("in:20 fc:16 tanh fc:8 sigmoid fc:3", 20, 64);
    layer_case("in:3x17x17 conv:8:5:p2 relu maxpool:2 flatten fc:5", 3 * 17 * 17, 9);
    layer_case("in:2x16x16 conv:6:3:s2:p1 relu conv:4:3:d2 avgpool:2 flatten fc:3", 2 * 16 * 16, 7);
    layer_case("in:1x28x28 conv:6:5:p2 maxpool:2 relu conv:16:5 maxpool:2 relu flatten fc:120 relu fc:84 relu fc:10",
               784, 256);
    layer_case("alexnet-28", 784, 16);
    layer_case("in:3x8x8 conv:8:3:p1:nobias bn relu maxpool:2 flatten fc:16 bn fc:4", 3 * 8 * 8, 24);
    layer_case("in:4x8x8 conv:8:3:p1:nobias bn relu res:8 res:16:s2 gap fc:3", 4 * 8 * 8, 12);
    training();
    checkpoint_resume();
    return co_test_finish();
}

/* Data-parallel training steps under mpirun, and the projection to larger jobs.
 *
 *   mpirun -n N bench_dist [steps [model]]   time per step and its parts, bytes per step
 *                                      (model: quasi-adam-mnist or vgg-28; both by default)
 *   bench_dist --project               one process: the measured inputs of the projection
 *                                      (docs/distributed.md) and its table
 *
 * Steps: the MNIST classifier (preset quasi-adam-mnist, 61,706 parameters) at a global batch
 * of 128 on fixed random images (timing does not need MNIST), one OpenMP thread per rank, for
 * Adam, Quasi-Adam, DA-RMSprop, LAMA-Adam (K = 2) and TSO-ALRA (T_int = 10), and the vgg-28 preset
 * (synchronised batch norm, 1x28x28 inputs too) with Adam: each rank computes
 * its shard and the step goes through the same functions as the training loop
 * (src/train/dist_train.c). Per method: the median step time of rank 0 and the slowest rank's
 * mean; the time inside collectives (communication, including waiting for the other ranks);
 * compute = step - communication; for TSO-ALRA the eigendecomposition time, measured as the
 * time between the factors' arrival (end of the last reduce) and the first broadcast of the
 * roots (one rank: the refresh steps' extra time). Bytes per step: the payload of every
 * collective (what the callers passed) beside the formula, and the bytes this rank sent for
 * the sums beside the algorithm's formula.
 *
 * The machine has 2 cores shared with other jobs: 4 ranks oversubscribe it, so time per step
 * here shows overheads, not speed-up (docs/distributed.md). */
#include "core/alloc.h"
#include "dist/dist_mpi.h"
#include "optim/kfac.h"
#include "train/dist_train.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 128
#define T_INT 10

static double now(void) { return MPI_Wtime(); }

/* ------------------------------------------------------------------ timed collective */

/* Wraps the MPI collective: the eigendecomposition time of a TSO-ALRA refresh is the gap
 * between the last reduce of the factors and the first broadcast of the roots. */
typedef struct {
    co_collective outer;
    const co_collective *inner;
    double reduce_end, eig;
    int after_reduce;
} timed;

static co_status t_allreduce(void *ctx, float *f, size_t nf, double *d, size_t nd, co_error *err)
{
    timed *t = ctx;
    return t->inner->allreduce_sum(t->inner->ctx, f, nf, d, nd, err);
}

static co_status t_reduce(void *ctx, double *d, size_t n, int root, co_error *err)
{
    timed *t = ctx;
    co_status st = t->inner->reduce_sum(t->inner->ctx, d, n, root, err);
    t->reduce_end = now();
    t->after_reduce = 1;
    return st;
}

static co_status t_broadcast(void *ctx, void *buf, size_t bytes, int root, co_error *err)
{
    timed *t = ctx;
    if (t->after_reduce) t->eig += now() - t->reduce_end;
    t->after_reduce = 0;
    return t->inner->broadcast(t->inner->ctx, buf, bytes, root, err);
}

/* ------------------------------------------------------------------ steps */

typedef struct {
    co_shard_batch *shard; /* NULL: one process */
    co_model *model;
    const float *x, *y;
    float *dout;
} step_ctx;

static double eval(void *ctx)
{
    step_ctx *c = ctx;
    if (c->shard) return co_shard_batch_eval(c->shard, c->x, c->y, BATCH);
    const float *out = co_model_forward(c->model, c->x, BATCH, 1, NULL);
    double l = co_loss(CO_LOSS_CROSS_ENTROPY, out, c->y, BATCH, 10, c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static double eval_whole(void *ctx)
{
    step_ctx *c = ctx;
    co_model_set_shard(c->model, 0, 0, NULL);
    const float *out = co_model_forward(c->model, c->x, BATCH, 1, NULL);
    double l = co_loss(CO_LOSS_CROSS_ENTROPY, out, c->y, BATCH, 10, c->dout);
    co_model_backward(c->model, c->dout);
    return l;
}

static int capture(void *ctx, int g, co_capture *out)
{
    step_ctx *c = ctx;
    return c->shard ? co_shard_batch_capture(c->shard, g, out) : co_model_capture(c->model, g, out);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Formula of the allreduce payload per step, and of the refresh's (TSO-ALRA). */
static void factor_sizes(const co_group *groups, int ng, double *tri, double *roots)
{
    *tri = *roots = 0;
    for (int g = 0; g < ng; g++) {
        if (groups[g].kind == CO_GROUP_DENSE) continue;
        double m = groups[g].cols + 1.0, n = groups[g].rows;
        *tri += m * (m + 1) / 2 + n * (n + 1) / 2;
        *roots += 8 * (1 + m) + 4 * m * (m + 1) / 2 + 8 * (1 + n) + 4 * n * (n + 1) / 2;
    }
}

static void bench_method(co_mpi *mpi, const char *model, const char *name, const char *hp, int steps, const float *x,
                         const float *y)
{
    int rank = mpi->coll.rank, P = mpi->coll.size;
    co_error err = {0};
    co_model *m = co_model_new(model, &err);
    co_model_init(m, 1);
    int ng = co_model_ngroups(m);
    co_group *groups = calloc((size_t)ng, sizeof *groups);
    co_model_groups(m, groups);
    co_optim *opt = co_optim_new(name, groups, ng, hp, 1, &err);
    if (!opt) {
        if (rank == 0) fprintf(stderr, "%s: %s\n", name, err.msg);
        return;
    }
    timed tc = {{0}, &mpi->coll, 0, 0, 0};
    tc.outer = (co_collective){&tc, rank, P, t_allreduce, t_reduce, t_broadcast};
    co_shard_batch shard;
    float *dout = co_falloc((size_t)BATCH * 10);
    step_ctx sc = {NULL, m, x, y, dout};
    if (P > 1) {
        co_shard_batch_init(&shard, m, groups, ng, &tc.outer, CO_LOSS_CROSS_ENTROPY, 1, 0, BATCH, &err);
        sc.shard = &shard;
        co_optim_set_collective(opt, &tc.outer);
    }
    int capturing = (co_optim_needs(opt) & CO_NEEDS_CAPTURE) != 0;
    co_model_set_capture(m, capturing);
    if (sc.shard) shard.capturing = capturing;
    co_closure cl = {.ctx = &sc, .eval = eval, .capture = capture, .eval_whole = eval_whole};
    size_t np = co_model_param_count(m);
    int warm = T_INT;
    double *t_step = calloc((size_t)steps, sizeof *t_step), comm = 0, comp = 0, t_refresh = 0, t_other = 0;
    int n_refresh = 0, n_other = 0;
    co_mpi_stats s0 = mpi->stats;
    double eig0 = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) {
            s0 = mpi->stats;
            eig0 = tc.eig;
        }
        co_mpi_stats before = mpi->stats;
        double t0 = now();
        double l = eval(&sc);
        co_status st = co_optim_step(opt, &cl, &err);
        double dt = now() - t0;
        if (st || !isfinite(l)) {
            if (rank == 0) fprintf(stderr, "%s: step %d: %s\n", name, i, st ? err.msg : "non-finite loss");
            break;
        }
        if (i < warm) continue;
        double c = 0;
        for (int k = 0; k < CO_MPI_OPS; k++) c += mpi->stats.seconds[k] - before.seconds[k];
        t_step[i - warm] = dt;
        comm += c;
        comp += dt - c;
        /* TSO-ALRA's roots are due at steps 1, 1 + T_int, ... */
        if ((co_optim_steps(opt) - 1) % T_INT == 0) {
            t_refresh += dt;
            n_refresh++;
        } else {
            t_other += dt;
            n_other++;
        }
    }
    double payload[CO_MPI_OPS], sent = (double)(mpi->stats.sent - s0.sent) / steps, eig = (tc.eig - eig0) / steps;
    for (int k = 0; k < CO_MPI_OPS; k++) payload[k] = (double)(mpi->stats.payload[k] - s0.payload[k]) / steps;
    double mean = 0;
    for (int i = 0; i < steps; i++) mean += t_step[i] / steps;
    qsort(t_step, (size_t)steps, sizeof *t_step, cmp_double);
    double median = t_step[steps / 2], slowest = 0;
    MPI_Reduce(&mean, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    int tso = strcmp(name, "tso-alra") == 0;
    if (tso && P == 1) eig = n_refresh && n_other ? (t_refresh / n_refresh - t_other / n_other) / T_INT : 0;
    double tri, roots;
    factor_sizes(groups, ng, &tri, &roots);
    int lama_k = strstr(name, "lama") ? 2 : 0;
    /* Synchronised batch norm: per layer of C channels, sums of C, C and 2C doubles. */
    double bn_channels = 0;
    for (int g = 0; g < ng; g++)
        if (strcmp(groups[g].name, "batchnorm2d") == 0) bn_channels += (double)groups[g].size[0];
    /* Payload formulas per step: the gradients and the loss; TSO-ALRA's counts (1 + 3 G) every
     * step and its factors (reduce) and roots (broadcast) every T_int steps; LAMA-Adam's probe
     * rows K (G + 1); batch norm's 32 bytes per channel (one evaluation per step: Adam). */
    double f_all = P > 1 ? 4.0 * np + 8 + (tso ? 8.0 * (1 + 3 * ng) : 0) + 8.0 * lama_k * (ng + 1) + 32 * bn_channels
                         : 0;
    double f_red = P > 1 && tso ? 8 * tri / T_INT : 0, f_bc = P > 1 && tso ? roots / T_INT : 0;
    /* Bytes sent for the gradient sum by recursive halving and doubling: 2 (P-1)/P of it. */
    double f_sent = P > 1 ? 2.0 * (P - 1) / P * 4.0 * np : 0;
    if (rank == 0) {
        printf("%s %-11s %d rank(s): step %.2f ms (median, rank 0; slowest rank mean %.2f ms), compute %.2f ms, "
               "communication %.2f ms",
               model, name, P, 1e3 * median, 1e3 * slowest, 1e3 * comp / steps, 1e3 * comm / steps);
        if (tso) printf(", eigendecompositions %.2f ms/step", 1e3 * eig);
        printf("\n            bytes/step: allreduce %.0f (formula %.0f), reduce %.0f (%.0f), broadcast %.0f (%.0f); "
               "sent by rank 0 %.0f (gradient sum alone: %.0f)\n",
               payload[0], f_all, payload[1], f_red, payload[2], f_bc, sent, f_sent);
        printf("RESULT dist %s %s ranks=%d step_ms=%.4f slowest_ms=%.4f compute_ms=%.4f comm_ms=%.4f eig_ms=%.4f "
               "allreduce_B=%.0f allreduce_formula_B=%.0f reduce_B=%.0f reduce_formula_B=%.0f bcast_B=%.0f "
               "bcast_formula_B=%.0f sent_B=%.0f\n",
               model, name, P, 1e3 * median, 1e3 * slowest, 1e3 * comp / steps, 1e3 * comm / steps, 1e3 * eig, payload[0],
               f_all, payload[1], f_red, payload[2], f_bc, sent);
    }
    if (sc.shard) co_shard_batch_free(&shard);
    free(t_step);
    free(dout);
    co_optim_free(opt);
    free(groups);
    co_model_free(m);
}

/* ------------------------------------------------------------------ projection */

typedef struct {
    const char *name;
    size_t params;
    double tri, roots, sum_n3;
    int nf;
    double n[512];    /* K-FAC factor sizes */
    double sample_ms; /* forward + backward per sample, one thread, this machine */
} model_facts;

static double time_sample(co_model *m, int batch)
{
    int in = co_model_in_size(m), out = co_model_out_size(m);
    float *x = co_falloc((size_t)batch * in), *y = co_falloc((size_t)batch), *d = co_falloc((size_t)batch * out);
    co_rng r;
    co_rng_seed(&r, 5, 1);
    for (size_t i = 0; i < (size_t)batch * in; i++) x[i] = (float)co_rng_uniform(&r);
    for (int i = 0; i < batch; i++) y[i] = (float)(i % out);
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        const float *o = co_model_forward(m, x, batch, 1, NULL);
        co_loss(CO_LOSS_CROSS_ENTROPY, o, y, batch, out, d);
        co_model_backward(m, d);
        best = fmin(best, now() - t0);
    }
    free(x);
    free(y);
    free(d);
    return 1e3 * best / batch;
}

/* Seconds per n^3 of one factor's refresh (float eigendecomposition and root), measured. */
static double eig_constant(int n)
{
    co_kfac k;
    co_kfac_init(&k, n, n - 1, 1, NULL);
    co_rng r;
    co_rng_seed(&r, 3, 1);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double v = co_rng_uniform(&r) - 0.5 + (i == j ? n : 0);
            k.A[(size_t)i * n + j] = k.A[(size_t)j * n + i] = v;
            k.B[(size_t)i * n + j] = k.B[(size_t)j * n + i] = v;
        }
    double best = INFINITY;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = now();
        co_kfac_refresh(&k, 1e-3, CO_KFAC_DAMP_FACTORS, NULL);
        best = fmin(best, now() - t0);
    }
    co_kfac_free(&k);
    return best / (2.0 * n * n * n);
}

static int desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The busiest rank's n^3 when the factors are assigned as kfac_dist.c does (largest first to
 * the least loaded rank). */
static double lpt_makespan(const model_facts *f, int ranks)
{
    double load[256] = {0}, worst = 0;
    for (int i = 0; i < f->nf; i++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        load[best] += f->n[i] * f->n[i] * f->n[i];
    }
    for (int r = 0; r < ranks; r++) worst = fmax(worst, load[r]);
    return worst;
}

static void project(void)
{
    static const char *names[] = {"alexnet-32", "vgg-32", "resnet34-32"};
    static model_facts f[3];
    const double bw = 100e9 / 8, alpha = 5e-6; /* 100 Gb/s, 5 us per message */
    const int b = 128, t_int = T_INT;
    double c = eig_constant(1024);
    printf("eigendecomposition + root of one factor: %.3g s per n^3 (n = 1024, one thread)\n", c);
    for (int i = 0; i < 3; i++) {
        co_error err = {0};
        co_model *m = co_model_new(names[i], &err);
        co_model_init(m, 1);
        int ng = co_model_ngroups(m);
        co_group *g = calloc((size_t)ng, sizeof *g);
        co_model_groups(m, g);
        f[i].name = names[i];
        f[i].params = co_model_param_count(m);
        factor_sizes(g, ng, &f[i].tri, &f[i].roots);
        for (int k = 0; k < ng && f[i].nf < 510; k++) {
            if (g[k].kind == CO_GROUP_DENSE) continue;
            f[i].n[f[i].nf++] = g[k].cols + 1.0;
            f[i].n[f[i].nf++] = g[k].rows;
        }
        qsort(f[i].n, (size_t)f[i].nf, sizeof(double), desc);
        for (int k = 0; k < f[i].nf; k++) f[i].sum_n3 += f[i].n[k] * f[i].n[k] * f[i].n[k];
        f[i].sample_ms = time_sample(m, 32);
        printf("%-12s %zu parameters, %d K-FAC factors: %.0f triangle values, largest %.0f, sum n^3 %.3g; "
               "forward+backward %.2f ms per sample (batch 32, one thread)\n",
               f[i].name, f[i].params, f[i].nf, f[i].tri, f[i].n[0], f[i].sum_n3, f[i].sample_ms);
        printf("RESULT project %s params=%zu factors=%d tri=%.0f max_n=%.0f sum_n3=%.4g sample_ms=%.4f eig_c=%.4g\n",
               f[i].name, f[i].params, f[i].nf, f[i].tri, f[i].n[0], f[i].sum_n3, f[i].sample_ms, c);
        free(g);
        co_model_free(m);
    }
    printf("\nProjected step (weak scaling: %d samples per rank; one thread per rank at the speed measured here; "
           "100 Gb/s, %.0f us per message; docs/distributed.md):\n\n",
           b, alpha * 1e6);
    printf("| model | ranks | compute ms | Adam: allreduce ms | Adam efficiency | TSO-ALRA: eigendecompositions ms/step "
           "(1 rank) | TSO-ALRA: ms/step at N ranks (communication + eigendecompositions) | TSO-ALRA efficiency |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 3; i++)
        for (int N = 8; N <= 256; N *= 2) {
            double comp = b * f[i].sample_ms * 1e-3, lg = log2((double)N);
            double ar = 2.0 * (N - 1) / N * 4.0 * (double)f[i].params / bw + 2 * lg * alpha;
            /* Per refresh: the factors reduced into their owners one owner after another
             * (binomial: log2 N copies on the critical path), the busiest owner's
             * eigendecompositions, the roots broadcast (about twice their bytes); every step one
             * small allreduce of the counts. */
            double red = lg * (8 * f[i].tri / bw) + N * lg * alpha;
            double bc = 2 * f[i].roots / bw + N * lg * alpha;
            double eig1 = c * f[i].sum_n3 / t_int, eign = c * lpt_makespan(&f[i], N) / t_int;
            double tso_comm = 2 * lg * alpha + (red + bc) / t_int;
            double t1 = comp + eig1, tn = comp + ar + tso_comm + eign;
            printf("| %s | %d | %.0f | %.2f | %.1f%% | %.0f | %.0f (%.1f + %.0f) | %.0f%% |\n", f[i].name, N, 1e3 * comp,
                   1e3 * ar, 100 * comp / (comp + ar), 1e3 * eig1, 1e3 * (ar + tso_comm + eign), 1e3 * (ar + tso_comm),
                   1e3 * eign, 100 * t1 / tn);
        }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--project") == 0) {
        MPI_Init(&argc, &argv);
        project();
        MPI_Finalize();
        return 0;
    }
    MPI_Init(&argc, &argv);
    int steps = argc > 1 ? atoi(argv[1]) : 20;
    if (steps < 2) steps = 2;
    co_mpi mpi;
    co_error err = {0};
    if (co_mpi_init(&mpi, MPI_COMM_WORLD, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *x = co_falloc((size_t)BATCH * 784), *y = co_falloc(BATCH);
    co_rng r;
    co_rng_seed(&r, 11, 1);
    for (size_t i = 0; i < (size_t)BATCH * 784; i++) x[i] = (float)co_rng_uniform(&r);
    for (int i = 0; i < BATCH; i++) y[i] = (float)co_rng_below(&r, 10);
    if (mpi.coll.rank == 0) printf("global batch %d, %d timed steps after %d\n", BATCH, steps, T_INT);
    /* The MNIST CNN with every method, and the VGG preset (synchronised batch norm) with Adam. */
    const char *only = argc > 2 ? argv[2] : NULL;
    static const char *methods[][2] = {{"adam", NULL},
                                       {"quasi-adam", NULL},
                                       {"da-rmsprop", NULL},
                                       {"lama-adam", "K=2,interval=1"},
                                       {"tso-alra", "damping=0.003"}};
    for (int i = 0; i < 5; i++)
        if (!only || strcmp(only, "quasi-adam-mnist") == 0)
            bench_method(&mpi, "quasi-adam-mnist", methods[i][0], methods[i][1], steps, x, y);
    if (!only || strcmp(only, "vgg-28") == 0) bench_method(&mpi, "vgg-28", "adam", NULL, steps, x, y);
    free(x);
    free(y);
    co_mpi_free(&mpi);
    MPI_Finalize();
    return 0;
}

/* TSO-ALRA: the K-FAC direction against the dense Kronecker computation, refreshes every
 * T_int steps with cached roots in between, the switch to SGD (epoch and patience),
 * training, save/load. */
#include "optim/kfac.h"
#include "test_util.h"

#include <curvopt.h>
#include <lapacke.h>
#include <unistd.h>

/* (M + damping I)^-1/2 x for a dense symmetric PSD M (n x n). */
static void dense_inv_sqrt_apply(const double *m, int n, double damping, const double *x, double *y)
{
    double *u = malloc(sizeof(double) * n * n), *l = malloc(sizeof(double) * n);
    memcpy(u, m, sizeof(double) * n * n);
    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, u, n, l);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int e = 0; e < n; e++) {
            double proj = 0;
            for (int j = 0; j < n; j++) proj += u[j * n + e] * x[j];
            s += u[i * n + e] * proj / sqrt(fmax(l[e], 0) + damping);
        }
        y[i] = s;
    }
    free(u);
    free(l);
}

static void test_dense_kronecker(int mode)
{
    enum { ROWS = 3, COLS = 4, M = COLS + 1, N = 7 };
    co_rng r;
    co_rng_seed(&r, 21 + mode, 1);
    float a[N * COLS], g[N * ROWS], dw[ROWS * COLS], db[ROWS], ow[ROWS * COLS], ob[ROWS];
    for (int i = 0; i < N * COLS; i++) a[i] = (float)co_rng_normal(&r);
    for (int i = 0; i < N * ROWS; i++) g[i] = (float)(co_rng_normal(&r) / N);
    for (int i = 0; i < ROWS * COLS; i++) dw[i] = (float)co_rng_normal(&r);
    for (int i = 0; i < ROWS; i++) db[i] = (float)co_rng_normal(&r);
    co_kfac k;
    CHECK(co_kfac_init(&k, ROWS, COLS, 1, NULL) == CO_OK, "init");
    co_capture cap = {a, g, N, COLS, ROWS, N};
    double damping = 0.05;
    co_kfac_update(&k, &cap, 0.1);
    CHECK(co_kfac_refresh(&k, damping, (co_kfac_damping)mode, NULL) == CO_OK, "refresh");
    co_kfac_apply(&k, dw, db, ow, ob, damping, (co_kfac_damping)mode);
    /* Dense factors from the definitions: A = mean [a;1][a;1]^T, B = N sum g g^T. */
    double A[M * M] = {0}, B[ROWS * ROWS] = {0};
    for (int s = 0; s < N; s++) {
        double aa[M];
        for (int j = 0; j < COLS; j++) aa[j] = a[s * COLS + j];
        aa[COLS] = 1;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) A[i * M + j] += aa[i] * aa[j] / N;
        for (int i = 0; i < ROWS; i++)
            for (int j = 0; j < ROWS; j++) B[i * ROWS + j] += (double)N * g[s * ROWS + i] * g[s * ROWS + j];
    }
    double vec[ROWS * M], out[ROWS * M];
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < COLS; j++) vec[i * M + j] = dw[i * COLS + j];
        vec[i * M + COLS] = db[i];
    }
    if (mode == CO_KFAC_DAMP_PRODUCT) {
        /* (B (x) A + damping I)^-1/2 vec(G), the Kronecker product formed densely. */
        enum { P = ROWS * M };
        double F[P * P];
        for (int i = 0; i < ROWS; i++)
            for (int j = 0; j < M; j++)
                for (int k2 = 0; k2 < ROWS; k2++)
                    for (int l = 0; l < M; l++) F[(i * M + j) * P + k2 * M + l] = B[i * ROWS + k2] * A[j * M + l];
        dense_inv_sqrt_apply(F, P, damping, vec, out);
    } else {
        /* (B + d I)^-1/2 (x) (A + d I)^-1/2 applied densely: first along A, then along B. */
        double tmp[ROWS * M], col[ROWS], col2[ROWS];
        for (int i = 0; i < ROWS; i++) dense_inv_sqrt_apply(A, M, damping, vec + i * M, tmp + i * M);
        for (int j = 0; j < M; j++) {
            for (int i = 0; i < ROWS; i++) col[i] = tmp[i * M + j];
            dense_inv_sqrt_apply(B, ROWS, damping, col, col2);
            for (int i = 0; i < ROWS; i++) out[i * M + j] = col2[i];
        }
    }
    double num = 0, den = 0;
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < COLS; j++) {
            num += pow(ow[i * COLS + j] - out[i * M + j], 2);
            den += out[i * M + j] * out[i * M + j];
        }
        num += pow(ob[i] - out[i * M + COLS], 2);
        den += out[i * M + COLS] * out[i * M + COLS];
    }
    CHECK(sqrt(num / den) < 1e-4, "mode %d: K-FAC direction vs dense Kronecker: relative error %.3g", mode,
          sqrt(num / den));
    co_kfac_free(&k);
}

typedef struct {
    co_dataset *train, *test;
    co_model *model;
    co_optim *opt;
} rig;

static void rig_new(rig *g, const char *hp)
{
    co_dataset *all = co_make_moons(200, 0.2, 3, NULL);
    co_dataset_split(all, 0.2, 3, &g->train, &g->test, NULL); /* 160 training samples: 5 steps of 32 */
    co_dataset_free(all);
    g->model = co_model_new_mlp("mlp:2-16-16-1", CO_ACT_RELU, CO_ACT_NONE, NULL);
    co_model_init(g->model, 5);
    co_group groups[8];
    co_model_groups(g->model, groups);
    co_error err;
    g->opt = co_optim_new("tso-alra", groups, co_model_ngroups(g->model), hp, 1, &err);
    CHECK(g->opt != NULL, "create: %s", g->opt ? "" : err.msg);
}

static void rig_train(rig *g, int epochs, co_train_result *res)
{
    co_train_config c;
    co_train_config_default(&c);
    c.epochs = epochs;
    c.batch = 32;
    c.seed = 2;
    co_error err;
    CHECK(co_train(g->model, g->opt, g->train, g->test, &c, res, &err) == CO_OK, "train: %s", err.msg);
}

static void rig_free(rig *g)
{
    co_optim_free(g->opt);
    co_model_free(g->model);
    co_dataset_free(g->train);
    co_dataset_free(g->test);
}

static int same_params(rig *a, rig *b)
{
    size_t n = co_model_param_count(a->model);
    float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
    co_model_get_params(a->model, p);
    co_model_get_params(b->model, q);
    int same = memcmp(p, q, n * sizeof(float)) == 0;
    free(p);
    free(q);
    return same;
}

static void test_refresh_interval(void)
{
    /* T_int = 5 and T_int = 1000 refresh only at step 1 within the first 5 steps: the
     * cached roots are used unchanged, so both runs agree; step 6 refreshes one of them. */
    rig a, b, c;
    co_train_result r;
    rig_new(&a, "T_int=5");
    rig_new(&b, "T_int=1000");
    rig_new(&c, "T_int=1");
    rig_train(&a, 1, &r);
    co_train_result_free(&r);
    rig_train(&b, 1, &r);
    co_train_result_free(&r);
    rig_train(&c, 1, &r);
    co_train_result_free(&r);
    CHECK(same_params(&a, &b), "roots changed between refreshes");
    CHECK(!same_params(&a, &c), "refreshing every step changed nothing: the comparison cannot fail");
    double ra, rb;
    co_optim_diagnostic(a.opt, "refreshes", &ra, 1);
    CHECK(ra == 3, "T_int=5, 5 steps, 3 layers: %g refreshes, expected 3", ra);
    rig_train(&a, 2, &r);
    co_train_result_free(&r);
    rig_train(&b, 2, &r);
    co_train_result_free(&r);
    co_optim_diagnostic(a.opt, "refreshes", &ra, 1);
    co_optim_diagnostic(b.opt, "refreshes", &rb, 1);
    /* 15 steps in all: refreshes at steps 1, 6, 11 for each of the 3 layers. */
    CHECK(ra == 9 && rb == 3, "after 15 steps: %g and %g refreshes, expected 9 and 3", ra, rb);
    CHECK(!same_params(&a, &b), "a refresh at step 6 changed nothing");
    rig_free(&a);
    rig_free(&b);
    rig_free(&c);
}

static void test_switch(void)
{
    rig a;
    rig_new(&a, "switch_epoch=3");
    double sw;
    for (int e = 1; e <= 4; e++) {
        co_optim_epoch_end(a.opt, e, NAN, NULL);
        co_optim_diagnostic(a.opt, "switched", &sw, 1);
        CHECK(sw == (e >= 3), "switch_epoch=3: switched=%g after epoch %d", sw, e);
    }
    rig_free(&a);
    /* Patience 2: losses 1.0, 0.9, 0.95, 0.96 -> two epochs without improvement after epoch 4. */
    rig_new(&a, "patience=2");
    const double val[] = {1.0, 0.9, 0.95, 0.96, 0.5};
    for (int e = 1; e <= 5; e++) {
        co_optim_epoch_end(a.opt, e, val[e - 1], NULL);
        co_optim_diagnostic(a.opt, "switched", &sw, 1);
        CHECK(sw == (e >= 4), "patience=2: switched=%g after epoch %d", sw, e);
    }
    co_optim_diagnostic(a.opt, "switch_epoch", &sw, 1);
    CHECK(sw == 4, "switch recorded at epoch %g", sw);
    /* After the switch a step is plain SGD: p -= lr g. */
    co_group gr[8];
    co_model_groups(a.model, gr);
    float before = gr[0].param[0][0];
    gr[0].grad[0][0] = 0.5f;
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < gr[g].ntensors; k++)
            for (size_t i = (g == 0 && k == 0); i < gr[g].size[k]; i++) gr[g].grad[k][i] = 0;
    co_optim_step(a.opt, NULL, NULL);
    CHECK(gr[0].param[0][0] == before - 0.01f * 0.5f, "stage 2 is not plain SGD: %.9g vs %.9g", gr[0].param[0][0],
          before - 0.01f * 0.5f);
    rig_free(&a);
}

static void test_training_and_resume(void)
{
    rig a, b;
    co_train_result r;
    rig_new(&a, "T_int=3,lr=0.05");
    double initial;
    co_evaluate(a.model, a.train, CO_LOSS_BCE_LOGITS, 256, &initial, NULL, NULL);
    rig_train(&a, 20, &r);
    CHECK(r.final_train_loss < 0.6 * initial, "training loss %.4f -> %.4f", initial, r.final_train_loss);
    co_train_result_free(&r);
    rig_free(&a);
    /* save -> load -> continue equals an uninterrupted run (mid-interval: cached roots). */
    rig_new(&a, "T_int=3");
    rig_new(&b, "T_int=3");
    co_train_config c;
    co_train_config_default(&c);
    c.batch = 32;
    c.seed = 2;
    c.epochs = 4;
    co_train(a.model, a.opt, a.train, a.test, &c, &r, NULL);
    co_train_result_free(&r);
    c.epochs = 2;
    co_train(b.model, b.opt, b.train, b.test, &c, &r, NULL);
    co_train_result_free(&r);
    char path[] = "/tmp/curvopt_tso_XXXXXX";
    close(mkstemp(path));
    co_error err;
    CHECK(co_optim_save(b.opt, path, &err) == CO_OK, "save: %s", err.msg);
    co_optim_free(b.opt);
    co_group groups[8];
    co_model_groups(b.model, groups);
    b.opt = co_optim_new("tso-alra", groups, 3, "T_int=3", 1, NULL);
    CHECK(co_optim_load(b.opt, path, &err) == CO_OK, "load: %s", err.msg);
    unlink(path);
    /* The loader's order for epochs 3-4 must match too: replay with a checkpointed loop. */
    c.epochs = 4;
    char ck[] = "/tmp/curvopt_tso_ck_XXXXXX";
    close(mkstemp(ck));
    unlink(ck);
    rig_free(&b);
    rig_new(&b, "T_int=3");
    c.checkpoint_path = ck;
    c.epochs = 2;
    co_train(b.model, b.opt, b.train, b.test, &c, &r, NULL);
    co_train_result_free(&r);
    co_optim_free(b.opt);
    co_model_init(b.model, 99); /* the checkpoint must restore the parameters too */
    co_model_groups(b.model, groups);
    b.opt = co_optim_new("tso-alra", groups, 3, "T_int=3", 1, NULL);
    c.epochs = 4;
    c.resume = 1;
    CHECK(co_train(b.model, b.opt, b.train, b.test, &c, &r, &err) == CO_OK, "resume: %s", err.msg);
    co_train_result_free(&r);
    unlink(ck);
    CHECK(same_params(&a, &b), "save -> load -> continue differs from the uninterrupted run");
    rig_free(&a);
    rig_free(&b);
}

int main(void)
{
    test_dense_kronecker(CO_KFAC_DAMP_FACTORS);
    test_dense_kronecker(CO_KFAC_DAMP_PRODUCT);
    test_refresh_interval();
    test_switch();
    test_training_and_resume();
    return co_test_finish();
}

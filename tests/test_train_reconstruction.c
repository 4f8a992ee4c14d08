/* Reconstruction (autoencoders: targets = inputs): co_dataset_reconstruction, the run spec's
 * reconstruct flag, a loss without an accuracy in co_evaluate and co_train, and the
 * output/target checks of co_run_prepare that keep a loss from reading past its targets. */
#include "experiments/run.h"
#include "test_util.h"

#include <curvopt.h>

static void test_pairs(void)
{
    co_error e = {0};
    co_dataset *d = co_dataset_new(5, 6, 1, &e);
    d->nclasses = 3;
    d->c = 1;
    d->h = 2;
    d->w = 3;
    for (int i = 0; i < 30; i++) d->x[i] = 0.1f * (float)i;
    for (int i = 0; i < 5; i++) d->y[i] = (float)(i % 3);
    co_dataset *r = co_dataset_reconstruction(d, &e);
    CHECK(r != NULL, "%s", e.msg);
    if (!r) return;
    CHECK(r->n == 5 && r->x_dim == 6 && r->y_dim == 6 && r->nclasses == 0, "n %d x_dim %d y_dim %d classes %d", r->n,
          r->x_dim, r->y_dim, r->nclasses);
    CHECK(r->c == 1 && r->h == 2 && r->w == 3, "shape %dx%dx%d not kept", r->c, r->h, r->w);
    CHECK(memcmp(r->x, d->x, 30 * sizeof(float)) == 0 && memcmp(r->y, d->x, 30 * sizeof(float)) == 0,
          "x and y are not the inputs");
    d->x[0] = 42;
    CHECK(r->x[0] == 0 && r->y[0] == 0, "the pairs share the original's memory");
    co_dataset_free(r);
    co_dataset_free(d);
    co_dataset *empty = co_dataset_new(0, 4, 1, &e);
    r = co_dataset_reconstruction(empty, &e);
    CHECK(r != NULL && r->n == 0 && r->y_dim == 4, "empty data set: %s", e.msg);
    co_dataset_free(r);
    co_dataset_free(empty);
}

static co_run_spec moons_ae(void)
{
    co_run_spec s;
    co_run_spec_default(&s);
    s.n = 200;
    s.model = "mlp:2-8-2";
    s.hidden = CO_ACT_TANH;
    s.loss = CO_LOSS_MSE;
    s.reconstruct = 1;
    s.val_frac = 0.2;
    s.opt = "adam";
    s.lr = 1e-2;
    s.epochs = 4;
    s.batch = 16;
    return s;
}

static int is_pairs(const co_dataset *d)
{
    return d && d->y_dim == d->x_dim && d->nclasses == 0 &&
           memcmp(d->x, d->y, (size_t)d->n * d->x_dim * sizeof(float)) == 0;
}

static void test_run(void)
{
    for (int standardize = 0; standardize < 2; standardize++) {
        co_run_spec s = moons_ae();
        s.standardize = standardize;
        co_run run;
        co_error e = {0};
        CHECK(co_run_prepare(&s, &run, &e) == CO_OK, "prepare: %s", e.msg);
        if (e.code) continue;
        /* Every split, after scaling: the targets are what the model is fed. */
        CHECK(is_pairs(run.train) && is_pairs(run.test) && is_pairs(run.val), "standardize %d: splits are not (x, x)",
              standardize);
        CHECK(run.train->n == 128 && run.val->n == 32 && run.test->n == 40, "split sizes %d / %d / %d", run.train->n,
              run.val->n, run.test->n);
        run.cfg.eval_train_acc = 1;
        co_train_result res;
        CHECK(co_run_execute(&run, NULL, 0, &res, &e) == CO_OK, "train: %s", e.msg);
        int nan_acc = 1, finite = 1;
        for (int i = 0; i < res.epochs_run; i++) {
            nan_acc &= isnan(res.history[i].test_acc) && isnan(res.history[i].train_acc);
            finite &= isfinite(res.history[i].train_loss) && isfinite(res.history[i].test_loss) &&
                      isfinite(res.history[i].val_loss);
        }
        CHECK(res.epochs_run == 4 && nan_acc && finite, "history: accuracies NaN %d, losses finite %d", nan_acc,
              finite);
        CHECK(res.epochs_to_80 == -1, "epochs to 80%% %d without an accuracy", res.epochs_to_80);
        CHECK(res.history[3].test_loss < res.history[0].test_loss, "test loss %.4f -> %.4f does not go down",
              res.history[0].test_loss, res.history[3].test_loss);
        /* co_evaluate's loss is the MSE of the outputs against the inputs. */
        double loss, acc;
        CHECK(co_evaluate(run.model, run.test, CO_LOSS_MSE, 7, &loss, &acc, &e) == CO_OK, "%s", e.msg);
        const float *out = co_model_forward(run.model, run.test->x, run.test->n, 0, &e);
        double sse = 0;
        for (int i = 0; i < run.test->n * 2; i++) sse += pow((double)out[i] - run.test->x[i], 2);
        CHECK_CLOSE(loss, sse / (run.test->n * 2), 1e-6, "evaluated MSE against the inputs");
        CHECK(isnan(acc), "accuracy %g for a reconstruction", acc);
        co_train_result_free(&res);
        co_run_free(&run);
    }
    /* A classifier keeps its accuracy. */
    co_run_spec s = moons_ae();
    s.reconstruct = 0;
    s.model = "mlp:2-8-1";
    s.loss = CO_LOSS_BCE_LOGITS;
    co_run run;
    co_error e = {0};
    CHECK(co_run_prepare(&s, &run, &e) == CO_OK, "%s", e.msg);
    if (e.code) return;
    double loss, acc;
    CHECK(co_evaluate(run.model, run.test, s.loss, 0, &loss, &acc, &e) == CO_OK && acc >= 0 && acc <= 1,
          "classification accuracy %g", acc);
    co_run_free(&run);
}

/* Outputs that do not match the targets are refused before anything runs. */
static void test_checks(void)
{
    const struct {
        const char *model;
        co_loss_kind loss;
        int reconstruct;
        const char *what, *msg;
    } cases[] = {
        {"mlp:2-8-1", CO_LOSS_MSE, 1, "one output for two targets", "1 outputs"},
        {"mlp:2-8-2", CO_LOSS_CROSS_ENTROPY, 1, "cross-entropy on a reconstruction", "class index"},
        {"mlp:2-8-2", CO_LOSS_MSE, 0, "two outputs for one label", "2 outputs"},
        {"mlp:2-8-1", CO_LOSS_CROSS_ENTROPY, 0, "one output for two classes", "2 classes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        co_run_spec s = moons_ae();
        s.model = cases[i].model;
        s.loss = cases[i].loss;
        s.reconstruct = cases[i].reconstruct;
        co_run run;
        co_error e = {0};
        co_status st = co_run_prepare(&s, &run, &e);
        CHECK(st == CO_EINVAL && strstr(e.msg, cases[i].msg), "%s: status %d, '%s'", cases[i].what, st, e.msg);
        if (st == CO_OK) co_run_free(&run);
        else printf("refused (%s): %s\n", cases[i].what, e.msg);
    }
}

/* The paper's autoencoder on a few MNIST images, when MNIST is installed. */
static void test_autoencoder(void)
{
    co_run_spec s;
    co_run_spec_default(&s);
    s.data = "mnist";
    s.model = "quasi-adam-ae";
    s.loss = CO_LOSS_MSE;
    s.reconstruct = 1;
    s.opt = "quasi-adam";
    s.lr = 1e-2;
    s.epochs = 2;
    s.batch = 16;
    s.train_limit = 64;
    s.test_limit = 32;
    co_run run;
    co_error e = {0};
    co_status st = co_run_prepare(&s, &run, &e);
    if (st == CO_ENOTFOUND) {
        printf("MNIST not installed, autoencoder run skipped: %s\n", e.msg);
        return;
    }
    CHECK(st == CO_OK, "%s", e.msg);
    if (st) return;
    CHECK(run.train->y_dim == 784 && co_model_out_size(run.model) == 784 && co_model_param_count(run.model) == 87125,
          "targets %d, outputs %d, parameters %zu", run.train->y_dim, co_model_out_size(run.model),
          co_model_param_count(run.model));
    co_train_result res;
    CHECK(co_run_execute(&run, NULL, 0, &res, &e) == CO_OK, "%s", e.msg);
    /* Sigmoid outputs against pixels in [0, 1]: an MSE below 1. */
    CHECK(res.final_test_loss > 0 && res.final_test_loss < 1 && isnan(res.final_test_acc), "test loss %g, acc %g",
          res.final_test_loss, res.final_test_acc);
    printf("autoencoder, 64 MNIST images, 2 epochs: train loss %.4f, test loss %.4f\n", res.final_train_loss,
           res.final_test_loss);
    co_train_result_free(&res);
    co_run_free(&run);
}

int main(void)
{
    test_pairs();
    test_run();
    test_checks();
    test_autoencoder();
    return co_test_finish();
}

/* Every registered optimizer through the common API: its hyperparameter table, training
 * the make_moons MLP, checkpoint -> resume bit-identical; and the API's error handling,
 * per-group hyperparameters and clipping. New methods are covered by registering them. */
#include "test_util.h"

#include <curvopt.h>
#include <unistd.h>

typedef struct {
    co_dataset *train, *test;
    co_model *model;
    co_optim *opt;
} rig;

static int rig_new(rig *g, const char *name)
{
    co_dataset *all = co_make_moons(300, 0.2, 8, NULL);
    co_dataset_split(all, 0.2, 8, &g->train, &g->test, NULL);
    co_dataset_free(all);
    g->model = co_model_new_mlp("mlp:2-16-1", CO_ACT_RELU, CO_ACT_NONE, NULL);
    co_model_init(g->model, 3);
    co_group groups[4];
    co_model_groups(g->model, groups);
    co_error err;
    g->opt = co_optim_new(name, groups, co_model_ngroups(g->model), NULL, 5, &err);
    CHECK(g->opt != NULL, "%s: %s", name, g->opt ? "" : err.msg);
    return g->opt != NULL;
}

static void rig_free(rig *g)
{
    co_optim_free(g->opt);
    co_model_free(g->model);
    co_dataset_free(g->train);
    co_dataset_free(g->test);
}

static co_status rig_train(rig *g, int epochs, const char *ckpt, int resume, co_train_result *r)
{
    co_train_config c;
    co_train_config_default(&c);
    c.epochs = epochs;
    c.batch = 16;
    c.seed = 6;
    c.checkpoint_path = ckpt;
    c.checkpoint_every = ckpt ? 7 : 0;
    c.resume = resume;
    co_error err;
    co_status st = co_train(g->model, g->opt, g->train, g->test, &c, r, &err);
    CHECK(st == CO_OK, "%s: %s", co_optim_info_of(g->opt)->name, err.msg);
    return st;
}

static void test_each_optimizer(void)
{
    CHECK(co_optim_count() >= 15, "only %d optimizers registered", co_optim_count());
    for (int i = 0; i < co_optim_count(); i++) {
        const co_optim_info *info = co_optim_info_at(i);
        CHECK(co_optim_find(info->name) == info, "%s not found by name", info->name);
        CHECK(info->nhparams > 0 && strcmp(info->hparams[0].name, "lr") == 0, "%s: hparams[0] is not lr", info->name);
        rig g;
        if (!rig_new(&g, info->name)) continue;
        for (int k = 0; k < info->nhparams; k++) {
            const co_hparam *h = &info->hparams[k];
            co_error err;
            CHECK(co_optim_set(g.opt, -1, h->name, h->def, &err) == CO_OK, "%s: default of %s outside its range: %s",
                  info->name, h->name, err.msg);
            CHECK(h->doc && h->doc[0], "%s.%s has no doc", info->name, h->name);
        }
        double initial;
        co_evaluate(g.model, g.train, CO_LOSS_BCE_LOGITS, 256, &initial, NULL, NULL);
        co_train_result r;
        if (rig_train(&g, 12, NULL, 0, &r) == CO_OK)
            CHECK(r.final_train_loss < 0.8 * initial, "%s: training loss %.4f -> %.4f", info->name, initial,
                  r.final_train_loss);
        co_train_result_free(&r);
        rig_free(&g);

        /* Checkpoint after 3 epochs (mid-epoch checkpoints too), resume into fresh objects. */
        rig a, b;
        rig_new(&a, info->name);
        rig_new(&b, info->name);
        char ck[] = "/tmp/curvopt_reg_XXXXXX";
        close(mkstemp(ck));
        unlink(ck);
        rig_train(&a, 6, NULL, 0, &r);
        co_train_result_free(&r);
        rig_train(&b, 3, ck, 0, &r);
        co_train_result_free(&r);
        co_optim_free(b.opt);
        co_model_init(b.model, 77);
        co_group groups[4];
        co_model_groups(b.model, groups);
        b.opt = co_optim_new(info->name, groups, co_model_ngroups(b.model), NULL, 5, NULL);
        rig_train(&b, 6, ck, 1, &r);
        CHECK(r.resumed_from_epoch == 4, "%s: resumed from epoch %d", info->name, r.resumed_from_epoch);
        co_train_result_free(&r);
        unlink(ck);
        size_t n = co_model_param_count(a.model);
        float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
        co_model_get_params(a.model, p);
        co_model_get_params(b.model, q);
        CHECK(memcmp(p, q, n * sizeof(float)) == 0, "%s: checkpoint -> resume differs from an uninterrupted run",
              info->name);
        free(p);
        free(q);
        rig_free(&a);
        rig_free(&b);
    }
}

static void test_api_errors(void)
{
    float w[4] = {0}, dw[4] = {1, 1, 1, 1}, b[2] = {0}, db[2] = {1, 1};
    co_group g[2] = {{.name = "a", .ntensors = 1, .param = {w}, .grad = {dw}, .size = {4}},
                     {.name = "b", .ntensors = 1, .param = {b}, .grad = {db}, .size = {2}}};
    co_error err;
    CHECK(co_optim_new("nosuch", g, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL && strstr(err.msg, "nosuch"),
          "unknown optimizer");
    CHECK(co_optim_new("adam", g, 2, "beta1=1.5", 0, &err) == NULL && err.code == CO_EINVAL && strstr(err.msg, "beta1"),
          "beta1 out of range");
    CHECK(co_optim_new("adam", g, 2, "beta1", 0, &err) == NULL && err.code == CO_EINVAL, "missing value");
    CHECK(co_optim_new("adam", g, 2, "beta1=x", 0, &err) == NULL && err.code == CO_EINVAL, "non-numeric value");
    CHECK(co_optim_new("adam", g, 2, "gamma=1", 0, &err) == NULL && err.code == CO_EINVAL, "unknown hparam");
    CHECK(co_optim_new("adam", g, 2, "amsgrad=0.5", 0, &err) == NULL && err.code == CO_EINVAL, "boolean 0.5");
    CHECK(co_optim_new("adam", g, 0, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "no groups");
    co_group lin = {.name = "l", .kind = CO_GROUP_LINEAR, .ntensors = 1, .param = {w}, .grad = {dw}, .size = {4}, .rows = 3, .cols = 3};
    CHECK(co_optim_new("adam", &lin, 1, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "rows x cols != size accepted");

    /* Per-group lr: group 1 frozen at lr 0 while group 0 moves. */
    co_optim *o = co_optim_new("sgd", g, 2, "lr=0.5", 0, &err);
    CHECK(co_optim_set(o, 1, "lr", 0, &err) == CO_OK, "set group lr");
    CHECK(co_optim_get(o, 0, "lr") == 0.5 && co_optim_get(o, 1, "lr") == 0, "per-group values");
    co_optim_step(o, NULL, NULL);
    CHECK(w[0] == -0.5f && b[0] == 0.0f, "per-group lr not applied: w %g b %g", w[0], b[0]);
    /* Clipping as torch.nn.utils.clip_grad_norm_: norm of (1,1,1,1,1,1) is sqrt 6. */
    co_optim_set_clip(o, 1.0);
    w[0] = 0;
    co_optim_step(o, NULL, NULL);
    double coef = 1.0 / (sqrt(6.0) + 1e-6);
    CHECK(fabs(w[0] - (-0.5 * coef)) < 1e-6, "clipped step %g, expected %g", w[0], -0.5 * coef);
    CHECK(fabs(dw[1] - coef) < 1e-6, "gradients not scaled in place (%g)", dw[1]);
    /* A gradient norm below the threshold is left alone. */
    for (int i = 0; i < 4; i++) dw[i] = 0.1f;
    db[0] = db[1] = 0.1f;
    co_optim_set_clip(o, 10.0);
    co_optim_step(o, NULL, NULL);
    CHECK(dw[0] == 0.1f, "small gradient clipped");
    co_optim_free(o);
}

static void test_state_file_refused(void)
{
    float w[8], dw[8];
    for (int i = 0; i < 8; i++) w[i] = dw[i] = (float)i / 8;
    co_group g = {.name = "a", .ntensors = 1, .param = {w}, .grad = {dw}, .size = {8}};
    co_optim *o = co_optim_new("adam", &g, 1, NULL, 0, NULL);
    for (int s = 0; s < 3; s++) co_optim_step(o, NULL, NULL);
    char path[] = "/tmp/curvopt_state_XXXXXX";
    close(mkstemp(path));
    co_error err;
    CHECK(co_optim_save(o, path, &err) == CO_OK, "save: %s", err.msg);
    /* The reference: this state's bytes. */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *bytes = malloc((size_t)len);
    CHECK(fread(bytes, 1, (size_t)len, f) == (size_t)len, "read back");
    fclose(f);
    co_optim *fresh = co_optim_new("adam", &g, 1, NULL, 0, NULL);
    uint64_t steps_before = co_optim_steps(fresh);
    /* Truncated at every length, and each byte flipped: refused, never half-loaded. */
    int accepted = 0;
    for (long cut = 0; cut < len; cut += 7) {
        f = fopen(path, "wb");
        fwrite(bytes, 1, (size_t)cut, f);
        fclose(f);
        accepted += co_optim_load(fresh, path, &err) == CO_OK;
    }
    for (long at = 0; at < len; at += 5) {
        bytes[at] ^= 0x40;
        f = fopen(path, "wb");
        fwrite(bytes, 1, (size_t)len, f);
        fclose(f);
        bytes[at] ^= 0x40;
        co_status st = co_optim_load(fresh, path, &err);
        accepted += st == CO_OK;
        if (st != CO_OK) CHECK(err.code == CO_EFORMAT && strstr(err.msg, path), "message without the file: %s", err.msg);
    }
    CHECK(accepted == 0, "%d damaged files accepted", accepted);
    CHECK(co_optim_steps(fresh) == steps_before, "a refused load changed the optimizer");
    /* Another optimizer's state is refused by name. */
    co_optim *sgd = co_optim_new("sgd", &g, 1, NULL, 0, NULL);
    f = fopen(path, "wb");
    fwrite(bytes, 1, (size_t)len, f);
    fclose(f);
    CHECK(co_optim_load(sgd, path, &err) == CO_EFORMAT && strstr(err.msg, "adam"), "sgd loaded adam's state");
    CHECK(co_optim_load(fresh, path, &err) == CO_OK && co_optim_steps(fresh) == 3, "the intact file loads");
    unlink(path);
    free(bytes);
    co_optim_free(o);
    co_optim_free(fresh);
    co_optim_free(sgd);
}

int main(void)
{
    test_each_optimizer();
    test_api_errors();
    test_state_file_refused();
    return co_test_finish();
}

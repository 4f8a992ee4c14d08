/* Every registered optimizer through the training loop: its hyperparameter table, training
 * the make_moons MLP, checkpoint -> resume bit-identical. New methods are covered by
 * registering them (the API's errors, per-group settings, clipping and state files are in
 * test_optim_api.c). */
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

int main(void)
{
    test_each_optimizer();
    return co_test_finish();
}

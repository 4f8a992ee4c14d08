/* What a host language's bindings (python/curvopt) build on, for every optimizer in the
 * registry: the common hyperparameter maximize, per-group hyperparameters applied before
 * the state is allocated, rebinding to new buffers, hyperparameters fixed at creation, and
 * the state in a memory buffer (hyperparameters out of range refused there).
 *
 * maximize=1 on gradients g must be bit for bit what maximize=0 does on -g (the closure's
 * gradients included), and leave g in the caller's buffers. The model is optim_world.h's. */
#include "optim_world.h"

static co_optim *make_with(const char *name, world *w, const char *hp)
{
    co_group g[2];
    co_error err = {0};
    co_optim *o = co_optim_new(name, g, world_groups(w, g, 2, C0, 1), hp, 5, &err);
    CHECK(o != NULL, "%s %s: %s", name, hp ? hp : "", err.msg);
    return o;
}

/* run_steps, checking that a step hands the caller's gradients back as it found them (a
 * method that re-evaluates through the closure restores them itself). */
static void steps_keeping_grads(co_optim *o, world *w, int steps)
{
    co_closure c = {.ctx = w, .eval = world_eval, .capture = world_capture};
    co_error err = {0};
    const char *name = co_optim_info_of(o)->name;
    for (int t = 0; t < steps; t++) {
        world_next_batch(w);
        float before[NP];
        memcpy(before, w->grad, sizeof before);
        CHECK(co_optim_step(o, &c, &err) == CO_OK, "%s step %d: %s", name, w->step, err.msg);
        if (!(co_optim_needs(o) & CO_NEEDS_CLOSURE))
            CHECK(memcmp(before, w->grad, sizeof before) == 0, "%s: gradients changed by the step", name);
        if (w->step % EPOCH == 0) co_optim_epoch_end(o, w->step / EPOCH, w->loss, NULL);
    }
}

static void test_maximize(void)
{
    int climbed = 0;
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world a, b;
        world_init(&a, 7);
        world_init(&b, 7);
        b.sign = -1;
        co_optim *oa = make_with(name, &a, "maximize=1"), *ob = make_with(name, &b, NULL);
        if (oa && ob) {
            steps_keeping_grads(oa, &a, STEPS);
            steps_keeping_grads(ob, &b, STEPS);
            CHECK(memcmp(a.theta, b.theta, sizeof a.theta) == 0, "%s: maximize on g differs from minimizing with -g", name);
            CHECK(co_optim_get(oa, 1, "maximize") == 1 && co_optim_get(ob, 1, "maximize") == 0, "%s: maximize not read back", name);
            /* Uphill: f (this batch's) above where it started. */
            world c;
            world_init(&c, 7);
            c.step = a.step - 1;
            world_next_batch(&c);
            double f0 = c.loss;
            memcpy(c.theta, a.theta, sizeof c.theta);
            climbed += world_eval(&c) > f0;
        }
        co_optim_free(oa);
        co_optim_free(ob);
    }
    /* Stochastic methods (ogr-asgd's noisy rates) may wander: nearly all must climb. */
    CHECK(climbed >= co_optim_count() - 2, "only %d of %d optimizers increased f with maximize=1", climbed,
          co_optim_count());
    int n;
    const co_hparam *common = co_optim_common_hparams(&n);
    CHECK(n >= 1 && strcmp(common[0].name, "maximize") == 0 && (common[0].flags & CO_HP_BOOL), "maximize is not listed");
    world w;
    world_init(&w, 1);
    co_group g[2];
    co_error err = {0};
    co_optim *o = co_optim_new("adam", g, world_groups(&w, g, 2, C0, 1), "maximize=2", 0, &err);
    CHECK(!o && strstr(err.msg, "maximize") && strstr(err.msg, "0 or 1"), "maximize=2 accepted: %s", err.msg);
    co_optim_free(o);
}

/* Per-group values reach what a method reads at creation (Adagrad's accumulator,
 * DA-RMSprop's ranks); afterwards a CO_HP_FIXED value cannot change. */
static void test_per_group(void)
{
    co_error err = {0};
    world w;
    world_init(&w, 1);
    co_group g[2];
    world_groups(&w, g, 2, C0, 1);
    const char *per_group[2] = {"initial_accumulator_value=0.5", "initial_accumulator_value=3,lr=0.1"};
    co_optim *o = co_optim_new_per_group("adagrad", g, 2, "lr=0.05", per_group, 0, &err);
    CHECK(o != NULL, "per-group adagrad: %s", err.msg);
    world_next_batch(&w);
    if (o) co_optim_step(o, NULL, &err);
    for (int l = 0; l < 2; l++) { /* the same step for each group alone */
        world solo;
        world_init(&solo, 1);
        co_group s[2];
        world_groups(&solo, s, 2, C0, 1);
        world_next_batch(&solo);
        char hp[96];
        snprintf(hp, sizeof hp, "lr=0.05,%s", per_group[l]);
        co_optim *x = co_optim_new("adagrad", &s[l], 1, hp, 0, &err);
        co_optim_step(x, NULL, &err);
        CHECK(memcmp(s[l].param[0], g[l].param[0], s[l].size[0] * sizeof(float)) == 0,
              "group %d: per-group values not applied at creation", l);
        co_optim_free(x);
    }
    CHECK(o && co_optim_get(o, 1, "lr") == 0.1 && co_optim_get(o, 0, "lr") == 0.05, "per-group lr");
    co_optim_free(o);

    const char *bad[2] = {NULL, "nosuch=1"};
    o = co_optim_new_per_group("adam", g, 2, NULL, bad, 0, &err);
    CHECK(!o && strstr(err.msg, "nosuch"), "unknown per-group name accepted: %s", err.msg);
    co_optim_free(o);

    const char *ranks[2] = {"rank_max=2", "rank_max=6,rank_init=3"};
    o = co_optim_new_per_group("da-rmsprop", g, 2, NULL, ranks, 0, &err);
    CHECK(o != NULL, "da-rmsprop per-group ranks: %s", err.msg);
    if (o) {
        CHECK(co_optim_set(o, 1, "rank_max", 6, &err) == CO_OK, "the same fixed value refused: %s", err.msg);
        CHECK(co_optim_set(o, 0, "rank_max", 8, &err) == CO_EINVAL && strstr(err.msg, "fixed"),
              "rank_max changed after creation: %s", err.msg);
        CHECK(co_optim_get(o, 0, "rank_max") == 2, "a refused value was stored");
        CHECK(co_optim_set(o, -1, "rank_min", 2, &err) == CO_OK, "a free value refused: %s", err.msg);
    }
    co_optim_free(o);
}

/* Moving the tensors to new buffers between steps changes nothing else. */
static void test_rebind(void)
{
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world a, b;
        world_init(&a, 3);
        world_init(&b, 3);
        co_optim *oa = make_with(name, &a, NULL), *ob = make_with(name, &b, NULL);
        if (!oa || !ob) {
            co_optim_free(oa);
            co_optim_free(ob);
            continue;
        }
        run_steps(oa, &a, STEPS / 2);
        run_steps(ob, &b, STEPS / 2);
        world moved = b;
        co_group g[2];
        world_groups(&moved, g, 2, C0, 1);
        float *params[4], *grads[4];
        for (int t = 0; t < 4; t++) {
            params[t] = g[t / 2].param[t % 2];
            grads[t] = g[t / 2].grad[t % 2];
        }
        /* In two calls, so that NULL (keep) is exercised in both arrays. */
        float *only_last[4] = {NULL, NULL, NULL, grads[3]};
        grads[3] = NULL;
        co_error err = {0};
        CHECK(co_optim_rebind(ob, params, grads, &err) == CO_OK && co_optim_rebind(ob, NULL, only_last, &err) == CO_OK &&
                  co_optim_ngroups(ob) == 2,
              "%s: rebind", name);
        run_steps(oa, &a, STEPS / 2);
        run_steps(ob, &moved, STEPS / 2);
        CHECK(memcmp(a.theta, moved.theta, sizeof a.theta) == 0, "%s: rebound optimizer diverged", name);
        CHECK(memcmp(b.theta, a.theta, sizeof a.theta) != 0, "%s: the old buffers were still written", name);
        co_optim_free(oa);
        co_optim_free(ob);
    }
}

/* Where a blob named `name` starts its data in a state buffer. */
static size_t blob_at(const unsigned char *buf, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 4; i + len + 8 <= n; i++)
        if (memcmp(buf + i, name, len) == 0 && buf[i - 4] == len) return i + len + 8;
    return 0;
}

/* The state through a memory buffer: continue bit-identical; wrong sizes, truncation,
 * trailing bytes, another method's state and hyperparameters out of range refused. */
static void test_state_buffer(void)
{
    for (int i = 0; i < co_optim_count(); i++) {
        const co_optim_info *info = co_optim_info_at(i);
        const char *name = info->name;
        world a, b;
        world_init(&a, 4);
        world_init(&b, 4);
        co_optim *oa = make_with(name, &a, "maximize=1"), *ob = make_with(name, &b, NULL);
        if (!oa || !ob) {
            co_optim_free(oa);
            co_optim_free(ob);
            continue;
        }
        run_steps(oa, &a, STEPS / 2);
        co_error err = {0};
        size_t n = co_optim_state_size(oa);
        unsigned char *buf = malloc(n + 1);
        CHECK(co_optim_state_to_buffer(oa, buf, n - 1, &err) == CO_EINVAL, "%s: short buffer accepted", name);
        CHECK(co_optim_state_to_buffer(oa, buf, n, &err) == CO_OK, "%s: to_buffer: %s", name, err.msg);
        CHECK(co_optim_state_from_buffer(ob, buf, n - 3, &err) == CO_EFORMAT, "%s: truncated state accepted", name);
        buf[n] = 0;
        CHECK(co_optim_state_from_buffer(ob, buf, n + 1, &err) == CO_EFORMAT && strstr(err.msg, "trailing"),
              "%s: trailing byte accepted: %s", name, err.msg);
        /* Every hyperparameter of group 1 just out of its range (or NaN). */
        size_t hp = blob_at(buf, n, "hparams");
        CHECK(hp > 0, "%s: no hparams entry", name);
        int ncommon;
        co_optim_common_hparams(&ncommon);
        int nhp = info->nhparams + ncommon;
        for (int h = 0; h < info->nhparams && hp; h++) {
            double saved, v = info->hparams[h].max * 2 + 2;
            memcpy(&saved, buf + hp + ((size_t)nhp + h) * sizeof(double), sizeof saved);
            memcpy(buf + hp + ((size_t)nhp + h) * sizeof(double), &v, sizeof v);
            CHECK(co_optim_state_from_buffer(ob, buf, n, &err) == CO_EFORMAT && strstr(err.msg, info->hparams[h].name) &&
                      strstr(err.msg, "group 1"),
                  "%s: %s=%g in a state accepted: %s", name, info->hparams[h].name, v, err.msg);
            memcpy(buf + hp + ((size_t)nhp + h) * sizeof(double), &saved, sizeof saved);
        }
        CHECK(co_optim_steps(ob) == 0, "%s: a refused state was applied", name);
        CHECK(co_optim_state_from_buffer(ob, buf, n, &err) == CO_OK, "%s: from_buffer: %s", name, err.msg);
        CHECK(co_optim_steps(ob) == co_optim_steps(oa) && co_optim_get(ob, 0, "maximize") == 1, "%s: state not applied",
              name);
        memcpy(b.theta, a.theta, sizeof a.theta);
        b.step = a.step;
        run_steps(oa, &a, STEPS / 2);
        run_steps(ob, &b, STEPS / 2);
        CHECK(memcmp(a.theta, b.theta, sizeof a.theta) == 0, "%s: loaded from a buffer, the run diverged", name);
        const char *other = strcmp(name, "sgd") ? "sgd" : "adam";
        world c;
        world_init(&c, 4);
        co_optim *oc = make_with(other, &c, NULL);
        CHECK(oc && co_optim_state_from_buffer(oc, buf, n, &err) == CO_EFORMAT && strstr(err.msg, name),
              "%s state loaded into %s: %s", name, other, err.msg);
        co_optim_free(oc);
        free(buf);
        co_optim_free(oa);
        co_optim_free(ob);
    }
}

int main(void)
{
    test_maximize();
    test_per_group();
    test_rebind();
    test_state_buffer();
    return co_test_finish();
}

/* What a host language's bindings (python/curvopt) build on, for every optimizer in the
 * registry: the common hyperparameter maximize, per-group hyperparameters applied before
 * the state is allocated, rebinding to new buffers, hyperparameters fixed at creation, and
 * the state in a memory buffer.
 *
 * maximize=1 on gradients g must be bit for bit what maximize=0 does on -g (the closure's
 * gradients included), and leave g in the caller's buffers. */
#include "test_util.h"

#include <curvopt.h>
#include <stdint.h>

enum { R0 = 3, C0 = 4, R1 = 2, C1 = 3, BATCH = 8, NP = R0 * C0 + R0 + R1 * C1 + R1, STEPS = 12 };

typedef struct {
    float theta[NP], grad[NP];
    float curv[NP], target[NP], noise[NP];
    float a0[BATCH * C0], g0[BATCH * R0], a1[BATCH * C1], g1[BATCH * R1];
    float sign; /* -1: the gradients of -f */
    int step;
} world;

static void world_init(world *w, float sign)
{
    memset(w, 0, sizeof *w);
    co_rng r;
    co_rng_seed(&r, 7, 1);
    for (int i = 0; i < NP; i++) {
        w->theta[i] = (float)(2 * co_rng_uniform(&r) - 1);
        w->curv[i] = (float)(0.1 + 2.9 * co_rng_uniform(&r));
        w->target[i] = (float)(2 * co_rng_uniform(&r) - 1);
    }
    w->sign = sign;
}

/* A concave problem to maximize: f = -0.5 curv (theta - target)^2 + noise theta. */
static double world_eval(void *ctx)
{
    world *w = ctx;
    double f = 0;
    for (int i = 0; i < NP; i++) {
        float d = w->theta[i] - w->target[i];
        float g = -w->curv[i] * d + w->noise[i];
        w->grad[i] = w->sign * g;
        f += -0.5 * w->curv[i] * d * d + (double)w->noise[i] * w->theta[i];
    }
    return w->sign * f;
}

static int world_capture(void *ctx, int group, co_capture *out)
{
    world *w = ctx;
    if (group == 0) *out = (co_capture){w->a0, w->g0, BATCH, C0, R0, BATCH};
    else if (group == 1) *out = (co_capture){w->a1, w->g1, BATCH, C1, R1, BATCH};
    else return 0;
    return 1;
}

static void world_next_batch(world *w)
{
    w->step++;
    co_rng r;
    co_rng_seed(&r, 99, (uint64_t)w->step);
    for (int i = 0; i < NP; i++) w->noise[i] = (float)(0.1 * co_rng_normal(&r));
    float *mats[4] = {w->a0, w->g0, w->a1, w->g1};
    int sizes[4] = {BATCH * C0, BATCH * R0, BATCH * C1, BATCH * R1};
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < sizes[m]; i++) mats[m][i] = (float)(2 * co_rng_uniform(&r) - 1);
    world_eval(w);
}

static void world_groups(world *w, co_group *g)
{
    int rows[2] = {R0, R1}, cols[2] = {C0, C1};
    size_t off = 0;
    for (int l = 0; l < 2; l++) {
        g[l] = (co_group){.name = l ? "fc2" : "fc1", .kind = CO_GROUP_LINEAR, .ntensors = 2, .rows = rows[l], .cols = cols[l]};
        g[l].size[0] = (size_t)rows[l] * cols[l];
        g[l].size[1] = (size_t)rows[l];
        for (int k = 0; k < 2; k++) {
            g[l].param[k] = w->theta + off;
            g[l].grad[k] = w->grad + off;
            off += g[l].size[k];
        }
    }
}

/* Runs STEPS steps; returns the optimizer (NULL on failure). */
static co_optim *run(const char *name, world *w, const char *hp, int steps)
{
    co_group g[2];
    world_groups(w, g);
    co_error err = {0};
    co_optim *o = co_optim_new(name, g, 2, hp, 5, &err);
    CHECK(o != NULL, "%s %s: %s", name, hp ? hp : "", err.msg);
    if (!o) return NULL;
    co_closure c = {w, world_eval, world_capture};
    for (int t = 0; t < steps; t++) {
        world_next_batch(w);
        float before[NP];
        memcpy(before, w->grad, sizeof before);
        int closure_method = (co_optim_needs(o) & CO_NEEDS_CLOSURE) != 0;
        co_status st = co_optim_step(o, &c, &err);
        CHECK(st == CO_OK, "%s step %d: %s", name, t + 1, err.msg);
        /* The caller's gradients come back as it left them (the closure's last ones for a
         * method that re-evaluates, which restores them itself). */
        if (!closure_method) CHECK(memcmp(before, w->grad, sizeof before) == 0, "%s: gradients changed by the step", name);
        if (t == steps / 2) co_optim_epoch_end(o, 1, NAN, NULL);
    }
    return o;
}

static void test_maximize(void)
{
    int maximized = 0;
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world a, b;
        world_init(&a, 1.0f);
        world_init(&b, -1.0f);
        co_optim *oa = run(name, &a, "maximize=1", STEPS), *ob = run(name, &b, NULL, STEPS);
        if (oa && ob) {
            CHECK(memcmp(a.theta, b.theta, sizeof a.theta) == 0, "%s: maximize on g differs from minimizing with -g", name);
            CHECK(co_optim_get(oa, 1, "maximize") == 1 && co_optim_get(ob, 1, "maximize") == 0, "%s: maximize not read back", name);
            /* It moved, and uphill: f rose. */
            world c;
            world_init(&c, 1.0f);
            double f0 = world_eval(&c);
            memcpy(c.theta, a.theta, sizeof c.theta);
            double f1 = world_eval(&c);
            maximized += f1 > f0;
        }
        co_optim_free(oa);
        co_optim_free(ob);
    }
    /* ogr-asgd and other noisy methods may fluctuate; most must climb in 12 steps. */
    CHECK(maximized >= co_optim_count() - 3, "only %d of %d optimizers increased f with maximize=1", maximized,
          co_optim_count());
    int n;
    const co_hparam *common = co_optim_common_hparams(&n);
    CHECK(n >= 1 && strcmp(common[0].name, "maximize") == 0 && (common[0].flags & CO_HP_BOOL), "maximize is not listed");
    co_error err = {0};
    world w;
    world_init(&w, 1);
    co_group g[2];
    world_groups(&w, g);
    co_optim *o = co_optim_new("adam", g, 2, "maximize=2", 0, &err);
    CHECK(!o && strstr(err.msg, "maximize") && strstr(err.msg, "0 or 1"), "maximize=2 accepted: %s", err.msg);
    co_optim_free(o);
}

/* Per-group values reach what a method reads at creation: Adagrad's accumulator and
 * DA-RMSprop's ranks; afterwards a CO_HP_FIXED value cannot change. */
static void test_per_group(void)
{
    co_error err = {0};
    world w, solo;
    world_init(&w, 1);
    co_group g[2];
    world_groups(&w, g);
    const char *per_group[2] = {"initial_accumulator_value=0.5", "initial_accumulator_value=3,lr=0.1"};
    co_optim *o = co_optim_new_per_group("adagrad", g, 2, "lr=0.05", per_group, 0, &err);
    CHECK(o != NULL, "per-group adagrad: %s", err.msg);
    world_next_batch(&w);
    if (o) co_optim_step(o, NULL, &err);
    /* The same step for each group alone. */
    for (int l = 0; l < 2; l++) {
        world_init(&solo, 1);
        co_group s[2];
        world_groups(&solo, s);
        world_next_batch(&solo);
        char hp[96];
        snprintf(hp, sizeof hp, "lr=0.05,%s", per_group[l]);
        co_optim *x = co_optim_new("adagrad", &s[l], 1, hp, 0, &err);
        co_optim_step(x, NULL, &err);
        CHECK(memcmp(s[l].param[0], g[l].param[0], s[l].size[0] * sizeof(float)) == 0, "group %d: per-group values not applied at creation", l);
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
        CHECK(co_optim_set(o, 1, "rank_max", 6, &err) == CO_OK, "same fixed value refused: %s", err.msg);
        CHECK(co_optim_set(o, 0, "rank_max", 8, &err) == CO_EINVAL && strstr(err.msg, "fixed"), "rank_max changed after creation: %s",
              err.msg);
        CHECK(co_optim_get(o, 0, "rank_max") == 2, "refused value was stored");
        CHECK(co_optim_set(o, -1, "rank_min", 2, &err) == CO_OK, "a free value refused: %s", err.msg);
    }
    co_optim_free(o);
    o = co_optim_new("quasi-adam", g, 2, "memory=3", 0, &err);
    CHECK(o && co_optim_set(o, -1, "memory", 4, &err) == CO_EINVAL, "quasi-adam memory changed after creation");
    co_optim_free(o);
}

/* Moving the tensors to new buffers between steps changes nothing else. */
static void test_rebind(void)
{
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world a, b, moved;
        world_init(&a, 1);
        world_init(&b, 1);
        co_optim *oa = run(name, &a, NULL, STEPS / 2), *ob = run(name, &b, NULL, STEPS / 2);
        if (!oa || !ob) {
            co_optim_free(oa);
            co_optim_free(ob);
            continue;
        }
        moved = b;
        float *params[4], *grads[4];
        co_group g[2];
        world_groups(&moved, g);
        for (int t = 0; t < 4; t++) {
            params[t] = g[t / 2].param[t % 2];
            grads[t] = g[t / 2].grad[t % 2];
        }
        /* In two calls, so that NULL (keep) is exercised in both arrays. */
        float *last_grad = grads[3], *only_last[4] = {NULL, NULL, NULL, last_grad};
        grads[3] = NULL;
        co_error err = {0};
        CHECK(co_optim_rebind(ob, params, grads, &err) == CO_OK && co_optim_rebind(ob, NULL, only_last, &err) == CO_OK &&
                  co_optim_ngroups(ob) == 2,
              "%s: rebind", name);
        co_closure ca = {&a, world_eval, world_capture}, cm = {&moved, world_eval, world_capture};
        for (int t = 0; t < STEPS / 2; t++) {
            world_next_batch(&a);
            world_next_batch(&moved);
            co_optim_step(oa, &ca, &err);
            co_optim_step(ob, &cm, &err);
        }
        CHECK(memcmp(a.theta, moved.theta, sizeof a.theta) == 0, "%s: rebound optimizer diverged", name);
        CHECK(memcmp(b.theta, a.theta, sizeof a.theta) != 0, "%s: the old buffers were still written", name);
        co_optim_free(oa);
        co_optim_free(ob);
    }
}

/* The state through a memory buffer: continue bit-identical; wrong sizes, truncation,
 * trailing bytes and another method's state refused. */
static void test_state_buffer(void)
{
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world a, b;
        world_init(&a, 1);
        world_init(&b, 1);
        co_optim *oa = run(name, &a, "maximize=1", STEPS / 2);
        co_optim *ob = run(name, &b, NULL, 0);
        if (!oa || !ob) {
            co_optim_free(oa);
            co_optim_free(ob);
            continue;
        }
        co_error err = {0};
        size_t n = co_optim_state_size(oa);
        unsigned char *buf = malloc(n + 1);
        CHECK(co_optim_state_to_buffer(oa, buf, n - 1, &err) == CO_EINVAL, "%s: short buffer accepted", name);
        CHECK(co_optim_state_to_buffer(oa, buf, n, &err) == CO_OK, "%s: to_buffer: %s", name, err.msg);
        CHECK(co_optim_state_from_buffer(ob, buf, n - 3, &err) == CO_EFORMAT, "%s: truncated state accepted", name);
        buf[n] = 0;
        CHECK(co_optim_state_from_buffer(ob, buf, n + 1, &err) == CO_EFORMAT && strstr(err.msg, "trailing"),
              "%s: trailing byte accepted: %s", name, err.msg);
        CHECK(co_optim_steps(ob) == 0, "%s: a refused state was applied", name);
        CHECK(co_optim_state_from_buffer(ob, buf, n, &err) == CO_OK, "%s: from_buffer: %s", name, err.msg);
        CHECK(co_optim_steps(ob) == co_optim_steps(oa) && co_optim_get(ob, 0, "maximize") == 1, "%s: state not applied", name);
        memcpy(b.theta, a.theta, sizeof a.theta);
        b.step = a.step;
        co_closure ca = {&a, world_eval, world_capture}, cb = {&b, world_eval, world_capture};
        for (int t = 0; t < STEPS / 2; t++) {
            world_next_batch(&a);
            world_next_batch(&b);
            co_optim_step(oa, &ca, &err);
            co_optim_step(ob, &cb, &err);
        }
        CHECK(memcmp(a.theta, b.theta, sizeof a.theta) == 0, "%s: loaded from a buffer, the run diverged", name);
        const char *other = strcmp(name, "sgd") ? "sgd" : "adam";
        world c;
        world_init(&c, 1);
        co_optim *oc = run(other, &c, NULL, 0);
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

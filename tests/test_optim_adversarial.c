/* Every optimizer against adversarial gradients: zero, constant, huge and tiny scales,
 * negative curvature (a concave quadratic), and singular K-FAC statistics. Nothing may turn
 * into NaN or Inf: damping, clamps and fall-backs must hold. */
#include "test_util.h"

#include <curvopt.h>

enum { ROWS = 4, COLS = 5, NW = ROWS * COLS, BATCH = 6 };

typedef struct {
    float w[NW], b[ROWS], dw[NW], db[ROWS];
    float a[BATCH * COLS], g[BATCH * ROWS];
    int mode;     /* gradient generator */
    double scale; /* gradient scale */
    int step;
} problem;

/* A linear layer y = W a + b on a fixed batch whose inputs are all the same row (so K-FAC's
 * A is singular), under the scenario's loss; gradients and captured statistics are
 * consistent, as they are in a network. Scenarios: 0 zero loss, 1 L = scale * sum(y) (constant
 * gradients), 2 L = -scale/2 |y|^2 (negative curvature), 3 L = +scale/2 |y|^2. */
static void fill(problem *p)
{
    for (int r = 0; r < BATCH; r++) {
        for (int j = 0; j < COLS; j++) p->a[r * COLS + j] = (float)(0.5 * (j + 1));
        for (int i = 0; i < ROWS; i++) {
            double y = p->b[i];
            for (int j = 0; j < COLS; j++) y += (double)p->w[i * COLS + j] * p->a[r * COLS + j];
            double dy = p->mode == 0 ? 0 : p->mode == 1 ? 1 : p->mode == 2 ? -y : y;
            p->g[r * ROWS + i] = (float)(p->scale * dy / BATCH);
        }
    }
    for (int i = 0; i < ROWS; i++) {
        double db = 0;
        for (int r = 0; r < BATCH; r++) db += p->g[r * ROWS + i];
        p->db[i] = (float)db;
        for (int j = 0; j < COLS; j++) {
            double d = 0;
            for (int r = 0; r < BATCH; r++) d += (double)p->g[r * ROWS + i] * p->a[r * COLS + j];
            p->dw[i * COLS + j] = (float)d;
        }
    }
}

static double eval(void *ctx)
{
    fill(ctx);
    return 0;
}

static int capture(void *ctx, int group, co_capture *out)
{
    problem *p = ctx;
    if (group != 0) return 0;
    *out = (co_capture){p->a, p->g, BATCH, COLS, ROWS, BATCH};
    return 1;
}

static void run(const char *name, int mode, double scale)
{
    problem p = {.mode = mode, .scale = scale};
    for (int i = 0; i < NW; i++) p.w[i] = (float)(0.1 * ((i % 7) - 3));
    for (int i = 0; i < ROWS; i++) p.b[i] = 0.05f * (float)i;
    co_group g = {.name = "layer", .kind = CO_GROUP_LINEAR, .ntensors = 2, .param = {p.w, p.b}, .grad = {p.dw, p.db},
                  .size = {NW, ROWS}, .rows = ROWS, .cols = COLS};
    co_error err;
    co_optim *o = co_optim_new(name, &g, 1, NULL, 1, &err);
    CHECK(o != NULL, "%s: %s", name, o ? "" : err.msg);
    if (!o) return;
    co_closure c = {.ctx = &p, .eval = eval, .capture = capture};
    int bad_step = -1;
    for (int s = 0; s < 60 && bad_step < 0; s++) {
        fill(&p);
        co_status st = co_optim_step(o, &c, &err);
        if (st) {
            CHECK(0, "%s mode %d scale %g: step failed: %s", name, mode, scale, err.msg);
            break;
        }
        if (s % 10 == 9) co_optim_epoch_end(o, s / 10 + 1, 1.0, NULL);
        for (int i = 0; i < NW; i++)
            if (!isfinite(p.w[i])) bad_step = s;
        for (int i = 0; i < ROWS; i++)
            if (!isfinite(p.b[i])) bad_step = s;
    }
    const char *what[] = {"zero", "constant", "negative-curvature", "quadratic"};
    CHECK(bad_step < 0, "%s: %s gradients at scale %g gave non-finite parameters at step %d", name, what[mode], scale,
          bad_step + 1);
    co_optim_free(o);
}

int main(void)
{
    const double scales[] = {1.0, 1e-20, 1e20};
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        for (int mode = 0; mode < 4; mode++)
            for (int k = 0; k < 3; k++) {
                /* A quadratic of curvature 1e20 is unstable for any fixed learning rate (and
                 * its gradients overflow float once the iterate grows): that is divergence of
                 * the problem, not a numerical failure of the method. Huge scales are tested
                 * with zero and constant gradients. */
                if (mode >= 2 && scales[k] > 1) continue;
                run(name, mode, scales[k]);
            }
    }
    return co_test_finish();
}

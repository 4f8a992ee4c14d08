/* Duda's coordinate-wise second-order SGD (paper 001, section IV):
 *   ogr-asgd  (Algorithm 8, eq. 9):  theta_i -= alpha max(sigma_theta_i / sigma_g_i, delta) g_i,
 *             sigma_g^2 = var(g) + eps;
 *   ogr-asgdc (Algorithm 9, eq. 13): theta_i -= alpha g_i / (|lambda_i| + gamma sqrt(nu_i / var_theta_i)),
 *             lambda = cov(g, theta) / var(theta), nu the adapted gradient-noise variance.
 * EMA convention of the paper's eq. 3: avg = beta avg + (1 - beta) x (beta weighs the OLD
 * average). The averages of theta^2, g^2 and g*theta are kept as central moments updated by
 * var' = beta (var + (1 - beta) d^2), d = x - mean_old, which is algebraically identical to
 * the paper's raw moments (theta2_avg - theta_avg^2) but does not cancel in float: with
 * |theta| ~ 1 and sigma_theta ~ 1e-4 the raw form has no correct digit left in float32.
 * The per-element updates are elementwise.h's, shared with the CUDA kernel (the same step
 * on a GPU, bit for bit); see docs/optimizers/ogr-asgd.md. */
#include "optim_impl.h"
#include "elementwise.h"

#include <string.h>

enum { HP_LR, HP_BETA, HP_SIGMA_THETA0, HP_SIGMA_G0, HP_WD, HP_EPS, HP_DELTA, HP_FAITHFUL, HP_RATE_GROWTH, HP_RATE_MAX };
enum { HPC_GAMMA = HP_EPS, HPC_LAMBDA_MIN };

typedef struct {
    int confidence; /* 0: Algorithm 8, 1: Algorithm 9 */
    co_slots *mean_theta, *var_theta, *mean_g;
    co_slots *var_g; /* Algorithm 8: var(g); Algorithm 9: cov(g, theta) */
    co_slots *nu;    /* Algorithm 9 only: gradient-noise variance */
    co_slots *rate_avg; /* rate_growth: average of each coordinate's past rates, in units of lr */
    uint64_t k;      /* steps taken; the first initialises the averages at the parameters */
} asgd_state;

static co_status asgd_init_common(co_optim *o, int confidence, co_error *err)
{
    asgd_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    s->confidence = confidence;
    s->mean_theta = co_slots_new(o, err);
    s->var_theta = co_slots_new(o, err);
    s->mean_g = co_slots_new(o, err);
    s->var_g = co_slots_new(o, err);
    s->rate_avg = co_slots_new(o, err);
    if (!s->mean_theta || !s->var_theta || !s->mean_g || !s->var_g || !s->rate_avg) return CO_ENOMEM;
    if (confidence && !(s->nu = co_slots_new(o, err))) return CO_ENOMEM;
    return CO_OK;
}

static co_status asgd_init(co_optim *o, co_error *err) { return asgd_init_common(o, 0, err); }
static co_status asgdc_init(co_optim *o, co_error *err) { return asgd_init_common(o, 1, err); }

/* Algorithms 8 and 9's initialisation, at the parameters of the first step (not at
 * construction: callers may set the parameters after creating the optimizer):
 * mean_theta = theta, var_theta = sigma_theta0^2, mean_g = 0, var_g = sigma_g0^2 (Alg. 8) or
 * cov = 0 and nu = sigma_g0^2 (Alg. 9); rate_avg = 1. On either device (on the GPU queued on
 * the optimizer's stream, the copy waited for). */
static co_status asgd_start(co_optim *o, asgd_state *s, co_error *err)
{
    co_status st = CO_OK;
    for (int g = 0; g < o->ngroups && st == CO_OK; g++) {
        float vt = (float)(co_hp(o, g, HP_SIGMA_THETA0) * co_hp(o, g, HP_SIGMA_THETA0));
        float vg = (float)(co_hp(o, g, HP_SIGMA_G0) * co_hp(o, g, HP_SIGMA_G0));
        for (int k = 0; k < o->groups[g].ntensors && st == CO_OK; k++) {
            float *mt = co_slot(s->mean_theta, g, k);
            size_t bytes = o->groups[g].size[k] * sizeof(float);
            if (o->device == CO_DEVICE_CUDA)
                st = co_cuda_copy(mt, o->groups[g].param[k], bytes, o->stream, err);
            else
                memcpy(mt, o->groups[g].param[k], bytes);
        }
        if (st == CO_OK) st = co_slots_fill_group(s->var_theta, o, g, vt, err);
        if (st == CO_OK) st = co_slots_fill_group(s->mean_g, o, g, 0.0f, err);
        if (st == CO_OK) st = co_slots_fill_group(s->var_g, o, g, s->confidence ? 0.0f : vg, err);
        if (st == CO_OK && s->nu) st = co_slots_fill_group(s->nu, o, g, vg, err);
        if (st == CO_OK) st = co_slots_fill_group(s->rate_avg, o, g, 1.0f, err);
    }
    return st;
}

/* The per-group scalars of the step under way, as the CPU loops and the GPU kernel use them:
 * rate_growth and rate_max through co_guard (0 under faithful=1), a = 1 - beta in float. */
static co_ogr_asgd_scalars asgd_scalars(const co_optim *o, int g)
{
    float beta = (float)co_hp(o, g, HP_BETA);
    return (co_ogr_asgd_scalars){.beta = beta,
                                 .a = 1.0f - beta,
                                 .alpha = (float)co_lr(o, g),
                                 .eps = (float)co_hp(o, g, HP_EPS),
                                 .delta = (float)co_hp(o, g, HP_DELTA),
                                 .growth = (float)co_guard(o, g, HP_RATE_GROWTH),
                                 .rmax = (float)co_guard(o, g, HP_RATE_MAX)};
}

static co_ogr_asgdc_scalars asgdc_scalars(const co_optim *o, int g)
{
    float beta = (float)co_hp(o, g, HP_BETA);
    return (co_ogr_asgdc_scalars){.beta = beta,
                                  .a = 1.0f - beta,
                                  .alpha = (float)co_lr(o, g),
                                  .gamma = (float)co_hp(o, g, HPC_GAMMA),
                                  .lambda_min = (float)co_hp(o, g, HPC_LAMBDA_MIN),
                                  .growth = (float)co_guard(o, g, HP_RATE_GROWTH),
                                  .rmax = (float)co_guard(o, g, HP_RATE_MAX)};
}

static void asgd_scalars_of(const co_optim *o, int g, float *out)
{
    co_ogr_asgd_scalars sc = asgd_scalars(o, g);
    memcpy(out, &sc, sizeof sc);
}

static void asgdc_scalars_of(const co_optim *o, int g, float *out)
{
    co_ogr_asgdc_scalars sc = asgdc_scalars(o, g);
    memcpy(out, &sc, sizeof sc);
}

/* The tensor loops below run the update with its two flags as constants, one loop per
 * combination: with a flag tested inside the loop GCC vectorises a slower form (16M
 * parameters, one thread, this machine: ogr-asgdc's default step 43 ms that way, 34 ms this
 * way; with the pointer ra tested for NULL inside the loop, as before, 85 ms). */
#define ASGD_FLAG_LOOPS(LOOP, rate_max, rate_growth) \
    do {                                             \
        if ((rate_max) && (rate_growth))             \
            LOOP(1, 1);                              \
        else if (rate_max)                           \
            LOOP(1, 0);                              \
        else if (rate_growth)                        \
            LOOP(0, 1);                              \
        else                                         \
            LOOP(0, 0);                              \
    } while (0)

/* Algorithm 8 on one tensor (co_ogr_asgd_update). With rate_growth a coordinate's rate (in
 * units of alpha) is at most growth times the average of its past rates (ra), which starts
 * at 1. */
static void asgd_tensor(float *restrict p, const float *restrict g, float *restrict mt, float *restrict vt,
                        float *restrict mg, float *restrict vg, float *restrict ra, size_t n, co_ogr_asgd_scalars s)
{
#define LOOP(RATE_MAX, RATE_GROWTH)                                                                 \
    _Pragma("omp simd")                                                                            \
    for (size_t i = 0; i < n; i++)                                                                 \
        p[i] = co_ogr_asgd_update(p[i], g[i], &mt[i], &vt[i], &mg[i], &vg[i], &ra[i], s, RATE_MAX, \
                                  RATE_GROWTH)
    ASGD_FLAG_LOOPS(LOOP, s.rmax > 0, s.growth > 0);
#undef LOOP
}

/* Algorithm 9 on one tensor (co_ogr_asgdc_update); ra as in asgd_tensor (the rate is 1/h). */
static void asgdc_tensor(float *restrict p, const float *restrict g, float *restrict mt, float *restrict vt,
                         float *restrict mg, float *restrict cv, float *restrict nu, float *restrict ra, size_t n,
                         co_ogr_asgdc_scalars s)
{
#define LOOP(RATE_MAX, RATE_GROWTH)                                                                  \
    _Pragma("omp simd")                                                                             \
    for (size_t i = 0; i < n; i++)                                                                  \
        p[i] = co_ogr_asgdc_update(p[i], g[i], &mt[i], &vt[i], &mg[i], &cv[i], &nu[i], &ra[i], s, \
                                   RATE_MAX, RATE_GROWTH)
    ASGD_FLAG_LOOPS(LOOP, s.rmax > 0, s.growth > 0);
#undef LOOP
}

/* The slots in asgd_step_cuda's order: mean_theta, var_theta, mean_g, var_g (or cov),
 * rate_avg, nu. */
static void asgd_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_ogr_asgd_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    asgd_tensor(p, g, slot[0], slot[1], slot[2], slot[3], slot[4], n, sc);
}

static void asgdc_range(float *p, float *g, float *const *slot, size_t n, const float *scalars)
{
    co_ogr_asgdc_scalars sc;
    memcpy(&sc, scalars, sizeof sc);
    asgdc_tensor(p, g, slot[0], slot[1], slot[2], slot[3], slot[5], slot[4], n, sc);
}

static co_status asgd_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    asgd_state *s = o->state;
    for (int g = 0; g < o->ngroups; g++) co_apply_l2(o, g, co_hp(o, g, HP_WD));
    if (++s->k == 1) {
        co_status st = asgd_start(o, s, err);
        if (st != CO_OK) return st;
    }
    co_slots *const slots[CO_MT_MAX_SLOTS] = {s->mean_theta, s->var_theta, s->mean_g, s->var_g, s->rate_avg, s->nu};
    co_optim_foreach(o, slots, s->confidence ? asgdc_scalars_of : asgd_scalars_of,
                     s->confidence ? asgdc_range : asgd_range);
    return CO_OK;
}

/* co_apply_l2's weight decay on the GPU: g += wd p, groups whose wd is 0 untouched. */
static void asgd_l2_scalars_of(const co_optim *o, int g, float *out)
{
    double wd = co_hp(o, g, HP_WD);
    co_l2_scalars sc = {.wd = (float)wd, .on = wd != 0};
    memcpy(out, &sc, sizeof sc);
}

/* asgd_step's passes in its order on the GPU: L2 on the gradients (a launch only when some
 * group decays), the first step's initialisation, then one fused launch of the update with
 * the slots mean_theta, var_theta, mean_g, var_g (or cov), rate_avg and nu. */
static co_status asgd_step_cuda(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    asgd_state *s = o->state;
    co_status st = CO_OK;
    int decays = 0;
    for (int g = 0; g < o->ngroups; g++) decays |= co_hp(o, g, HP_WD) != 0;
    if (decays) st = co_optim_mt_step(o, CO_MT_L2, NULL, asgd_l2_scalars_of, err);
    if (st == CO_OK && ++s->k == 1) st = asgd_start(o, s, err);
    if (st != CO_OK) return st;
    if (s->confidence)
        return co_optim_mt_step(o, CO_MT_OGR_ASGDC,
                                (co_slots *const[CO_MT_MAX_SLOTS]){s->mean_theta, s->var_theta, s->mean_g, s->var_g,
                                                                   s->rate_avg, s->nu},
                                asgdc_scalars_of, err);
    return co_optim_mt_step(o, CO_MT_OGR_ASGD,
                            (co_slots *const[CO_MT_MAX_SLOTS]){s->mean_theta, s->var_theta, s->mean_g, s->var_g,
                                                               s->rate_avg},
                            asgd_scalars_of, err);
}

static void asgd_visit(co_optim *o, co_state_visitor *v)
{
    asgd_state *s = o->state;
    co_slots_visit(s->mean_theta, o, v, "mean_theta");
    co_slots_visit(s->var_theta, o, v, "var_theta");
    co_slots_visit(s->mean_g, o, v, "mean_g");
    co_slots_visit(s->var_g, o, v, s->confidence ? "cov_g_theta" : "var_g");
    if (s->nu) co_slots_visit(s->nu, o, v, "noise_var");
    co_slots_visit(s->rate_avg, o, v, "rate_avg");
    v->blob(v, "steps", &s->k, sizeof s->k);
}

static void asgd_free(co_optim *o)
{
    asgd_state *s = o->state;
    co_slots_free(s->mean_theta);
    co_slots_free(s->var_theta);
    co_slots_free(s->mean_g);
    co_slots_free(s->var_g);
    co_slots_free(s->nu);
    co_slots_free(s->rate_avg);
    free(s);
}

#define ASGD_COMMON                                                                                             \
    {"lr", 0.5, 0, 1e3, 0, "alpha: confidence in the parabola model, multiplies the step (paper ~0.5)"},        \
    {"beta", 0.9, 0, 1, CO_HP_MIN_OPEN | CO_HP_MAX_OPEN, "weight of the OLD average in every average (eq. 3)"}, \
    {"sigma_theta0", 1, 0, 1e6, 0, "initial dispersion of theta: var_theta starts at sigma_theta0^2"}

#define ASGD_GUARDS(rate_max_default)                                                                         \
    {"faithful", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: the paper's algorithm as published (every safeguard off)"}, \
    {"rate_growth", 0, 0, 1e6, CO_HP_SAFEGUARD,                                                               \
     "a coordinate's rate is at most this times the average of its past rates (starting at lr) (0: off)"}, \
    {"rate_max", rate_max_default, 0, 1e6, CO_HP_SAFEGUARD, "a coordinate's rate is at most rate_max x lr (0: off)"}

static const co_hparam asgd_hp[] = {
    ASGD_COMMON,
    {"sigma_g0", 1, 0, 1e6, CO_HP_MIN_OPEN, "initial dispersion of g: var_g starts at sigma_g0^2"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"eps", 1e-12, 0, 1, 0, "added to var(g) under the square root: sqrt(var_theta / (var_g + eps))"},
    {"delta", 1e-4, 0, 1e3, 0, "minimal rate: max(sigma_theta / sigma_g, delta)"},
    ASGD_GUARDS(0),
};
static const co_hparam asgdc_hp[] = {
    ASGD_COMMON,
    {"sigma_g0", 1, 0, 1e6, 0, "initial gradient-noise dispersion: nu starts at sigma_g0^2"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"gamma", 0.1, 0, 1e3, CO_HP_MIN_OPEN, "confidence level: |lambda| + gamma sigma / sigma_theta (eq. 13)"},
    {"lambda_min", 1e-2, 0, 1e6, CO_HP_MIN_OPEN,
     "floor of |lambda| + gamma sigma / sigma_theta: the rate never exceeds lr / lambda_min"},
    ASGD_GUARDS(1),
};

static const co_optim_ops asgd_ops = {
    .init = asgd_init, .step = asgd_step, .step_cuda = asgd_step_cuda, .visit = asgd_visit, .free = asgd_free};
static const co_optim_ops asgdc_ops = {
    .init = asgdc_init, .step = asgd_step, .step_cuda = asgd_step_cuda, .visit = asgd_visit, .free = asgd_free};

const co_optim_info co_info_ogr_asgd = {"ogr-asgd", "coordinate-wise rate sigma_theta / sigma_g (adaptive SGD)",
                                        "Duda 2019, arXiv:1907.07063, Algorithm 8",
                                        (int)(sizeof asgd_hp / sizeof asgd_hp[0]), asgd_hp, &asgd_ops};
const co_optim_info co_info_ogr_asgdc = {"ogr-asgdc",
                                         "coordinate-wise parabola with confidence level and adapted noise",
                                         "Duda 2019, arXiv:1907.07063, Algorithm 9",
                                         (int)(sizeof asgdc_hp / sizeof asgdc_hp[0]), asgdc_hp, &asgdc_ops};

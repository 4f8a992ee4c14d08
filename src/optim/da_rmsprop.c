/* DA-RMSprop (paper 000): RMSprop's scaling (eq. 8, 10) plus a per-layer low-rank curvature
 * solve (SKF-OHA, eq. 1-4, 9) and the gradient-alignment factor (DM-MAGA, eq. 5-7):
 *
 *   v_t = beta2 v + (1 - beta2) g^2                         (eq. 8)
 *   D_t = 1 / (sqrt(v_t) + eps)                             (eq. 10, elementwise)
 *   m_t = beta1 m + (1 - beta1) g;  a_t = cos(g_t, m_t)     (eq. 5-6)
 *   H_l = delta I + Q_l diag(mu_l) Q_l^T                    (eq. 1, Q orthonormal, mu >= 0)
 *   theta -= lr (1 + lambda a_t) D^1/2 H_l^-1 D^1/2 g       (eq. 7, 12-13)
 *
 * H_l lives in RMSprop's whitened coordinates: with probability p per layer and step (eq. 3,
 * the optimizer's seeded stream) a Frequent-Directions sketch takes u = D g_l; Q_l, mu_l
 * are its top eigenpairs, mu_l = max(sqrt(lambda_i) - delta, 0) (the excess of the gradient
 * second moment's square root over the identity base, floored at 0: "div & cut"), and the
 * rank adapts from the sketch spectrum with sigma_1 by power iteration (eq. 4, with
 * hysteresis). RMSprop's part is its own element function, co_rmsprop_denom. The
 * symmetric D^1/2 H^-1 D^1/2 keeps every step a descent direction; with rank 0 it is D
 * exactly, so rank 0 and lambda 0 is torch's RMSprop bit for bit. Decisions and costs:
 * docs/optimizers/da-rmsprop.md. */
#include "optim_impl.h"
#include "../core/blas.h"
#include "elementwise.h"
#include "sketch.h"
#include "torch_ops.h"

#include <math.h>
#include <string.h>

enum {
    HP_LR,
    HP_BETA1,
    HP_BETA2,
    HP_EPS,
    HP_LAMBDA,
    HP_P,
    HP_RANK_MAX,
    HP_RANK_MIN,
    HP_RANK_INIT,
    HP_DELTA,
    HP_SKETCH_DECAY,
    HP_TOL_UP,
    HP_TOL_DOWN,
    HP_POWER_ITERS,
    HP_WD,
    HP_ALIGN_PER_LAYER,
    HP_FAITHFUL,
    HP_GAIN_MAX,
    HP_CURV_CLIP,
    HP_GRAFT,
    HP_P_WARMUP,
    HP_COUNT
};

/* The step's passes run over fixed chunks of the layers (a tensor's elements from a
 * multiple of CHUNK): each chunk's sums are its own, added in chunk order, so results
 * depend on neither the thread count nor which thread took which chunk. */
enum { CHUNK = 2048 };

typedef struct {
    int g, k;
    size_t c0, len, off; /* elements [c0, c0 + len) of tensor k, at off in the layer's vector */
} darms_chunk;

/* What the step has decided for a layer, for the passes over its chunks. */
typedef struct {
    int drawn;        /* eq. 3: the factors are refreshed this step */
    int rank;         /* 0 with delta = 1: RMSprop's own step (H = I) */
    int solve;        /* the Woodbury solve runs (rank > 0 or delta != 1) */
    int graft;
    int norm_sums;    /* grafting's |d|^2 in closed form from sums the projections pass adds */
    int moves;        /* d formed in a pass of its own, into dbuf (grafted, no closed form) */
    float step;       /* lr (1 + lambda a_t), capped by gain_max */
    float clip, scale; /* curv_clip; graft's length ratio */
    double delta;
} darms_layer;

typedef struct {
    co_slots *v, *m;
    int rmax;             /* allocated rank (largest rank_max over groups) */
    int maxn;             /* largest group size */
    co_fd_sketch *sketch; /* per group */
    float *q;             /* per group: maxn-strided n_l x rmax basis */
    double *mu;           /* per group: rmax */
    int32_t *rank;        /* per group, current adaptive rank */
    double *sigma1, *err; /* per group, last power-iteration estimate and relative error */
    int64_t *updates;     /* per group, sketch updates done */
    float *dbuf;          /* all parameters, layer after layer: a drawn layer's u = D g, then a grafted layer's moves d
                           * where they are measured on the formed d */
    double *proj, *pwork; /* per group rmax; sketch rows */
    double *pstart;       /* per group, 2 rmax: the power iteration's start, drawn at the step's start */
    double *layer_dots;   /* per group: g.m, g.g, m.m of this step (eq. 6 per layer) */
    double align;         /* last a_t (global) */
    darms_chunk *chunks;  /* every layer's chunks, layer after layer */
    size_t nchunks, *chunk0; /* chunk0[g]: the first chunk of layer g (chunk0[G] = nchunks) */
    size_t *layer_base;   /* per group: where its moves start in dbuf */
    double *part;         /* per chunk: PART doubles of sums */
    darms_layer *layer;   /* per group */
} darms_state;

/* Sums a chunk hands on: pass 1's three, |D g|^2 for grafting, the projections on Q
 * (rank_max), the closed form's sums for |d|^2 (co_woodbury_norm_dots, up to its largest
 * rank); then |d|^2 measured on the formed d (in place of the first, which the step has
 * read by then). */
#define PART_NR 3
#define PART_PROJ 4
#define PART_NORM(s) (PART_PROJ + (size_t)(s)->rmax)
#define PART(s) (PART_NORM(s) + CO_WOODBURY_NORM_SUMS((s)->rmax < CO_WOODBURY_NORM_MAX_RANK ? (s)->rmax : CO_WOODBURY_NORM_MAX_RANK))

/* Grafting's |d|^2 from the closed form is trusted when it is at least this fraction of the
 * bound on its terms (co_woodbury_norm2): its relative error is then below 16 x 259 float
 * roundings (2.5e-4; the step length's half that) in the worst case, and measured below
 * 2.3e-6. Below it the correction has cancelled most of the step, and |d|^2 is measured on
 * the formed d. */
#define GRAFT_NORM_MIN_FRACTION (1.0 / 16)

static size_t group_n(const co_optim *o, int g) { return co_group_numel(&o->groups[g]); }

/* Layer g's slices of the per-group arrays sized by the allocated rank (at least 1). */
static size_t rank_stride(const darms_state *s) { return s->rmax ? (size_t)s->rmax : 1; }
static float *layer_q(const darms_state *s, int g) { return s->q + (size_t)g * s->maxn * rank_stride(s); }
static double *layer_mu(const darms_state *s, int g) { return s->mu + (size_t)g * rank_stride(s); }
static double *layer_proj(const darms_state *s, int g) { return s->proj + (size_t)g * rank_stride(s); }

static co_status darms_init(co_optim *o, co_error *err)
{
    darms_state *s = calloc(1, sizeof *s);
    if (!s) return co_error_set(err, CO_ENOMEM, "out of memory");
    o->state = s;
    for (int g = 0; g < o->ngroups; g++) {
        int rmax = (int)co_hp(o, g, HP_RANK_MAX);
        if (co_hp(o, g, HP_TOL_DOWN) > co_hp(o, g, HP_TOL_UP))
            return co_error_set(err, CO_EINVAL, "da-rmsprop: tol_down exceeds tol_up");
        if (rmax > s->rmax) s->rmax = rmax;
        if ((int)group_n(o, g) > s->maxn) s->maxn = (int)group_n(o, g);
    }
    s->v = co_slots_new(o, err);
    s->m = co_slots_new(o, err);
    if (!s->v || !s->m) return CO_ENOMEM;
    int G = o->ngroups;
    size_t R = rank_stride(s);
    s->sketch = calloc((size_t)G, sizeof *s->sketch);
    s->q = co_falloc((size_t)G * s->maxn * R);
    s->mu = co_dalloc((size_t)G * R);
    s->rank = calloc((size_t)G, sizeof *s->rank);
    s->sigma1 = co_dalloc((size_t)G);
    s->err = co_dalloc((size_t)G);
    s->updates = calloc((size_t)G, sizeof *s->updates);
    s->layer_dots = co_dalloc((size_t)3 * G);
    s->dbuf = co_falloc(co_optim_numel(o));
    s->proj = co_dalloc((size_t)G * R);
    s->pwork = co_dalloc((size_t)2 * R);
    s->pstart = co_dalloc((size_t)G * 2 * R);
    s->layer = calloc((size_t)G, sizeof *s->layer);
    s->chunk0 = calloc((size_t)G + 1, sizeof *s->chunk0);
    s->layer_base = calloc((size_t)G, sizeof *s->layer_base);
    if (!s->layer_base || !s->sketch || !s->q || !s->mu || !s->rank || !s->sigma1 || !s->err || !s->updates || !s->layer_dots ||
        !s->dbuf || !s->proj || !s->pwork || !s->pstart || !s->layer || !s->chunk0)
        return co_error_set(err, CO_ENOMEM, "out of memory for da-rmsprop state");
    for (int g = 0; g < G; g++) {
        s->layer_base[g] = g ? s->layer_base[g - 1] + group_n(o, g - 1) : 0;
        s->chunk0[g] = s->nchunks;
        for (int k = 0; k < o->groups[g].ntensors; k++) s->nchunks += (o->groups[g].size[k] + CHUNK - 1) / CHUNK;
    }
    s->chunk0[G] = s->nchunks;
    s->chunks = calloc(s->nchunks ? s->nchunks : 1, sizeof *s->chunks);
    s->part = co_dalloc(s->nchunks * PART(s));
    if (!s->chunks || !s->part) return co_error_set(err, CO_ENOMEM, "out of memory for da-rmsprop state");
    size_t c = 0;
    for (int g = 0; g < G; g++) {
        size_t off = 0;
        for (int k = 0; k < o->groups[g].ntensors; off += o->groups[g].size[k], k++)
            for (size_t c0 = 0; c0 < o->groups[g].size[k]; c0 += CHUNK, c++) {
                size_t len = o->groups[g].size[k] - c0 < CHUNK ? o->groups[g].size[k] - c0 : CHUNK;
                s->chunks[c] = (darms_chunk){g, k, c0, len, off + c0};
            }
    }
    for (int g = 0; g < G; g++) {
        int rmax = (int)co_hp(o, g, HP_RANK_MAX);
        co_status st = co_fd_init(&s->sketch[g], (int)group_n(o, g), 2 * rmax, err);
        if (st) return st;
        int r0 = (int)co_hp(o, g, HP_RANK_INIT);
        s->rank[g] = r0 < rmax ? r0 : rmax;
    }
    return CO_OK;
}

static void darms_free(co_optim *o)
{
    darms_state *s = o->state;
    co_slots_free(s->v);
    co_slots_free(s->m);
    if (s->sketch)
        for (int g = 0; g < o->ngroups; g++) co_fd_free(&s->sketch[g]);
    free(s->sketch);
    free(s->q);
    free(s->mu);
    free(s->rank);
    free(s->sigma1);
    free(s->err);
    free(s->updates);
    free(s->layer_dots);
    free(s->dbuf);
    free(s->proj);
    free(s->pwork);
    free(s->pstart);
    free(s->layer);
    free(s->chunk0);
    free(s->layer_base);
    free(s->chunks);
    free(s->part);
    free(s);
}

/* The sketch's Gram matrix B B^T has the nonzero spectrum of B^T B: power iteration on it
 * is eq. 4's sigma_1 at rows x rows cost. Rows past `used` are zero, so only the leading
 * used x used block is multiplied; the iteration still runs over all rows so that it draws
 * the same start from the optimizer's stream whatever the rows in use. */
static void gram_matvec(const double *x, double *y, void *ctx)
{
    const co_fd_sketch *sk = ctx;
    int R = sk->rows, m = sk->used;
    for (int i = 0; i < m; i++) {
        double a = 0;
        for (int j = 0; j < m; j++) a += sk->gram[(size_t)i * R + j] * x[j];
        y[i] = a;
    }
    for (int i = m; i < R; i++) y[i] = 0;
}

/* Eq. 3-4: refresh layer g's factors from its whitened gradient u, adapt the rank. */
static co_status update_factors(co_optim *o, darms_state *s, int g, const float *u, co_error *err)
{
    co_fd_sketch *sk = &s->sketch[g];
    co_status st = co_fd_update(sk, u, co_hp(o, g, HP_SKETCH_DECAY), err);
    if (st) return st;
    s->updates[g]++;
    int rmax = (int)co_hp(o, g, HP_RANK_MAX), rmin = (int)co_hp(o, g, HP_RANK_MIN);
    if (rmin > rmax) rmin = rmax; /* rank_max = 0 alone switches the curvature off */
    /* gram_matvec needs the Gram matrix, which the last decomposition left intact. */
    double sigma1 = co_power_iteration(gram_matvec, sk, sk->rows, (int)co_hp(o, g, HP_POWER_ITERS),
                                       s->pstart + (size_t)g * 2 * s->rmax, s->pwork);
    s->sigma1[g] = sigma1;
    /* Eq. 4's rule with hysteresis: grow while the rank-r error exceeds tol_up; shrink only
     * when the direction given up would leave the error below tol_down. Testing the rank-r
     * error for both (the literal reading) makes an exactly rank-k stream oscillate between
     * k and k-1: at rank k the error is ~0, so it drops, and at k-1 it is large again. */
    int r = s->rank[g];
    if (sigma1 > 0) {
        if (r < rmax && co_fd_tail(sk, r) / sigma1 > co_hp(o, g, HP_TOL_UP)) r++;
        else if (r > rmin && co_fd_tail(sk, r - 1) / sigma1 < co_hp(o, g, HP_TOL_DOWN)) r--;
    }
    s->rank[g] = r;
    s->err[g] = sigma1 > 0 ? co_fd_tail(sk, r) / sigma1 : 0;
    double *mu = layer_mu(s, g);
    co_fd_top_coef(sk, r, mu); /* Q itself is formed chunk by chunk in pass_project */
    double delta = co_hp(o, g, HP_DELTA);
    /* The sketch holds second moments of u; the curvature along q_i is their square root
     * (RMSprop's own sqrt scaling), and only its excess over the base delta counts. */
    for (int i = 0; i < r; i++) mu[i] = fmax(sqrt(mu[i]) - delta, 0.0);
    return CO_OK;
}

/* Runs fn over every chunk, on the threads (each a contiguous run of chunks) when the model
 * is large enough to pay for a parallel region. */
typedef void (*chunk_fn)(co_optim *o, const darms_chunk *c, double *part);

typedef struct {
    co_optim *o;
    chunk_fn fn;
} chunk_task;

static void chunk_range(void *ctx, size_t c0, size_t c1)
{
    const chunk_task *t = ctx;
    darms_state *s = t->o->state;
    for (size_t c = c0; c < c1; c++) t->fn(t->o, &s->chunks[c], s->part + c * PART(s));
}

static void over_chunks(co_optim *o, chunk_fn fn)
{
    darms_state *s = o->state;
    chunk_task t = {o, fn};
    co_run_shared(s->nchunks, co_optim_numel(o) > CO_FOREACH_PAR_MIN, chunk_range, &t);
}

/* Sum k of chunks [c0, c1), in chunk order. */
static double chunk_sum(const darms_state *s, size_t c0, size_t c1, int k)
{
    double t = 0;
    for (size_t c = c0; c < c1; c++) t += s->part[c * PART(s) + (size_t)k];
    return t;
}

/* RMSprop's denominator sqrt(v) + eps of a chunk, from the second moment pass 1 left. */
static void chunk_den(const co_optim *o, const darms_chunk *c, float *den)
{
    const darms_state *s = o->state;
    const float *restrict v = co_slot(s->v, c->g, c->k) + c->c0;
    const float eps = (float)co_hp(o, c->g, HP_EPS);
    for (size_t i = 0; i < c->len; i++) den[i] = co_rmsprop_den(v[i], eps);
}

/* Solve, part 1 (eq. 2's Woodbury solve): the projections of x = D^1/2 g on Q (x formed as
 * solve_element forms it) and, for a grafted layer of small rank, the sums that give |d|^2
 * without forming d (d = D^1/2 y: the metric is D, weights 1 / (sqrt(v) + eps)). */
static void project(co_optim *o, const darms_chunk *c, const float *gp, const float *den, double *part)
{
    darms_state *s = o->state;
    const darms_layer *L = &s->layer[c->g];
    const float *q = layer_q(s, c->g) + c->off;
    float x[CHUNK];
    for (size_t i = 0; i < c->len; i++) x[i] = gp[i] / sqrtf(den[i]);
    float lanes[CO_DOT_LANES * 64];
    memset(lanes, 0, (size_t)L->rank * CO_DOT_LANES * sizeof *lanes);
    co_woodbury_dots(lanes, q, group_n(o, c->g), L->rank, x, c->len);
    for (int i = 0; i < L->rank; i++) part[PART_PROJ + i] = co_lanes_sum_f(lanes + (size_t)i * CO_DOT_LANES);
    if (!L->norm_sums || L->rank == 0) return; /* rank 0: |d|^2 = |D g|^2 / delta^2 */
    float w[CHUNK];
    for (size_t i = 0; i < c->len; i++) w[i] = 1.0f / den[i];
    memset(lanes, 0, (size_t)CO_WOODBURY_NORM_SUMS(L->rank) * CO_WOODBURY_NORM_LANES * sizeof *lanes);
    co_woodbury_norm_dots(lanes, q, group_n(o, c->g), L->rank, x, w, c->len);
    co_woodbury_norm_sums(lanes, L->rank, part + PART_NORM(s));
}

/* Pass 1 of a chunk: L2 into the gradient (torch's g.add(p, alpha=wd)), RMSprop's second
 * moment and denominator sqrt(v) + eps (eq. 8, 10; RMSprop's own element function, so
 * the rounding is the baseline's), the gradient average (eq. 5) and the alignment sums of
 * eq. 6 in double, in co_dot_d's lane order; for a layer whose factors stay as they are
 * this step, the solve's first part while the chunk is in cache. */
static void pass_moments(co_optim *o, const darms_chunk *c, double *part)
{
    darms_state *s = o->state;
    const int g = c->g;
    co_group *gr = &o->groups[g];
    const float b1 = (float)co_hp(o, g, HP_BETA1), a1 = (float)(1.0 - co_hp(o, g, HP_BETA1));
    const float wd = (float)co_hp(o, g, HP_WD), eps = (float)co_hp(o, g, HP_EPS);
    const float al = (float)co_hp(o, g, HP_BETA2), a2 = (float)(1.0 - co_hp(o, g, HP_BETA2));
    float *restrict p = gr->param[c->k] + c->c0, *restrict gp = gr->grad[c->k] + c->c0;
    float *restrict m = co_slot(s->m, g, c->k) + c->c0, *restrict v = co_slot(s->v, g, c->k) + c->c0;
    float den[CHUNK];
    const size_t n = c->len;
    float unused = 0; /* the centred average, which DA-RMSprop does not keep */
    if (wd != 0)
        for (size_t i = 0; i < n; i++) gp[i] = co_torch_add(gp[i], p[i], wd);
    for (size_t i = 0; i < n; i++) den[i] = co_rmsprop_denom(gp[i], &v[i], &unused, al, a2, eps, 0);
    double ld[CO_DOT_LANES] = {0}, lg[CO_DOT_LANES] = {0}, lm[CO_DOT_LANES] = {0};
    size_t i = 0;
    for (; i + CO_DOT_LANES <= n; i += CO_DOT_LANES)
        for (int j = 0; j < CO_DOT_LANES; j++) {
            float gi = gp[i + j], mi = b1 * m[i + j] + a1 * gi;
            m[i + j] = mi;
            ld[j] += (double)gi * mi;
            lg[j] += (double)gi * gi;
            lm[j] += (double)mi * mi;
        }
    for (int j = 0; i < n; i++, j++) {
        float gi = gp[i], mi = b1 * m[i] + a1 * gi;
        m[i] = mi;
        ld[j] += (double)gi * mi;
        lg[j] += (double)gi * gi;
        lm[j] += (double)mi * mi;
    }
    part[0] = co_lanes_sum(ld);
    part[1] = co_lanes_sum(lg);
    part[2] = co_lanes_sum(lm);
    if (co_guard(o, g, HP_GRAFT) != 0) {
        /* |D g|^2, the length grafting gives the corrected step: RMSprop's own step. */
        float nr[CO_DOT_LANES] = {0}; /* |g| / (sqrt(v) + eps) < 1 / sqrt(1 - beta2): float lanes */
        for (i = 0; i + CO_DOT_LANES <= n; i += CO_DOT_LANES)
            for (int j = 0; j < CO_DOT_LANES; j++) {
                float ri = gp[i + j] / den[i + j];
                nr[j] += ri * ri;
            }
        for (int j = 0; i < n; i++, j++) {
            float ri = gp[i] / den[i];
            nr[j] += ri * ri;
        }
        part[PART_NR] = co_lanes_sum_f(nr);
    }
    if (s->layer[g].drawn) {
        /* The sketch's input u = D g (eq. 3-4) for the refresh after this pass. */
        float *restrict u = s->dbuf + s->layer_base[g] + c->off;
        for (size_t k = 0; k < n; k++) u[k] = gp[k] / den[k];
    } else if (s->layer[g].solve) {
        project(o, c, gp, den, part);
    }
}

/* A refreshed layer's new basis Q (eq. 4: the sketch's top directions), then the solve's
 * part 1 with it, while the chunk of Q is in cache. */
static void pass_project(co_optim *o, const darms_chunk *c, double *part)
{
    darms_state *s = o->state;
    if (!s->layer[c->g].drawn) return;
    co_fd_top_columns(&s->sketch[c->g], s->rank[c->g], layer_q(s, c->g), group_n(o, c->g), c->off, c->len);
    if (!s->layer[c->g].solve) return;
    float den[CHUNK];
    chunk_den(o, c, den);
    project(o, c, o->groups[c->g].grad[c->k] + c->c0, den, part);
}

/* Solve, part 2, element by element: x = D^1/2 g = g / sqrt(sqrt(v) + eps), formed from g
 * itself (not u * sqrt(...), which is 0 * inf once g^2 overflows float) as project forms it,
 * y = H^-1 x and the corrected move d = D^1/2 y (eq. 7, 12), from g and v, so that neither
 * x nor RMSprop's denominator is stored between the passes (reading them back cost more
 * than forming them again). Inlined with r known at compile time for the ranks of the
 * defaults: the directions unroll and the element loops vectorise. */
static inline __attribute__((always_inline)) float solve_element(const float *restrict gp, const float *restrict v,
                                                                  const float *restrict q, size_t ldq, size_t i,
                                                                  const int r, const float *pj, float eps,
                                                                  float inv_delta, float *den)
{
    *den = co_rmsprop_den(v[i], eps);
    float sq = sqrtf(*den);
    return co_woodbury_correct_at(gp[i] / sq, q, ldq, i, r, pj, inv_delta) / sq;
}

/* What solve_element needs for a chunk. */
typedef struct {
    const float *gp, *v, *q;
    size_t ldq;
    float pj[64];
    float eps, inv_delta;
} chunk_solve;

static void chunk_solve_of(co_optim *o, const darms_chunk *c, chunk_solve *cs)
{
    darms_state *s = o->state;
    const darms_layer *L = &s->layer[c->g];
    const double *proj = layer_proj(s, c->g);
    cs->gp = o->groups[c->g].grad[c->k] + c->c0;
    cs->v = co_slot(s->v, c->g, c->k) + c->c0;
    cs->q = layer_q(s, c->g) + c->off;
    cs->ldq = group_n(o, c->g);
    for (int i = 0; i < L->rank; i++) cs->pj[i] = (float)proj[i];
    cs->eps = (float)co_hp(o, c->g, HP_EPS);
    cs->inv_delta = (float)(1.0 / L->delta);
}

static inline __attribute__((always_inline)) void moves_r(const chunk_solve *cs, const int r, float *restrict d,
                                                           size_t n)
{
    float den;
    for (size_t i = 0; i < n; i++) d[i] = solve_element(cs->gp, cs->v, cs->q, cs->ldq, i, r, cs->pj, cs->eps, cs->inv_delta, &den);
}

/* Eq. 13 for a layer whose step length is known before it moves (not grafted: scale 1,
 * exact; grafted with |d| in closed form): the moves formed, scaled and applied in one
 * loop, with the clip when it is on. */
static inline __attribute__((always_inline)) void apply_solve_r(const chunk_solve *cs, const int r, float *restrict p,
                                                                 float step, float scale, float clip, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float den, d = solve_element(cs->gp, cs->v, cs->q, cs->ldq, i, r, cs->pj, cs->eps, cs->inv_delta, &den) * scale;
        if (clip > 0) {
            float bound = clip * (fabsf(cs->gp[i]) / den);
            d = d > bound ? bound : d < -bound ? -bound : d;
        }
        p[i] -= step * d;
    }
}

/* Solve, part 2 for a grafted layer whose |d| the closed form does not give (rank above its
 * largest, or a step the correction cancels): d into dbuf and |d|^2. Float lanes as for
 * |D g|^2: d is RMSprop's step turned by a bounded solve. A chunk whose float sum overflows
 * (a pathological d) is summed again in double. */
static void pass_moves(co_optim *o, const darms_chunk *c, double *part)
{
    darms_state *s = o->state;
    const darms_layer *L = &s->layer[c->g];
    if (!L->moves) return;
    chunk_solve cs;
    chunk_solve_of(o, c, &cs);
    float *restrict d = s->dbuf + s->layer_base[c->g] + c->off;
    switch (L->rank) {
    case 0: moves_r(&cs, 0, d, c->len); break;
    case 1: moves_r(&cs, 1, d, c->len); break;
    case 2: moves_r(&cs, 2, d, c->len); break;
    case 3: moves_r(&cs, 3, d, c->len); break;
    case 4: moves_r(&cs, 4, d, c->len); break;
    default: moves_r(&cs, L->rank, d, c->len); break;
    }
    float nd[CO_DOT_LANES] = {0};
    size_t i = 0;
    for (; i + CO_DOT_LANES <= c->len; i += CO_DOT_LANES)
        for (int j = 0; j < CO_DOT_LANES; j++) nd[j] += d[i + j] * d[i + j];
    for (int j = 0; i < c->len; i++, j++) nd[j] += d[i] * d[i];
    part[0] = co_lanes_sum_f(nd);
    if (isinf(part[0])) part[0] = co_dot_d(d, d, c->len);
}

/* Eq. 13. H = I (rank 0, delta 1): RMSprop's D g, rounded as rmsprop.c rounds it. With the
 * clip (a safeguard) the correction may rotate the step but not move any coordinate more
 * than clip times RMSprop's |g| / (sqrt(v) + eps); a NaN in d stays a NaN (the training
 * loop stops on it) rather than being clamped to a bound. */
static void pass_update(co_optim *o, const darms_chunk *c, double *part)
{
    (void)part;
    darms_state *s = o->state;
    const darms_layer *L = &s->layer[c->g];
    float *restrict p = o->groups[c->g].param[c->k] + c->c0;
    const float *restrict gp = o->groups[c->g].grad[c->k] + c->c0;
    const float *restrict v = co_slot(s->v, c->g, c->k) + c->c0;
    const float eps = (float)co_hp(o, c->g, HP_EPS), step = L->step, scale = L->scale, clip = L->clip;
    if (!L->solve) {
        for (size_t i = 0; i < c->len; i++) p[i] = co_torch_addcdiv(p[i], gp[i], co_rmsprop_den(v[i], eps), -step);
    } else if (!L->moves) {
        chunk_solve cs;
        chunk_solve_of(o, c, &cs);
        switch (L->rank) {
        case 0: apply_solve_r(&cs, 0, p, step, scale, clip, c->len); break;
        case 1: apply_solve_r(&cs, 1, p, step, scale, clip, c->len); break;
        case 2: apply_solve_r(&cs, 2, p, step, scale, clip, c->len); break;
        case 3: apply_solve_r(&cs, 3, p, step, scale, clip, c->len); break;
        case 4: apply_solve_r(&cs, 4, p, step, scale, clip, c->len); break;
        default: apply_solve_r(&cs, L->rank, p, step, scale, clip, c->len); break;
        }
    } else {
        const float *restrict d = s->dbuf + s->layer_base[c->g] + c->off;
        if (clip > 0)
            for (size_t i = 0; i < c->len; i++) {
                float di = d[i] * scale, bound = clip * (fabsf(gp[i]) / co_rmsprop_den(v[i], eps));
                di = di > bound ? bound : di < -bound ? -bound : di;
                p[i] -= step * di;
            }
        else
            for (size_t i = 0; i < c->len; i++) p[i] -= step * (d[i] * scale);
    }
}

/* What the solve needs to know of layer g's factors (the step factor comes later). */
static void layer_solve(co_optim *o, darms_state *s, int g)
{
    darms_layer *L = &s->layer[g];
    /* Directions with mu_i = 0 (a sketched direction no stronger than the base) have
     * Woodbury weight mu / (delta + mu) = 0: they change nothing, so the solve skips them.
     * mu descends with the sketch's eigenvalues, so they are the last ones; with none left
     * and delta = 1, H = I and the step is RMSprop's. */
    L->rank = co_hp(o, g, HP_RANK_MAX) > 0 ? s->rank[g] : 0;
    const double *mu = layer_mu(s, g);
    while (L->rank > 0 && !(mu[L->rank - 1] > 0)) L->rank--;
    L->delta = co_hp(o, g, HP_DELTA);
    L->solve = L->rank > 0 || L->delta != 1.0;
    L->graft = co_guard(o, g, HP_GRAFT) != 0;
    L->norm_sums = L->solve && L->graft && L->rank <= CO_WOODBURY_NORM_MAX_RANK;
    L->moves = 0;
    L->clip = (float)co_guard(o, g, HP_CURV_CLIP);
    L->scale = 1.0f;
}

static co_status darms_step(co_optim *o, const co_closure *c, co_error *err)
{
    (void)c;
    darms_state *s = o->state;
    /* Eq. 3's draws first, in the order the optimizer's stream has always given them: per
     * layer a uniform and, for a drawn layer, the power iteration's start. The layers not
     * drawn keep their factors, so their solve can start in pass 1. */
    for (int g = 0; g < o->ngroups; g++) {
        darms_layer *L = &s->layer[g];
        /* One uniform per layer and step, in the warm-up too (p_warmup, a departure: see
         * docs/optimizers/da-rmsprop.md, "Refresh probability"). */
        const int warm = (double)o->t <= co_hp(o, g, HP_P_WARMUP);
        L->drawn = co_hp(o, g, HP_RANK_MAX) > 0 && (co_rng_uniform(&o->rng) < co_hp(o, g, HP_P) || warm);
        for (int i = 0; L->drawn && i < s->sketch[g].rows; i++)
            s->pstart[(size_t)g * 2 * s->rmax + i] = co_rng_normal(&o->rng);
        if (L->drawn) L->solve = 0;
        else layer_solve(o, s, g);
    }
    over_chunks(o, pass_moments);
    double dot = 0, gg = 0, mm = 0;
    for (int g = 0; g < o->ngroups; g++) {
        double *ld = s->layer_dots + 3 * g;
        for (int k = 0; k < 3; k++) ld[k] = chunk_sum(s, s->chunk0[g], s->chunk0[g + 1], k);
        dot += ld[0];
        gg += ld[1];
        mm += ld[2];
    }
    double align = gg > 0 && mm > 0 ? dot / (sqrt(gg) * sqrt(mm)) : 0;
    s->align = align;
    int any_drawn = 0;
    for (int g = 0; g < o->ngroups; g++) {
        darms_layer *L = &s->layer[g];
        double a = align;
        if (co_hp(o, g, HP_ALIGN_PER_LAYER) != 0) {
            const double *ld = s->layer_dots + 3 * g;
            a = ld[1] > 0 && ld[2] > 0 ? ld[0] / (sqrt(ld[1]) * sqrt(ld[2])) : 0;
        }
        double gain = 1.0 + co_hp(o, g, HP_LAMBDA) * a, gain_max = co_guard(o, g, HP_GAIN_MAX);
        if (gain_max > 0 && gain > gain_max) gain = gain_max;
        L->step = (float)(co_lr(o, g) * gain);
        if (!L->drawn) continue;
        /* The factor refresh (eq. 3-4) from the layer's whitened gradient u = D g as one
         * vector (pass 1 left it in dbuf): the sketch sees the whole layer. */
        co_status st = update_factors(o, s, g, s->dbuf + s->layer_base[g], err);
        if (st) return st;
        layer_solve(o, s, g);
        any_drawn = 1;
    }
    /* The solve (eq. 2, 7, 12): its first part for the refreshed layers, then the
     * projections' weights and grafting's length, the update. */
    if (any_drawn) over_chunks(o, pass_project);
    int any_moves = 0;
    for (int g = 0; g < o->ngroups; g++) {
        darms_layer *L = &s->layer[g];
        if (!L->solve) continue;
        const size_t c0 = s->chunk0[g], c1 = s->chunk0[g + 1];
        double dots[64];
        for (int i = 0; i < L->rank; i++) dots[i] = chunk_sum(s, c0, c1, PART_PROJ + i);
        double *proj = layer_proj(s, g);
        co_woodbury_weights(proj, dots, layer_mu(s, g), L->rank, L->delta);
        if (!L->graft) continue;
        L->moves = 1;
        if (L->norm_sums) {
            /* The projections and 1 / delta as the solve rounds them (chunk_solve_of). */
            double sums[CO_WOODBURY_NORM_SUMS(CO_WOODBURY_NORM_MAX_RANK)], bound;
            float pj[CO_WOODBURY_NORM_MAX_RANK];
            for (int i = 0; i < CO_WOODBURY_NORM_SUMS(L->rank); i++) sums[i] = chunk_sum(s, c0, c1, (int)PART_NORM(s) + i);
            for (int i = 0; i < L->rank; i++) pj[i] = (float)proj[i];
            double nr = chunk_sum(s, c0, c1, PART_NR);
            double nd = co_woodbury_norm2(nr, sums, pj, L->rank, (float)(1.0 / L->delta), &bound);
            if (nd >= GRAFT_NORM_MIN_FRACTION * bound) {
                L->scale = nd > 0 ? (float)sqrt(nr / nd) : 1.0f;
                L->moves = 0;
            }
        }
        any_moves |= L->moves;
    }
    if (any_moves) over_chunks(o, pass_moves);
    for (int g = 0; g < o->ngroups; g++) {
        darms_layer *L = &s->layer[g];
        if (!L->moves) continue;
        double nd = chunk_sum(s, s->chunk0[g], s->chunk0[g + 1], 0);
        double nr = chunk_sum(s, s->chunk0[g], s->chunk0[g + 1], PART_NR);
        L->scale = nd > 0 ? (float)sqrt(nr / nd) : 1.0f;
    }
    over_chunks(o, pass_update);
    return CO_OK;
}

static void darms_visit(co_optim *o, co_state_visitor *v)
{
    darms_state *s = o->state;
    int G = o->ngroups;
    size_t R = rank_stride(s);
    co_slots_visit(s->v, o, v, "square_avg");
    co_slots_visit(s->m, o, v, "grad_avg");
    char key[64];
    for (int g = 0; g < G; g++) {
        co_fd_sketch *sk = &s->sketch[g];
        snprintf(key, sizeof key, "sketch/%d", g);
        if (sk->rows) v->blob(v, key, sk->b, (size_t)sk->rows * sk->n * sizeof(float));
        snprintf(key, sizeof key, "sketch_rows_used/%d", g);
        int32_t used = sk->used;
        v->blob(v, key, &used, sizeof used);
        /* A loaded file is outside our control: counts beyond the buffers are clamped. */
        sk->used = used < 0 ? 0 : used > sk->rows ? sk->rows : used;
        /* The Gram matrix of the stored rows is updated as rows change, and a full sketch
         * is shrunk with the decomposition of the last update: both are state, as are the
         * factors in use. */
        if (sk->rows) {
            snprintf(key, sizeof key, "sketch_scale/%d", g);
            v->blob(v, key, &sk->scale, sizeof sk->scale);
            snprintf(key, sizeof key, "gram_raw/%d", g);
            v->blob(v, key, sk->raw, (size_t)sk->rows * sk->rows * sizeof(double));
            snprintf(key, sizeof key, "eval/%d", g);
            v->blob(v, key, sk->eval, (size_t)sk->rows * sizeof(double));
            snprintf(key, sizeof key, "evec/%d", g);
            v->blob(v, key, sk->evec, (size_t)sk->rows * sk->rows * sizeof(double));
        }
    }
    v->blob(v, "Q", s->q, (size_t)G * s->maxn * R * sizeof(float));
    v->blob(v, "mu", s->mu, (size_t)G * R * sizeof(double));
    v->blob(v, "rank", s->rank, (size_t)G * sizeof *s->rank);
    for (int g = 0; g < G; g++) {
        int rmax = (int)co_hp(o, g, HP_RANK_MAX);
        if (s->rank[g] < 0 || s->rank[g] > rmax) s->rank[g] = s->rank[g] < 0 ? 0 : rmax;
    }
    v->blob(v, "sigma1", s->sigma1, (size_t)G * sizeof(double));
    v->blob(v, "error", s->err, (size_t)G * sizeof(double));
    v->blob(v, "updates", s->updates, (size_t)G * sizeof *s->updates);
    v->blob(v, "alignment", &s->align, sizeof s->align);
}

static int darms_diagnostic(const co_optim *o, const char *name, double *out, int max)
{
    const darms_state *s = o->state;
    int n = o->ngroups < max ? o->ngroups : max;
    if (strcmp(name, "alignment") == 0) {
        if (max > 0) out[0] = s->align;
        return max > 0;
    }
    for (int g = 0; g < n; g++) {
        if (strcmp(name, "rank") == 0) out[g] = s->rank[g];
        else if (strcmp(name, "sigma1") == 0) out[g] = s->sigma1[g];
        else if (strcmp(name, "error") == 0) out[g] = s->err[g];
        else if (strcmp(name, "updates") == 0) out[g] = (double)s->updates[g];
        else if (strcmp(name, "mu_max") == 0) out[g] = s->rank[g] > 0 ? layer_mu(s, g)[0] : 0;
        else return -1;
    }
    return n;
}

static const co_hparam darms_hp[HP_COUNT] = {
    {"lr", 1e-2, 0, 1e3, 0, "base learning rate eta (eq. 10)"},
    {"beta1", 0.9, 0, 1, CO_HP_MAX_OPEN, "decay of the gradient average m (DM-MAGA, eq. 5)"},
    {"beta2", 0.99, 0, 1, CO_HP_MAX_OPEN, "decay of the squared-gradient average v (eq. 8; torch RMSprop's alpha)"},
    {"eps", 1e-8, 0, 1, 0, "added to sqrt(v) (eq. 10)"},
    {"lambda", 1, -1, 10, 0, "alignment gain: step factor 1 + lambda cos(g, m) (eq. 7; paper: 1)"},
    {"p", 0.25, 0, 1, 0, "probability that a layer's factors are refreshed at a step (eq. 3; not given in the paper)"},
    {"rank_max", 4, 0, 64, CO_HP_INT | CO_HP_FIXED, "largest rank r_l of the curvature factors (0: RMSprop's diagonal only)"},
    {"rank_min", 1, 0, 64, CO_HP_INT, "smallest adaptive rank"},
    {"rank_init", 2, 0, 64, CO_HP_INT, "starting rank"},
    {"delta", 1, 0, 1e6, CO_HP_MIN_OPEN, "base of H = delta I + Q diag(mu) Q^T in whitened coordinates"},
    {"sketch_decay", 0.95, 0, 1, CO_HP_MAX_OPEN, "exponential forgetting of the gradient sketch per update"},
    {"tol_up", 0.3, 0, 1e6, 0, "raise the rank when tail error / sigma_1 exceeds this (eq. 4)"},
    {"tol_down", 0.05, 0, 1e6, 0, "lower the rank when the error without its last direction / sigma_1 is below this"},
    {"power_iters", 20, 1, 1000, CO_HP_INT, "power-iteration steps for sigma_1 (eq. 4)"},
    {"weight_decay", 0, 0, 1e3, 0, "L2 penalty added to the gradient"},
    {"align_per_layer", 0, 0, 1, CO_HP_BOOL, "cosine of eq. 6 per layer instead of over all parameters"},
    {"faithful", 0, 0, 1, CO_HP_BOOL | CO_HP_GLOBAL, "1: the paper's algorithm as published (every safeguard off)"},
    {"gain_max", 1, 0, 11, CO_HP_SAFEGUARD, "cap of the alignment factor 1 + lambda cos(g, m) (0: off)"},
    {"curv_clip", 1, 0, 1e6, CO_HP_SAFEGUARD, "no coordinate moves more than curv_clip x RMSprop's step |g| / (sqrt(v) + eps) (0: off)"},
    {"graft", 1, 0, 1, CO_HP_SAFEGUARD | CO_HP_BOOL, "scale each layer's corrected step to RMSprop's step length (0: off)"},
    {"p_warmup", 0, 0, 1e9, CO_HP_INT, "refresh every layer at each of the first p_warmup steps, then with probability p (0: eq. 3 throughout)"},
};

static const co_optim_ops darms_ops = {.init = darms_init,
                                       .step = darms_step,
                                       .visit = darms_visit,
                                       .free = darms_free,
                                       .diagnostic = darms_diagnostic};

const co_optim_info co_info_da_rmsprop = {
    "da-rmsprop", "RMSprop + per-layer low-rank curvature (Woodbury) + gradient alignment",
    "Sarkar, DA-RMSprop (paper 000), eq. 1-13", HP_COUNT, darms_hp, &darms_ops};

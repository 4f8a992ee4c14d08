/* The convolutional layers and small models against PyTorch 1.13: forward outputs, input
 * and parameter gradients, and batch-norm running statistics on random shapes, from
 * tests/golden/conv_layers.txt (scripts/gen_golden_conv.py; torch is not needed here). */
#include "nn/layers.h"
#include "test_util.h"

#include <curvopt.h>

#define MAX_TENSORS 64

typedef struct {
    float *v;
    size_t n;
} vec;

typedef struct {
    char kind[8], token[512];
    int c, h, w, batch, train;
    vec x, dy, y, dx, s0, s1;
    vec p[MAX_TENSORS], g[MAX_TENSORS];
    int np, ng;
} golden_case;

static void vec_free(vec *v)
{
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static void case_free(golden_case *c)
{
    vec *all[] = {&c->x, &c->dy, &c->y, &c->dx, &c->s0, &c->s1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) vec_free(all[i]);
    for (int i = 0; i < c->np; i++) vec_free(&c->p[i]);
    for (int i = 0; i < c->ng; i++) vec_free(&c->g[i]);
    c->np = c->ng = 0;
}

static int parse_vec(char *rest, vec *out)
{
    char *end;
    long n = strtol(rest, &end, 10);
    if (end == rest || n < 0) return -1;
    out->v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    out->n = (size_t)n;
    for (long i = 0; i < n; i++) {
        char *p = end;
        out->v[i] = strtof(p, &end);
        if (end == p) return -1;
    }
    return 0;
}

/* Reads the next case; 0 at the end of the file, -1 on a malformed file. */
static int read_case(FILE *f, golden_case *c)
{
    char *line = NULL;
    size_t cap = 0;
    int state = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        char tag[8];
        int off = 0;
        if (sscanf(line, "%7s %n", tag, &off) != 1) continue;
        char *rest = line + off;
        if (!strcmp(tag, "layer") || !strcmp(tag, "model")) {
            memset(c, 0, sizeof *c);
            strcpy(c->kind, tag);
            int ok = !strcmp(tag, "layer")
                         ? sscanf(rest, "%511s %d %d %d %d %d", c->token, &c->c, &c->h, &c->w, &c->batch, &c->train) == 6
                         : sscanf(rest, "%511s %d %d", c->token, &c->batch, &c->train) == 3;
            if (!ok) break;
            state = 1;
            continue;
        }
        if (!state) break;
        int bad = 0;
        if (!strcmp(tag, "end")) {
            free(line);
            return 1;
        } else if (!strcmp(tag, "x")) bad = parse_vec(rest, &c->x);
        else if (!strcmp(tag, "dy")) bad = parse_vec(rest, &c->dy);
        else if (!strcmp(tag, "y")) bad = parse_vec(rest, &c->y);
        else if (!strcmp(tag, "dx")) bad = parse_vec(rest, &c->dx);
        else if (!strcmp(tag, "s0")) bad = parse_vec(rest, &c->s0);
        else if (!strcmp(tag, "s1")) bad = parse_vec(rest, &c->s1);
        else if (!strcmp(tag, "p") && c->np < MAX_TENSORS) bad = parse_vec(rest, &c->p[c->np++]);
        else if (!strcmp(tag, "g") && c->ng < MAX_TENSORS) bad = parse_vec(rest, &c->g[c->ng++]);
        else bad = 1;
        if (bad) break;
    }
    free(line);
    return state ? -1 : 0;
}

/* |a - ref| <= tol * max(1, max |ref|) over a tensor: float rounding in sums grows with the
 * tensor's scale, not with each element's. Returns the worst ratio to the allowance. */
static double compare(const char *what, const golden_case *c, const float *a, const vec *ref, double tol)
{
    double scale = 1, worst = 0;
    for (size_t i = 0; i < ref->n; i++) scale = fmax(scale, fabs(ref->v[i]));
    size_t at = 0;
    for (size_t i = 0; i < ref->n; i++) {
        double e = fabs((double)a[i] - ref->v[i]) / (tol * scale);
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    CHECK(worst <= 1, "%s %s (batch %d, train %d): element %zu is %.9g, torch %.9g (%.2f of the allowance)", c->token,
          what, c->batch, c->train, at, ref->n ? a[at] : 0.0, ref->n ? ref->v[at] : 0.0, worst);
    return worst;
}

static double worst_seen;

static void note(double w)
{
    if (w > worst_seen) worst_seen = w;
}

/* capture on: layers run alone compute convolutions as im2col + GEMM, models on the
 * direct path with the capture; off: the direct path where the batch and
 * the map allow it. */
static void run_layer(golden_case *c, int capture)
{
    co_layer *l = co_layer_from_spec(c->token, c->c, c->h, c->w);
    CHECK(l != NULL, "%s on %dx%dx%d not built", c->token, c->c, c->h, c->w);
    if (!l) return;
    co_layer *leaf[64];
    int nl = co_layer_leaves(l, leaf, 64), t = 0;
    CHECK(nl > 0, "%s: leaves", c->token);
    size_t soff = 0;
    for (int i = 0; i < nl; i++) {
        leaf[i]->capture = leaf[i]->gemm_only = capture;
        for (int k = 0; k < leaf[i]->ntensors; k++, t++) {
            CHECK(t < c->np && leaf[i]->size[k] == c->p[t].n, "%s: tensor %d has %zu values, torch %zu", c->token, t,
                  leaf[i]->size[k], t < c->np ? c->p[t].n : 0);
            if (t < c->np && leaf[i]->size[k] == c->p[t].n) memcpy(leaf[i]->param[k], c->p[t].v, c->p[t].n * sizeof(float));
        }
        if (leaf[i]->ops->state) {
            size_t b;
            float *s = leaf[i]->ops->state(leaf[i], &b);
            if (soff + b / sizeof(float) <= c->s0.n) memcpy(s, c->s0.v + soff, b);
            soff += b / sizeof(float);
        }
    }
    CHECK(t == c->np && soff == c->s0.n, "%s: %d tensors and %zu state values, torch %d and %zu", c->token, t, soff,
          c->np, c->s0.n);
    CHECK(c->x.n == (size_t)c->batch * l->in_size && c->y.n == (size_t)c->batch * l->out_size, "%s: shapes", c->token);
    if (t != c->np || c->y.n != (size_t)c->batch * l->out_size || c->x.n != (size_t)c->batch * l->in_size) {
        co_layer_free(l);
        return;
    }
    float *y = calloc(c->y.n, sizeof(float)), *dx = calloc(c->x.n, sizeof(float));
    l->ops->forward(l, c->x.v, y, c->batch, c->train);
    note(compare("forward", c, y, &c->y, 2e-6));
    l->ops->backward(l, c->x.v, y, c->dy.v, dx, c->batch);
    note(compare("input gradient", c, dx, &c->dx, 1e-5));
    t = 0;
    soff = 0;
    for (int i = 0; i < nl; i++) {
        for (int k = 0; k < leaf[i]->ntensors; k++, t++) {
            char what[64];
            snprintf(what, sizeof what, "gradient of tensor %d", t);
            note(compare(what, c, leaf[i]->grad[k], &c->g[t], 1e-5));
        }
        if (leaf[i]->ops->state) {
            size_t b;
            float *s = leaf[i]->ops->state(leaf[i], &b);
            vec part = {c->s1.v + soff, b / sizeof(float)};
            note(compare("running statistics", c, s, &part, 2e-6));
            soff += b / sizeof(float);
        }
    }
    free(y);
    free(dx);
    co_layer_free(l);
}

static void run_model(golden_case *c, int capture)
{
    for (char *p = c->token; *p; p++)
        if (*p == ',') *p = ' ';
    co_error err;
    co_model *m = co_model_new(c->token, &err);
    CHECK(m != NULL, "%s: %s", c->token, err.msg);
    if (!m) return;
    co_model_set_capture(m, capture);
    size_t np = co_model_param_count(m), total = 0;
    for (int t = 0; t < c->np; t++) total += c->p[t].n;
    CHECK(np == total && co_model_ngroups(m) * 2 >= c->np, "%s: %zu parameters, torch %zu", c->token, np, total);
    CHECK(co_model_state_size(m) == c->s0.n * sizeof(float), "%s: state of %zu bytes, torch %zu", c->token,
          co_model_state_size(m), c->s0.n * sizeof(float));
    if (np != total || co_model_state_size(m) != c->s0.n * sizeof(float)) {
        co_model_free(m);
        return;
    }
    float *flat = malloc(sizeof(float) * (np ? np : 1));
    for (int t = 0, off = 0; t < c->np; off += (int)c->p[t].n, t++) memcpy(flat + off, c->p[t].v, c->p[t].n * sizeof(float));
    co_model_set_params(m, flat);
    if (c->s0.n) co_model_set_state(m, c->s0.v);
    const float *y = co_model_forward(m, c->x.v, c->batch, c->train, &err);
    CHECK(y != NULL && (size_t)c->batch * co_model_out_size(m) == c->y.n, "%s: forward", c->token);
    if (y && (size_t)c->batch * co_model_out_size(m) == c->y.n) {
        note(compare("forward", c, y, &c->y, 2e-6));
        co_model_backward(m, c->dy.v);
        co_group gr[64];
        int ng = co_model_ngroups(m), t = 0;
        co_model_groups(m, gr);
        for (int g = 0; g < ng; g++)
            for (int k = 0; k < gr[g].ntensors; k++, t++) {
                char what[64];
                snprintf(what, sizeof what, "gradient of tensor %d (%s)", t, gr[g].name);
                CHECK(gr[g].size[k] == c->g[t].n, "%s: %s size", c->token, what);
                if (gr[g].size[k] == c->g[t].n) note(compare(what, c, gr[g].grad[k], &c->g[t], 1e-5));
            }
        if (c->s1.n) {
            float *s = malloc(c->s1.n * sizeof(float));
            co_model_get_state(m, s);
            note(compare("running statistics", c, s, &c->s1, 2e-6));
            free(s);
        }
    }
    free(flat);
    co_model_free(m);
}

int main(void)
{
    FILE *f = fopen(co_test_data("conv_layers.txt"), "r");
    CHECK(f != NULL, "cannot open %s", co_test_data("conv_layers.txt"));
    if (!f) return co_test_finish();
    golden_case c;
    int r, n = 0, kinds[16] = {0};
    const char *names[] = {"conv:", "convt:", "maxpool:", "avgpool:", "gap", "bn", "res:", "logsoftmax", "model"};
    while ((r = read_case(f, &c)) == 1) {
        n++;
        for (int k = 0; k < 9; k++)
            if (!strncmp(c.token, names[k], strlen(names[k])) || (k == 8 && !strcmp(c.kind, "model"))) kinds[k]++;
        for (int capture = 0; capture < 2; capture++) {
            if (!strcmp(c.kind, "layer")) run_layer(&c, capture);
            else run_model(&c, capture);
        }
        case_free(&c);
    }
    fclose(f);
    CHECK(r == 0, "malformed golden file after case %d", n);
    /* Every layer kind must have been exercised: a truncated file cannot pass. */
    for (int k = 0; k < 9; k++) CHECK(kinds[k] > 0, "no golden case for %s", names[k]);
    printf("%d cases, worst error %.3f of the allowance\n", n, worst_seen);
    return co_test_finish();
}

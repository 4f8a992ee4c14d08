/* Replays torch.optim 1.13's trajectories (tests/golden/optim_baselines.txt, written by
 * scripts/gen_golden_optim.py) through curvopt's baselines: random shapes, random
 * hyperparameters, per-group overrides, global-norm clipping, 100 steps of
 * g = c p + s noise. After steps 1, 2, 3, 10, 50 and 100 every tensor must satisfy
 * max_i |ours_i - torch_i| / max(max_i |torch_i|, 1e-12) <= 1e-5.
 * maximize (torch's maximize=True) is covered for every baseline, alone, clipped and in
 * one of two groups. A negative control replays every configuration with its learning rates 1% off and
 * requires the comparison to notice, so a configuration that barely moves cannot pass
 * for evidence. */
#include "test_util.h"

#include <curvopt.h>
#include <stdint.h>

#define TOLERANCE 1e-5
#define MAX_GROUPS 4
#define MAX_TENSORS 16
#define MAX_SNAPSHOTS 128
#define STEPS 100

typedef struct {
    int group, slot;
    size_t n;
    float coef, scale;
    float *p, *g, *init;
} tensor;

typedef struct {
    int step, tensor;
    float *values;
} snapshot;

typedef struct {
    int index;
    char label[64], optimizer[32];
    int ngroups;
    double clip;
    char hparams[512];
    char overrides[MAX_GROUPS][512];
    int group_ntensors[MAX_GROUPS];
    tensor t[MAX_TENSORS];
    int nt;
    snapshot snap[MAX_SNAPSHOTS];
    int nsnap;
} config;

/* splitmix64 and the noise, bit for bit as in the generator. */
static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static float noise_at(uint64_t base, size_t i)
{
    double u = (double)(splitmix64(base ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL)) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(2.0 * u - 1.0);
}

static void config_free(config *c)
{
    for (int k = 0; k < c->nt; k++) {
        free(c->t[k].p);
        free(c->t[k].g);
        free(c->t[k].init);
    }
    for (int s = 0; s < c->nsnap; s++) free(c->snap[s].values);
    memset(c, 0, sizeof *c);
}

/* Reads n floats from the rest of a line; 0 if there are fewer or more. */
static int parse_floats(char *text, float *out, size_t n)
{
    char *end;
    for (size_t i = 0; i < n; i++) {
        out[i] = strtof(text, &end);
        if (end == text) return 0;
        text = end;
    }
    while (*text == ' ' || *text == '\n') text++;
    return *text == 0;
}

static const char *list_or_null(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }

/* Parses one configuration up to its "end" line. Returns 1 on success, 0 at end of file,
 * -1 on a malformed record (reported). */
static int read_config(FILE *f, config *c, char **line, size_t *cap)
{
    memset(c, 0, sizeof *c);
    int have_config = 0, inits = 0;
    while (getline(line, cap, f) > 0) {
        char *l = *line;
        if (l[0] == '#' || l[0] == '\n') continue;
        int used = 0;
        if (!have_config) {
            if (sscanf(l, "config %d %63s %31s %d %lf %511s", &c->index, c->label, c->optimizer, &c->ngroups,
                       &c->clip, c->hparams) != 6 ||
                c->ngroups < 1 || c->ngroups > MAX_GROUPS) {
                CHECK(0, "malformed config line: %.80s", l);
                return -1;
            }
            have_config = 1;
            continue;
        }
        int g, t, s;
        if (strncmp(l, "group ", 6) == 0) {
            char ov[512];
            if (sscanf(l, "group %d %d %511s", &g, &t, ov) != 3 || g < 0 || g >= c->ngroups || t < 1 ||
                t > CO_GROUP_MAX_TENSORS) {
                CHECK(0, "config %d: malformed group line: %.80s", c->index, l);
                return -1;
            }
            c->group_ntensors[g] = t;
            strcpy(c->overrides[g], ov);
        } else if (strncmp(l, "tensor ", 7) == 0) {
            tensor *x = &c->t[c->nt];
            size_t n;
            if (c->nt == MAX_TENSORS ||
                sscanf(l, "tensor %d %d %zu %f %f", &x->group, &x->slot, &n, &x->coef, &x->scale) != 5 ||
                x->group < 0 || x->group >= c->ngroups || x->slot < 0 || x->slot >= c->group_ntensors[x->group] ||
                n < 1 || n > 100000) {
                CHECK(0, "config %d: malformed tensor line: %.80s", c->index, l);
                return -1;
            }
            x->n = n;
            x->p = malloc(n * sizeof(float));
            x->g = malloc(n * sizeof(float));
            x->init = malloc(n * sizeof(float));
            c->nt++;
        } else if (strncmp(l, "init ", 5) == 0) {
            if (sscanf(l, "init %d %d%n", &g, &t, &used) != 2 || c->nt == 0 || c->t[c->nt - 1].group != g ||
                c->t[c->nt - 1].slot != t || !parse_floats(l + used, c->t[c->nt - 1].init, c->t[c->nt - 1].n)) {
                CHECK(0, "config %d: malformed init line", c->index);
                return -1;
            }
            inits++;
        } else if (strncmp(l, "step ", 5) == 0) {
            int k;
            if (sscanf(l, "step %d %d %d%n", &s, &g, &t, &used) != 3 || c->nsnap == MAX_SNAPSHOTS) {
                CHECK(0, "config %d: malformed step line", c->index);
                return -1;
            }
            for (k = 0; k < c->nt && !(c->t[k].group == g && c->t[k].slot == t); k++) {
            }
            snapshot *sn = &c->snap[c->nsnap];
            if (k == c->nt || s < 1 || s > STEPS || (c->nsnap && s < c->snap[c->nsnap - 1].step)) {
                CHECK(0, "config %d: snapshot of an unknown tensor or out of order (step %d)", c->index, s);
                return -1;
            }
            sn->step = s;
            sn->tensor = k;
            sn->values = malloc(c->t[k].n * sizeof(float));
            c->nsnap++;
            if (!parse_floats(l + used, sn->values, c->t[k].n)) {
                CHECK(0, "config %d: malformed values at step %d", c->index, s);
                return -1;
            }
        } else if (strncmp(l, "end", 3) == 0) {
            int declared = 0;
            for (g = 0; g < c->ngroups; g++) declared += c->group_ntensors[g];
            if (inits != c->nt || declared != c->nt) {
                CHECK(0, "config %d: %d tensors, %d declared by the groups, %d initial values", c->index, c->nt,
                      declared, inits);
                return -1;
            }
            return 1;
        } else {
            CHECK(0, "config %d: unexpected line: %.40s", c->index, l);
            return -1;
        }
    }
    if (have_config) CHECK(0, "config %d: missing end", c->index);
    return have_config ? -1 : 0;
}

/* Replays the configuration with every group's lr multiplied by lr_factor; returns the
 * worst relative error over all snapshots (-1 if the optimizer could not be built) and
 * optionally reports each snapshot that exceeds the tolerance. */
static double replay(config *c, double lr_factor, int report)
{
    co_group groups[MAX_GROUPS];
    memset(groups, 0, sizeof groups);
    for (int g = 0; g < c->ngroups; g++) {
        groups[g].kind = CO_GROUP_DENSE;
        groups[g].ntensors = c->group_ntensors[g];
    }
    for (int k = 0; k < c->nt; k++) {
        tensor *x = &c->t[k];
        memcpy(x->p, x->init, x->n * sizeof(float));
        groups[x->group].param[x->slot] = x->p;
        groups[x->group].grad[x->slot] = x->g;
        groups[x->group].size[x->slot] = x->n;
    }
    co_error err;
    co_optim *o = co_optim_new(c->optimizer, groups, c->ngroups, list_or_null(c->hparams), 0, &err);
    if (!o) {
        CHECK(0, "config %d (%s %s): %s", c->index, c->optimizer, c->hparams, err.msg);
        return -1;
    }
    for (int g = 0; g < c->ngroups; g++) {
        co_status st = co_optim_set_list(o, g, list_or_null(c->overrides[g]), &err);
        CHECK(st == CO_OK, "config %d group %d: %s", c->index, g, err.msg);
        co_optim_set(o, g, "lr", co_optim_get(o, g, "lr") * lr_factor, NULL);
    }
    co_optim_set_clip(o, c->clip);
    double worst = 0;
    int step = 0;
    for (int s = 0; s < c->nsnap; s++) {
        snapshot *sn = &c->snap[s];
        for (; step < sn->step; step++) {
            for (int k = 0; k < c->nt; k++) {
                tensor *x = &c->t[k];
                uint64_t base = splitmix64((uint64_t)c->index * 1000003ULL + (uint64_t)(step + 1) * 7919ULL +
                                           (uint64_t)k * 104729ULL);
                for (size_t i = 0; i < x->n; i++) {
                    float cp = x->coef * x->p[i], sn_i = x->scale * noise_at(base, i);
                    x->g[i] = cp + sn_i;
                }
            }
            co_status st = co_optim_step(o, NULL, &err);
            if (st) {
                CHECK(0, "config %d step %d: %s", c->index, step + 1, err.msg);
                co_optim_free(o);
                return -1;
            }
        }
        const tensor *x = &c->t[sn->tensor];
        double diff = 0, scale = 1e-12;
        for (size_t i = 0; i < x->n; i++) {
            diff = fmax(diff, fabs((double)x->p[i] - sn->values[i]));
            scale = fmax(scale, fabs((double)sn->values[i]));
        }
        double rel = diff / scale;
        if (!(rel <= worst)) worst = rel; /* NaN wins */
        if (report)
            CHECK(rel <= TOLERANCE, "config %d %s (%s | %s | %s, clip %g) step %d group %d tensor %d: relative error %.3g",
                  c->index, c->label, c->hparams, c->overrides[0], c->ngroups > 1 ? c->overrides[1] : "", c->clip,
                  sn->step, x->group, x->slot, rel);
    }
    CHECK(step == STEPS, "config %d: only %d steps in the file", c->index, step);
    co_optim_free(o);
    return worst;
}

int main(void)
{
    const char *path = co_test_data("optim_baselines.txt");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return co_test_finish();

    /* Every variant the issue names must be in the file, so a regenerated file cannot
     * silently drop one. */
    static const char *const required[] = {"sgd", "sgd+momentum", "sgd+dampening", "sgd+nesterov", "sgd+wd",
                                           "sgd+groups", "adagrad", "adagrad+lr_decay", "adagrad+init_acc",
                                           "adagrad+wd", "rmsprop", "rmsprop+centered", "rmsprop+momentum",
                                           "rmsprop+centered+momentum", "rmsprop+wd", "adam", "adam+wd",
                                           "adam+amsgrad", "adamw", "adamw+amsgrad", "sgd+maximize",
                                           "adagrad+maximize", "rmsprop+maximize", "adam+maximize",
                                           "adamw+maximize", "maximize+groups"};
    enum { NREQ = sizeof required / sizeof required[0], MAX_LABELS = 64 };
    char labels[MAX_LABELS][80];
    double worst_by_label[MAX_LABELS];
    int configs_by_label[MAX_LABELS];
    int nlabels = 0, nconfigs = 0, clipped = 0, grouped = 0;
    double weakest_control = INFINITY;
    char *line = NULL;
    size_t cap = 0;
    config *c = calloc(1, sizeof *c);
    int r;
    while ((r = read_config(f, c, &line, &cap)) == 1) {
        double worst = replay(c, 1.0, 1);
        double control = replay(c, 1.01, 0);
        CHECK(control > TOLERANCE, "config %d %s: lr 1%% off still within tolerance (%.3g): the configuration is too weak",
              c->index, c->label, control);
        weakest_control = fmin(weakest_control, control);
        /* Clipped runs are listed apart: their norm is summed in double here, in float by torch. */
        char key[80];
        snprintf(key, sizeof key, "%s%s", c->label, c->clip > 0 ? " (clipped)" : "");
        int k;
        for (k = 0; k < nlabels && strcmp(labels[k], key) != 0; k++) {
        }
        if (k == nlabels && nlabels < MAX_LABELS) {
            snprintf(labels[k], sizeof labels[k], "%s", key);
            worst_by_label[k] = 0;
            configs_by_label[k] = 0;
            nlabels++;
        }
        if (k < nlabels) {
            worst_by_label[k] = fmax(worst_by_label[k], worst);
            configs_by_label[k]++;
        }
        clipped += c->clip > 0;
        grouped += c->ngroups > 1;
        nconfigs++;
        config_free(c);
    }
    config_free(c);
    free(c);
    free(line);
    fclose(f);
    CHECK(r == 0, "the golden file did not parse to its end");
    CHECK(nconfigs >= 24, "only %d configurations", nconfigs);
    CHECK(clipped >= 3 && grouped >= 3, "%d clipped and %d multi-group configurations", clipped, grouped);
    for (int q = 0; q < NREQ; q++) {
        int found = 0;
        for (int k = 0; k < nlabels; k++)
            found |= strncmp(labels[k], required[q], strlen(required[q])) == 0 &&
                     (labels[k][strlen(required[q])] == 0 || labels[k][strlen(required[q])] == ' ');
        CHECK(found, "no configuration of %s in the golden file", required[q]);
    }
    printf("%d configurations; worst relative error per variant (tolerance %g):\n", nconfigs, TOLERANCE);
    for (int k = 0; k < nlabels; k++)
        printf("  %-36s %2d configs  %.3g\n", labels[k], configs_by_label[k], worst_by_label[k]);
    printf("weakest negative control (lr x 1.01): %.3g\n", weakest_control);
    return co_test_finish();
}

/* Replays torch.optim 1.13 trajectories (tests/golden/torch_optim_trajectories.txt, made by
 * scripts/gen_golden_optim.py) through curvopt's baselines: random shapes and
 * hyperparameters, several tensors, 100 steps of g = c p + noise; the parameters after steps
 * 1, 10, 50 and 100 must match torch's with max|ours - torch| / max|torch| <= 1e-5. */
#include "test_util.h"

#include <curvopt.h>

#define MAXT 4
#define MAXN 256

/* splitmix64 and the noise, bit for bit as in the generator. */
static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void noise(int seed, int step, int tensor, int n, float *out)
{
    uint64_t base = splitmix64((uint64_t)seed * 1000003ULL + (uint64_t)step * 7919ULL + (uint64_t)tensor * 104729ULL);
    for (int i = 0; i < n; i++) {
        double u = (double)(splitmix64(base ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL)) >> 11) * (1.0 / 9007199254740992.0);
        out[i] = (float)(2.0 * u - 1.0);
    }
}

static int read_floats(FILE *f, float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (fscanf(f, "%f", &x[i]) != 1) return 0;
    return 1;
}

int main(void)
{
    const char *path = co_test_data("torch_optim_trajectories.txt");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return co_test_finish();
    char line[256];
    if (!fgets(line, sizeof line, f)) return co_test_finish(); /* comment line */
    double worst_by_opt[8] = {0};
    const char *names[8] = {0};
    int nnames = 0, configs = 0;
    char word[32];
    while (fscanf(f, "%31s", word) == 1) {
        if (strcmp(word, "config") != 0) {
            CHECK(0, "unexpected token '%s'", word);
            break;
        }
        int idx, nt;
        char opt[32], hp[512];
        if (fscanf(f, "%d %31s %d %511s", &idx, opt, &nt, hp) != 4 || nt < 1 || nt > MAXT) {
            CHECK(0, "malformed config line");
            break;
        }
        float p[MAXT][MAXN], g[MAXT][MAXN], expect[MAXN], nz[MAXN];
        float coef[MAXT];
        int size[MAXT];
        co_group grp = {.name = "golden", .kind = CO_GROUP_DENSE, .ntensors = nt};
        for (int t = 0; t < nt; t++) {
            int ti;
            if (fscanf(f, " tensor %d %d %f init", &ti, &size[t], &coef[t]) != 3 || size[t] < 1 || size[t] > MAXN ||
                !read_floats(f, p[t], size[t])) {
                CHECK(0, "config %d: malformed tensor %d", idx, t);
                fclose(f);
                return co_test_finish();
            }
            grp.param[t] = p[t];
            grp.grad[t] = g[t];
            grp.size[t] = (size_t)size[t];
        }
        co_error err;
        co_optim *o = co_optim_new(opt, &grp, 1, hp, 0, &err);
        CHECK(o != NULL, "config %d (%s %s): %s", idx, opt, hp, o ? "" : err.msg);
        if (!o) break;
        int k;
        for (k = 0; k < nnames && strcmp(names[k], co_optim_info_of(o)->name) != 0; k++) {
        }
        if (k == nnames) names[nnames++] = co_optim_info_of(o)->name;
        double worst = 0;
        int step = 0;
        while (fscanf(f, "%31s", word) == 1 && strcmp(word, "step") == 0) {
            int s, t;
            if (fscanf(f, "%d %d", &s, &t) != 2 || t < 0 || t >= nt || !read_floats(f, expect, size[t])) {
                CHECK(0, "config %d: malformed snapshot", idx);
                break;
            }
            while (step < s) {
                step++;
                for (int u = 0; u < nt; u++) {
                    noise(idx, step, u, size[u], nz);
                    for (int i = 0; i < size[u]; i++) g[u][i] = coef[u] * p[u][i] + nz[i];
                }
                co_optim_step(o, NULL, NULL);
            }
            double diff = 0, scale = 1e-12;
            for (int i = 0; i < size[t]; i++) {
                diff = fmax(diff, fabs((double)p[t][i] - expect[i]));
                scale = fmax(scale, fabs((double)expect[i]));
            }
            double rel = diff / scale;
            worst = fmax(worst, rel);
            CHECK(rel <= 1e-5, "config %d %s (%s) step %d tensor %d: relative error %.3g", idx, opt, hp, s, t, rel);
        }
        CHECK(strcmp(word, "end") == 0, "config %d: missing end", idx);
        CHECK(step == 100, "config %d: replayed %d steps", idx, step);
        worst_by_opt[k] = fmax(worst_by_opt[k], worst);
        co_optim_free(o);
        configs++;
    }
    fclose(f);
    CHECK(configs >= 24, "only %d configurations", configs);
    for (int k = 0; k < nnames; k++) printf("%-8s worst relative error %.3g\n", names[k], worst_by_opt[k]);
    return co_test_finish();
}

/* Using curvopt's optimizers on your own model: a least-squares fit of y = w x + b in
 * plain C through the shared library's small stable API.
 *   cc fit_line.c -Iinclude -Lbuild -lcurvopt -o fit_line */
#include <curvopt.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "adam";
    float w = 0, b = 0, dw = 0, db = 0;
    co_group group = {.name = "line", .kind = CO_GROUP_DENSE, .ntensors = 2,
                      .param = {&w, &b}, .grad = {&dw, &db}, .size = {1, 1}};
    co_error err = {0};
    co_optim *opt = co_optim_new(name, &group, 1, "lr=0.05", 42, &err);
    if (!opt) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    const float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7}; /* y = 2x + 1 */
    for (int step = 0; step < 2000; step++) {
        dw = db = 0;
        for (int i = 0; i < 4; i++) {
            float r = w * xs[i] + b - ys[i];
            dw += r * xs[i] / 2;
            db += r / 2;
        }
        if (co_optim_step(opt, NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            co_optim_free(opt);
            return 1;
        }
    }
    if (co_optim_save(opt, "fit_line.state", &err)) fprintf(stderr, "%s\n", err.msg);
    printf("%s: w=%.4f b=%.4f after %llu steps\n", name, w, b, (unsigned long long)co_optim_steps(opt));
    co_optim_free(opt);
    return 0;
}

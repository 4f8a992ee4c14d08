/* `curvopt reproduce quasi-adam --quick` with SVHN present: two tiny SVHN-format files
 * (three images each) make Exp. III (ResNet34) run end to end beside Exp. I-II and IV-V, and
 * the report and results.json carry its rows, curves and claims. tests/reproduce_quick.sh
 * covers the usual case, SVHN absent. Structure only: no accuracy is asserted. Needs MNIST
 * and Fashion-MNIST (scripts/setup.sh): skipped (77) without them. */
#include "experiments/experiments.h"
#include "svhn_writer.h"
#include "test_util.h"

#include <sys/stat.h>
#include <unistd.h>

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static int lines_of(const char *path)
{
    const char *t = read_text(path);
    return t ? count(t, "\n") : -1;
}

int main(void)
{
    const char *needed[] = {"mnist", "fashion-mnist"};
    for (int i = 0; i < 2; i++) {
        co_error e = {0};
        co_dataset *d = NULL;
        if (co_dataset_load(needed[i], NULL, 0, &d, &e) == CO_ENOTFOUND) {
            printf("SKIP: %s\n", e.msg);
            return 77;
        }
        co_dataset_free(d);
    }
    char root[64], path[256], out[128];
    snprintf(root, sizeof root, "/tmp/co_test_qa_XXXXXX");
    if (!mkdtemp(root)) return 2;
    snprintf(path, sizeof path, "%s/svhn", root);
    if (mkdir(path, 0755) != 0) return 2;
    sv_spec spec = sv_default();
    snprintf(path, sizeof path, "%s/svhn/train_32x32.mat", root);
    write_svhn(path, &spec);
    snprintf(path, sizeof path, "%s/svhn/test_32x32.mat", root);
    write_svhn(path, &spec);
    snprintf(out, sizeof out, "%s/out", root);

    co_reproduce_options o = {.quick = 1, .data_dir = root};
    co_error e = {0};
    CHECK(co_reproduce_quasi_adam(out, &o, &e) == CO_OK, "reproduce: %s", e.msg);
    snprintf(path, sizeof path, "%s/results.json", out);
    const char *js = read_text(path);
    CHECK(js != NULL, "no results.json");
    if (js) {
        CHECK(count(js, "\"data\": \"svhn\", \"model\": \"resnet34-32\"") == 4, "SVHN entries: %d, expected 4",
              count(js, "\"data\": \"svhn\", \"model\": \"resnet34-32\""));
        CHECK(strstr(js, "\"not_run\": []") != NULL, "something reported as not run");
        /* 4 for Exp. I-II, 2 for III, 2 x 2 for IV-V (training and testing). */
        CHECK(count(js, "\"reproduced\": ") == 10, "%d claims, expected 10", count(js, "\"reproduced\": "));
        CHECK(count(js, "\"model\": \"quasi-adam-ae\"") == 4, "reconstruction entries: %d",
              count(js, "\"model\": \"quasi-adam-ae\""));
    }
    snprintf(path, sizeof path, "%s/report.md", out);
    const char *md = read_text(path);
    CHECK(md && strstr(md, "| Exp. III: SVHN | 256 | quasi-adam |") && strstr(md, "| Exp. III: SVHN | 128 | adam |"),
          "report without Exp. III rows");
    const char *nr = md ? strstr(md, "Not run") : NULL;
    CHECK(!nr, "report says %.300s", nr);
    for (int b = 128; b <= 256; b *= 2) {
        snprintf(path, sizeof path, "%s/plots/svhn_b%d_quasi-adam.csv", out, b);
        /* Three training images: one batch iteration, one point (and the header). */
        CHECK(lines_of(path) == 2, "%s: %d lines", path, lines_of(path));
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return co_test_finish();
}

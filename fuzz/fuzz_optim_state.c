/* Optimizer state loaders on arbitrary bytes. Byte 0 picks the optimizer (every registered
 * one) and the path: co_optim_state_read on the rest as a stream, co_optim_load on the rest
 * as a file, or co_optim_load on the rest framed with a correct magic, version and CRC (so
 * the fuzzer gets past the checksum to the parser). A refused state must leave the
 * optimizer exactly as it was (never half-loaded); an accepted one must survive a step. */
#include "fuzz_common.h"

#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

static int fd = -1;
static char path[64];

enum { NG = 2 };
static float w[12], b[3], v[5], gw[12], gb[3], gv[5];

static co_optim *make(int which)
{
    co_group g[NG];
    memset(g, 0, sizeof g);
    g[0] = (co_group){.name = "fc", .kind = CO_GROUP_LINEAR, .ntensors = 2, .rows = 3, .cols = 4};
    g[0].param[0] = w, g[0].grad[0] = gw, g[0].size[0] = 12;
    g[0].param[1] = b, g[0].grad[1] = gb, g[0].size[1] = 3;
    g[1] = (co_group){.name = "v", .kind = CO_GROUP_DENSE, .ntensors = 1};
    g[1].param[0] = v, g[1].grad[0] = gv, g[1].size[0] = 5;
    for (int i = 0; i < 12; i++) w[i] = 0.1f * (float)(i - 6), gw[i] = 0.01f * (float)i;
    for (int i = 0; i < 3; i++) b[i] = 0.5f, gb[i] = -0.2f;
    for (int i = 0; i < 5; i++) v[i] = (float)i, gv[i] = 1.0f;
    co_error e;
    const co_optim_info *info = co_optim_info_at(which % co_optim_count());
    co_optim *o = co_optim_new(info->name, g, NG, NULL, 7, &e);
    FUZZ_REQUIRE(o != NULL, "cannot create %s: %s", info->name, e.msg);
    return o;
}

static char *snapshot(const co_optim *o, size_t *len)
{
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    co_error e;
    FUZZ_REQUIRE(m && co_optim_state_write(o, m, &e) == CO_OK, "snapshot");
    fclose(m);
    return buf;
}

/* The frame's head (magic and version) as co_optim_save writes it, learnt once from a real
 * save so that the harness follows any change of the format. */
static unsigned char *frame_head;
static size_t frame_head_len;

static void learn_frame(const co_optim *o)
{
    char dir[] = "/tmp/fuzz_optim_XXXXXX", file[64];
    FUZZ_REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(file, sizeof file, "%s/state", dir);
    co_error e;
    FUZZ_REQUIRE(co_optim_save(o, file, &e) == CO_OK, "save: %s", e.msg);
    size_t payload_len;
    free(snapshot(o, &payload_len));
    FILE *f = fopen(file, "rb");
    FUZZ_REQUIRE(f != NULL, "reopen");
    fseek(f, 0, SEEK_END);
    size_t file_len = (size_t)ftell(f);
    rewind(f);
    frame_head_len = file_len - payload_len - 4; /* head, payload, CRC-32 */
    frame_head = malloc(frame_head_len);
    FUZZ_REQUIRE(fread(frame_head, 1, frame_head_len, f) == frame_head_len, "read head");
    fclose(f);
    unlink(file);
    rmdir(dir);
}

static double eval_zero(void *ctx)
{
    (void)ctx;
    return 0.0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    if (fd < 0) {
        fd = memfd_create("optim.state", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    int mode = data[0] >> 6;
    co_optim *o = make(data[0] & 0x3f);
    size_t before_len;
    char *before = snapshot(o, &before_len);
    co_error e = {0};
    co_status st;
    const unsigned char *body = data + 1;
    size_t n = size - 1;
    if (mode <= 1) {
        FILE *f = fmemopen((void *)body, n ? n : 1, "rb");
        if (!f) abort();
        if (n == 0) fgetc(f); /* an empty stream: fmemopen needs a non-zero size */
        st = co_optim_state_read(o, f, &e);
        fclose(f);
    } else {
        if (mode == 2) {
            if (ftruncate(fd, 0) != 0 || (n && pwrite(fd, body, n, 0) != (ssize_t)n)) abort();
        } else {
            if (!frame_head) learn_frame(o);
            unsigned char *frame = malloc(frame_head_len + n + 4);
            memcpy(frame, frame_head, frame_head_len);
            if (n) memcpy(frame + frame_head_len, body, n);
            uint32_t c = (uint32_t)crc32(0, frame, (uInt)(frame_head_len + n));
            memcpy(frame + frame_head_len + n, &c, 4);
            size_t total = frame_head_len + n + 4;
            if (ftruncate(fd, 0) != 0 || pwrite(fd, frame, total, 0) != (ssize_t)total) abort();
            free(frame);
        }
        st = co_optim_load(o, path, &e);
    }
    if (st != CO_OK) {
        fuzz_check_refusal(st, &e, NULL);
        size_t after_len;
        char *after = snapshot(o, &after_len);
        FUZZ_REQUIRE(after_len == before_len && memcmp(before, after, before_len) == 0,
                     "a refused state changed the optimizer (half-loaded): %s", e.msg);
        free(after);
    } else {
        /* Whatever was loaded, a step must not crash (it may refuse). */
        co_closure c = {.ctx = NULL, .eval = eval_zero, .capture = NULL};
        co_optim_step(o, &c, &e);
    }
    free(before);
    co_optim_free(o);
    return 0;
}

/* Bounded whole-file reads and in-memory gunzip for the dataset loaders. Everything is
 * read into memory first so that one parser serves files, gzip streams and fuzzers alike. */
#include "data/formats.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int co_data_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

co_status co_data_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, co_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return co_error_set(err, CO_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return co_error_set(err, CO_EIO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max) {
        close(fd);
        return co_error_set(err, CO_EFORMAT, "%s: %lld bytes, larger than the %zu-byte limit for a dataset file", path,
                            (long long)st.st_size, max);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        close(fd);
        return co_error_set(err, CO_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(b);
        return co_error_set(err, CO_EIO, "%s: short read (%zu of %zu bytes)", path, got, size);
    }
    *buf = b;
    *len = size;
    return CO_OK;
}

co_status co_data_gunzip(const unsigned char *buf, size_t len, const char *name, size_t max, unsigned char **raw,
                         size_t *rawlen, int *compressed, co_error *err)
{
    *raw = NULL;
    *rawlen = 0;
    *compressed = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
    if (!*compressed) {
        if (len > max)
            return co_error_set(err, CO_EFORMAT, "%s: %zu bytes, larger than the %zu-byte limit", name, len, max);
        unsigned char *copy = malloc(len ? len : 1);
        if (!copy) return co_error_set(err, CO_ENOMEM, "%s: out of memory for %zu bytes", name, len);
        if (len) memcpy(copy, buf, len);
        *raw = copy;
        *rawlen = len;
        return CO_OK;
    }
    if (len > UINT_MAX) return co_error_set(err, CO_EFORMAT, "%s: gzip file of %zu bytes is too large", name, len);
    z_stream s;
    memset(&s, 0, sizeof s);
    /* 16 + MAX_WBITS: gzip wrapper only, so the CRC-32 and length trailer are checked. */
    if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK)
        return co_error_set(err, CO_ENOMEM, "%s: cannot initialise zlib", name);
    s.next_in = (Bytef *)buf;
    s.avail_in = (uInt)len;
    size_t cap = len < ((size_t)1 << 16) ? (size_t)1 << 16 : len * 2;
    if (cap > max) cap = max;
    unsigned char *out = malloc(cap ? cap : 1);
    co_status st = CO_OK;
    if (!out) {
        st = co_error_set(err, CO_ENOMEM, "%s: out of memory decompressing", name);
        goto done;
    }
    size_t used = 0;
    for (;;) {
        if (used == cap) {
            if (cap >= max) {
                st = co_error_set(err, CO_EFORMAT, "%s: decompresses to more than the %zu-byte limit", name, max);
                goto done;
            }
            size_t ncap = cap > max / 2 ? max : cap * 2;
            unsigned char *grown = realloc(out, ncap);
            if (!grown) {
                st = co_error_set(err, CO_ENOMEM, "%s: out of memory decompressing (%zu bytes)", name, ncap);
                goto done;
            }
            out = grown;
            cap = ncap;
        }
        size_t room = cap - used;
        s.next_out = out + used;
        s.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt before = s.avail_out;
        int r = inflate(&s, Z_NO_FLUSH);
        used += before - s.avail_out;
        if (r == Z_STREAM_END) break;
        if (r == Z_OK) continue;
        /* The output always has room here, so a lack of progress means the input ran out. */
        if (r == Z_BUF_ERROR) {
            st = co_error_set(err, CO_EFORMAT,
                              "%s: gzip stream truncated at compressed byte %zu (expected more data, found end of file)",
                              name, len);
            goto done;
        }
        st = co_error_set(err, r == Z_MEM_ERROR ? CO_ENOMEM : CO_EFORMAT, "%s: compressed byte %lu: corrupt gzip stream (%s)",
                          name, (unsigned long)s.total_in, s.msg ? s.msg : "invalid data");
        goto done;
    }
    if (s.avail_in != 0) {
        st = co_error_set(err, CO_EFORMAT, "%s: compressed byte %lu: %u trailing bytes after the gzip stream (expected end of file)",
                          name, (unsigned long)s.total_in, s.avail_in);
        goto done;
    }
    *raw = out;
    *rawlen = used;
    out = NULL;
done:
    inflateEnd(&s);
    free(out);
    return st;
}

#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The pieces, one after another, to a temporary file, fsync'ed, renamed over path. */
typedef struct {
    const void *data;
    size_t len;
} piece;

static co_status write_pieces_atomic(const char *path, const piece *pieces, int npieces, co_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return co_error_set(err, CO_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = 0;
    for (int i = 0; i < npieces && !bad; i++) bad = write_all(fd, pieces[i].data, pieces[i].len);
    bad = bad || fsync(fd) != 0;
    bad |= close(fd) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return co_error_set(err, CO_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    /* The rename is durable only once the directory entry is. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return CO_OK;
}

co_status co_file_write_atomic(const char *path, const void *data, size_t len, co_error *err)
{
    const piece whole = {data, len};
    return write_pieces_atomic(path, &whole, 1, err);
}

co_status co_file_write_framed(const char *path, const char *magic, uint32_t version, const void *payload,
                               size_t len, co_error *err)
{
    size_t ml = strlen(magic);
    uLong crc = crc32(0L, (const Bytef *)magic, (uInt)ml);
    crc = crc32(crc, (const Bytef *)&version, 4);
    /* zlib's length argument is 32-bit: feed large payloads in pieces. */
    for (size_t off = 0; off < len;) {
        size_t n = len - off > (1u << 30) ? (1u << 30) : len - off;
        crc = crc32(crc, (const Bytef *)payload + off, (uInt)n);
        off += n;
    }
    uint32_t c = (uint32_t)crc;
    const piece pieces[] = {{magic, ml}, {&version, 4}, {payload, len}, {&c, 4}};
    return write_pieces_atomic(path, pieces, 4, err);
}

co_status co_file_read_framed(const char *path, const char *magic, uint32_t version, void **payload, size_t *len,
                              co_error *err)
{
    *payload = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return co_error_set(err, CO_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return co_error_set(err, CO_EIO, "%s: cannot seek", path);
    }
    long size = ftell(f);
    rewind(f);
    size_t ml = strlen(magic);
    if (size < 0 || (size_t)size < ml + 8) {
        fclose(f);
        return co_error_set(err, CO_EFORMAT, "%s: %ld bytes, too short (expected at least %zu)", path, size, ml + 8);
    }
    unsigned char *buf = malloc((size_t)size);
    if (!buf) {
        fclose(f);
        return co_error_set(err, CO_ENOMEM, "%s: out of memory for %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    co_status st = CO_OK;
    uint32_t v, c;
    if (got != (size_t)size) {
        st = co_error_set(err, CO_EIO, "%s: short read (%zu of %ld bytes)", path, got, size);
        goto fail;
    }
    if (memcmp(buf, magic, ml) != 0) {
        st = co_error_set(err, CO_EFORMAT, "%s: byte 0: bad magic (expected \"%s\")", path, magic);
        goto fail;
    }
    memcpy(&v, buf + ml, 4);
    if (v != version) {
        st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: format version %u, expected %u", path, ml, v, version);
        goto fail;
    }
    memcpy(&c, buf + size - 4, 4);
    uLong crc = 0;
    for (size_t off = 0; off < (size_t)size - 4;) {
        size_t n = (size_t)size - 4 - off > (1u << 30) ? (1u << 30) : (size_t)size - 4 - off;
        crc = crc32(crc, buf + off, (uInt)n);
        off += n;
    }
    if ((uint32_t)crc != c) {
        st = co_error_set(err, CO_EFORMAT, "%s: checksum mismatch (file truncated or corrupted)", path);
        goto fail;
    }
    *len = (size_t)size - ml - 8;
    memmove(buf, buf + ml + 4, *len);
    *payload = buf;
    return CO_OK;
fail:
    free(buf);
    return st;
}

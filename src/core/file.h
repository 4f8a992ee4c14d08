/* Crash-safe files: written whole to a temporary file, fsync'ed, renamed over the target;
 * framed by a magic string, a format version and a trailing CRC-32 checked before anything
 * is parsed. */
#ifndef CO_CORE_FILE_H
#define CO_CORE_FILE_H

#include "curvopt.h"

/* Writes len bytes of data atomically to path: a reader sees the old file or all of the new. */
co_status co_file_write_atomic(const char *path, const void *data, size_t len, co_error *err);
/* Writes magic, version, payload, crc32(magic..payload) atomically to path. */
co_status co_file_write_framed(const char *path, const char *magic, uint32_t version, const void *payload,
                               size_t len, co_error *err);
/* Reads path, checks magic, version and CRC; on success *payload (malloc'ed, caller frees)
 * and *len describe the payload. */
co_status co_file_read_framed(const char *path, const char *magic, uint32_t version, void **payload, size_t *len,
                              co_error *err);

#endif

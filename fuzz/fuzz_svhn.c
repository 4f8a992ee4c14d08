/* SVHN .mat loader on arbitrary bytes. matio reads from a path, so the input goes into an
 * in-memory file (memfd) opened through /proc/self/fd: no disk traffic per execution. */
#include "data/formats.h"
#include "fuzz_common.h"

#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("svhn.mat", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    co_error e = {0};
    co_dataset *d = NULL;
    co_status st = co_svhn_load_file(path, &d, &e);
    if (st == CO_OK) {
        fuzz_check_dataset(d, 10);
        FUZZ_REQUIRE(d->c == 3 && d->h == 32 && d->w == 32, "SVHN shape");
    } else {
        FUZZ_REQUIRE(d == NULL, "dataset returned with an error");
        fuzz_check_refusal(st, &e, path);
    }
    co_dataset_free(d);
    return 0;
}

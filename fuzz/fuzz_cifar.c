/* CIFAR batch loader on arbitrary bytes: the first byte picks CIFAR-10 or CIFAR-100. */
#include "data/formats.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    int nclasses = data[0] & 1 ? 100 : 10;
    co_error e = {0};
    co_dataset *d = NULL;
    co_status st = co_cifar_load_mem(data + 1, size - 1, "batch.bin", nclasses, &d, &e);
    if (st == CO_OK) {
        fuzz_check_dataset(d, nclasses);
        FUZZ_REQUIRE(d->c == 3 && d->h == 32 && d->w == 32, "CIFAR shape");
        FUZZ_REQUIRE((size_t)d->n * (3072 + (nclasses == 100 ? 2 : 1)) == size - 1, "records do not fill the file");
    } else {
        FUZZ_REQUIRE(d == NULL, "dataset returned with an error");
        fuzz_check_refusal(st, &e, "batch.bin");
    }
    co_dataset_free(d);
    return 0;
}

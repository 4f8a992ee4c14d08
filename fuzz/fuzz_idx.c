/* IDX loader on arbitrary bytes: the whole input as one (plain or gzip) IDX file, and the
 * input split into an images file and a labels file at a point its first two bytes pick. */
#include "data/formats.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    co_error e = {0};
    unsigned char *raw = NULL;
    size_t rawlen;
    int gz;
    co_status st = co_data_gunzip(data, size, "whole.idx", CO_DATA_MAX_FILE_BYTES, &raw, &rawlen, &gz, &e);
    if (st == CO_OK) {
        co_idx idx;
        st = co_idx_parse(raw, rawlen, "whole.idx", gz, &idx, &e);
        if (st == CO_OK) {
            size_t count = 1;
            for (int i = 0; i < idx.ndims; i++) count *= idx.dims[i];
            FUZZ_REQUIRE(count == idx.count && idx.data_offset + count == rawlen, "accepted IDX does not fill the file");
        } else {
            fuzz_check_refusal(st, &e, "whole.idx");
        }
        free(raw);
    } else {
        fuzz_check_refusal(st, &e, "whole.idx");
    }
    if (size < 2) return 0;
    size_t rest = size - 2, cut = ((size_t)data[0] | (size_t)data[1] << 8) % (rest + 1);
    co_dataset *d = NULL;
    st = co_idx_load_mem(data + 2, cut, "images.idx", data + 2 + cut, rest - cut, "labels.idx", 10, &d, &e);
    if (st == CO_OK) {
        fuzz_check_dataset(d, 10);
        FUZZ_REQUIRE(d->c == 1, "IDX images have one channel");
    } else {
        FUZZ_REQUIRE(d == NULL, "dataset returned with an error");
        fuzz_check_refusal(st, &e, NULL);
        FUZZ_REQUIRE(strstr(e.msg, "images.idx") || strstr(e.msg, "labels.idx"), "message names no file: %s", e.msg);
    }
    co_dataset_free(d);
    return 0;
}

#include "checkpoint.h"
#include "../core/file.h"
#include "../optim/optim_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_MAGIC "CURVOPT-CKPT"
#define CKPT_VERSION 2u /* 2: model state (dropout streams) after the parameters */

co_status co_checkpoint_save(const char *path, const co_model *m, const co_optim *opt, const co_train_pos *pos,
                             const co_epoch_stats *history, int nhistory, co_error *err)
{
    size_t np = co_model_param_count(m), ns = co_model_state_size(m);
    float *params = malloc((np ? np : 1) * sizeof(float));
    unsigned char *mstate = malloc(ns ? ns : 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = params && mstate ? open_memstream(&buf, &len) : NULL;
    if (!mem) {
        free(params);
        free(mstate);
        return co_error_set(err, CO_ENOMEM, "out of memory writing checkpoint %s", path);
    }
    co_model_get_params(m, params);
    co_model_get_state(m, mstate);
    uint64_t n64 = np, s64 = ns;
    int32_t nh = nhistory;
    fwrite(pos, sizeof *pos, 1, mem);
    fwrite(&n64, 8, 1, mem);
    fwrite(params, sizeof(float), np, mem);
    fwrite(&s64, 8, 1, mem);
    if (ns) fwrite(mstate, 1, ns, mem);
    fwrite(&nh, 4, 1, mem);
    if (nhistory) fwrite(history, sizeof *history, (size_t)nhistory, mem);
    co_status st = co_optim_state_write(opt, mem, err);
    fclose(mem);
    free(params);
    free(mstate);
    if (st == CO_OK) st = co_file_write_framed(path, CKPT_MAGIC, CKPT_VERSION, buf, len, err);
    free(buf);
    return st;
}

co_status co_checkpoint_read(const char *path, void **buf, size_t *len, co_error *err)
{
    return co_file_read_framed(path, CKPT_MAGIC, CKPT_VERSION, buf, len, err);
}

co_status co_checkpoint_load(const char *path, co_model *m, co_optim *opt, co_train_pos *pos, co_epoch_stats *history,
                             int max, int *nhistory, co_error *err)
{
    void *buf;
    size_t len;
    co_status st = co_checkpoint_read(path, &buf, &len, err);
    if (st) return st;
    st = co_checkpoint_parse(path, buf, len, m, opt, pos, history, max, nhistory, err);
    free(buf);
    return st;
}

co_status co_checkpoint_parse(const char *path, const void *buf, size_t len, co_model *m, co_optim *opt,
                              co_train_pos *pos, co_epoch_stats *history, int max, int *nhistory, co_error *err)
{
    co_status st = CO_OK;
    const unsigned char *p = buf, *end = p + len;
    size_t np = co_model_param_count(m);
    co_train_pos tmp;
    uint64_t n64;
    int32_t nh;
    size_t head = sizeof tmp + 8;
    if (len < head) {
        st = co_error_set(err, CO_EFORMAT, "%s: truncated training position", path);
        goto done;
    }
    memcpy(&tmp, p, sizeof tmp);
    memcpy(&n64, p + sizeof tmp, 8);
    p += head;
    if (n64 != np) {
        st = co_error_set(err, CO_EFORMAT, "%s: byte %zu: %llu parameters saved, the model has %zu", path,
                          sizeof tmp + 12 + 4, (unsigned long long)n64, np);
        goto done;
    }
    size_t ns = co_model_state_size(m);
    uint64_t s64;
    if ((size_t)(end - p) < np * sizeof(float) + 8) {
        st = co_error_set(err, CO_EFORMAT, "%s: truncated parameters", path);
        goto done;
    }
    const unsigned char *params = p;
    p += np * sizeof(float);
    memcpy(&s64, p, 8);
    p += 8;
    if (s64 != ns || (size_t)(end - p) < ns + 4) {
        st = co_error_set(err, CO_EFORMAT, "%s: %llu bytes of model state saved, the model has %zu", path,
                          (unsigned long long)s64, ns);
        goto done;
    }
    const unsigned char *mstate = p;
    p += ns;
    memcpy(&nh, p, 4);
    p += 4;
    if (nh < 0 || nh > max || (size_t)(end - p) < (size_t)nh * sizeof *history) {
        st = co_error_set(err, CO_EFORMAT, "%s: %d epochs of history (expected 0..%d within the file)", path, nh, max);
        goto done;
    }
    const unsigned char *hist = p;
    p += (size_t)nh * sizeof *history;
    if (tmp.epoch < 0 || tmp.epoch > max || tmp.samples_done < 0) {
        st = co_error_set(err, CO_EFORMAT, "%s: training position epoch %d, sample %d is impossible here", path,
                          tmp.epoch, tmp.samples_done);
        goto done;
    }
    /* The optimizer checks all of its entries before copying any; everything else is
     * applied only after it succeeded. */
    FILE *mem = fmemopen((void *)p, (size_t)(end - p), "rb");
    if (!mem) {
        st = co_error_set(err, CO_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    co_error inner = {0};
    st = co_optim_state_read_whole(opt, mem, &inner);
    if (st) co_error_set(err, st, "%s: %s", path, inner.msg);
    fclose(mem);
    if (st) goto done;
    co_model_set_params(m, (const float *)params);
    co_model_set_state(m, mstate);
    memcpy(history, hist, (size_t)nh * sizeof *history);
    *nhistory = nh;
    *pos = tmp;
done:
    return st;
}

#define PARAMS_MAGIC "CURVOPT-PARAMS"

co_status co_model_save(const co_model *m, const char *path, co_error *err)
{
    size_t np = co_model_param_count(m);
    float *params = malloc((np ? np : 1) * sizeof(float));
    if (!params) return co_error_set(err, CO_ENOMEM, "out of memory");
    co_model_get_params(m, params);
    co_status st = co_file_write_framed(path, PARAMS_MAGIC, 1u, params, np * sizeof(float), err);
    free(params);
    return st;
}

co_status co_model_load(co_model *m, const char *path, co_error *err)
{
    void *buf;
    size_t len;
    co_status st = co_file_read_framed(path, PARAMS_MAGIC, 1u, &buf, &len, err);
    if (st) return st;
    if (len != co_model_param_count(m) * sizeof(float))
        st = co_error_set(err, CO_EFORMAT, "%s: %zu parameters, the model has %zu", path, len / sizeof(float),
                          co_model_param_count(m));
    else
        co_model_set_params(m, buf);
    free(buf);
    return st;
}

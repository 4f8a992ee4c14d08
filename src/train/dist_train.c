/* The training loop's distributed half (dist_train.h). */
#include "dist_train.h"
#include "../core/alloc.h"
#include "../core/blas.h"
#include "../optim/optim_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cdiv(int a, int b) { return (a + b - 1) / b; }

void co_shard(int batch, int rank, int size, int even, int *lo, int *hi)
{
    if (size <= 1 || batch <= 0) {
        *lo = 0;
        *hi = batch > 0 ? batch : 0;
        return;
    }
    long long l, h;
    if (even) {
        l = (long long)batch * rank / size;
        h = (long long)batch * (rank + 1) / size;
    } else {
        /* k blocks each, k a power of two: a rank's blocks are a subtree of the pairwise tree
         * over all blocks, and the tree over ranks joins those subtrees as one process does. */
        int per = cdiv(cdiv(batch, CO_BATCH_BLOCK), size), k = 1;
        while (k < per) k *= 2;
        l = (long long)rank * k * CO_BATCH_BLOCK;
        h = l + (long long)k * CO_BATCH_BLOCK;
    }
    *lo = (int)(l < batch ? l : batch);
    *hi = (int)(h < batch ? h : batch);
}

co_status co_shard_batch_init(co_shard_batch *s, co_model *m, co_group *groups, int ngroups,
                              const co_collective *coll, co_loss_kind loss, int y_dim, int even, int max_batch,
                              co_error *err)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->y_dim = y_dim;
    s->coll = coll;
    s->loss = loss;
    s->even = even;
    s->groups = groups;
    s->ngroups = ngroups;
    for (int g = 0; g < ngroups; g++) s->nparams += co_group_numel(&groups[g]);
    s->flat = co_falloc(s->nparams ? s->nparams : 1);
    s->dout = co_falloc((size_t)max_batch * co_model_out_size(m));
    if (!s->flat || !s->dout) {
        co_shard_batch_free(s);
        return co_error_set(err, CO_ENOMEM, "out of memory for the gradient exchange (%zu parameters)", s->nparams);
    }
    /* Batch norm adds its statistics over the ranks (synchronised); the shard is set here, on
     * every rank alike, so that any refusal comes before the first step. */
    co_model_set_collective(m, coll);
    return co_model_set_shard(m, 0, max_batch, err);
}

void co_shard_batch_free(co_shard_batch *s)
{
    if (s->model) {
        co_model_set_shard(s->model, 0, 0, NULL);
        co_model_set_collective(s->model, NULL);
    }
    free(s->flat);
    free(s->dout);
    memset(s, 0, sizeof *s);
}

/* dir 0: gradients -> flat; 1: flat -> gradients. */
static void copy_grads(co_shard_batch *s, int dir)
{
    float *p = s->flat;
    for (int g = 0; g < s->ngroups; g++)
        for (int k = 0; k < s->groups[g].ntensors; k++) {
            size_t n = s->groups[g].size[k];
            if (dir == 0) memcpy(p, s->groups[g].grad[k], n * sizeof(float));
            else memcpy(s->groups[g].grad[k], p, n * sizeof(float));
            p += n;
        }
}

static double loss_terms(co_loss_kind kind, int n, int dim)
{
    int per_element = kind == CO_LOSS_BCE_LOGITS || kind == CO_LOSS_BCE || kind == CO_LOSS_MSE;
    return per_element ? (double)n * dim : (double)n;
}

double co_shard_batch_eval(co_shard_batch *s, const float *x, const float *y, int n)
{
    const co_collective *c = s->coll;
    co_model *m = s->model;
    int in = co_model_in_size(m), dim = co_model_out_size(m);
    co_shard(n, c->rank, c->size, s->even, &s->lo, &s->hi);
    int rows = s->hi - s->lo;
    double sum = -0.0;
    co_model_set_shard(m, s->lo, n, NULL);
    if (rows > 0) {
        const float *out = co_model_forward(m, x + (size_t)s->lo * in, rows, 1, NULL);
        if (out) {
            sum = co_loss_shard(s->loss, out, y + (size_t)s->lo * s->y_dim, rows, dim, n, s->dout);
            co_model_backward(m, s->dout);
            copy_grads(s, 0);
        } else {
            sum = NAN;
        }
    } else {
        /* Nothing to add (-0.0 is exact), but the random streams move past the minibatch and
         * batch norm takes part in the ranks' statistics. */
        co_model_forward(m, x, 0, 1, NULL);
        co_model_backward(m, NULL);
        for (size_t i = 0; i < s->nparams; i++) s->flat[i] = -0.0f;
    }
    if (c->allreduce_sum(c->ctx, s->flat, s->nparams, &sum, 1, NULL)) return NAN;
    copy_grads(s, 1);
    return sum / loss_terms(s->loss, n, dim);
}

int co_shard_batch_capture(co_shard_batch *s, int group, co_capture *out)
{
    if (s->hi > s->lo) return co_model_capture(s->model, group, out);
    if (!s->capturing) return 0;
    memset(out, 0, sizeof *out);
    return 1;
}

co_status co_dist_checkpoint_save(const co_collective *c, const char *path, const co_model *m, co_optim *opt,
                                  const co_train_pos *pos, const co_epoch_stats *history, int nhistory, co_error *err)
{
    co_status st = co_optim_collect_state(opt, err);
    if (st || c->rank != 0) return st;
    return co_checkpoint_save(path, m, opt, pos, history, nhistory, err);
}

co_status co_dist_checkpoint_load(const co_collective *c, const char *path, co_model *m, co_optim *opt,
                                  co_train_pos *pos, co_epoch_stats *history, int max, int *nhistory, int *found,
                                  co_error *err)
{
    /* What rank 0 found: presence, status, size, message; then the bytes. */
    struct {
        int64_t found, status, len;
        char msg[sizeof err->msg];
    } head;
    memset(&head, 0, sizeof head);
    void *buf = NULL;
    size_t len = 0;
    if (c->rank == 0 && access(path, F_OK) == 0) {
        co_error e = {0};
        head.found = 1;
        head.status = co_checkpoint_read(path, &buf, &len, &e);
        head.len = (int64_t)len;
        memcpy(head.msg, e.msg, sizeof head.msg);
    }
    co_status st = c->broadcast(c->ctx, &head, sizeof head, 0, err);
    if (st) goto done;
    *found = (int)head.found;
    if (!head.found) goto done;
    if (head.status) {
        st = co_error_set(err, (co_status)head.status, "%s", head.msg);
        goto done;
    }
    if (c->rank != 0 && !(buf = malloc(head.len ? (size_t)head.len : 1))) {
        /* Every rank must take part in the broadcast below: fail after it. */
        st = co_error_set(err, CO_ENOMEM, "out of memory reading %s", path);
    }
    char sink[4096];
    for (int64_t off = 0; off < head.len;) {
        size_t n = (size_t)(head.len - off) < sizeof sink ? (size_t)(head.len - off) : sizeof sink;
        char *dst = buf ? (char *)buf + off : sink;
        co_status bst = c->broadcast(c->ctx, dst, n, 0, st ? NULL : err);
        if (bst && !st) st = bst;
        off += (int64_t)n;
    }
    if (st) goto done;
    st = co_checkpoint_parse(path, buf, (size_t)head.len, m, opt, pos, history, max, nhistory, err);
    if (st == CO_OK) co_optim_share_state(opt);
done:
    free(buf);
    return st;
}

/* FNV-1a over the bytes of every parameter. */
static uint64_t params_hash(const co_group *groups, int ngroups)
{
    uint64_t h = 1469598103934665603ull;
    for (int g = 0; g < ngroups; g++)
        for (int k = 0; k < groups[g].ntensors; k++) {
            const unsigned char *p = (const unsigned char *)groups[g].param[k];
            for (size_t i = 0; i < groups[g].size[k] * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
        }
    return h;
}

co_status co_dist_check_params(const co_collective *c, const co_group *groups, int ngroups, uint64_t step,
                               co_error *err)
{
    /* Each rank's hash in its own two slots (32 bits each: exact in a double), -0.0 elsewhere. */
    size_t n = 2 * (size_t)c->size;
    double *all = malloc(n * sizeof *all);
    if (!all) return co_error_set(err, CO_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) all[i] = -0.0;
    uint64_t h = params_hash(groups, ngroups);
    all[2 * c->rank] = (double)(h >> 32);
    all[2 * c->rank + 1] = (double)(h & 0xffffffffu);
    co_status st = c->allreduce_sum(c->ctx, NULL, 0, all, n, err);
    for (int r = 1; r < c->size && st == CO_OK; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1])
            st = co_error_set(err, CO_ENUMERIC,
                              "ranks hold different parameters after step %llu: rank %d's hash %08llx%08llx, rank 0's "
                              "%08llx%08llx (a bug: every rank must take the same step)",
                              (unsigned long long)step, r, (unsigned long long)all[2 * r],
                              (unsigned long long)all[2 * r + 1], (unsigned long long)all[0],
                              (unsigned long long)all[1]);
    free(all);
    return st;
}

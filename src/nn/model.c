/* A model is a sequence of layers with the activation buffers between them. Buffers grow
 * with the largest batch seen; they stay alive so K-FAC can read a layer's input and the
 * gradient at its output without copies. */
#include "layers.h"
#include "../core/alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 64

struct co_model {
    int nlayers;
    co_layer *layers[MAX_LAYERS];
    int capacity;       /* batch rows the buffers hold */
    float *act[MAX_LAYERS + 1]; /* act[0] borrowed input; act[i+1] output of layer i */
    float *dact[MAX_LAYERS + 1];
    int batch; /* rows of the last forward */
    int capture;
};

static co_status model_add(co_model *m, co_layer *l, co_error *err)
{
    if (!l) return co_error_set(err, CO_ENOMEM, "out of memory building the model");
    if (m->nlayers == MAX_LAYERS) {
        co_layer_free(l);
        return co_error_set(err, CO_EINVAL, "model has more than %d layers", MAX_LAYERS);
    }
    m->layers[m->nlayers++] = l;
    return CO_OK;
}

co_model *co_model_new_mlp(const char *spec, co_act hidden, co_act output, co_error *err)
{
    const char *prefix = "mlp:";
    if (!spec || strncmp(spec, prefix, strlen(prefix)) != 0) {
        co_error_set(err, CO_EINVAL, "model spec '%s': expected mlp:IN-H1-...-OUT, e.g. mlp:2-64-1",
                     spec ? spec : "");
        return NULL;
    }
    int sizes[MAX_LAYERS];
    int n = 0;
    const char *p = spec + strlen(prefix);
    while (1) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 1000000) {
            co_error_set(err, CO_EINVAL, "model spec '%s': at offset %d expected a layer width 1..1000000",
                         spec, (int)(p - spec));
            return NULL;
        }
        if (n == MAX_LAYERS / 2) {
            co_error_set(err, CO_EINVAL, "model spec '%s': too many layers", spec);
            return NULL;
        }
        sizes[n++] = (int)v;
        if (*end == 0) break;
        if (*end != '-') {
            co_error_set(err, CO_EINVAL, "model spec '%s': unexpected '%c' at offset %d (widths are joined by -)",
                         spec, *end, (int)(end - spec));
            return NULL;
        }
        p = end + 1;
    }
    if (n < 2) {
        co_error_set(err, CO_EINVAL, "model spec '%s': needs at least an input and an output width", spec);
        return NULL;
    }
    co_model *m = calloc(1, sizeof *m);
    if (!m) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i + 1 < n; i++) {
        int last = i + 2 == n;
        if (model_add(m, co_linear_new(sizes[i], sizes[i + 1]), err)) goto fail;
        co_act a = last ? output : hidden;
        if (a != CO_ACT_NONE && model_add(m, co_activation_new(a, sizes[i + 1]), err)) goto fail;
    }
    return m;
fail:
    co_model_free(m);
    return NULL;
}

void co_model_free(co_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nlayers; i++) co_layer_free(m->layers[i]);
    for (int i = 1; i <= MAX_LAYERS; i++) {
        free(m->act[i]);
        free(m->dact[i]);
    }
    free(m->dact[0]);
    free(m);
}

void co_model_init(co_model *m, uint64_t seed)
{
    co_rng r;
    co_rng_seed(&r, seed, CO_STREAM_INIT);
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops->init) m->layers[i]->ops->init(m->layers[i], &r);
}

int co_model_in_size(const co_model *m) { return m->layers[0]->in_size; }
int co_model_out_size(const co_model *m) { return m->layers[m->nlayers - 1]->out_size; }

size_t co_model_param_count(const co_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int k = 0; k < m->layers[i]->ntensors; k++) n += m->layers[i]->size[k];
    return n;
}

int co_model_ngroups(const co_model *m)
{
    int n = 0;
    for (int i = 0; i < m->nlayers; i++) n += m->layers[i]->ntensors > 0;
    return n;
}

/* Layer index of group g. */
static int group_layer(const co_model *m, int g)
{
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ntensors > 0 && g-- == 0) return i;
    return -1;
}

void co_model_groups(co_model *m, co_group *groups)
{
    int g = 0;
    for (int i = 0; i < m->nlayers; i++) {
        co_layer *l = m->layers[i];
        if (l->ntensors == 0) continue;
        co_group *gr = &groups[g++];
        memset(gr, 0, sizeof *gr);
        gr->name = l->ops->kind;
        gr->kind = l->group_kind;
        gr->ntensors = l->ntensors;
        for (int k = 0; k < l->ntensors; k++) {
            gr->param[k] = l->param[k];
            gr->grad[k] = l->grad[k];
            gr->size[k] = l->size[k];
        }
        gr->rows = l->rows;
        gr->cols = l->cols;
    }
}

void co_model_set_capture(co_model *m, int on) { m->capture = on; }

int co_model_capture(const co_model *m, int group, co_capture *out)
{
    int i = group_layer(m, group);
    if (i < 0 || !m->capture || m->batch == 0 || m->layers[i]->group_kind != CO_GROUP_LINEAR) return 0;
    out->a = m->act[i];
    out->g = m->dact[i + 1];
    out->n = m->batch;
    out->batch = m->batch;
    out->a_dim = m->layers[i]->in_size;
    out->g_dim = m->layers[i]->out_size;
    return 1;
}

static co_status reserve(co_model *m, int batch, co_error *err)
{
    if (batch <= m->capacity) return CO_OK;
    for (int i = 0; i < m->nlayers; i++) {
        size_t n = (size_t)batch * m->layers[i]->out_size;
        free(m->act[i + 1]);
        free(m->dact[i + 1]);
        m->act[i + 1] = co_falloc(n);
        m->dact[i + 1] = co_falloc(n);
        if (!m->act[i + 1] || !m->dact[i + 1]) {
            m->capacity = 0;
            return co_error_set(err, CO_ENOMEM, "out of memory for activations of batch %d", batch);
        }
    }
    m->capacity = batch;
    return CO_OK;
}

const float *co_model_forward(co_model *m, const float *x, int batch, int train, co_error *err)
{
    if (batch <= 0) {
        co_error_set(err, CO_EINVAL, "forward of an empty batch");
        return NULL;
    }
    if (reserve(m, batch, err)) return NULL;
    m->act[0] = (float *)x;
    m->batch = batch;
    for (int i = 0; i < m->nlayers; i++) m->layers[i]->ops->forward(m->layers[i], m->act[i], m->act[i + 1], batch, train);
    return m->act[m->nlayers];
}

void co_model_backward(co_model *m, const float *dout)
{
    int L = m->nlayers;
    memcpy(m->dact[L], dout, (size_t)m->batch * m->layers[L - 1]->out_size * sizeof(float));
    for (int i = L - 1; i >= 0; i--) {
        co_layer *l = m->layers[i];
        /* The input gradient of the first layer is never needed. */
        float *dx = i > 0 ? m->dact[i] : NULL;
        l->ops->backward(l, m->act[i], m->act[i + 1], m->dact[i + 1], dx, m->batch);
    }
}

void co_model_get_params(const co_model *m, float *flat)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int k = 0; k < m->layers[i]->ntensors; k++) {
            memcpy(flat, m->layers[i]->param[k], m->layers[i]->size[k] * sizeof(float));
            flat += m->layers[i]->size[k];
        }
}

void co_model_set_params(co_model *m, const float *flat)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int k = 0; k < m->layers[i]->ntensors; k++) {
            memcpy(m->layers[i]->param[k], flat, m->layers[i]->size[k] * sizeof(float));
            flat += m->layers[i]->size[k];
        }
}

void co_model_describe(const co_model *m, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < m->nlayers && used + 1 < len; i++) {
        char part[64];
        m->layers[i]->ops->describe(m->layers[i], part, sizeof part);
        int w = snprintf(buf + used, len - used, "%s%s", i ? " " : "", part);
        if (w < 0) break;
        used += (size_t)w;
    }
}

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

/* Named architectures from the papers, as layer specs (docs/models.md). */
static const struct {
    const char *name, *spec;
} presets[] = {
    /* Quasi-Adam's MNIST classifier (paper 003, §VI-B): two convolutions, each followed by
     * max-pooling and ReLU, then three fully connected layers with ReLU between them. The
     * paper gives no sizes: LeNet-5's (6 and 16 channels of 5x5, 120-84-10). */
    {"quasi-adam-mnist", "in:1x28x28 conv:6:5:p2 maxpool:2 relu conv:16:5 maxpool:2 relu flatten fc:120 relu fc:84 relu fc:10"},
};

static int parse_int(const char **p, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (end == *p || errno || v < 0 || v > 1000000) return -1;
    *out = (int)v;
    *p = end;
    return 0;
}

co_model *co_model_new(const char *spec, co_error *err)
{
    if (!spec) {
        co_error_set(err, CO_EINVAL, "no model spec");
        return NULL;
    }
    if (strncmp(spec, "mlp:", 4) == 0) return co_model_new_mlp(spec, CO_ACT_RELU, CO_ACT_NONE, err);
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(spec, presets[i].name) == 0) return co_model_new(presets[i].spec, err);
    co_model *m = calloc(1, sizeof *m);
    if (!m) {
        co_error_set(err, CO_ENOMEM, "out of memory");
        return NULL;
    }
    int c = 0, h = 0, w = 0;
    const char *p = spec;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *tok = p;
        size_t len = strcspn(p, " ,");
        char word[64];
        if (len >= sizeof word) goto bad;
        memcpy(word, p, len);
        word[len] = 0;
        p += len;
        const char *q = word;
        co_layer *l = NULL;
        if (strncmp(q, "in:", 3) == 0) {
            q += 3;
            if (parse_int(&q, &c)) goto bad;
            h = w = 1;
            if (*q == 'x') {
                q++;
                if (parse_int(&q, &h) || *q != 'x') goto bad;
                q++;
                if (parse_int(&q, &w)) goto bad;
            } else {
                w = c;
                c = h = 1;
            }
            if (*q || c < 1 || h < 1 || w < 1 || m->nlayers) goto bad;
            continue;
        }
        if (c == 0) {
            co_error_set(err, CO_EINVAL, "model spec '%s': it must start with in:CxHxW or in:N", spec);
            goto fail;
        }
        if (strncmp(q, "conv:", 5) == 0) {
            int oc, k, st = 1, pad = 0, dil = 1;
            q += 5;
            if (parse_int(&q, &oc) || *q++ != ':' || parse_int(&q, &k)) goto bad;
            while (*q == ':') {
                q++;
                char kind = *q++;
                int v;
                if (parse_int(&q, &v)) goto bad;
                if (kind == 's') st = v;
                else if (kind == 'p') pad = v;
                else if (kind == 'd') dil = v;
                else goto bad;
            }
            if (*q || !(l = co_conv2d_new(c, h, w, oc, k, st, pad, dil))) goto bad;
        } else if (strncmp(q, "maxpool:", 8) == 0 || strncmp(q, "avgpool:", 8) == 0) {
            /* K[:sS], the stride defaulting to K */
            int is_max = q[0] == 'm', k, st;
            q += 8;
            if (parse_int(&q, &k)) goto bad;
            st = k;
            if (*q == ':' && q[1] == 's') {
                q += 2;
                if (parse_int(&q, &st)) goto bad;
            }
            if (*q) goto bad;
            l = is_max ? co_maxpool2d_new(c, h, w, k, st) : co_avgpool2d_new(c, h, w, k, st);
            if (!l) goto bad;
        } else if (strncmp(q, "dropout:", 8) == 0) {
            char *end;
            double pr = strtod(q + 8, &end);
            if (end == q + 8 || *end || !(l = co_dropout_new(c * h * w, pr))) goto bad;
            l->in_c = l->out_c = c;
            l->in_h = l->out_h = h;
            l->in_w = l->out_w = w;
        } else if (strcmp(q, "flatten") == 0) {
            l = co_flatten_new(c, h, w);
        } else if (strncmp(q, "fc:", 3) == 0) {
            int n;
            q += 3;
            if (parse_int(&q, &n) || *q || n < 1) goto bad;
            l = co_linear_new(c * h * w, n);
        } else if (strcmp(q, "relu") == 0 || strcmp(q, "tanh") == 0 || strcmp(q, "sigmoid") == 0) {
            co_act a = q[0] == 'r' ? CO_ACT_RELU : q[0] == 't' ? CO_ACT_TANH : CO_ACT_SIGMOID;
            l = co_activation_new(a, c * h * w);
            if (l) {
                l->in_c = l->out_c = c;
                l->in_h = l->out_h = h;
                l->in_w = l->out_w = w;
            }
        } else {
            goto bad;
        }
        if (!l) goto bad;
        if (l->out_h == 0) { /* flat layers: 1 x 1 x out_size */
            l->out_c = 1;
            l->out_h = 1;
            l->out_w = l->out_size;
        }
        if (model_add(m, l, err)) goto fail;
        c = l->out_c;
        h = l->out_h;
        w = l->out_w;
        continue;
    bad:
        co_error_set(err, CO_EINVAL,
                     "model spec '%s': cannot use '%.*s' at offset %d (in:CxHxW, conv:OC:K[:sS][:pP][:dD], maxpool:K[:sS], avgpool:K[:sS], dropout:P, "
                     "flatten, fc:N, relu, tanh, sigmoid; or a preset such as quasi-adam-mnist)",
                     spec, (int)len, tok, (int)(tok - spec));
        goto fail;
    }
    if (m->nlayers == 0) {
        co_error_set(err, CO_EINVAL, "model spec '%s' has no layers", spec);
        goto fail;
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
    if (i < 0 || !m->capture || m->batch == 0) return 0;
    if (m->layers[i]->ops->capture) return m->layers[i]->ops->capture(m->layers[i], out);
    if (m->layers[i]->group_kind != CO_GROUP_LINEAR) return 0;
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

size_t co_model_state_size(const co_model *m)
{
    size_t n = 0, b;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops->state) {
            m->layers[i]->ops->state(m->layers[i], &b);
            n += b;
        }
    return n;
}

void co_model_get_state(const co_model *m, void *out)
{
    char *p = out;
    size_t b;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops->state) {
            const void *s = m->layers[i]->ops->state(m->layers[i], &b);
            memcpy(p, s, b);
            p += b;
        }
}

void co_model_set_state(co_model *m, const void *in)
{
    const char *p = in;
    size_t b;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops->state) {
            void *s = m->layers[i]->ops->state(m->layers[i], &b);
            memcpy(s, p, b);
            p += b;
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

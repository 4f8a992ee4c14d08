/* A model is a sequence of layers with the activation buffers between them. Buffers grow
 * with the largest batch seen; they stay alive so K-FAC can read a layer's input and the
 * gradient at its output without copies. Composite layers (residual blocks) run their own
 * sub-layers; the model reaches parameters, state and captures through the flattened list
 * of leaf layers, in order. */
#include "layers.h"
#include "../core/alloc.h"
#include "../cuda/cuda_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 64
#define MAX_LEAVES 512

struct co_model {
    int nlayers;
    co_layer *layers[MAX_LAYERS];
    int nleaves;
    co_layer *leaves[MAX_LEAVES];
    int leaf_top[MAX_LEAVES]; /* index in layers[] of a top-level leaf, -1 inside a block */
    int capacity;       /* batch rows the buffers hold */
    float *act[MAX_LAYERS + 1]; /* act[0] borrowed input; act[i+1] output of layer i */
    float *dact[MAX_LAYERS + 1];
    int batch; /* rows of the last forward */
    int capture;
    /* On a GPU (co_model_to_device): the buffers above and every leaf's parameters live
     * there; nn holds the handles, cops each top-level layer's device implementation. */
    co_device device;
    co_cuda_nn *nn;
    const co_cuda_layer_ops *cops[MAX_LAYERS];
    unsigned long generation; /* counts the buffers' reallocations */
};

static co_status model_add(co_model *m, co_layer *l, co_error *err)
{
    if (!l) return co_error_set(err, CO_ENOMEM, "out of memory building the model");
    int n = m->nlayers == MAX_LAYERS ? -1 : co_layer_leaves(l, m->leaves + m->nleaves, MAX_LEAVES - m->nleaves);
    if (n < 0) {
        co_layer_free(l);
        return co_error_set(err, CO_EINVAL, "model has more than %d layers or %d leaf layers", MAX_LAYERS,
                            MAX_LEAVES);
    }
    for (int i = m->nleaves; i < m->nleaves + n; i++) {
        m->leaves[i]->capture = m->capture;
        m->leaf_top[i] = l->nsub ? -1 : m->nlayers;
    }
    m->nleaves += n;
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

/* Named architectures from the papers, as layer specs; docs/models.md gives the reasons for
 * every size and each one's parameter count. "%d" is the number of classes (10 unless the
 * name carries ":N"). */
#define VGG_STAGE3(w) "conv:" #w ":3:p1 bn relu conv:" #w ":3:p1 bn relu conv:" #w ":3:p1 bn relu "
#define RES34_BODY                                                                                          \
    "conv:64:3:p1:nobias bn relu res:64 res:64 res:64 res:128:s2 res:128 res:128 res:128 res:256:s2 res:256 " \
    "res:256 res:256 res:256 res:256 res:512:s2 res:512 res:512 gap fc:%d"
#define ALEXNET_BODY                                                                                    \
    "relu maxpool:2 conv:192:5:p2 relu maxpool:2 conv:384:3:p1 relu conv:256:3:p1 relu conv:256:3:p1 " \
    "relu maxpool:2 flatten fc:%d"
static const struct {
    const char *name, *spec;
    int classes; /* 0: the output is not a class count */
} presets[] = {
    /* Quasi-Adam §VI-B: two convolutions each followed by max-pooling and ReLU, three fully
     * connected layers; no sizes given, so LeNet-5's. */
    {"quasi-adam-mnist",
     "in:1x28x28 conv:6:5:p2 maxpool:2 relu conv:16:5 maxpool:2 relu flatten fc:120 relu fc:84 relu fc:%d", 10},
    /* Quasi-Adam's autoencoder: 3 convolutions, 3 transposed convolutions, 87,125 parameters:
     * the usual 28-14-7-1 geometry with the widths that give exactly that count. */
    {"quasi-adam-ae",
     "in:1x28x28 conv:10:3:s2:p1 relu conv:64:3:s2:p1 relu conv:12:7 convt:64:7 relu convt:10:3:s2:p1:o1 relu "
     "convt:1:3:s2:p1:o1 sigmoid",
     0},
    /* ResNet34 (BasicBlocks 3-4-6-3) with the CIFAR stem for 32 x 32 inputs. */
    {"resnet34-32", "in:3x32x32 " RES34_BODY, 10},
    /* TSO-ALRA's AlexNet: the CIFAR AlexNet of the 164-epoch / 81-122 recipe; for 28 x 28 the
     * first kernel and stride become 7 and 3 so the maps are the same 8-4-2-1. */
    {"alexnet-32", "in:3x32x32 conv:64:11:s4:p5 " ALEXNET_BODY, 10},
    {"alexnet-28", "in:1x28x28 conv:64:7:s3 " ALEXNET_BODY, 10},
    /* TSO-ALRA's VGG: VGG16 with batch norm at a quarter of the width (16-32-64-128-128), one
     * linear classifier; on 28 x 28 the pools round up (28-14-7-4-2-1). */
    {"vgg-32",
     "in:3x32x32 conv:16:3:p1 bn relu conv:16:3:p1 bn relu maxpool:2 conv:32:3:p1 bn relu conv:32:3:p1 bn relu "
     "maxpool:2 " VGG_STAGE3(64) "maxpool:2 " VGG_STAGE3(128) "maxpool:2 " VGG_STAGE3(128) "maxpool:2 flatten fc:%d",
     10},
    {"vgg-28",
     "in:1x28x28 conv:16:3:p1 bn relu conv:16:3:p1 bn relu maxpool:2:ceil conv:32:3:p1 bn relu conv:32:3:p1 bn "
     "relu maxpool:2:ceil " VGG_STAGE3(64) "maxpool:2:ceil " VGG_STAGE3(128) "maxpool:2:ceil " VGG_STAGE3(
         128) "maxpool:2:ceil flatten fc:%d",
     10},
    /* Full-width VGG16 with batch norm (14.7 M parameters), for bigger machines. */
    {"vgg16-32",
     "in:3x32x32 conv:64:3:p1 bn relu conv:64:3:p1 bn relu maxpool:2 conv:128:3:p1 bn relu conv:128:3:p1 bn relu "
     "maxpool:2 " VGG_STAGE3(256) "maxpool:2 " VGG_STAGE3(512) "maxpool:2 " VGG_STAGE3(512) "maxpool:2 flatten fc:%d",
     10},
};

int co_model_preset_count(void) { return (int)(sizeof presets / sizeof presets[0]); }

const char *co_model_preset_name(int i)
{
    return i >= 0 && i < co_model_preset_count() ? presets[i].name : NULL;
}

/* Integers in specs stay small enough that no size computed from them overflows an int. */
#define SPEC_MAX 65536
#define SPEC_MAX_SIZE (1 << 26) /* floats per sample in any layer */

static int parse_int(const char **p, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (end == *p || errno || v < 0 || v > SPEC_MAX || **p == '-' || **p == '+' || **p == ' ') return -1;
    *out = (int)v;
    *p = end;
    return 0;
}

/* Options after a layer's required fields: ":" then a letter and an integer (s2, p1, ...)
 * or a flag word. letters lists the accepted letters, val receives their values in that
 * order; flags: bit i is set when the word flag_words[i] appears. */
static int parse_options(const char *q, const char *letters, int *val, const char *const *flag_words, int *flags)
{
    *flags = 0;
    while (*q) {
        if (*q++ != ':') return -1;
        int matched = 0;
        for (int i = 0; flag_words && flag_words[i]; i++) {
            size_t n = strlen(flag_words[i]);
            if (strncmp(q, flag_words[i], n) == 0 && (q[n] == ':' || q[n] == 0)) {
                *flags |= 1 << i;
                q += n;
                matched = 1;
                break;
            }
        }
        if (matched) continue;
        const char *at = *q ? strchr(letters, *q) : NULL;
        if (!at) return -1;
        q++;
        if (parse_int(&q, &val[at - letters])) return -1;
    }
    return 0;
}

static void same_shape(co_layer *l, int c, int h, int w)
{
    l->in_c = l->out_c = c;
    l->in_h = l->out_h = h;
    l->in_w = l->out_w = w;
}

co_layer *co_layer_from_spec(const char *q, int c, int h, int w)
{
    static const char *const nobias[] = {"nobias", NULL}, *const ceil_word[] = {"ceil", NULL};
    int size = c * h * w, flags, oc, k;
    co_layer *l = NULL;
    if (strncmp(q, "conv:", 5) == 0) {
        int v[3] = {1, 0, 1}; /* s p d */
        q += 5;
        if (parse_int(&q, &oc) || *q++ != ':' || parse_int(&q, &k) || parse_options(q, "spd", v, nobias, &flags))
            return NULL;
        if ((long)oc * h * w > SPEC_MAX_SIZE) return NULL;
        l = co_conv2d_new_ex(c, h, w, oc, k, v[0], v[1], v[2], !(flags & 1));
    } else if (strncmp(q, "convt:", 6) == 0) {
        int v[4] = {1, 0, 0, 1}; /* s p o d */
        q += 6;
        if (parse_int(&q, &oc) || *q++ != ':' || parse_int(&q, &k) || parse_options(q, "spod", v, nobias, &flags))
            return NULL;
        l = co_conv_transpose2d_new(c, h, w, oc, k, v[0], v[1], v[2], v[3], !(flags & 1));
    } else if (strncmp(q, "maxpool:", 8) == 0 || strncmp(q, "avgpool:", 8) == 0) {
        int is_max = q[0] == 'm', st = -1;
        q += 8;
        if (parse_int(&q, &k) || parse_options(q, "s", &st, is_max ? ceil_word : NULL, &flags)) return NULL;
        if (st < 0) st = k; /* torch's default stride */
        l = is_max ? co_maxpool2d_new_ex(c, h, w, k, st, flags & 1) : co_avgpool2d_new(c, h, w, k, st);
    } else if (strcmp(q, "gap") == 0) {
        if (h != w) return NULL;
        l = co_avgpool2d_new(c, h, w, h, 1);
    } else if (strcmp(q, "bn") == 0) {
        l = co_batchnorm2d_new(c, h, w);
    } else if (strncmp(q, "res:", 4) == 0) {
        int st = 1;
        q += 4;
        if (parse_int(&q, &oc) || parse_options(q, "s", &st, NULL, &flags)) return NULL;
        if ((long)oc * h * w > SPEC_MAX_SIZE) return NULL;
        l = co_residual_new(c, h, w, oc, st);
    } else if (strncmp(q, "dropout:", 8) == 0) {
        char *end;
        double pr = strtod(q + 8, &end);
        if (end == q + 8 || *end || !(l = co_dropout_new(size, pr))) return NULL;
        same_shape(l, c, h, w);
    } else if (strcmp(q, "flatten") == 0) {
        l = co_flatten_new(c, h, w);
    } else if (strncmp(q, "fc:", 3) == 0) {
        int n;
        q += 3;
        if (parse_int(&q, &n) || *q || n < 1) return NULL;
        l = co_linear_new(size, n);
    } else if (strcmp(q, "relu") == 0 || strcmp(q, "tanh") == 0 || strcmp(q, "sigmoid") == 0) {
        co_act a = q[0] == 'r' ? CO_ACT_RELU : q[0] == 't' ? CO_ACT_TANH : CO_ACT_SIGMOID;
        if ((l = co_activation_new(a, size))) same_shape(l, c, h, w);
    } else if (strcmp(q, "logsoftmax") == 0) {
        if ((l = co_logsoftmax_new(size))) same_shape(l, c, h, w);
    }
    if (l && l->out_h == 0) { /* flat layers: N x 1 x 1 */
        l->in_c = c;
        l->in_h = h;
        l->in_w = w;
        l->out_c = l->out_size;
        l->out_h = l->out_w = 1;
    }
    if (l && (l->out_size < 1 || l->out_size > SPEC_MAX_SIZE)) {
        co_layer_free(l);
        l = NULL;
    }
    return l;
}

/* 1 when spec names a preset (the model, or NULL with err set, in *out), 0 otherwise. */
static int find_preset(const char *spec, co_model **out, co_error *err)
{
    size_t n = strcspn(spec, ":");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strlen(presets[i].name) != n || strncmp(spec, presets[i].name, n) != 0) continue;
        int classes = presets[i].classes;
        *out = NULL;
        if (spec[n] == ':') {
            const char *q = spec + n + 1;
            if (!classes || parse_int(&q, &classes) || *q || classes < 1) {
                co_error_set(err, CO_EINVAL, "model spec '%s': %s", spec,
                             presets[i].classes ? "the class count after ':' must be a positive integer"
                                                : "this preset has no class count to set");
                return 1;
            }
        }
        char text[1024];
        snprintf(text, sizeof text, presets[i].spec, classes);
        *out = co_model_new(text, err);
        return 1;
    }
    return 0;
}

co_model *co_model_new(const char *spec, co_error *err)
{
    if (!spec) {
        co_error_set(err, CO_EINVAL, "no model spec");
        return NULL;
    }
    if (strncmp(spec, "mlp:", 4) == 0) return co_model_new_mlp(spec, CO_ACT_RELU, CO_ACT_NONE, err);
    if (strncmp(spec, "in:", 3) != 0) {
        co_model *m;
        if (find_preset(spec, &m, err)) return m;
        char names[512];
        size_t used = 0;
        names[0] = 0;
        for (size_t i = 0; i < sizeof presets / sizeof presets[0] && used < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", presets[i].name);
        co_error_set(err, CO_EINVAL,
                     "model spec '%s': not a preset (%s), nor mlp:IN-...-OUT, nor a layer list starting with "
                     "in:CxHxW",
                     spec, names);
        return NULL;
    }
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
        p += len;
        if (len >= sizeof word) goto bad;
        memcpy(word, tok, len);
        word[len] = 0;
        if (strncmp(word, "in:", 3) == 0) {
            const char *q = word + 3;
            if (m->nlayers || c || parse_int(&q, &c)) goto bad;
            h = w = 1;
            if (*q == 'x') {
                q++;
                if (parse_int(&q, &h) || *q++ != 'x' || parse_int(&q, &w)) goto bad;
            }
            if (*q || c < 1 || h < 1 || w < 1 || (long)c * h * w > SPEC_MAX_SIZE) goto bad;
            continue;
        }
        co_layer *l = co_layer_from_spec(word, c, h, w);
        if (!l) goto bad;
        if (model_add(m, l, err)) goto fail;
        c = l->out_c;
        h = l->out_h;
        w = l->out_w;
        continue;
    bad:
        co_error_set(err, CO_EINVAL,
                     "model spec '%s': cannot use '%.*s' at offset %d on a %dx%dx%d input (in:CxHxW | in:N, "
                     "conv:OC:K[:sS][:pP][:dD][:nobias], convt:OC:K[:sS][:pP][:oO][:dD][:nobias], "
                     "maxpool:K[:sS][:ceil], avgpool:K[:sS], gap, bn, res:OC[:sS], dropout:P, flatten, fc:N, relu, "
                     "tanh, sigmoid, logsoftmax; see docs/models.md)",
                     spec, (int)len, tok, (int)(tok - spec), c, h, w);
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

static void free_buffers(co_model *m)
{
    for (int i = 1; i <= MAX_LAYERS; i++) {
        if (m->device == CO_DEVICE_CUDA) {
            co_cuda_free(m->act[i]);
            co_cuda_free(m->dact[i]);
        } else {
            free(m->act[i]);
            free(m->dact[i]);
        }
        m->act[i] = m->dact[i] = NULL;
    }
    m->capacity = 0;
}

/* Puts every leaf's parameters back in its host buffers (copy: their values, when the GPU's
 * are to be kept) and releases the device side. */
static co_status leave_device(co_model *m, int copy, co_error *err)
{
    co_status st = CO_OK;
    co_cuda_sync(co_cuda_nn_stream(m->nn), NULL);
    free_buffers(m);
    for (int i = 0; i < m->nleaves; i++) {
        co_layer *l = m->leaves[i];
        for (int k = 0; k < l->ntensors; k++) {
            if (!l->host_param[k]) continue;
            if (copy && st == CO_OK)
                st = co_cuda_copy(l->host_param[k], l->param[k], l->size[k] * sizeof(float), NULL, err);
            co_cuda_free(l->param[k]);
            co_cuda_free(l->grad[k]);
            l->param[k] = l->host_param[k];
            l->grad[k] = l->host_grad[k];
            l->host_param[k] = l->host_grad[k] = NULL;
        }
    }
    for (int i = 0; i < m->nlayers; i++)
        if (m->cops[i]) m->cops[i]->release(m->layers[i]);
    co_cuda_nn_free(m->nn);
    m->nn = NULL;
    m->device = CO_DEVICE_CPU;
    return st;
}

void co_model_free(co_model *m)
{
    if (!m) return;
    if (m->device == CO_DEVICE_CUDA) leave_device(m, 0, NULL);
    for (int i = 0; i < m->nlayers; i++) co_layer_free(m->layers[i]);
    for (int i = 1; i <= MAX_LAYERS; i++) {
        free(m->act[i]);
        free(m->dact[i]);
    }
    free(m->dact[0]);
    free(m);
}

/* A GPU model's layer state (batch norm's running statistics) to the host or back. */
static void sync_device_state(const co_model *m, int to_host)
{
    if (m->device != CO_DEVICE_CUDA) return;
    for (int i = 0; i < m->nlayers; i++)
        if (m->cops[i]->sync_state) m->cops[i]->sync_state(m->layers[i], to_host, NULL);
}

void co_model_init(co_model *m, uint64_t seed)
{
    co_rng r;
    co_rng_seed(&r, seed, CO_STREAM_INIT);
    /* On a GPU the host buffers are drawn into, then copied: the same weights as on the CPU. */
    int on_gpu = m->device == CO_DEVICE_CUDA;
    for (int i = 0; i < m->nleaves; i++) {
        co_layer *l = m->leaves[i];
        if (!l->ops->init) continue;
        float *dev[2] = {l->param[0], l->param[1]};
        for (int k = 0; k < l->ntensors && on_gpu; k++) l->param[k] = l->host_param[k];
        l->ops->init(l, &r);
        for (int k = 0; k < l->ntensors && on_gpu; k++) {
            co_cuda_copy(dev[k], l->host_param[k], l->size[k] * sizeof(float), co_cuda_nn_stream(m->nn), NULL);
            l->param[k] = dev[k];
        }
    }
    sync_device_state(m, 0);
}

co_device co_model_device(const co_model *m) { return m->device; }

unsigned long co_model_device_generation(const co_model *m)
{
    return m->generation + (m->nn ? co_cuda_nn_generation(m->nn) : 0);
}

co_status co_model_to_device(co_model *m, co_device dev, co_error *err)
{
    if (dev == m->device) return CO_OK;
    if (dev == CO_DEVICE_CPU) return leave_device(m, 1, err);
    if (dev != CO_DEVICE_CUDA) return co_error_set(err, CO_EINVAL, "unknown device %d", (int)dev);
    co_status st = co_cuda_check(err);
    if (st != CO_OK) return st;
    for (int i = 0; i < m->nlayers; i++) {
        m->cops[i] = co_cuda_layer_ops_for(m->layers[i]);
        if (!m->cops[i]) {
            char what[96];
            m->layers[i]->ops->describe(m->layers[i], what, sizeof what);
            return co_error_set(err, CO_EINVAL,
                                "layer %d (%s) has no CUDA implementation yet (on CUDA: fc, conv, bn, res, "
                                "maxpool without ceil, avgpool, gap, relu, tanh, sigmoid, flatten)",
                                i + 1, what);
        }
    }
    m->nn = co_cuda_nn_new(NULL, err);
    if (!m->nn) return err ? err->code : CO_ENOMEM;
    free_buffers(m);
    m->device = CO_DEVICE_CUDA;
    for (int i = 0; i < m->nleaves; i++) {
        co_layer *l = m->leaves[i];
        for (int k = 0; k < l->ntensors; k++) {
            float *p = co_cuda_alloc(l->size[k] * sizeof(float), err);
            float *g = p ? co_cuda_alloc(l->size[k] * sizeof(float), err) : NULL;
            if (g) st = co_cuda_copy(p, l->param[k], l->size[k] * sizeof(float), NULL, err);
            if (!g || st != CO_OK) {
                co_cuda_free(p);
                co_cuda_free(g);
                leave_device(m, 0, NULL);
                return g ? st : CO_ENOMEM;
            }
            l->host_param[k] = l->param[k];
            l->host_grad[k] = l->grad[k];
            l->param[k] = p;
            l->grad[k] = g;
        }
    }
    return CO_OK;
}

int co_model_in_size(const co_model *m) { return m->layers[0]->in_size; }
int co_model_out_size(const co_model *m) { return m->layers[m->nlayers - 1]->out_size; }

size_t co_model_param_count(const co_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->nleaves; i++)
        for (int k = 0; k < m->leaves[i]->ntensors; k++) n += m->leaves[i]->size[k];
    return n;
}

int co_model_ngroups(const co_model *m)
{
    int n = 0;
    for (int i = 0; i < m->nleaves; i++) n += m->leaves[i]->ntensors > 0;
    return n;
}

/* Leaf index of group g. */
static int group_leaf(const co_model *m, int g)
{
    for (int i = 0; i < m->nleaves; i++)
        if (m->leaves[i]->ntensors > 0 && g-- == 0) return i;
    return -1;
}

void co_model_groups(co_model *m, co_group *groups)
{
    int g = 0;
    for (int i = 0; i < m->nleaves; i++) {
        co_layer *l = m->leaves[i];
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

void co_model_set_capture(co_model *m, int on)
{
    m->capture = on;
    for (int i = 0; i < m->nleaves; i++) m->leaves[i]->capture = on;
}

int co_model_capture(const co_model *m, int group, co_capture *out)
{
    int i = group_leaf(m, group);
    if (i < 0 || !m->capture || m->batch == 0 || m->device != CO_DEVICE_CPU) return 0;
    co_layer *l = m->leaves[i];
    if (l->ops->capture) return l->ops->capture(l, out);
    int top = m->leaf_top[i];
    if (l->group_kind != CO_GROUP_LINEAR || top < 0) return 0;
    out->a = m->act[top];
    out->g = m->dact[top + 1];
    out->n = m->batch;
    out->batch = m->batch;
    out->a_dim = l->in_size;
    out->g_dim = l->out_size;
    return 1;
}

co_status co_model_set_shard(co_model *m, int offset, int total, co_error *err)
{
    if (m->device != CO_DEVICE_CPU && total > 0)
        return co_error_set(err, CO_EINVAL, "a model on CUDA is not split among ranks yet");
    if (total < 0 || offset < 0 || (total > 0 && offset > total))
        return co_error_set(err, CO_EINVAL, "shard at row %d of a minibatch of %d", offset, total);
    for (int i = 0; i < m->nleaves; i++)
        if (total > 0 && m->leaves[i]->couples_batch && !m->leaves[i]->coll) {
            char what[128];
            m->leaves[i]->ops->describe(m->leaves[i], what, sizeof what);
            return co_error_set(err, CO_EINVAL,
                                "layer %d (%s) normalises with statistics of the whole minibatch: a model with batch "
                                "norm is split among ranks only with their collective (co_model_set_collective)",
                                i + 1, what);
        }
    for (int i = 0; i < m->nleaves; i++) {
        m->leaves[i]->shard_offset = offset;
        m->leaves[i]->shard_total = total;
    }
    return CO_OK;
}

void co_model_set_collective(co_model *m, const co_collective *c)
{
    for (int i = 0; i < m->nleaves; i++) m->leaves[i]->coll = c;
}

static co_status reserve(co_model *m, int batch, co_error *err)
{
    if (batch <= m->capacity) return CO_OK;
    m->generation++;
    if (m->device == CO_DEVICE_CUDA) co_cuda_sync(co_cuda_nn_stream(m->nn), NULL);
    free_buffers(m);
    for (int i = 0; i < m->nlayers; i++) {
        size_t n = (size_t)batch * m->layers[i]->out_size;
        if (m->device == CO_DEVICE_CUDA) {
            m->act[i + 1] = co_cuda_alloc(n * sizeof(float), err);
            m->dact[i + 1] = co_cuda_alloc(n * sizeof(float), err);
        } else {
            m->act[i + 1] = co_falloc(n);
            m->dact[i + 1] = co_falloc(n);
        }
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
    int shard = m->nleaves > 0 && m->leaves[0]->shard_total > 0;
    if (batch < 0 || (batch == 0 && !(shard && train))) {
        co_error_set(err, CO_EINVAL, "forward of an empty batch");
        return NULL;
    }
    if (batch == 0 && m->device != CO_DEVICE_CPU) {
        co_error_set(err, CO_EINVAL, "forward of an empty shard: a model on CUDA is not split among ranks yet");
        return NULL;
    }
    if (batch == 0) {
        /* An empty shard: only the layers that draw per sample move on (co_model_set_shard),
         * and batch norm takes part in the ranks' statistics (co_model_set_collective). */
        if (reserve(m, 1, err)) return NULL;
        for (int i = 0; i < m->nleaves; i++)
            if (m->leaves[i]->ops->state) m->leaves[i]->ops->forward(m->leaves[i], NULL, NULL, 0, train);
        m->batch = 0;
        return m->act[m->nlayers];
    }
    if (reserve(m, batch, err)) return NULL;
    m->act[0] = (float *)x;
    m->batch = batch;
    if (m->device == CO_DEVICE_CUDA) {
        for (int i = 0; i < m->nlayers; i++)
            if (m->cops[i]->forward(m->layers[i], m->nn, m->act[i], m->act[i + 1], batch, train, err) != CO_OK)
                return NULL;
        return m->act[m->nlayers];
    }
    for (int i = 0; i < m->nlayers; i++) m->layers[i]->ops->forward(m->layers[i], m->act[i], m->act[i + 1], batch, train);
    return m->act[m->nlayers];
}

co_status co_model_backward_device(co_model *m, const float *dout, co_error *err)
{
    if (m->device != CO_DEVICE_CUDA) {
        co_model_backward(m, dout);
        return CO_OK;
    }
    /* dout is used where it is: the last layer's backward only reads it. */
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const float *dy = i == m->nlayers - 1 ? dout : m->dact[i + 1];
        co_status st = m->cops[i]->backward(m->layers[i], m->nn, m->act[i], m->act[i + 1], dy, i > 0 ? m->dact[i] : NULL,
                                            m->batch, err);
        if (st != CO_OK) return st;
    }
    return CO_OK;
}

void co_model_backward(co_model *m, const float *dout)
{
    if (m->device == CO_DEVICE_CUDA) {
        co_error ignored;
        co_model_backward_device(m, dout, &ignored);
        return;
    }
    int L = m->nlayers;
    if (m->batch == 0) {
        /* After an empty shard's forward: batch norm's share of the ranks' sums, in the order
         * of the other ranks' backward (co_layer.couples_batch). */
        for (int i = m->nleaves - 1; i >= 0; i--)
            if (m->leaves[i]->couples_batch) m->leaves[i]->ops->backward(m->leaves[i], NULL, NULL, NULL, NULL, 0);
        return;
    }
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
    for (int i = 0; i < m->nleaves; i++)
        for (int k = 0; k < m->leaves[i]->ntensors; k++) {
            if (m->device == CO_DEVICE_CUDA)
                co_cuda_copy(flat, m->leaves[i]->param[k], m->leaves[i]->size[k] * sizeof(float), co_cuda_nn_stream(m->nn),
                             NULL);
            else
                memcpy(flat, m->leaves[i]->param[k], m->leaves[i]->size[k] * sizeof(float));
            flat += m->leaves[i]->size[k];
        }
}

void co_model_set_params(co_model *m, const float *flat)
{
    for (int i = 0; i < m->nleaves; i++)
        for (int k = 0; k < m->leaves[i]->ntensors; k++) {
            if (m->device == CO_DEVICE_CUDA)
                co_cuda_copy(m->leaves[i]->param[k], flat, m->leaves[i]->size[k] * sizeof(float), co_cuda_nn_stream(m->nn),
                             NULL);
            else
                memcpy(m->leaves[i]->param[k], flat, m->leaves[i]->size[k] * sizeof(float));
            flat += m->leaves[i]->size[k];
        }
}

size_t co_model_state_size(const co_model *m)
{
    size_t n = 0, b;
    for (int i = 0; i < m->nleaves; i++)
        if (m->leaves[i]->ops->state) {
            m->leaves[i]->ops->state(m->leaves[i], &b);
            n += b;
        }
    return n;
}

void co_model_get_state(const co_model *m, void *out)
{
    sync_device_state(m, 1);
    char *p = out;
    size_t b;
    for (int i = 0; i < m->nleaves; i++)
        if (m->leaves[i]->ops->state) {
            const void *s = m->leaves[i]->ops->state(m->leaves[i], &b);
            memcpy(p, s, b);
            p += b;
        }
}

void co_model_set_state(co_model *m, const void *in)
{
    const char *p = in;
    size_t b;
    for (int i = 0; i < m->nleaves; i++)
        if (m->leaves[i]->ops->state) {
            void *s = m->leaves[i]->ops->state(m->leaves[i], &b);
            memcpy(s, p, b);
            p += b;
        }
    sync_device_state(m, 0);
}

void co_model_describe(const co_model *m, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < m->nlayers && used + 1 < len; i++) {
        char part[96];
        m->layers[i]->ops->describe(m->layers[i], part, sizeof part);
        int w = snprintf(buf + used, len - used, "%s%s", i ? " " : "", part);
        if (w < 0) break;
        used += (size_t)w;
    }
}

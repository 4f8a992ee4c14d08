/* K-FAC across ranks, as distributed K-FAC does it (Osawa et al. 2019; KAISA, Pauloski et
 * al. 2021), through the co_collective callbacks (never MPI itself).
 *
 * Each rank keeps its SHARE of every factor: the running averages are linear in the batch
 * statistics, so the factor of the whole minibatch is the sum of the ranks' averages of their
 * own rows' statistics (each scaled by the whole minibatch's row count). Nothing about the
 * factors crosses the network between refreshes. When a factor's roots are due it is reduced
 * to one rank (factors assigned greedily, largest first, to the least loaded rank: cost n^3),
 * that rank decomposes it, keeps the sum as its share (the others zero theirs) and broadcasts
 * the roots and eigenvalues. Per refresh that is the factors' upper triangles (double) once
 * and the roots' upper triangles (float) plus eigenvalues (double) once.
 *
 * The row counts and the finiteness of each layer's statistics cross once per step in one
 * small allreduce, so that every rank takes the same decisions as one process would (a batch
 * whose statistics overflow on any rank is left out everywhere).
 *
 * Rounding: the factors are sums of per-rank sums, so they differ from the one-process factors
 * by float rounding (docs/distributed.md gives the measured effect); the run is still a pure
 * function of its seeds and its number of ranks. */
#ifndef CO_OPTIM_KFAC_DIST_H
#define CO_OPTIM_KFAC_DIST_H

#include "kfac.h"

typedef struct co_kfac_dist {
    int ngroups;
    uint8_t *have;   /* per group: this step updates its factors (some rank captured it) */
    uint8_t *finite; /* per group: the statistics were finite on every rank */
    int *owner;      /* per group and factor (2 g + which): rank holding the latest eigenvectors, -1: all */
    double *counts;  /* 1 + 3 ngroups: the per-step allreduce */
    void *pack;      /* scratch for packed triangles */
    size_t pack_bytes;
} co_kfac_dist;

co_status co_kfac_dist_init(co_kfac_dist *d, int ngroups, co_error *err);
void co_kfac_dist_free(co_kfac_dist *d);

/* First pass of a step on every rank: each K-FAC layer's statistics of this rank's rows
 * (kfac[g].rows == 0: no K-FAC for g), scaled for the whole minibatch once the counts are
 * summed; fills have[] and finite[]. Follow with co_kfac_fold(k, gamma, finite[g]). */
co_status co_kfac_dist_stats(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_closure *c,
                             const co_collective *coll, co_error *err);
/* co_kfac_refresh_jobs across the ranks (jobs point into kfac[]): the same roots, status and
 * have_roots on every rank afterwards. */
co_status co_kfac_dist_refresh(co_kfac_dist *d, co_kfac_job *jobs, int njobs, co_kfac *kfac,
                               const co_collective *coll, co_error *err);
/* Checkpoints: collect makes rank 0's factors (and eigenvectors) the complete ones, the other
 * ranks' shares zero; share, after every rank loaded the same complete state, zeroes the
 * shares of the ranks other than 0. */
co_status co_kfac_dist_collect(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_collective *coll,
                               co_error *err);
void co_kfac_dist_share(co_kfac_dist *d, co_kfac *kfac, int ngroups, const co_collective *coll);

#endif

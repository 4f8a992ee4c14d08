/* curvopt's collectives (co_collective) over MPI: the one place that includes mpi.h besides
 * the CLI's start-up. The sums are our own point-to-point algorithms, because MPI_Allreduce
 * promises no order of addition: the pairwise tree over ranks, by recursive doubling (small
 * messages) or by recursive halving then doubling (large ones, bandwidth-optimal: each rank
 * sends 2 (P-1)/P of the message) when the number of ranks is a power of two; otherwise a
 * binomial reduce to rank 0 along the same tree and MPI_Bcast. Every variant adds each element
 * along the same tree, so the choice (made from the sizes alone, the same on every rank)
 * never changes a bit. */
#ifndef CO_DIST_DIST_MPI_H
#define CO_DIST_DIST_MPI_H

#include "curvopt.h"

#include <mpi.h>

enum { CO_MPI_ALLREDUCE, CO_MPI_REDUCE, CO_MPI_BROADCAST, CO_MPI_OPS };

typedef struct co_mpi_stats {
    double seconds[CO_MPI_OPS]; /* wall time inside each kind of collective (waiting included) */
    uint64_t calls[CO_MPI_OPS];
    uint64_t payload[CO_MPI_OPS]; /* bytes of the buffers the callers passed */
    uint64_t sent;                /* bytes this rank sent in the sums (broadcasts: MPI's own, not counted) */
} co_mpi_stats;

typedef struct co_mpi {
    co_collective coll; /* what the library is given: ctx points back here */
    MPI_Comm comm;      /* a duplicate of the caller's: our messages never meet theirs */
    co_mpi_stats stats;
    unsigned char *send, *recv; /* packing buffers, grown on demand */
    size_t cap;
} co_mpi;

/* comm must be initialised (MPI_Init); it is duplicated. */
co_status co_mpi_init(co_mpi *m, MPI_Comm comm, co_error *err);
void co_mpi_free(co_mpi *m);

#endif

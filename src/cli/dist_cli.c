/* The CLI under mpirun: MPI is started only when the process was launched as one rank of a
 * job (so the one-process command is unchanged and never touches MPI), the job's collective
 * is handed to the training runs, and a failure on any rank ends the whole job. */
#include "commands.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef CURVOPT_HAVE_MPI
#include "dist/dist_mpi.h"
static co_mpi job;
static int started;
#endif

/* The launcher's rank count: Open MPI, MPICH/Hydra and PMIx each say it their own way. */
int cli_launcher_size(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return getenv("PMIX_RANK") ? 2 : 0; /* a PMIx launch without the size: assume several */
}

#ifdef CURVOPT_HAVE_MPI
/* mpirun stops the others with SIGTERM when a rank dies: say what happened before going.
 * The line then lingers in the pipe to mpirun, whose I/O forwarding drops what a rank wrote
 * just before exiting (4 runs in 40 lost it on 2 loaded cores): the rank waits a moment
 * before exiting, and mpirun's SIGKILL, a few ms after its SIGTERM by default, may end it
 * sooner, which is fine once the line is forwarded (0 lost in 110 runs). */
static char stop_msg[256];
static void on_term(int sig)
{
    (void)sig;
    ssize_t w = write(2, stop_msg, strlen(stop_msg));
    (void)w;
    const struct timespec linger = {0, 200 * 1000 * 1000};
    nanosleep(&linger, NULL);
    _exit(143);
}
#endif

int cli_dist_start(int *argc, char ***argv)
{
    int size = cli_launcher_size();
#ifdef CURVOPT_HAVE_MPI
    if (size < 1) return 0;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "curvopt: MPI_Init failed\n");
        return 1;
    }
    co_error err = {0};
    if (co_mpi_init(&job, MPI_COMM_WORLD, &err)) {
        fprintf(stderr, "curvopt: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    started = 1;
    if (job.coll.size > 1) {
        /* Rank 0 says it (when it is the one that died, mpirun's own message says so). */
        if (job.coll.rank == 0)
            snprintf(stop_msg, sizeof stop_msg,
                     "curvopt: stopped by the MPI launcher: another of the %d ranks of this job failed or was killed "
                     "(mpirun's message names it); the checkpoints written so far are kept (curvopt train --resume "
                     "DIR continues the run, with any number of ranks)\n",
                     job.coll.size);
        signal(SIGTERM, on_term);
        /* One copy of what every rank would print (results, usage): rank 0's. */
        if (job.coll.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    }
    return 0;
#else
    (void)argc;
    (void)argv;
    if (size > 1) {
        fprintf(stderr, "curvopt: launched as one of %d ranks, but this curvopt was built without MPI (install "
                        "libopenmpi-dev and rebuild); refusing to run %d independent copies\n",
                size, size);
        return 1;
    }
    return 0;
#endif
}

int cli_dist_end(int rc)
{
#ifdef CURVOPT_HAVE_MPI
    if (!started) return rc;
    if (getenv("CURVOPT_DIST_STATS")) {
        const co_mpi_stats *s = &job.stats;
        fprintf(stderr,
                "curvopt dist rank %d/%d: allreduce %llu calls %.6g s %llu B; reduce %llu calls %.6g s %llu B; "
                "broadcast %llu calls %.6g s %llu B; sent %llu B\n",
                job.coll.rank, job.coll.size, (unsigned long long)s->calls[0], s->seconds[0],
                (unsigned long long)s->payload[0], (unsigned long long)s->calls[1], s->seconds[1],
                (unsigned long long)s->payload[1], (unsigned long long)s->calls[2], s->seconds[2],
                (unsigned long long)s->payload[2], (unsigned long long)s->sent);
    }
    /* A rank that failed cannot know whether the others wait for it inside a collective:
     * the job ends here, for all of them (usage errors excepted: every rank sees the same
     * arguments and stops before any communication). */
    if (rc != 0 && rc != 2 && job.coll.size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    co_mpi_free(&job);
    MPI_Finalize();
#endif
    return rc;
}

const co_collective *cli_collective(void)
{
#ifdef CURVOPT_HAVE_MPI
    if (started && job.coll.size > 1) return &job.coll;
#endif
    return NULL;
}

int cli_rank(void)
{
    const co_collective *c = cli_collective();
    return c ? c->rank : 0;
}

int cli_dist_check_every(void)
{
    const char *v = getenv("CURVOPT_DIST_CHECK");
    return v && *v ? atoi(v) : 0;
}

int cli_share_bytes(char *buf, size_t cap, size_t *len, int *status)
{
    const co_collective *c = cli_collective();
    if (!c) return 0;
    int64_t head[2] = {(int64_t)*len, *status};
    if (c->broadcast(c->ctx, head, sizeof head, 0, NULL)) return -1;
    if ((size_t)head[0] > cap) return -1;
    *len = (size_t)head[0];
    *status = (int)head[1];
    return c->broadcast(c->ctx, buf, *len, 0, NULL) ? -1 : 0;
}

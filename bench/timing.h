/* Timing and reporting helpers shared by the benches. Every bench prints human-readable
 * lines and, for bench/run.sh, one machine-readable line per measurement:
 *   RESULT <bench> <variant> threads=<n> <key>=<value> ...                       */
#ifndef CO_BENCH_TIMING_H
#define CO_BENCH_TIMING_H

#include <stddef.h>

double bench_now(void); /* seconds, monotonic */
/* CPU seconds used by the whole process (all threads): on a shared machine, a
 * one-thread run's CPU time is its busy time whatever else is running. */
double bench_cpu(void);
/* Sorts v in place and returns its median. */
double bench_median(double *v, size_t n);
double bench_min(const double *v, size_t n);
/* Pins OpenMP and OpenBLAS to the same thread count; returns the count in effect. */
int bench_set_threads(int n);
/* Threads from argv[1] / $BENCH_THREADS, else 1. */
int bench_threads_arg(int argc, char **argv);
/* One-way latency, in ns, of handing a cache line from OpenMP thread 0 to thread 1 and back
 * (half a round trip; 0 with fewer than two threads). It tells where a VM's two vCPUs sit:
 * ~30 ns sharing an L3, ~150 ns on different dies of an EPYC, where a two-thread
 * training step runs slower (bench/README.md). */
double bench_core_handoff_ns(void);
/* Keeps the compiler from discarding a result. */
void bench_consume(double x);

#endif

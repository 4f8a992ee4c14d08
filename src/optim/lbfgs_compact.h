/* The compact representation of the L-BFGS inverse Hessian (Byrd, Nocedal & Schnabel 1994;
 * Quasi-Adam paper 003, eq. 8-9), kept in coefficient space: the stored pairs (s_j, y_j)
 * live with the caller, which is free to lay them out over many parameter tensors; this
 * module holds only their dot products and turns dot products with a vector g into the
 * coefficients of
 *
 *     H g = gamma g + sum_j a_j s_j + sum_j b_j y_j.
 *
 * All arithmetic is in double: the coefficients decide the size of the step. */
#ifndef CO_OPTIM_LBFGS_COMPACT_H
#define CO_OPTIM_LBFGS_COMPACT_H

#include "curvopt.h"

/* The curvature test of §III and §V: a pair is usable only when s'y > 0, enforced as
 * s'y >= eps_curv (and y'y > 0, finite), which keeps H positive definite. */
int co_lbfgs_pair_ok(double sy, double yy, double eps_curv);

/* Memory 1, eq. 8 in closed form: gamma = s'y / y'y, rho = 1/s'y,
 * Gamma = [s, gamma y], M = [[rho + gamma rho^2 y'y, -rho], [-rho, 0]], so
 *   H g = gamma g + (M11 s'g - rho gamma y'g) s - gamma rho (s'g) y.
 * Returns 0 (and zero coefficients) when the pair fails co_lbfgs_pair_ok. */
int co_lbfgs1_coefs(double sy, double yy, double sg, double yg, double eps_curv, double *gamma, double *cs,
                    double *cy);

/* Memory m >= 1: a ring of up to m accepted pairs, known through s_i'y_j (i not newer than
 * j) and y_i'y_j. Slots are the caller's storage indices 0..m-1. */
typedef struct co_lbfgs_mem {
    int m;      /* capacity */
    int count;  /* pairs stored */
    int head;   /* slot the next pair goes to (the oldest one once full) */
    double *sy; /* m x m, sy[a*m + b] = s_a'y_b for a not newer than b */
    double *yy; /* m x m, symmetric */
    double *work; /* 5m scratch for co_lbfgs_mem_coefs */
} co_lbfgs_mem;

co_status co_lbfgs_mem_init(co_lbfgs_mem *L, int m, co_error *err);
void co_lbfgs_mem_free(co_lbfgs_mem *L);
void co_lbfgs_mem_reset(co_lbfgs_mem *L);
/* Slot of the i-th oldest stored pair, 0 <= i < count. */
int co_lbfgs_mem_slot(const co_lbfgs_mem *L, int i);
/* Slot the next pushed pair will occupy. */
static inline int co_lbfgs_mem_next_slot(const co_lbfgs_mem *L) { return L->head; }
/* Records the pair the caller has just written to slot co_lbfgs_mem_next_slot(L):
 * s_dot_ynew[j] = s_j'y_new and y_dot_ynew[j] = y_j'y_new for every stored slot j (the
 * entry of the slot being replaced is ignored), sy = s_new'y_new, yy = y_new'y_new. The
 * caller has checked co_lbfgs_pair_ok. */
void co_lbfgs_mem_push(co_lbfgs_mem *L, const double *s_dot_ynew, const double *y_dot_ynew, double sy, double yy);
/* Coefficients of H g from sg[j] = s_j'g and yg[j] = y_j'g (indexed by slot): writes
 * gamma and a[slot], b[slot] (zero for empty slots). H_0 = gamma I with gamma from the
 * newest pair, as eq. 7's H_0 and eq. 8's gamma_{t-1}. With no pair, gamma = 0. */
void co_lbfgs_mem_coefs(const co_lbfgs_mem *L, const double *sg, const double *yg, double *gamma, double *a,
                        double *b);

#endif

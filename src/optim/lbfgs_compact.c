/* Compact L-BFGS inverse Hessian in coefficient space (see lbfgs_compact.h). With the pairs
 * in chronological order, S = [s_1..s_k], Y = [y_1..y_k], R the upper triangle of S'Y and
 * D its diagonal, the compact form is
 *     H = gamma I + [S  gamma Y] [[R^-T (D + gamma Y'Y) R^-1, -R^-T], [-R^-1, 0]] [S'; gamma Y']
 * which for k = 1 is the paper's eq. 8. Applied to g with p = S'g, q = Y'g, u = R^-1 p:
 *     a = R^-T ((D + gamma Y'Y) u - gamma q),   b = -gamma u. */
#include "lbfgs_compact.h"
#include "../core/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int co_lbfgs_pair_ok(double sy, double yy, double eps_curv)
{
    return isfinite(sy) && isfinite(yy) && sy > 0 && sy >= eps_curv && yy > 0;
}

int co_lbfgs1_coefs(double sy, double yy, double sg, double yg, double eps_curv, double *gamma, double *cs,
                    double *cy)
{
    *gamma = *cs = *cy = 0;
    if (!co_lbfgs_pair_ok(sy, yy, eps_curv)) return 0;
    double rho = 1.0 / sy, g = sy / yy;
    double m11 = rho + g * rho * rho * yy;
    *gamma = g;
    *cs = m11 * sg - rho * g * yg;
    *cy = -g * rho * sg;
    return 1;
}

co_status co_lbfgs_mem_init(co_lbfgs_mem *L, int m, co_error *err)
{
    memset(L, 0, sizeof *L);
    if (m < 1) return co_error_set(err, CO_EINVAL, "L-BFGS memory must be >= 1, got %d", m);
    L->m = m;
    L->sy = co_dalloc((size_t)m * m);
    L->yy = co_dalloc((size_t)m * m);
    L->work = co_dalloc(5 * (size_t)m);
    if (!L->sy || !L->yy || !L->work) {
        co_lbfgs_mem_free(L);
        return co_error_set(err, CO_ENOMEM, "out of memory for L-BFGS memory %d", m);
    }
    return CO_OK;
}

void co_lbfgs_mem_free(co_lbfgs_mem *L)
{
    free(L->sy);
    free(L->yy);
    free(L->work);
    L->sy = L->yy = L->work = NULL;
}

void co_lbfgs_mem_reset(co_lbfgs_mem *L)
{
    L->count = 0;
    L->head = 0;
}

int co_lbfgs_mem_slot(const co_lbfgs_mem *L, int i)
{
    int start = L->count < L->m ? 0 : L->head;
    return (start + i) % L->m;
}

void co_lbfgs_mem_push(co_lbfgs_mem *L, const double *s_dot_ynew, const double *y_dot_ynew, double sy, double yy)
{
    int m = L->m, n = L->head;
    /* The pair in slot n (if any) is the oldest and is being dropped; every other stored
     * pair is older than the new one, so only the new column of R and row of Y'Y change. */
    int keep = L->count < m ? L->count : m - 1;
    for (int i = 0; i < keep; i++) {
        int j = (L->count < m) ? i : (n + 1 + i) % m;
        L->sy[j * m + n] = s_dot_ynew[j];
        L->yy[j * m + n] = y_dot_ynew[j];
        L->yy[n * m + j] = y_dot_ynew[j];
    }
    L->sy[n * m + n] = sy;
    L->yy[n * m + n] = yy;
    if (L->count < m) L->count++;
    L->head = (n + 1) % m;
}

void co_lbfgs_mem_coefs(const co_lbfgs_mem *L, const double *sg, const double *yg, double *gamma, double *a,
                        double *b)
{
    int m = L->m, k = L->count;
    for (int j = 0; j < m; j++) a[j] = b[j] = 0;
    *gamma = 0;
    if (k == 0) return;
    double *p = L->work, *q = p + m, *u = q + m, *w = u + m, *top = w + m;
#define SLOT(i) co_lbfgs_mem_slot(L, (i))
#define R(i, j) L->sy[SLOT(i) * m + SLOT(j)]
#define YY(i, j) L->yy[SLOT(i) * m + SLOT(j)]
    int newest = SLOT(k - 1);
    double g = L->sy[newest * m + newest] / L->yy[newest * m + newest];
    for (int i = 0; i < k; i++) {
        p[i] = sg[SLOT(i)];
        q[i] = yg[SLOT(i)];
    }
    /* u = R^-1 p, back substitution. */
    for (int i = k - 1; i >= 0; i--) {
        double acc = p[i];
        for (int j = i + 1; j < k; j++) acc -= R(i, j) * u[j];
        u[i] = acc / R(i, i);
    }
    /* w = (D + gamma Y'Y) u - gamma q */
    for (int i = 0; i < k; i++) {
        double acc = R(i, i) * u[i];
        for (int j = 0; j < k; j++) acc += g * YY(i, j) * u[j];
        w[i] = acc - g * q[i];
    }
    /* top = R^-T w, forward substitution. */
    for (int i = 0; i < k; i++) {
        double acc = w[i];
        for (int j = 0; j < i; j++) acc -= R(j, i) * top[j];
        top[i] = acc / R(i, i);
    }
    for (int i = 0; i < k; i++) {
        a[SLOT(i)] = top[i];
        b[SLOT(i)] = -g * u[i];
    }
    *gamma = g;
#undef SLOT
#undef R
#undef YY
}

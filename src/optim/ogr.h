/* The one-dimensional online-parabola model shared by OGR1d, OGR1ds and OGR1dc (Duda,
 * "SGD momentum optimizer with step estimation by online parabola model"), exposed so the
 * tests can check the regression and the step on their own.
 *
 * EMA convention: the paper's eq. 3, avg = beta * avg + (1 - beta) * x, i.e. beta is the
 * weight of the OLD average. Duda's notebooks write avg += beta (x - avg), which weights the
 * NEW sample by beta; their beta = 0.5 is our beta = 0.5 only by coincidence, and their
 * gamma = 0.9 (new-sample weight of the momentum) is not our gamma. */
#ifndef CO_OPTIM_OGR_H
#define CO_OPTIM_OGR_H

/* The four averages of eq. 1/3 in the modelled direction plus the weight sum s (the bias
 * of zero-started averages, analogous to Adam's 1 - beta^t). Double: the regression
 * subtracts products of them (s*theta2 - theta^2), which cancels badly in float. */
typedef struct co_ogr_avg {
    double theta, g, gtheta, theta2, s;
} co_ogr_avg;

/* Eq. 3 (Algorithm 2's last line) for one (position, derivative) pair. */
void co_ogr_avg_update(co_ogr_avg *a, double beta, double theta, double g);

/* Section III-C: re-express the averages in the coordinate theta - dtheta (Algorithm 7's
 * shift of the rotation centre). Exact: every stored point moves by the same dtheta. */
void co_ogr_avg_shift(co_ogr_avg *a, double dtheta);

/* Eq. 2: least-squares line g ~ lambda (theta - p) through the weighted points. Returns 0
 * when the points do not determine a slope (fewer than two distinct positions, up to
 * rounding); lambda is then 0 and p is NaN. With lambda == 0 but a defined slope, p is
 * +-Inf (the extremum is infinitely far), as eq. 2 says. */
int co_ogr_regress(const co_ogr_avg *a, double *lambda, double *p);

/* Eq. 4: the displacement alpha * sign(lambda) * C(p - theta) along the modelled direction
 * from the position theta, with C(x) = sign(x) min(|x|, clip). Evaluated in the form
 * -alpha * C(m / |lambda|), m = lambda (theta - p) the regression's derivative at theta,
 * which equals eq. 4 for lambda != 0 and is its limit for lambda -> 0 from either side
 * (a clipped step downhill along the averaged derivative), so a plateau or an inflection
 * point gives the largest allowed step rather than a division by zero. */
double co_ogr_parabola_step(const co_ogr_avg *a, double theta, double alpha, double clip);

#endif

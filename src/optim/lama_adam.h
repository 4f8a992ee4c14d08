/* LAMA-Adam's pieces the tests and the experiments reach directly (paper 002). */
#ifndef CO_OPTIM_LAMA_ADAM_H
#define CO_OPTIM_LAMA_ADAM_H

#include "curvopt.h"

/* Eq. 9: alpha = alpha_min + (alpha_max - alpha_min) sigmoid(lambda h), h = tr(H_l)/N_l
 * (eq. 8), evaluated as mid + half tanh(lambda h / 2) so that lambda = 0 gives exactly
 * (alpha_min + alpha_max) / 2. invert = 1 uses sigmoid(-lambda h): alpha shrinks as the
 * curvature grows, the reading of §5.1's text. The result lies in [alpha_min, alpha_max]. */
double co_lama_alpha(double h_layer, double lambda, double alpha_min, double alpha_max, int invert);

/* The per-layer average curvature tr(H_l)/N_l of the latest estimate (paper §4.4), one
 * value per group; returns the number written (at most max), or -1 when opt is not
 * LAMA-Adam. The same as co_optim_diagnostic(opt, "layer_trace", out, max). */
int co_lama_adam_traces(const co_optim *opt, double *out, int max);

#endif

/* RMSprop's second-moment update and denominator, shared with DA-RMSprop (eq. 8, 10). */
#ifndef CO_OPTIM_RMSPROP_H
#define CO_OPTIM_RMSPROP_H

#include "optim_impl.h"

#include <math.h>

/* sq = alpha sq + (1-alpha) g^2 (and avg likewise when centered); denom = sqrt(.) + eps,
 * rounded as torch.optim.RMSprop rounds it (alpha in double: 1 - alpha is formed there). */
void co_rmsprop_denominator(float *restrict denom, float *restrict sq, float *restrict avg,
                            const float *restrict g, size_t n, double alpha, float eps, int centered);

#endif

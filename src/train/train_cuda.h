/* co_train's loop for a model on a GPU (train_cuda.c); co_train hands over to it. */
#ifndef CO_TRAIN_CUDA_H
#define CO_TRAIN_CUDA_H

#include "curvopt.h"

co_status co_train_cuda(co_model *m, co_optim *opt, const co_dataset *train, const co_dataset *test,
                        const co_train_config *cfg, co_train_result *res, co_error *err);

#endif

/* CUDA runtime errors as co_status: CO_ENOMEM for an allocation, CO_EIO for the rest, with
 * what was being done and the runtime's own words. */
#ifndef CO_CUDA_CHECK_H
#define CO_CUDA_CHECK_H

#include "curvopt.h"

#include <cuda_runtime.h>

static inline co_status co_cuda_status(cudaError_t e, co_error *err, const char *what)
{
    if (e == cudaSuccess) return CO_OK;
    return co_error_set(err, e == cudaErrorMemoryAllocation ? CO_ENOMEM : CO_EIO, "CUDA: %s: %s (%s)", what,
                        cudaGetErrorString(e), cudaGetErrorName(e));
}

#define CO_CUDA_TRY(call, err, what)                                   \
    do {                                                               \
        co_status co_cuda_try_st_ = co_cuda_status((call), err, what); \
        if (co_cuda_try_st_ != CO_OK) return co_cuda_try_st_;          \
    } while (0)

#endif

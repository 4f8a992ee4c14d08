/* Buffers on either device, for callers that keep their tensors on a GPU: the CPU side is
 * plain memory, the CUDA side goes to src/cuda (none.c says "built without CUDA"). */
#include "curvopt.h"
#include "../cuda/cuda_api.h"

#include <stdlib.h>
#include <string.h>

void *co_device_alloc(co_device dev, size_t bytes, co_error *err)
{
    if (dev == CO_DEVICE_CUDA) return co_cuda_alloc(bytes, err);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        co_error_set(err, CO_ENOMEM, "out of memory for %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void co_device_free(co_device dev, void *p)
{
    if (dev == CO_DEVICE_CUDA)
        co_cuda_free(p);
    else
        free(p);
}

co_status co_device_copy(void *dst, co_device dst_dev, const void *src, co_device src_dev, size_t bytes,
                         co_error *err)
{
    if (dst_dev == CO_DEVICE_CPU && src_dev == CO_DEVICE_CPU) {
        if (bytes) memmove(dst, src, bytes);
        return CO_OK;
    }
    return co_cuda_copy(dst, src, bytes, NULL, err);
}

co_status co_device_synchronize(co_device dev, co_error *err)
{
    return dev == CO_DEVICE_CUDA ? co_cuda_sync(NULL, err) : CO_OK;
}

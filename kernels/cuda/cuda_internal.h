/* Private helpers of the CUDA backend (the C++ side: the .cu files of kernels/cuda/ only). */
#ifndef TN_KERNELS_CUDA_INTERNAL_H
#define TN_KERNELS_CUDA_INTERNAL_H

#include "kernels/cuda/tn_cuda.h"

extern "C" {
#include "core/error.h"
#include "kernels/packed.h"
}
#include "kernels/cuda/cuda_ops.h"

/* tn_err("<what>: <CUDA error string>"); returns -1. */
static inline int tn_cuda_err(const char *what, cudaError_t e) {
    return tn_err("%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* Evaluate a CUDA runtime call; on failure set the message and return -1 from the calling function. */
#define TN_CU(call, what)                                                                              \
    do {                                                                                               \
        cudaError_t tn_cu_e_ = (call);                                                                 \
        if (tn_cu_e_ != cudaSuccess) return tn_cuda_err(what, tn_cu_e_);                               \
    } while (0)

/* After a kernel launch: report a launch error (bad configuration, no kernel image, ...). */
#define TN_CU_LAUNCHED(what) TN_CU(cudaGetLastError(), what)

/* The cuBLAS wrapper's handle and its workspace of `workspace_bytes` (allocated with tn_cuda_alloc, so it
 * is in the memory accounting), and their release (blas.cu). */
extern "C" int tn_cuda_blas_init(size_t workspace_bytes);
extern "C" void tn_cuda_blas_shutdown(void);
#ifndef TN_CUDA_EMU
/* Queue cuBLAS work on stream s (blas.cu; the graph capture of kernels/cuda/infer_ops.cu). */
extern "C" int tn_cuda_blas_set_stream(cudaStream_t s);
#endif

#endif

/* NCCL for the CUDA emulator (a TN_CUDA_EMU test build): the subset of nccl.h that kernels/cuda/comm_nccl.cu
 * calls, declared with NCCL's names and values, for a communicator of ONE rank only (an all-reduce over one
 * rank copies its input). It lets the emulated tests run the NCCL path of a training step (the vote widening
 * and saturating kernels, the bf16 conversions, the plumbing) on every commit; the reductions between
 * ranks themselves only run on GPUs (scripts/gpu-check.sh, docs/SCALE.md). Defined in nccl_emu.cpp. */
#ifndef TN_KERNELS_CUDA_EMU_NCCL_EMU_H
#define TN_KERNELS_CUDA_EMU_NCCL_EMU_H

#include <stddef.h>

#include "kernels/cuda/emu/cuda_emu.h"

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct ncclComm *ncclComm_t;
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;
typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
} ncclResult_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
typedef enum { ncclInt8 = 0, ncclInt32 = 2, ncclFloat32 = 7 } ncclDataType_t;

extern "C" {
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
const char *ncclGetErrorString(ncclResult_t result);
}

#endif

/* The one-rank NCCL of the CUDA emulator (nccl_emu.h). */
#include "kernels/cuda/emu/nccl_emu.h"

#include <string.h>

struct ncclComm {
    int nranks;
};

static size_t type_bytes(ncclDataType_t t) { return t == ncclInt8 ? 1 : 4; }

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return ncclInvalidArgument;
    memset(id->internal, 0, sizeof id->internal);
    memcpy(id->internal, "trinity-emu", 11);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    (void)id;
    if (!comm) return ncclInvalidArgument;
    if (nranks != 1 || rank != 0) return ncclInvalidUsage; /* the emulator has one device, one rank */
    *comm = new ncclComm{nranks};
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    (void)stream;
    if (!comm || op != ncclSum || (datatype != ncclInt8 && datatype != ncclInt32 && datatype != ncclFloat32))
        return ncclInvalidArgument;
    if (sendbuff != recvbuff) memmove(recvbuff, sendbuff, count * type_bytes(datatype));
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    if (!comm || !async_error) return ncclInvalidArgument;
    *async_error = ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage (the emulator's NCCL has one rank)";
    default: return "NCCL error";
    }
}

} /* extern "C" */

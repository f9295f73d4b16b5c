/* The first include of every .cu file in kernels/cuda/. Each .cu file is compiled twice:
 *   - by nvcc for the GPU (TN_CUDA build): the real CUDA headers;
 *   - by the host C++ compiler with -DTN_CUDA_EMU (TN_CUDA_EMU build and the emulated tests): the CPU
 *     emulator of kernels/cuda/emu/cuda_emu.h runs every launch on the CPU.
 * The source is the same; these macros are where the two differ. Rules for kernels (docs/CUDA.md):
 *   - launch only with TN_LAUNCH(kernel, grid, block, dynamic_smem_bytes, args...), never with <<<>>>;
 *     a template kernel is launched through a function pointer (auto k = kern<64>; TN_LAUNCH(k, ...));
 *   - dynamic shared memory only through TN_DYN_SHARED(type, name);
 *   - warp collectives with the full mask, every thread of a block reaches every __syncthreads();
 *   - anything that exists only on the card (inline PTX, tensor-core MMA, async copies) behind
 *     __CUDA_ARCH__ with a portable path that the emulator runs. */
#ifndef TN_KERNELS_CUDA_TN_CUDA_H
#define TN_KERNELS_CUDA_TN_CUDA_H

#ifdef TN_CUDA_EMU
#include "kernels/cuda/emu/cuda_emu.h"

#define TN_LAUNCH(kernel, grid, block, smem, ...) \
    tn_emu::launch(#kernel, dim3(grid), dim3(block), (size_t)(smem), kernel, ##__VA_ARGS__)
#define TN_DYN_SHARED(type, name) type *name = reinterpret_cast<type *>(tn_emu::dynamic_shared())

#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

/* The stream every launch goes to: 0 (the legacy default stream) except while the inference engine
 * captures a CUDA graph (kernels/cuda/infer_ops.cu), which needs a stream of its own. */
extern cudaStream_t tn_cuda_launch_stream;
#define TN_LAUNCH(kernel, grid, block, smem, ...) \
    kernel<<<(grid), (block), (smem), tn_cuda_launch_stream>>>(__VA_ARGS__)
#define TN_DYN_SHARED(type, name)                                                                      \
    extern __shared__ __align__(16) unsigned char tn_dyn_smem_[];                                      \
    type *name = reinterpret_cast<type *>(tn_dyn_smem_)
#endif

#endif

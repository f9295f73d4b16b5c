/* Devices: where a run's buffers live and which ops table computes (kernels/ops.h). "cpu" is always
 * there; "cuda" / "cuda:N" when the binary carries a CUDA backend (a TN_CUDA build, or the CPU emulator of
 * a TN_CUDA_EMU test build) and the machine has the device. The backend is registered by the program
 * (cli/trinity.c, tests) so that trinity_lib itself never links CUDA.
 *
 * Precision of the matrix products: fp32 (default: exact FP32 GEMMs), tf32 or bf16 (tensor cores round
 * the GEMM inputs; parameters, gradients and optimizer state stay as the method defines them). tf32 and
 * bf16 need compute capability 8.0 or newer; the CPU runs fp32 only. */
#ifndef TN_DEVICE_DEVICE_H
#define TN_DEVICE_DEVICE_H

#include <stdint.h>

#include "kernels/ops.h"

struct tn_infer_ops;
struct tn_nccl_api;

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TN_PRECISION_FP32 = 0, TN_PRECISION_TF32 = 1, TN_PRECISION_BF16 = 2 } tn_precision;

/* What a CUDA backend provides to the device layer. */
typedef struct {
    int (*open)(int index, char *name, int name_cap, int *cc, int *emulated); /* select and initialise */
    int (*mem_info)(int64_t *free_bytes, int64_t *total_bytes);
    int (*set_precision)(int precision); /* tn_precision */
    /* FP32 (non-tensor) and TF32/BF16 dense tensor peak, FLOP/s, of the open device; 0 = unknown. */
    double (*peak_flops)(int precision);
    const tn_ops *(*ops)(void);
    const struct tn_infer_ops *(*infer_ops)(void); /* the inference engine's table (kernels/infer_ops.h) */
    const struct tn_nccl_api *(*nccl)(void);        /* NCCL reductions (comm/comm.h); NULL without NCCL */
} tn_cuda_backend;

/* Make CUDA devices available (called by programs that link a CUDA backend). */
void tn_device_register_cuda(const tn_cuda_backend *b);

typedef struct tn_device {
    char spec[16];     /* "cpu" or "cuda:N" */
    int is_cuda, index;
    int emulated;      /* the CUDA emulator (a test build) */
    int cc;            /* compute capability × 10 (CUDA) */
    char name[200];    /* "CPU (2 threads)" / "NVIDIA H100 80GB HBM3, sm_90" */
    const tn_ops *ops;
    const struct tn_infer_ops *infer_ops; /* CUDA: the inference engine's table; CPU: NULL (kernels/infer_ops.h) */
    tn_precision precision;
} tn_device;

/* 1 when spec names the CPU: NULL, "" or "cpu" (as tn_device_open reads it). */
int tn_device_spec_is_cpu(const char *spec);
/* Open "cpu", "cuda" (= cuda:0) or "cuda:N". Errors: a spec that is none of these; "cuda" in a build
 * without a CUDA backend; no device, no driver, or no kernel image for the card. */
int tn_device_open(const char *spec, tn_device *out);
/* "fp32", "tf32" or "bf16" for the device's matrix products; refused where the device lacks it. */
int tn_device_set_precision(tn_device *d, const char *precision);
const char *tn_precision_name(tn_precision p);
/* Free and total memory of the device (CPU: MemAvailable and MemTotal of /proc/meminfo). */
int tn_device_mem_info(const tn_device *d, int64_t *free_bytes, int64_t *total_bytes);
/* Refuse, before allocating, a plan of `bytes` that does not fit the device's free memory: one error line
 * naming the bytes asked for and the bytes free. */
int tn_device_check_fit(const tn_device *d, int64_t bytes);
/* Peak FLOP/s for the device's precision (for MFU), or 0 when unknown. */
double tn_device_peak_flops(const tn_device *d);
/* The NCCL reductions of a CUDA device's backend (comm/comm.h), NULL on the CPU or without NCCL. */
const struct tn_nccl_api *tn_device_nccl(const tn_device *d);

#ifdef __cplusplus
}
#endif

#endif

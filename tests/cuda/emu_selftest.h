/* C interface of the emulator self-test kernels (tests/cuda/emu_selftest.cu). Every pointer is device
 * memory. Each returns 0, or -1 when the launch was refused. */
#ifndef TN_TESTS_CUDA_EMU_SELFTEST_H
#define TN_TESTS_CUDA_EMU_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int tn_selftest_softmax(const float *x, float *y, int rows, int n);
int tn_selftest_rmsnorm(const float *x, float *y, int rows, int n, float eps, int threads);
int tn_selftest_sgemm(const float *A, const float *B, float *C, int M, int N, int K);
int tn_selftest_dp4a_gemv(const int8_t *w, const int8_t *x, int32_t *y, int rows, int n);
int tn_selftest_vote(const float *g, int8_t *vote, unsigned *flags, unsigned long long *count, int n, float thr);
/* Block sum with `threads` threads (a power of two <= 256); broken = 1 leaves out one __syncthreads(). */
int tn_selftest_reduce(const float *x, float *out, int n, int threads, int broken);
int tn_selftest_half(const float *x, float *yh, float *yb, int n);
/* The RMSNorm kernel on one row with an explicit block size and dynamic shared memory (limit tests). */
int tn_selftest_launch_raw(int threads, size_t smem, const float *x, float *y, int n);

#ifdef __cplusplus
}
#endif

#endif

/* Scalar reference dequantization of ggml tensor data to fp32, for import. Block layouts from ggml's
 * ggml-common.h (block_q8_0, block_q4_0, block_q4_1, block_q4_K, block_q6_K, block_tq1_0, block_tq2_0) and the matching
 * dequantize_row_* functions in ggml-quants.c; each layout is described above its function. All
 * multi-byte fields are little-endian and read bytewise (no alignment or endianness assumptions). */
#ifndef TN_EXPORT_GGUF_DEQUANT_H
#define TN_EXPORT_GGUF_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

/* IEEE half and bfloat16 to float (exact, including subnormals, inf and NaN). tn_f16_to_f32 is the packed
 * kernels' own (kernels/packed.h, defined in kernels/cpu/packed_q8.c): the Q4 products need it too. */
float tn_f16_to_f32(uint16_t h);
float tn_bf16_to_f32(uint16_t h);

/* 1 if tn_ggml_dequantize supports this ggml type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, TQ1_0,
 * TQ2_0. */
int tn_ggml_can_dequantize(uint32_t type);

/* Dequantize n values of ggml `type` from src (n_bytes long) into dst. n must be a multiple of the type's
 * block size and n_bytes exactly n / block * block_bytes; fails with a message otherwise or for an
 * unsupported type. */
int tn_ggml_dequantize(uint32_t type, const uint8_t *src, size_t n_bytes, float *dst, size_t n);

#endif

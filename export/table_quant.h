/* The LM head and the embedding table quantized at export (`trinity export --head / --embed`): which
 * setting applies to which tensor, and the quantizers from fp32 weights to the kernels' Q8 and Q4 layouts
 * (kernels/packed.h) and to GGUF's Q8_0. docs/TRIN.md and docs/EXPORT.md describe the choice. */
#ifndef TN_EXPORT_TABLE_QUANT_H
#define TN_EXPORT_TABLE_QUANT_H

#include <stdint.h>

#include "model/params.h"

/* auto: the tensor follows the other dense tensors (--dtype). */
typedef enum { TN_TABLE_AUTO = 0, TN_TABLE_F32, TN_TABLE_F16, TN_TABLE_Q8, TN_TABLE_Q4 } tn_table_type;

/* "f32" | "f16" | "q8" | "q4" (case-insensitive); -1 (tn_err) otherwise. */
int tn_table_type_parse(const char *s, tn_table_type *out);
const char *tn_table_type_name(tn_table_type t);

/* The setting for layout tensor t: `head` for lm_head.weight, and for the embedding table when the model
 * ties it to the head (the one tensor is both); `embed` for an untied embedding table; auto for the rest. */
tn_table_type tn_table_for(const tn_tensor_info *t, const tn_llama_config *cfg, tn_table_type head, tn_table_type embed);

/* Q8: per row, amax = max |w|, scale = amax / 127, q = clamp(rint(w · (127 / amax)), -127, 127) (the
 * rounding of the int8 activations, kernels/packed.h); a zero row has scale 0. out: tn_q8_packed_size
 * bytes (padding zeroed), scales [rows]. Each quantizer fails (tn_err) on a weight that is not finite. */
int tn_q8_quantize(const float *w, int64_t rows, int64_t cols, uint8_t *out, float *scales);

/* Q4: per block of 32, GGML's quantize_row_q4_0 rule: m = the value of largest magnitude, d = m / -8,
 * code = min(15, (int)(w / d + 8.5)), d stored as fp16 (the codes use d before rounding, as ggml's do). A
 * block of zeros has d = 0 and codes 8; padding columns get code 8. out: tn_q4_packed_size bytes; for
 * cols % 32 == 0 these are the bytes of a GGML Q4_0 tensor. Fails (tn_err) when a d does not fit fp16. */
int tn_q4_quantize(const float *w, int64_t rows, int64_t cols, uint8_t *out);

/* GGUF's Q8_0 for one row of cols (a multiple of 32) values: blocks of 34 bytes, fp16 d = amax / 127, then
 * 32 int8 q = rint(w / d) (ggml's quantize_row_q8_0). Fails (tn_err) when a d does not fit fp16. */
int tn_q8_0_quantize_row(const float *w, int64_t cols, uint8_t *out);

#endif

/* AdamW with 8-bit optimizer state: the moments m and v are stored blockwise-quantized (Dettmers et al.,
 * "8-bit Optimizers via Block-wise Quantization", 2022), 2 bytes per parameter instead of 8, plus 8 bytes
 * per block of TN_ADAM8_BLOCK parameters. The update itself is fp32 AdamW (optim/adamw.h), unchanged.
 *
 * ==========================================================================================================
 *  STATE per array of n parameters (nb = tn_adam8_blocks(n) = ceil(n / 2048); block b = elements
 *  [2048 b, min(n, 2048 (b + 1))), the last one possibly short)
 *      m         uint8 [n]    codes into the signed table TM      m_i = TM[m code_i] · m_absmax[b]
 *      m_absmax  float [nb]   max |m_i| over the block
 *      v         uint8 [n]    codes into the unsigned table TV    v_i = TV[v code_i] · v_absmax[b]
 *      v_absmax  float [nb]   max |v_i| over the block
 *  All zero bytes (codes 0, absmax 0) is the fresh state: every moment dequantizes to +0, as fp32 AdamW's
 *  zero-initialised m and v. Checkpoints store the four arrays as they are; nothing else is kept between
 *  steps, so a resumed run continues bit for bit.
 *
 *  CODE TABLES: 256 floats each, strictly ascending, "dynamic" (Dettmers 2015, "8-bit approximations for
 *  parallelism"): a decimal exponent picks the decade (10^-(k+1), 10^-k] and a linear fraction places the
 *  value inside it, with fewer fraction steps the smaller the decade, so that small magnitudes keep their
 *  relative precision (v spans many orders of magnitude). With b magnitude bits, index c in 1 .. 2^b − 1:
 *      e = floor(log2 c),  n = 2^e,  j = c − n + 1 (1..n),  k = b − 1 − e
 *      magnitude(b, c) = 10^-k · (0.1 + 0.9 j / n) = (n + 9 j) / (10^(k+1) · n)
 *  one IEEE float division of two integers that are exact in float, i.e. the correctly rounded rational,
 *  reproducible anywhere (numpy: np.float32(n + 9j) / np.float32(10**(k+1) * n)). Decade k holds n = 2^e
 *  values, the top one exactly 10^-k.
 *      TV (v, unsigned):  TV[0] = 0;  TV[c] = magnitude(8, c), c = 1..255
 *                         8 decades: 1e-7 (1 value), ..., (0.1, 1] (128 values, step 0.9/128); TV[255] = 1
 *      TM (m, signed):    TM[c] = −magnitude(7, 127 − c) for c < 127;  TM[127] = 0;  TM[128] = +1e-7;
 *                         TM[c] = +magnitude(7, c − 128) for c >= 129
 *                         7 decades each side: ±1e-6 .. ±1 (64 values in (0.1, 1], step 0.9/64);
 *                         TM[0] = −1, TM[255] = +1. A table symmetric about 0 has an odd size, so one code
 *                         is spare; it extends the positive side one decade down, to +1e-7.
 *  Relative spacing (step / value) in the top decade: 0.7%..6.6% (TV), 1.4%..12.3% (TM); each decade below
 *  has half the values of the one above. m quantizes to 0 for −5e-7 < m / absmax <= 5e-8 (up to the rounding
 *  of the float midpoints); v only when it is 0 (v's floor, below).
 *  mid[i] = (T[i] + T[i+1]) · 0.5, computed in float (the sum rounds once; the halving is exact).
 *  The formula is kernels/adam8_math.h tn_adam8_magnitude / tn_adam8_code_value, shared with the GPU.
 *
 *  QUANTIZE a block x[len]:  a = max |x_i| (a running `|x_i| > a` from 0, so NaNs are skipped)
 *                            a == 0:  every code = the code of 0 (TM: 127, TV: 0), absmax 0
 *                            else:    u_i = x_i / a (IEEE float division, |u_i| <= 1, ±1 exactly at the max)
 *                                     code_i = #{ i' : mid[i'] < u_i }  (the nearest entry; a u exactly on a
 *                                     float midpoint takes the LOWER code; NaN takes code 0)
 *                                     v only: a v_i > 0 whose code would be 0 takes code 1 (1e-7 · a)
 *  Why v's floor: without it a v_i below 5e-8 · absmax (a block whose gradients span more than ~3.5 decades,
 *  or an element whose gradient stopped while its neighbours' did not: embedding rows absent from the
 *  batch) dequantizes to 0 while its m, quantized against m's own absmax, does not; the next step with g ≈ 0
 *  then moves p by lr · m · c1 / eps. On sparse rows (64-wide rows with scales over two decades, 10% of them
 *  with a gradient per step; test_adam8.c test_sparse_rows) plain nearest rounding takes steps of 1e21 · lr
 *  and ends in NaN (with β2 = 0.95 and 0.999 alike); with the floor no step exceeds 1.1 lr and the error falls
 *  as with fp32 AdamW. Rounding v up is the safe direction (a smaller step). m needs no floor: an m rounded to
 *  0 only shortens a step.
 *  DEQUANTIZE:               x_i = T[code_i] · a + 0   (float; the + 0 makes a −0 product +0, so a zero
 *                                                       state is exactly fp32 AdamW's fresh +0 state)
 *
 *  UPDATE of one block (tn_adamw8_apply), for the step constants h (tn_adamw_step_of):
 *      m, v   = dequantize(m codes, m_absmax), dequantize(v codes, v_absmax)          (float [len])
 *      tn_adamw_apply(p, g, m, v, len, h)     literally that function, i.e. its float expressions:
 *               m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g·g;
 *               p −= lr·((m·c1) / (sqrtf(v·c2) + eps) + wd·p)          (no contracted multiply-adds)
 *      (m codes, m_absmax), (v codes, v_absmax) = quantize(m), quantize(v)    (the block's new absmax)
 *  The parameter update of a step therefore uses the unquantized new moments; the quantization error enters
 *  through the stored state of the next step. Blocks are independent: OpenMP over blocks, and the result
 *  does not depend on the number of threads. The CUDA version (kernels/cuda/adam8.h tn_cuda_adamw8) is
 *  bit-identical.
 *
 *  NON-FINITE values are not checked (as in tn_adamw_apply): a NaN/inf gradient makes p NaN/inf and the
 *  block's state meaningless. The run stops at a non-finite loss (train/train.c), so such a state is never
 *  checkpointed.
 * ==========================================================================================================
 *  PRECISION: an increment (1−β2)·g² of v below half a code step does not move v's code (with β2 = 0.999 the
 *  increment is 0.1% of v, the top decade's steps 0.7%..6.6%), so v follows changes of the gradient scale
 *  late. On a least-squares problem (tests/unit/test_adam8.c) 8-bit AdamW reaches fp32 AdamW's loss after 300
 *  steps with trinity's default β2 = 0.95, but lags by 2%..9% with β2 = 0.999 (numpy, several seeds).
 *
 * The block size 2048 and the dynamic tables are the paper's; the table formula (decades × linear fraction,
 * exact rational entries, the spare code at +1e-7), the tie rule and v's floor are trinity's own. */
#ifndef TN_OPTIM_ADAMW8_H
#define TN_OPTIM_ADAMW8_H

#include <stdint.h>

#include "kernels/adam8_math.h" /* TN_ADAM8_BLOCK, the table formula, the nearest-code search */
#include "kernels/ops.h"
#include "optim/adamw.h"

/* A code table and its midpoints. */
typedef struct {
    float value[TN_ADAM8_CODES];   /* ascending */
    float mid[TN_ADAM8_CODES - 1]; /* (value[i] + value[i+1]) · 0.5 in float */
    int zero;                      /* the code of 0 */
    int is_v;                      /* 1 for TV: a positive value never takes the code of 0 (QUANTIZE) */
} tn_adam8_table;

/* The signed table TM (first moment) and the unsigned table TV (second moment); built once, thread-safe. */
const tn_adam8_table *tn_adam8_table_m(void);
const tn_adam8_table *tn_adam8_table_v(void);

/* Quantization blocks of an array of n parameters: ceil(n / TN_ADAM8_BLOCK) (0 for n <= 0). */
int64_t tn_adam8_blocks(int64_t n);

/* The nearest code of u (|u| <= 1) in t: tn_adam8_nearest(t->mid, u) (without v's floor). */
int tn_adam8_code(const tn_adam8_table *t, float u);
/* One block: codes[len] and *absmax from x[len] (QUANTIZE above); x[len] from codes and absmax. */
void tn_adam8_quantize(const float *x, int64_t len, const tn_adam8_table *t, uint8_t *codes, float *absmax);
void tn_adam8_dequantize(const uint8_t *codes, float absmax, int64_t len, const tn_adam8_table *t, float *x);

/* One AdamW step of n parameters with 8-bit state (UPDATE above): p updated in place, m, m_absmax, v, v_absmax
 * (layout: STATE above) replaced by the new quantized moments. h from tn_adamw_step_of. */
void tn_adamw8_apply(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax, int64_t n,
                     const tn_adamw_step *h);

#endif

#include "model/rope.h"

#include "core/config.h"
#include "core/error.h"
#include "kernels/cpu/ops_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[TN_ROPE_N_TYPES] = {"default", "linear", "llama3"};

const char *tn_rope_type_name(int type) { return type >= 0 && type < TN_ROPE_N_TYPES ? type_names[type] : "?"; }

int tn_rope_parse_type(const char *name, int *type) {
    for (int i = 0; i < TN_ROPE_N_TYPES; i++)
        if (strcmp(name, type_names[i]) == 0) {
            *type = i;
            return 0;
        }
    return tn_err("RoPE scaling type '%.32s' is not supported (default, linear, llama3)", name);
}

static int positive(float v) { return v > 0 && isfinite(v); }

int tn_rope_validate(const tn_llama_config *c) {
    if (c->rope_type < 0 || c->rope_type >= TN_ROPE_N_TYPES)
        return tn_err("model config: unknown RoPE scaling type %d", c->rope_type);
    if (c->rope_type == TN_ROPE_DEFAULT) return 0;
    if (!positive(c->rope_factor)) return tn_err("model config: rope_factor must be positive");
    if (c->rope_type == TN_ROPE_LLAMA3) {
        if (!positive(c->rope_low_freq_factor) || !positive(c->rope_high_freq_factor) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return tn_err("model config: llama3 RoPE needs 0 < rope_low_freq_factor < rope_high_freq_factor (%g, %g)",
                          (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor);
        if (c->rope_orig_max_pos <= 0) return tn_err("model config: rope_original_max_position_embeddings must be positive");
    }
    return 0;
}

int tn_rope_config_from_ini(struct tn_config *ini, tn_llama_config *c) {
    const char *s = "model";
    double f;
    int64_t v;
    TN_CHECK(tn_config_float(ini, s, "rope_theta", 10000.0, &f));
    c->rope_theta = (float)f;
    TN_CHECK(tn_rope_parse_type(tn_config_str(ini, s, "rope_scaling", "default"), &c->rope_type));
    TN_CHECK(tn_config_float(ini, s, "rope_factor", 1.0, &f));
    c->rope_factor = (float)f;
    TN_CHECK(tn_config_float(ini, s, "rope_low_freq_factor", 1.0, &f));
    c->rope_low_freq_factor = (float)f;
    TN_CHECK(tn_config_float(ini, s, "rope_high_freq_factor", 4.0, &f));
    c->rope_high_freq_factor = (float)f;
    TN_CHECK(tn_config_int(ini, s, "rope_original_max_position_embeddings", 8192, &v));
    if (v <= 0 || v > (1 << 30)) return tn_err("[model] rope_original_max_position_embeddings %lld out of range", (long long)v);
    c->rope_orig_max_pos = (int)v;
    return 0;
}

void tn_rope_inv_freq(const tn_llama_config *c, int hd, float *inv_freq) {
    const float factor = c->rope_factor, low = c->rope_low_freq_factor, high = c->rope_high_freq_factor;
    const float orig = (float)c->rope_orig_max_pos;
    for (int i = 0; i < hd / 2; i++) {
        /* HF: 1 / theta^(arange(0, hd, 2) / hd), rounded to float32 (as tn_op_rope_table) */
        float base = (float)(1.0 / pow(c->rope_theta, (double)(2 * i) / (double)hd));
        float f = base;
        if (c->rope_type == TN_ROPE_LINEAR) {
            f = base / factor;
        } else if (c->rope_type == TN_ROPE_LLAMA3) {
            float wavelen = (float)(2.0 * M_PI) / base;
            float lo_wavelen = orig / low, hi_wavelen = orig / high;
            if (wavelen > lo_wavelen) {
                f = base / factor;
            } else if (!(wavelen < hi_wavelen)) {
                float s = (orig / wavelen - low) / (high - low);
                f = (1.0f - s) * base / factor + s * base;
            }
        }
        inv_freq[i] = f;
    }
}

int tn_rope_tables(const tn_llama_config *c, int hd, int64_t T, int64_t pos0, float *cos_t, float *sin_t) {
    float *inv = malloc((size_t)(hd / 2 > 0 ? hd / 2 : 1) * sizeof *inv);
    if (!inv) return tn_err("out of memory");
    tn_rope_inv_freq(c, hd, inv);
    tn_op_rope_table_freq(cos_t, sin_t, T, hd, inv, pos0);
    free(inv);
    return 0;
}

/* Wavelength of the default frequency i (as tn_rope_inv_freq computes it). */
static float wavelen_at(const tn_llama_config *c, int hd, int i) {
    return (float)(2.0 * M_PI) / (float)(1.0 / pow(c->rope_theta, (double)(2 * i) / (double)hd));
}

/* A fitted value within 1e-5 of a multiple of 1/1000 is that multiple (what a config file would say); the
 * check of every divisor that follows the fit guards the choice. */
static double snap(double x) {
    double r = round(x * 1000.0) / 1000.0;
    return fabs(r - x) <= 1e-5 * fabs(x) ? r : x;
}

int tn_rope_fit_llama3(tn_llama_config *c, int hd, const float *f) {
    const int half = hd / 2;
    const double tol = 1e-5;
    float factor = 1.0f;
    for (int i = 0; i < half; i++) {
        if (!positive(f[i]) || f[i] < 1.0f - tol)
            return tn_err("rope_freqs[%d] = %g: llama3 divisors are >= 1", i, (double)f[i]);
        if (f[i] > factor) factor = f[i];
    }
    if (factor <= 1.0f + tol) return 0; /* no scaling */
    /* Classify: 1 = kept (high frequency), 2 = divided by factor (low), 0 = smoothed (medium). Wavelengths
     * grow with i, so the classes must run kept* medium* divided*. */
    int last_kept = -1, first_div = half, n_med = 0, m0 = -1, m1 = -1;
    for (int i = 0; i < half; i++) {
        if (fabs(f[i] - 1.0) <= tol) last_kept = i;
        else if (fabs(f[i] / factor - 1.0) <= tol) { if (first_div == half) first_div = i; }
        else { n_med++; if (m0 < 0) m0 = i; m1 = i; }
    }
    /* Smoothing weight of a medium frequency: 1/f = (1 - s)/factor + s. */
#define SMOOTH(i) ((1.0 / f[i] - 1.0 / factor) / (1.0 - 1.0 / factor))
    /* With low_freq_factor = 1: lo = orig, hi = orig / high, s = (orig / w - 1) / (high - 1). */
    double lo, hi;
    double w_prev = last_kept >= 0 ? wavelen_at(c, hd, last_kept) : 0.0;
    double w_next = first_div < half ? wavelen_at(c, hd, first_div) : 0.0;
    if (n_med >= 2) {
        /* s is linear in x = 1/w: s = a x + b, a = orig / (high - 1), b = -1 / (high - 1). */
        double x0 = 1.0 / wavelen_at(c, hd, m0), x1 = 1.0 / wavelen_at(c, hd, m1);
        double a = (SMOOTH(m1) - SMOOTH(m0)) / (x1 - x0), b = SMOOTH(m0) - a * x0;
        if (!(b < 0) || !(a > 0)) return tn_err("rope_freqs: the divisors do not follow the llama3 rule");
        double high = 1.0 - 1.0 / b;
        lo = a * (high - 1.0);
        hi = lo / high;
    } else {
        /* Under-determined: any thresholds that keep every frequency in its class reproduce f. Place them
         * between the neighbouring wavelengths (geometrically), then solve for the one medium point. */
        double wl = w_prev > 0 ? w_prev : wavelen_at(c, hd, 0) / 2;
        double wr = w_next > 0 ? w_next : wavelen_at(c, hd, half - 1) * 2;
        if (n_med == 0) {
            hi = pow(wl, 2.0 / 3) * pow(wr, 1.0 / 3);
            lo = pow(wl, 1.0 / 3) * pow(wr, 2.0 / 3);
        } else {
            double wm = wavelen_at(c, hd, m0), s = SMOOTH(m0);
            hi = sqrt(wl * wm);
            lo = (1.0 - s) / (1.0 / wm - s / hi);
        }
    }
#undef SMOOTH
    /* Only lo = orig / low and hi = orig / high matter: orig is the integer nearest lo (at least 1), and the
     * two factors carry the thresholds exactly. */
    if (!(lo > 0 && lo < (double)(1 << 30) && hi > 0 && hi < lo))
        return tn_err("rope_freqs: the divisors do not follow the llama3 rule");
    tn_llama_config t = *c;
    t.rope_type = TN_ROPE_LLAMA3;
    t.rope_factor = factor;
    t.rope_orig_max_pos = lo < 1 ? 1 : (int)lrint(lo);
    t.rope_low_freq_factor = (float)snap(t.rope_orig_max_pos / lo);
    t.rope_high_freq_factor = (float)snap(t.rope_orig_max_pos / hi);
    if (tn_rope_validate(&t) != 0) return tn_err("rope_freqs: the divisors do not follow the llama3 rule");
    /* The rounding of orig to an integer must not move anything: check every divisor. */
    float *inv = malloc((size_t)half * sizeof *inv);
    if (!inv) return tn_err("out of memory");
    tn_rope_inv_freq(&t, hd, inv);
    int bad = -1;
    for (int i = 0; i < half && bad < 0; i++) {
        double base = 1.0 / pow(c->rope_theta, (double)(2 * i) / hd);
        if (fabs(base / inv[i] / f[i] - 1.0) > 1e-4) bad = i;
    }
    free(inv);
    if (bad >= 0)
        return tn_err("rope_freqs: divisor %d (%g) does not follow the llama3 rule fitted to the others (factor %g, "
                      "original context %d, high_freq_factor %g)",
                      bad, (double)f[bad], (double)t.rope_factor, t.rope_orig_max_pos, (double)t.rope_high_freq_factor);
    *c = t;
    return 0;
}

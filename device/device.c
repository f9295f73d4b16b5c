#include "device/device.h"

#include "core/error.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tn_cuda_backend *g_cuda = NULL;

void tn_device_register_cuda(const tn_cuda_backend *b) { g_cuda = b; }

const char *tn_precision_name(tn_precision p) {
    switch (p) {
    case TN_PRECISION_FP32: return "fp32";
    case TN_PRECISION_TF32: return "tf32";
    case TN_PRECISION_BF16: return "bf16";
    }
    return "?";
}

int tn_device_spec_is_cpu(const char *spec) { return !spec || !*spec || !strcmp(spec, "cpu"); }

static int parse_spec(const char *spec, int *is_cuda, int *index) {
    if (tn_device_spec_is_cpu(spec)) {
        *is_cuda = 0;
        *index = 0;
        return 0;
    }
    if (!strcmp(spec, "cuda")) {
        *is_cuda = 1;
        *index = 0;
        return 0;
    }
    if (!strncmp(spec, "cuda:", 5)) {
        char *end;
        long v = strtol(spec + 5, &end, 10);
        if (spec[5] && !*end && v >= 0 && v < 1024) {
            *is_cuda = 1;
            *index = (int)v;
            return 0;
        }
    }
    return tn_err("device '%s': expected cpu, cuda or cuda:N", spec);
}

int tn_device_open(const char *spec, tn_device *d) {
    memset(d, 0, sizeof *d);
    TN_CHECK(parse_spec(spec, &d->is_cuda, &d->index));
    d->precision = TN_PRECISION_FP32;
    if (!d->is_cuda) {
        snprintf(d->spec, sizeof d->spec, "cpu");
        snprintf(d->name, sizeof d->name, "CPU (%d threads)", omp_get_max_threads());
        d->ops = tn_ops_cpu();
        return 0;
    }
    if (!g_cuda)
        return tn_err("device %s: this build has no CUDA backend (configure with -DTN_CUDA=ON; docs/CUDA.md)", spec);
    snprintf(d->spec, sizeof d->spec, "cuda:%d", d->index);
    TN_CHECK(g_cuda->open(d->index, d->name, (int)sizeof d->name, &d->cc, &d->emulated));
    d->ops = g_cuda->ops();
    d->infer_ops = g_cuda->infer_ops ? g_cuda->infer_ops() : NULL;
    return g_cuda->set_precision(TN_PRECISION_FP32);
}

int tn_device_set_precision(tn_device *d, const char *precision) {
    tn_precision p;
    if (!strcmp(precision, "fp32")) p = TN_PRECISION_FP32;
    else if (!strcmp(precision, "tf32")) p = TN_PRECISION_TF32;
    else if (!strcmp(precision, "bf16")) p = TN_PRECISION_BF16;
    else return tn_err("precision '%s': expected fp32, tf32 or bf16", precision);
    if (p != TN_PRECISION_FP32) {
        if (!d->is_cuda)
            return tn_err("precision %s: the CPU runs fp32 only (tf32 and bf16 are tensor-core modes of CUDA devices)",
                          precision);
        if (d->cc < 80)
            return tn_err("precision %s: %s has compute capability %d.%d; %s tensor cores need 8.0 or newer", precision,
                          d->name, d->cc / 10, d->cc % 10, precision);
    }
    if (d->is_cuda) TN_CHECK(g_cuda->set_precision((int)p));
    d->precision = p;
    return 0;
}

/* MemAvailable and MemTotal from /proc/meminfo. */
static int host_mem_info(int64_t *free_bytes, int64_t *total_bytes) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return tn_err("cannot read /proc/meminfo");
    char line[256];
    long long avail = -1, total = -1;
    while (fgets(line, sizeof line, f)) {
        long long v;
        if (sscanf(line, "MemAvailable: %lld kB", &v) == 1) avail = v;
        else if (sscanf(line, "MemTotal: %lld kB", &v) == 1) total = v;
    }
    fclose(f);
    if (avail < 0 || total < 0) return tn_err("/proc/meminfo: no MemAvailable / MemTotal");
    *free_bytes = (int64_t)avail * 1024;
    *total_bytes = (int64_t)total * 1024;
    return 0;
}

int tn_device_mem_info(const tn_device *d, int64_t *free_bytes, int64_t *total_bytes) {
    if (!d->is_cuda) return host_mem_info(free_bytes, total_bytes);
    return g_cuda->mem_info(free_bytes, total_bytes);
}

int tn_device_check_fit(const tn_device *d, int64_t bytes) {
    int64_t free_b = 0, total_b = 0;
    TN_CHECK(tn_device_mem_info(d, &free_b, &total_b));
    if (bytes > free_b)
        return tn_err("device %s (%s): the run needs %lld bytes (%.2f GiB) and %lld bytes (%.2f GiB) are free of %.2f "
                      "GiB; reduce [train] batch or seq_len, or the model",
                      d->spec, d->name, (long long)bytes, (double)bytes / (1 << 30), (long long)free_b,
                      (double)free_b / (1 << 30), (double)total_b / (1 << 30));
    return 0;
}

double tn_device_peak_flops(const tn_device *d) {
    if (!d->is_cuda || d->emulated) return 0;
    return g_cuda->peak_flops((int)d->precision);
}

const struct tn_nccl_api *tn_device_nccl(const tn_device *d) {
    if (!d->is_cuda || !g_cuda || !g_cuda->nccl) return NULL;
    return g_cuda->nccl();
}

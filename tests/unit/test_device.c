/* The device layer (device/device.h) without a CUDA backend registered, as in a CPU-only build: "cpu" opens
 * with the CPU ops table, "cuda" is refused with a message that says how to get one, malformed specs and
 * precisions are refused, tf32/bf16 are refused on the CPU, the fit check refuses a plan larger than the
 * free memory and names both numbers. And the CPU table's memory accounting counts what it allocates. */
#include "tn_test.h"

#include "core/error.h"
#include "device/device.h"

#include <string.h>

static void test_open(void) {
    tn_device d;
    CHECK_OK(tn_device_open("cpu", &d));
    CHECK(!d.is_cuda && d.ops == tn_ops_cpu() && !strcmp(d.spec, "cpu"));
    CHECK_OK(tn_device_open(NULL, &d)); /* unset: the CPU */
    CHECK(!d.is_cuda);

    CHECK(tn_device_open("cuda", &d) != 0);
    CHECKF(strstr(tn_errmsg(), "no CUDA backend") && strstr(tn_errmsg(), "-DTN_CUDA=ON"), "%s", tn_errmsg());
    CHECK(tn_device_open("cuda:1", &d) != 0);
    static const char *bad[] = {"gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "CPU", "cuda:99999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(tn_device_open(bad[i], &d) != 0 && strstr(tn_errmsg(), "expected cpu, cuda or cuda:N"), "%s: %s",
               bad[i], tn_errmsg());
    }
    tn_err_clear();
}

static void test_precision(void) {
    tn_device d;
    CHECK_OK(tn_device_open("cpu", &d));
    CHECK_OK(tn_device_set_precision(&d, "fp32"));
    CHECK(d.precision == TN_PRECISION_FP32);
    CHECK(tn_device_set_precision(&d, "tf32") != 0 && strstr(tn_errmsg(), "fp32 only"));
    CHECK(tn_device_set_precision(&d, "bf16") != 0);
    CHECK(tn_device_set_precision(&d, "fp16") != 0 && strstr(tn_errmsg(), "expected fp32, tf32 or bf16"));
    CHECK(d.precision == TN_PRECISION_FP32);
    CHECK(!strcmp(tn_precision_name(TN_PRECISION_BF16), "bf16"));
    CHECK(tn_device_peak_flops(&d) == 0);
    tn_err_clear();
}

static void test_memory(void) {
    tn_device d;
    CHECK_OK(tn_device_open("cpu", &d));
    int64_t free_b = 0, total_b = 0;
    CHECK_OK(tn_device_mem_info(&d, &free_b, &total_b));
    CHECK(free_b > 0 && total_b >= free_b);
    CHECK_OK(tn_device_check_fit(&d, 1 << 20));
    CHECK(tn_device_check_fit(&d, total_b + 1) != 0);
    CHECKF(strstr(tn_errmsg(), "needs") && strstr(tn_errmsg(), "free"), "%s", tn_errmsg());
    tn_err_clear();

    const tn_ops *ops = tn_ops_cpu();
    int64_t before = 0, after = 0, peak = 0;
    ops->mem_usage(&before, NULL);
    void *p = ops->alloc(12345);
    CHECK(p != NULL);
    ops->mem_usage(&after, &peak);
    CHECK(after - before == 12345 && peak >= after);
    CHECK(((uintptr_t)p & 63) == 0); /* 64-byte aligned, like tn_alloc */
    ops->free(p);
    ops->mem_usage(&after, NULL);
    CHECK(after == before);
}

int main(void) {
    test_open();
    test_precision();
    test_memory();
    return tn_test_finish();
}

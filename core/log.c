#include "core/log.h"
#include "core/timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static tn_log_level log_level = TN_LOG_INFO;

void tn_log_set_level(tn_log_level level) { log_level = level; }
tn_log_level tn_log_get_level(void) { return log_level; }

static void vlog(const char *tag, const char *fmt, va_list ap) {
    fprintf(stderr, "trinity: %s", tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void tn_log_info(const char *fmt, ...) {
    if (log_level < TN_LOG_INFO) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void tn_log_debug(const char *fmt, ...) {
    if (log_level < TN_LOG_DEBUG) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("debug: ", fmt, ap);
    va_end(ap);
}

void tn_log_warn(const char *fmt, ...) {
    if (log_level < TN_LOG_INFO) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

void tn_progress_begin(tn_progress *p, const char *label, int64_t total) {
    p->label = label;
    p->total = total;
    p->done = 0;
    p->t_start = tn_time_s();
    p->t_last_draw = 0;
    p->enabled = isatty(STDERR_FILENO) && log_level >= TN_LOG_INFO;
}

static void draw(tn_progress *p) {
    const int width = 30;
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 0.0;
    if (frac > 1) frac = 1;
    int filled = (int)(frac * width);
    double el = tn_time_s() - p->t_start;
    double eta = frac > 0 ? el * (1 - frac) / frac : 0;
    fprintf(stderr, "\r%s [", p->label);
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %5.1f%% %.0fs eta %.0fs ", 100 * frac, el, eta);
    fflush(stderr);
}

void tn_progress_update(tn_progress *p, int64_t done) {
    p->done = done;
    if (!p->enabled) return;
    double now = tn_time_s();
    if (now - p->t_last_draw < 0.1 && done < p->total) return; /* at most 10 redraws a second */
    p->t_last_draw = now;
    draw(p);
}

void tn_progress_end(tn_progress *p) {
    if (!p->enabled) return;
    p->done = p->total;
    draw(p);
    fputc('\n', stderr);
}

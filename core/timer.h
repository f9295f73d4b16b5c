#ifndef TN_CORE_TIMER_H
#define TN_CORE_TIMER_H

/* Seconds on a monotonic clock; differences are meaningful, the origin is not. */
double tn_time_s(void);
/* Peak resident set size of this process in bytes (from /proc/self/status VmHWM), 0 if unknown. */
long long tn_peak_rss_bytes(void);
/* Restart the peak RSS count at the current RSS (Linux: /proc/self/clear_refs); -1 where unsupported, and
 * the peak then stays the process's. */
int tn_peak_rss_reset(void);

/* For timing statistics: sort v[0..n) ascending in place; the median of v[0..n) (sorts v; the mean of
 * the middle two for even n). */
void tn_sort_doubles(double *v, int n);
double tn_median(double *v, int n);

#endif

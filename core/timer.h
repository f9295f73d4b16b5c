#ifndef TN_CORE_TIMER_H
#define TN_CORE_TIMER_H

/* Seconds on a monotonic clock; differences are meaningful, the origin is not. */
double tn_time_s(void);
/* Peak resident set size of this process in bytes (from /proc/self/status VmHWM), 0 if unknown. */
long long tn_peak_rss_bytes(void);

#endif

/* JSON output: one object per line. Built with cJSON, which also parses JSON input elsewhere. */
#ifndef TN_CORE_JSON_H
#define TN_CORE_JSON_H

#include <cjson/cJSON.h>
#include <stdio.h>

/* Print obj as one line (no spaces) followed by '\n' and flush. Returns 0, or -1 on failure. */
int tn_json_print_line(FILE *f, const cJSON *obj);
/* Add a number, or null if it is not finite (JSON has no NaN). */
void tn_json_add_num(cJSON *obj, const char *key, double v);

#endif

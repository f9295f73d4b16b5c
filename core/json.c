#include "core/json.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>

int tn_json_print_line(FILE *f, const cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    if (!s) return tn_err("json: out of memory");
    int ok = fputs(s, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0;
    free(s);
    return ok ? 0 : tn_err("json: write failed");
}

void tn_json_add_num(cJSON *obj, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_AddNullToObject(obj, key);
}

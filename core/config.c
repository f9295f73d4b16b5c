#include "core/config.h"
#include "core/error.h"

#include <ini.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    char *section, *key, *value;
    int used;
} entry;

struct tn_config {
    entry *e;
    int n, cap;
};

tn_config *tn_config_new(void) {
    tn_config *c = calloc(1, sizeof *c);
    if (!c) tn_err("config: out of memory");
    return c;
}

void tn_config_free(tn_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].section);
        free(c->e[i].key);
        free(c->e[i].value);
    }
    free(c->e);
    free(c);
}

static entry *find(const tn_config *c, const char *section, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->e[i].section, section) == 0 && strcmp(c->e[i].key, key) == 0) return &c->e[i];
    return NULL;
}

int tn_config_put(tn_config *c, const char *section, const char *key, const char *value) {
    entry *e = find(c, section, key);
    if (e) {
        char *v = strdup(value);
        if (!v) return tn_err("config: out of memory");
        free(e->value);
        e->value = v;
        return 0;
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 32;
        entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne) return tn_err("config: out of memory");
        c->e = ne;
        c->cap = cap;
    }
    e = &c->e[c->n];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->used = 0;
    if (!e->section || !e->key || !e->value) {
        free(e->section);
        free(e->key);
        free(e->value);
        return tn_err("config: out of memory");
    }
    c->n++;
    return 0;
}

static int on_ini(void *user, const char *section, const char *key, const char *value) {
    return tn_config_put((tn_config *)user, section, key, value) == 0;
}

int tn_config_load(tn_config *c, const char *path) {
    int rc = ini_parse(path, on_ini, c);
    if (rc == -1) return tn_err("%s: cannot open", path);
    if (rc == -2) return tn_err("%s: out of memory", path);
    if (rc > 0) return tn_err("%s: line %d: not a valid INI line", path, rc);
    return 0;
}

int tn_config_set(tn_config *c, const char *assignment) {
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot == assignment || eq == dot + 1)
        return tn_err("override '%s': expected section.key=value", assignment);
    char section[128], key[128];
    size_t ls = (size_t)(dot - assignment), lk = (size_t)(eq - dot - 1);
    if (ls >= sizeof section || lk >= sizeof key) return tn_err("override '%s': name too long", assignment);
    memcpy(section, assignment, ls);
    section[ls] = '\0';
    memcpy(key, dot + 1, lk);
    key[lk] = '\0';
    return tn_config_put(c, section, key, eq + 1);
}

int tn_config_has(const tn_config *c, const char *section, const char *key) {
    return find(c, section, key) != NULL;
}

const char *tn_config_str(tn_config *c, const char *section, const char *key, const char *def) {
    entry *e = find(c, section, key);
    if (!e) return def;
    e->used = 1;
    return e->value;
}

int tn_config_str_req(tn_config *c, const char *section, const char *key, const char **out) {
    const char *v = tn_config_str(c, section, key, NULL);
    if (!v) return tn_err("missing config key [%s] %s", section, key);
    *out = v;
    return 0;
}

static int parse_int(const char *section, const char *key, const char *s, int64_t *out) {
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 0);
    /* Accept "1e6"-style integers too, common in ML configs. */
    if (end != s && (*end == 'e' || *end == 'E')) {
        double d = strtod(s, &end);
        if (*end == '\0' && d == floor(d) && fabs(d) < 9e18) {
            *out = (int64_t)d;
            return 0;
        }
    }
    if (errno || end == s || *end != '\0')
        return tn_err("config key [%s] %s: '%s' is not an integer", section, key, s);
    *out = v;
    return 0;
}

int tn_config_int(tn_config *c, const char *section, const char *key, int64_t def, int64_t *out) {
    const char *v = tn_config_str(c, section, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    return parse_int(section, key, v, out);
}

int tn_config_int_req(tn_config *c, const char *section, const char *key, int64_t *out) {
    const char *v = NULL;
    TN_CHECK(tn_config_str_req(c, section, key, &v));
    return parse_int(section, key, v, out);
}

static int parse_float(const char *section, const char *key, const char *s, double *out) {
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return tn_err("config key [%s] %s: '%s' is not a finite number", section, key, s);
    *out = v;
    return 0;
}

int tn_config_float(tn_config *c, const char *section, const char *key, double def, double *out) {
    const char *v = tn_config_str(c, section, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    return parse_float(section, key, v, out);
}

int tn_config_float_req(tn_config *c, const char *section, const char *key, double *out) {
    const char *v = NULL;
    TN_CHECK(tn_config_str_req(c, section, key, &v));
    return parse_float(section, key, v, out);
}

int tn_config_bool(tn_config *c, const char *section, const char *key, int def, int *out) {
    const char *v = tn_config_str(c, section, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) {
        *out = 0;
        return 0;
    }
    return tn_err("config key [%s] %s: '%s' is not a boolean", section, key, v);
}

int tn_config_check_unused(const tn_config *c) {
    for (int i = 0; i < c->n; i++)
        if (!c->e[i].used) return tn_err("unknown config key [%s] %s (see docs/CONFIG.md)", c->e[i].section, c->e[i].key);
    return 0;
}

int tn_config_count(const tn_config *c) { return c->n; }

void tn_config_entry(const tn_config *c, int i, const char **section, const char **key, const char **value) {
    *section = c->e[i].section;
    *key = c->e[i].key;
    *value = c->e[i].value;
}

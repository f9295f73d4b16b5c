#include "data/unicode.h"

int tn_utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

int tn_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len = tn_utf8_len(c);
    *cp = 0xFFFFFFFFu;
    if (len == 1 || (size_t)len > n) return 1;
    uint32_t v = c & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8 (RFC 3629). */
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for_len[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return len;
}

size_t tn_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = tn_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFFFFFFu) return i;
        i += (size_t)k;
    }
    return (size_t)-1;
}

int tn_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tn_uni_class(uint32_t cp) {
    if (cp > 0x10FFFF) return TN_UNI_OTHER;
    if (cp < 0x80) {
        /* ASCII fast path (same answers as the table). */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return TN_UNI_LETTER;
        if (cp >= '0' && cp <= '9') return TN_UNI_NUMBER;
        if (cp < 0x21 || cp == 0x7F) return TN_UNI_OTHER;
        if (cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' || cp == '`' || cp == '|' ||
            cp == '~')
            return TN_UNI_SYMBOL;
        return TN_UNI_PUNCT;
    }
    int lo = 0, hi = tn_uni_n_ranges - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tn_uni_range_first[mid] <= cp) lo = mid;
        else hi = mid - 1;
    }
    return tn_uni_range_class[lo];
}

/* The White_Space property (Unicode PropList.txt), which is what \s matches in Unicode regex engines. */
int tn_uni_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

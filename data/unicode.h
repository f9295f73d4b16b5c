/* The few Unicode facts the tokenizers need: UTF-8 decoding and validation, and the general-category
 * class of a code point (letter, number, punctuation, symbol, mark) plus the White_Space property, which
 * is what \p{L}, \p{N}, \p{P}, \p{S}, \p{M} and \s mean in the pre-tokenizer regexes. */
#ifndef TN_DATA_UNICODE_H
#define TN_DATA_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum { TN_UNI_OTHER = 0, TN_UNI_LETTER = 1, TN_UNI_NUMBER = 2, TN_UNI_PUNCT = 3, TN_UNI_SYMBOL = 4, TN_UNI_MARK = 5 };

/* Decode one code point from s[0..n), n >= 1. Returns its byte length (1..4); an invalid or truncated
 * sequence (overlong, surrogate, > U+10FFFF) returns 1 and *cp = 0xFFFFFFFF ("not a character"). */
int tn_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Byte offset of the first invalid UTF-8 sequence, or -1 (SIZE_MAX cast) when s is valid. */
size_t tn_utf8_check(const uint8_t *s, size_t n);
/* Length of the UTF-8 sequence starting with byte c (1 for a stray continuation byte). */
int tn_utf8_len(uint8_t c);
/* Encode cp (<= 0x10FFFF) into out; returns the byte count. */
int tn_utf8_encode(uint32_t cp, char out[4]);

int tn_uni_class(uint32_t cp);
int tn_uni_is_space(uint32_t cp);

/* Generated tables (unicode_data.c). */
extern const uint32_t tn_uni_range_first[];
extern const uint8_t tn_uni_range_class[];
extern const int tn_uni_n_ranges;

#endif

#ifndef TN_CORE_CRC32_H
#define TN_CORE_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 (IEEE 802.3, zlib's). Start with crc = 0; feed pieces in order. */
uint32_t tn_crc32(uint32_t crc, const void *data, size_t len);

#endif

/* Files: read-only memory maps, whole-file reads, and atomic replacement (write to a temporary name in
 * the same directory, fsync, rename, fsync the directory) so that nothing already on disk is lost if a
 * write is interrupted. */
#ifndef TN_CORE_FILEIO_H
#define TN_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    int fd;
    void *region;       /* tn_load_file_huge: the anonymous mapping that holds data (NULL for a file map) */
    size_t region_size;
} tn_mapped_file;

/* Map a whole file read-only. An empty file maps to data == NULL, size == 0. */
int tn_map_file(const char *path, tn_mapped_file *m);
/* size bytes (> 0) of private anonymous memory, zeroed, starting on a 2 MiB boundary and advised for
 * transparent huge pages (MADV_HUGEPAGE; the kernel may still give 4 KiB pages). *region and *span are
 * what to munmap. NULL when there is no memory (no error set). */
uint8_t *tn_huge_alloc(size_t size, void **region, size_t *span);
/* Read a whole file into private anonymous memory aligned to 2 MiB and advised for transparent huge
 * pages (MADV_HUGEPAGE), then make it read-only: for data read over and over in long streams (a model's
 * weights, every decoded token), which 4 KiB pages slow down (a TLB miss every 4 KiB, and the hardware
 * prefetchers stop at page boundaries). A page-cache map gets such pages only where the kernel and file
 * system give the file large folios. Costs a copy of the file in memory; where the kernel's MemAvailable
 * does not hold it with 10% to spare, or the allocation fails, the file is mapped instead (tn_map_file)
 * with a warning. Released by tn_unmap_file. */
int tn_load_file_huge(const char *path, tn_mapped_file *m);
void tn_unmap_file(tn_mapped_file *m);

/* Read a whole file into a malloc'd, NUL-terminated buffer. */
int tn_read_file(const char *path, char **data, size_t *size);

/* The temporary name for an atomic write of `path` (caller frees). */
char *tn_tmp_path_for(const char *path);
/* fsync `tmp_path`, rename it to `path`, fsync the directory. On failure `tmp_path` is removed. */
int tn_commit_file(const char *tmp_path, const char *path);
/* Write a buffer atomically. */
int tn_write_file_atomic(const char *path, const void *data, size_t size);

int tn_file_exists(const char *path);
int tn_mkdir_p(const char *path);

#endif

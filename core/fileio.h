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
} tn_mapped_file;

/* Map a whole file read-only. An empty file maps to data == NULL, size == 0. */
int tn_map_file(const char *path, tn_mapped_file *m);
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

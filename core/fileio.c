#include "core/fileio.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Open path read-only; *fd and *size on success, else an error naming the file (nothing left open). */
static int open_regular(const char *path, int *fd, size_t *size) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return tn_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        const int e = errno;
        close(*fd);
        *fd = -1;
        return tn_err("%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return tn_err("%s: not a regular file", path);
    }
    *size = (size_t)st.st_size;
    return 0;
}

int tn_map_file(const char *path, tn_mapped_file *m) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = -1;
    size_t size = 0;
    TN_CHECK(open_regular(path, &fd, &size));
    m->fd = fd;
    m->size = size;
    if (m->size == 0) return 0;
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        m->fd = -1;
        return tn_err("%s: mmap: %s", path, strerror(e));
    }
    m->data = p;
    return 0;
}

uint8_t *tn_huge_alloc(size_t size, void **region, size_t *span) {
    const size_t huge = (size_t)2 << 20;
    *span = (size + huge - 1) / huge * huge + huge; /* one more, to start on a boundary */
    void *r = mmap(NULL, *span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return NULL;
    *region = r;
    uint8_t *data = (uint8_t *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
    (void)madvise(data, *span - (size_t)(data - (uint8_t *)r), MADV_HUGEPAGE); /* advice: refusal is no error */
#endif
    return data;
}

/* MemAvailable of /proc/meminfo in bytes (the kernel's estimate of what can be had without swapping),
 * or -1 where it cannot be read. */
static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

int tn_load_file_huge(const char *path, tn_mapped_file *m) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = -1;
    size_t size = 0;
    TN_CHECK(open_regular(path, &fd, &size));
    if (size == 0) {
        close(fd);
        return 0;
    }
    /* With overcommit an anonymous map rarely fails; the copy would then die of the OOM killer while it
     * reads. So it is only tried where the kernel says the memory is there, with room to spare. */
    const int64_t avail = mem_available();
    void *region = NULL;
    size_t span = 0;
    uint8_t *data = avail < 0 || (int64_t)size < avail / 10 * 9 ? tn_huge_alloc(size, &region, &span) : NULL;
    if (!data) { /* a map needs no memory of its own: the page cache holds it */
        close(fd);
        tn_log_warn("%s: no memory for a copy of %zu bytes in huge pages (%.0f MiB available); mapping the file "
                    "instead", path, size, avail < 0 ? -1.0 : (double)avail / 1048576.0);
        return tn_map_file(path, m);
    }
    size_t done = 0;
    while (done < size) {
        const ssize_t r = pread(fd, data + done, size - done, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            const int e = r < 0 ? errno : 0;
            munmap(region, span);
            close(fd);
            return r < 0 ? tn_err("%s: read: %s", path, strerror(e)) : tn_err("%s: shorter than its size", path);
        }
        done += (size_t)r;
    }
    close(fd);
    (void)mprotect(region, span, PROT_READ); /* as a map: nothing writes into the weights */
    m->data = data;
    m->size = size;
    m->region = region;
    m->region_size = span;
    return 0;
}

void tn_unmap_file(tn_mapped_file *m) {
    if (m->region) munmap(m->region, m->region_size);
    else if (m->data) munmap((void *)m->data, m->size);
    m->region = NULL;
    m->region_size = 0;
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
}

int tn_read_file(const char *path, char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return tn_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return tn_err("%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return tn_err("%s: out of memory (%zu bytes)", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return tn_err("%s: read failed", path);
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return 0;
}

char *tn_tmp_path_for(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (!t) {
        tn_err("out of memory");
        return NULL;
    }
    snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int tn_commit_file(const char *tmp_path, const char *path) {
    if (fsync_path(tmp_path, 0) != 0) {
        int e = errno;
        unlink(tmp_path);
        return tn_err("%s: fsync: %s", tmp_path, strerror(e));
    }
    if (rename(tmp_path, path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return tn_err("%s: rename: %s", path, strerror(e));
    }
    char *copy = strdup(path);
    if (copy) {
        fsync_path(dirname(copy), 1); /* best effort: some filesystems refuse directory fsync */
        free(copy);
    }
    return 0;
}

int tn_write_file_atomic(const char *path, const void *data, size_t size) {
    char *tmp = tn_tmp_path_for(path);
    if (!tmp) return -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tn_err("%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int ok = (size == 0 || fwrite(data, 1, size, f) == size);
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        unlink(tmp);
        tn_err("%s: write failed", path);
        free(tmp);
        return -1;
    }
    int rc = tn_commit_file(tmp, path);
    free(tmp);
    return rc;
}

int tn_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int tn_mkdir_p(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return tn_err("%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return tn_err("%s: mkdir: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return tn_err("%s: mkdir: %s", buf, strerror(errno));
    return 0;
}

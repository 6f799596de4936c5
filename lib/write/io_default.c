/* The libc I/O table: each entry is its namesake, ctx ignored. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io.h"

static int d_openat(void *ctx, int dirfd, const char *path, int flags, unsigned mode)
{
    (void)ctx;
    return openat(dirfd, path, flags, (mode_t)mode);
}

static ssize_t d_write(void *ctx, int fd, const void *buf, size_t n)
{
    (void)ctx;
    return write(fd, buf, n);
}

static int d_fchmod(void *ctx, int fd, unsigned mode)
{
    (void)ctx;
    return fchmod(fd, (mode_t)mode);
}

static int d_fsync(void *ctx, int fd)
{
    (void)ctx;
    return fsync(fd);
}

static int d_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd);
}

static int d_renameat(void *ctx, int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    (void)ctx;
    return renameat(olddirfd, oldpath, newdirfd, newpath);
}

static int d_unlinkat(void *ctx, int dirfd, const char *path, int flags)
{
    (void)ctx;
    return unlinkat(dirfd, path, flags);
}

static ssize_t d_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t offset)
{
    (void)ctx;
    return pwrite(fd, buf, n, (off_t)offset);
}

static ssize_t d_copy_file_range(void *ctx, int in_fd, uint64_t *in_offset, int out_fd, uint64_t *out_offset,
                                 size_t n)
{
    (void)ctx;
    loff_t in = (loff_t)*in_offset, out = (loff_t)*out_offset;
    ssize_t r = copy_file_range(in_fd, &in, out_fd, &out, n, 0);
    *in_offset = (uint64_t)in;
    *out_offset = (uint64_t)out;
    return r;
}

static const lora_io default_io = {d_openat,   d_write,    d_fchmod, d_fsync,          d_close, d_renameat,
                                   d_unlinkat, NULL,       d_pwrite, d_copy_file_range};

const lora_io *lora_io_default(void) { return &default_io; }

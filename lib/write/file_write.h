/*
 * file_write.h - pieces of lora_writer_write_file (crash-safe write recipe,
 * /work/shared/docs/robustness.md section 4). Not installed.
 */
#ifndef LORA_FILE_WRITE_H
#define LORA_FILE_WRITE_H

#include "writer.h"

/* The file the caller named, after the checks that need no writing. */
typedef struct {
    char *dir;        /* owned (one allocation with base): where the temp file goes */
    const char *base; /* last path component, inside the same allocation */
    int exists;       /* a regular file is there now */
    unsigned mode;    /* its permission bits when it exists */
} lora_wtarget;

/* Step 1: lstat the target; a symlink is followed (git's default: the link
 * stays, the file it names is replaced) and must lead to a regular file or
 * to nothing; a directory, device, FIFO or socket is NOT_REGULAR_FILE; an
 * input with the same (st_dev, st_ino) is SAME_FILE. */
lora_status lora_wtarget_resolve(const lora_allocator *a, const char *path, const lora_write_options *opts,
                                 lora_wtarget *t, lora_error *err);
void lora_wtarget_free(const lora_allocator *a, lora_wtarget *t);

/* errno of a failed call -> status: ENOSPC and EDQUOT are NO_SPACE, the
 * rest IO. */
lora_status lora_errno_status(int e);
/* Fill err with "<what> '<name>': <strerror>" and the status of e. */
lora_status lora_errno_error(lora_error *err, int e, const char *what, const char *name);

/* System calls through the I/O table, retried on EINTR where a retry is
 * safe; each returns 0 or an errno value. */
int lora_x_openat(const lora_io *io, int dirfd, const char *path, int flags, unsigned mode, int *fd);
int lora_x_write_all(const lora_io *io, int fd, const void *buf, uint64_t n);
int lora_x_fchmod(const lora_io *io, int fd, unsigned mode);
int lora_x_fsync(const lora_io *io, int fd);
int lora_x_close(const lora_io *io, int fd);
int lora_x_renameat(const lora_io *io, int dirfd, const char *from, const char *to);
int lora_x_unlinkat(const lora_io *io, int dirfd, const char *path);

/* Write-combining output: small blobs and padding are gathered into one
 * buffer so an adapter of many tiny blobs does not cost a syscall each;
 * large blobs go straight from the writer's copy. */
typedef struct {
    const lora_io *io;
    int fd;
    uint8_t *buf;
    size_t cap, len;
} lora_wout;

int lora_wout_put(lora_wout *o, const void *p, uint64_t n);   /* 0 or errno */
int lora_wout_zeros(lora_wout *o, uint64_t n);
int lora_wout_flush(lora_wout *o);

#endif /* LORA_FILE_WRITE_H */

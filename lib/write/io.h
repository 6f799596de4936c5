/*
 * io.h - the system calls of the crash-safe output (lib/write/afile.h:
 * lora_writer_write_file, every exporter, lora-merge), as a table.
 *
 * The crash-safe write is only as good as its handling of every failing
 * call, and real disks rarely fail on cue. Routing the calls through this
 * table lets tests fail the Nth one with EINTR, a short write, EIO or ENOSPC
 * (SQLite's os.c countdown, as a table instead of globals). Internal: not in
 * lib/lora.h and not exported from the shared library.
 *
 * Every entry follows its libc namesake (return value and errno) and gets
 * `ctx` first. The reader used to verify the temp file does its own I/O.
 */
#ifndef LORA_WRITE_IO_H
#define LORA_WRITE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct lora_writer lora_writer;

typedef struct lora_io {
    int (*openat)(void *ctx, int dirfd, const char *path, int flags, unsigned mode);
    ssize_t (*write)(void *ctx, int fd, const void *buf, size_t n);
    int (*fchmod)(void *ctx, int fd, unsigned mode);
    int (*fsync)(void *ctx, int fd);
    int (*close)(void *ctx, int fd);
    int (*renameat)(void *ctx, int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
    int (*unlinkat)(void *ctx, int dirfd, const char *path, int flags);
    void *ctx;
    /* Positional output (lora_afile_pwrite, lora_afile_copy_range): may be
     * called from several threads at once. After ctx so that a table
     * written before they existed keeps its meaning; NULL means libc. */
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, uint64_t offset);
    ssize_t (*copy_file_range)(void *ctx, int in_fd, uint64_t *in_offset, int out_fd, uint64_t *out_offset,
                               size_t n);
} lora_io;

/* The libc table (static, immutable). */
const lora_io *lora_io_default(void);

/* Tests only: make `w` use `io` (borrowed; it must outlive the writer's
 * writes). NULL restores libc. */
void lora_writer_set_io_for_testing(lora_writer *w, const lora_io *io);

#endif /* LORA_WRITE_IO_H */

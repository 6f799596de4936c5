/*
 * syscalls.c - the write path's system calls: EINTR policy, full writes,
 * errno to status.
 *
 * EINTR means the call was interrupted before it did anything, so open,
 * write, fchmod, rename and unlink simply go again. fsync is retried on
 * EINTR only: an interrupted fsync has not reported a writeback result, but
 * any real error (EIO, ENOSPC) is final: on Linux the failed pages are
 * marked clean and a second fsync would "succeed" with the data lost
 * (PostgreSQL's fsyncgate). close is never retried: Linux releases the
 * descriptor even when close reports EINTR, and a retry could close a
 * descriptor another thread has just been given.
 */
#include <errno.h>
#include <string.h>
#include "file_write.h"

lora_status lora_errno_status(int e)
{
    return e == ENOSPC || e == EDQUOT ? LORA_E_NO_SPACE : LORA_E_IO;
}

lora_status lora_errno_error(lora_error *err, int e, const char *what, const char *name)
{
    char buf[128];
    const char *msg = strerror_r(e, buf, sizeof buf); /* GNU variant: thread-safe */
    return lora_error_set(err, lora_errno_status(e), LORA_NO_OFFSET, "%s '%s': %s", what, name, msg);
}

/* errno, or EIO if a broken callee left it zero (a failure must never read
 * as success). */
static int last_errno(void) { return errno ? errno : EIO; }

int lora_x_openat(const lora_io *io, int dirfd, const char *path, int flags, unsigned mode, int *fd)
{
    for (;;) {
        errno = 0;
        *fd = io->openat(io->ctx, dirfd, path, flags, mode);
        if (*fd >= 0) return 0;
        if (errno != EINTR) return last_errno();
    }
}

int lora_x_write_all(const lora_io *io, int fd, const void *buf, uint64_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        /* Linux writes at most ~2 GiB per call; ask for less than that. */
        size_t chunk = n > (UINT64_C(1) << 30) ? (size_t)1 << 30 : (size_t)n;
        errno = 0;
        ssize_t r = io->write(io->ctx, fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return last_errno();
        }
        /* A zero-byte write for a non-empty request would loop forever. */
        if (r == 0 || (size_t)r > chunk) return EIO;
        p += r;
        n -= (uint64_t)r;
    }
    return 0;
}

#define RETRY_ON_EINTR(call)                     \
    for (;;) {                                   \
        errno = 0;                               \
        if ((call) == 0) return 0;               \
        if (errno != EINTR) return last_errno(); \
    }

int lora_x_fchmod(const lora_io *io, int fd, unsigned mode) { RETRY_ON_EINTR(io->fchmod(io->ctx, fd, mode)) }
int lora_x_fsync(const lora_io *io, int fd) { RETRY_ON_EINTR(io->fsync(io->ctx, fd)) }

int lora_x_renameat(const lora_io *io, int dirfd, const char *from, const char *to)
{
    RETRY_ON_EINTR(io->renameat(io->ctx, dirfd, from, dirfd, to))
}

int lora_x_unlinkat(const lora_io *io, int dirfd, const char *path) { RETRY_ON_EINTR(io->unlinkat(io->ctx, dirfd, path, 0)) }

int lora_x_close(const lora_io *io, int fd)
{
    errno = 0;
    if (io->close(io->ctx, fd) == 0 || errno == EINTR) return 0;
    return last_errno();
}

/* ---- write-combining output ---- */

int lora_wout_flush(lora_wout *o)
{
    int e = lora_x_write_all(o->io, o->fd, o->buf, o->len);
    o->len = 0;
    return e;
}

int lora_wout_put(lora_wout *o, const void *p, uint64_t n)
{
    if (n > o->cap - o->len) {
        int e = lora_wout_flush(o);
        if (e) return e;
    }
    if (n >= o->cap) return lora_x_write_all(o->io, o->fd, p, n);
    memcpy(o->buf + o->len, p, (size_t)n);
    o->len += (size_t)n;
    return 0;
}

int lora_wout_zeros(lora_wout *o, uint64_t n)
{
    static const uint8_t zeros[LORA_FMT_BLOB_ALIGN];
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        int e = lora_wout_put(o, zeros, k);
        if (e) return e;
        n -= k;
    }
    return 0;
}

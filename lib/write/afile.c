/*
 * afile.c - the crash-safe output file (see afile.h for the recipe and the
 * mode rules).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "afile.h"
#include "file_write.h"

#define STAGE_SIZE ((size_t)64 << 10)
#define TEMP_BASE_MAX 200  /* keeps ".<base>.XXXXXX.tmp" under NAME_MAX (255) */
#define TEMP_ATTEMPTS 100

struct lora_afile {
    lora_allocator alloc;
    const lora_io *io;
    lora_wtarget target;
    lora_wout out;        /* write-combining stage over fd */
    char *path;           /* the target as the caller named it */
    char *tmp_path;       /* "<dir>/<tmp_name>" */
    char *tmp_name;       /* inside tmp_path */
    int dirfd, fd;
    int temp_exists;      /* ours to unlink on failure */
    int sealed;           /* lora_afile_seal: 1 done (fd closed, bytes on disk), -1 failed */
    unsigned final_mode;  /* 0: keep the mode given at creation */
};

lora_status lora_write_options_check(const lora_write_options *opts, lora_error *err)
{
    if (!opts) return LORA_OK;
    int reserved = opts->reserved0 != 0;
    for (int i = 0; i < 4; i++) reserved |= opts->reserved[i] != 0;
    if (reserved)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "write options: reserved field not zero");
    if (opts->mode & ~07777u)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "write options: mode %#o has non-permission bits", opts->mode);
    if (opts->input_count && !opts->inputs)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "write options: inputs is NULL");
    return LORA_OK;
}

/* Six characters unlikely to collide with another writer's: getrandom when
 * it has entropy, always mixed with pid, time and the attempt number. */
static void temp_suffix(char *out, unsigned attempt)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t seed[4] = {0, (uint64_t)getpid(), 0, attempt};
    struct timespec ts;
    if (getrandom(&seed[0], sizeof seed[0], GRND_NONBLOCK) != (ssize_t)sizeof seed[0]) seed[0] = 0;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) seed[2] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t h = lora_xxh3(seed, sizeof seed);
    for (int i = 0; i < 6; i++) {
        out[i] = alphabet[h % 62];
        h /= 62;
    }
}

/* Allocate "<dir>/.<base>.XXXXXX.tmp" (suffix filled per attempt). */
static lora_status temp_path_alloc(lora_afile *f, lora_error *err)
{
    size_t dir_len = strlen(f->target.dir), base_len = strlen(f->target.base);
    if (base_len > TEMP_BASE_MAX) base_len = TEMP_BASE_MAX;
    int sep = dir_len > 0 && f->target.dir[dir_len - 1] != '/';
    char *p = lora_mem_alloc(&f->alloc, dir_len + (size_t)sep + 1 + base_len + 1 + 6 + 4 + 1);
    if (!p) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    memcpy(p, f->target.dir, dir_len);
    if (sep) p[dir_len] = '/';
    char *name = p + dir_len + (size_t)sep;
    name[0] = '.';
    memcpy(name + 1, f->target.base, base_len);
    memcpy(name + 1 + base_len, ".XXXXXX.tmp", 12);
    f->tmp_path = p;
    f->tmp_name = name;
    return LORA_OK;
}

/* Step 2. O_EXCL|O_NOFOLLOW: never reuse or follow anything already there. */
static lora_status create_temp(lora_afile *f, const lora_write_options *opts, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(temp_path_alloc(f, err));
    if (f->target.exists) f->final_mode = f->target.mode;
    else if (opts && opts->mode) f->final_mode = opts->mode;
    unsigned create_mode = f->final_mode ? 0600u : 0644u;
    char *suffix = f->tmp_name + strlen(f->tmp_name) - 10;
    for (unsigned attempt = 0; attempt < TEMP_ATTEMPTS; attempt++) {
        temp_suffix(suffix, attempt);
        int e = lora_x_openat(f->io, f->dirfd, f->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                              create_mode, &f->fd);
        if (e == 0) {
            f->temp_exists = 1;
            f->out.fd = f->fd;
            return LORA_OK;
        }
        if (e != EEXIST) return lora_errno_error(err, e, "cannot create a temporary file in", f->target.dir);
    }
    return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "no unused temporary file name in '%s'", f->target.dir);
}

/* Undo whatever is still ours and free. Failures here change nothing for
 * the caller: the status already says what happened. */
static void release(lora_afile *f)
{
    const lora_allocator a = f->alloc;
    if (f->fd >= 0) (void)lora_x_close(f->io, f->fd);
    if (f->temp_exists) (void)lora_x_unlinkat(f->io, f->dirfd, f->tmp_name);
    if (f->dirfd >= 0) (void)lora_x_close(f->io, f->dirfd);
    lora_mem_free(&a, f->tmp_path);
    lora_mem_free(&a, f->out.buf);
    lora_mem_free(&a, f->path);
    lora_wtarget_free(&a, &f->target);
    lora_mem_free(&a, f);
}

lora_status lora_afile_open(const lora_allocator *a, const lora_io *io, const char *path,
                            const lora_write_options *opts, lora_afile **out, lora_error *err)
{
    if (!out || !path || !*path)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "output path is NULL or empty");
    *out = NULL;
    LORA_FORWARD_IF_ERROR(lora_write_options_check(opts, err));
    lora_afile *f = lora_mem_calloc(a, 1, sizeof *f);
    if (!f) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    if (a) f->alloc = *a;
    f->io = io ? io : lora_io_default();
    f->dirfd = f->fd = -1;
    f->out.io = f->io;
    f->out.fd = -1;
    f->out.cap = STAGE_SIZE;
    size_t path_len = strlen(path);
    f->out.buf = lora_mem_alloc(&f->alloc, STAGE_SIZE);
    f->path = lora_mem_alloc(&f->alloc, path_len + 1);
    if (!f->out.buf || !f->path) {
        release(f);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    memcpy(f->path, path, path_len + 1);
    lora_status st = lora_wtarget_resolve(&f->alloc, path, opts, &f->target, err);
    if (st == LORA_OK) {
        int e = lora_x_openat(f->io, AT_FDCWD, f->target.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, &f->dirfd);
        if (e) st = lora_errno_error(err, e, "cannot open the directory", f->target.dir);
    }
    if (st == LORA_OK) st = create_temp(f, opts, err);
    if (st != LORA_OK) {
        release(f);
        return st;
    }
    *out = f;
    return LORA_OK;
}

lora_status lora_afile_write(lora_afile *f, const void *data, uint64_t size, lora_error *err)
{
    int e = lora_wout_put(&f->out, data, size);
    return e ? lora_errno_error(err, e, "cannot write", f->tmp_path) : LORA_OK;
}

lora_status lora_afile_zeros(lora_afile *f, uint64_t size, lora_error *err)
{
    int e = lora_wout_zeros(&f->out, size);
    return e ? lora_errno_error(err, e, "cannot write", f->tmp_path) : LORA_OK;
}

lora_status lora_afile_flush(lora_afile *f, lora_error *err)
{
    int e = lora_wout_flush(&f->out);
    return e ? lora_errno_error(err, e, "cannot write", f->tmp_path) : LORA_OK;
}

lora_status lora_afile_start_writeback(lora_afile *f, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_afile_flush(f, err));
    (void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    return LORA_OK;
}

/* The table's positional calls, or libc's when a table has none. */
static ssize_t io_pwrite(const lora_afile *f, const void *p, size_t n, uint64_t offset)
{
    if (f->io->pwrite) return f->io->pwrite(f->io->ctx, f->fd, p, n, offset);
    return pwrite(f->fd, p, n, (off_t)offset);
}

static ssize_t io_copy_file_range(const lora_afile *f, int in_fd, uint64_t *in_offset, uint64_t *offset, size_t n)
{
    if (f->io->copy_file_range) return f->io->copy_file_range(f->io->ctx, in_fd, in_offset, f->fd, offset, n);
    loff_t in = (loff_t)*in_offset, out = (loff_t)*offset;
    ssize_t r = copy_file_range(in_fd, &in, f->fd, &out, n, 0);
    *in_offset = (uint64_t)in;
    *offset = (uint64_t)out;
    return r;
}

lora_status lora_afile_pwrite(lora_afile *f, const void *data, size_t n, uint64_t offset, lora_error *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n; /* Linux writes < 2 GiB per call */
        errno = 0;
        ssize_t r = io_pwrite(f, p, chunk, offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || (size_t)r > chunk)
            return lora_errno_error(err, r < 0 && errno ? errno : EIO, "cannot write", f->tmp_path);
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return LORA_OK;
}

/* The fallback of lora_afile_copy_range: pread, then pwrite. */
static lora_status copy_by_reads(lora_afile *f, int in_fd, uint64_t in_offset, uint64_t n, uint64_t offset,
                                 lora_error *err)
{
    const size_t cap = (size_t)1 << 20;
    uint8_t *buf = lora_mem_alloc(&f->alloc, cap);
    if (!buf) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status st = LORA_OK;
    while (n > 0 && st == LORA_OK) {
        size_t chunk = n < cap ? (size_t)n : cap;
        ssize_t r = pread(in_fd, buf, chunk, (off_t)in_offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = r < 0 ? lora_errno_error(err, errno, "cannot read the input of", f->tmp_path)
                       : lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "an input of '%s' ended early", f->tmp_path);
            break;
        }
        st = lora_afile_pwrite(f, buf, (size_t)r, offset, err);
        in_offset += (uint64_t)r;
        offset += (uint64_t)r;
        n -= (uint64_t)r;
    }
    lora_mem_free(&f->alloc, buf);
    return st;
}

lora_status lora_afile_copy_range(lora_afile *f, int in_fd, uint64_t in_offset, uint64_t n, uint64_t offset,
                                  lora_error *err)
{
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n;
        /* The offsets are advanced by what was copied, below, not by the call. */
        uint64_t in = in_offset, out = offset;
        errno = 0;
        ssize_t r = io_copy_file_range(f, in_fd, &in, &out, chunk);
        if (r < 0 && errno == EINTR) continue;
        /* Not between these two files (another file system, an old kernel):
         * the same bytes through user memory. */
        if (r < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF))
            return copy_by_reads(f, in_fd, in_offset, n, offset, err);
        if (r < 0) return lora_errno_error(err, errno ? errno : EIO, "cannot write", f->tmp_path);
        if (r == 0 || (size_t)r > chunk)
            return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "an input of '%s' ended early", f->tmp_path);
        in_offset += (uint64_t)r;
        offset += (uint64_t)r;
        n -= (uint64_t)r;
    }
    return LORA_OK;
}

const char *lora_afile_temp_path(const lora_afile *f) { return f->tmp_path; }

/* Steps 5-6. After close the descriptor is gone whatever close says. */
static lora_status seal(lora_afile *f, lora_error *err)
{
    int e = f->final_mode ? lora_x_fchmod(f->io, f->fd, f->final_mode) : 0;
    if (e) return lora_errno_error(err, e, "cannot set the mode of", f->tmp_path);
    e = lora_x_fsync(f->io, f->fd);
    if (e) return lora_errno_error(err, e, "cannot fsync", f->tmp_path);
    int fd = f->fd;
    f->fd = -1;
    e = lora_x_close(f->io, fd);
    if (e) return lora_errno_error(err, e, "cannot close", f->tmp_path);
    return LORA_OK;
}

/* Steps 7-8. A failed directory fsync is reported, but the rename has
 * happened: the target holds the new file and the temp name is not ours. */
static lora_status publish(lora_afile *f, lora_error *err)
{
    int e = lora_x_renameat(f->io, f->dirfd, f->tmp_name, f->target.base);
    if (e) return lora_errno_error(err, e, "cannot rename the temporary file over", f->path);
    f->temp_exists = 0;
    e = lora_x_fsync(f->io, f->dirfd);
    /* Some file systems cannot sync a directory at all; that is not a
     * failure of this write. */
    if (e && e != EINVAL && e != ENOTSUP)
        return lora_errno_error(err, e, "written, but cannot fsync the directory", f->target.dir);
    return LORA_OK;
}

lora_status lora_afile_seal(lora_afile *f, lora_error *err)
{
    if (!f || f->sealed || f->fd < 0)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "no open output file to seal");
    lora_status st = lora_afile_flush(f, err);
    if (st == LORA_OK) st = seal(f, err);
    f->sealed = st == LORA_OK ? 1 : -1;
    return st;
}

lora_status lora_afile_commit(lora_afile *f, lora_error *err)
{
    if (!f) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "no output file");
    /* A failed fsync is final (fsyncgate): never retried, never renamed. */
    if (f->sealed < 0) {
        release(f);
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "commit after a failed seal");
    }
    lora_status st = f->sealed ? LORA_OK : lora_afile_flush(f, err);
    if (st == LORA_OK && !f->sealed) st = seal(f, err);
    if (st == LORA_OK) st = publish(f, err);
    release(f);
    return st;
}

lora_status lora_afile_commit_all(lora_afile **files, size_t n, lora_error *err)
{
    lora_status st = LORA_OK;
    for (size_t i = 0; i < n && st == LORA_OK; i++) st = lora_afile_seal(files[i], err);
    int renaming = st == LORA_OK;
    lora_error later; /* err keeps the first failure */
    for (size_t i = 0; i < n; i++) {
        lora_afile *f = files[i];
        files[i] = NULL;
        if (!renaming) {
            lora_afile_abort(f);
            continue;
        }
        lora_status s = publish(f, st == LORA_OK ? err : &later);
        renaming = !f->temp_exists; /* renamed: past the point of no return */
        release(f);
        if (st == LORA_OK) st = s;
    }
    return st;
}

void lora_afile_abort(lora_afile *f)
{
    if (f) release(f);
}

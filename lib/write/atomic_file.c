/*
 * atomic_file.c - lora_writer_write_file: the crash-safe write recipe of
 * /work/shared/docs/robustness.md section 4.
 *
 *   1. check the target (target.c)        5. set the mode
 *   2. temp file beside it, O_EXCL        6. fsync, close (never retry a failed fsync)
 *   3. stream header, tables, blobs       7. rename over the target
 *   4. verify the temp with the reader    8. fsync the directory
 *
 * Before step 7 every failure unlinks the temp file and leaves the target
 * untouched; after it the temp name may already belong to someone else, so
 * nothing is unlinked (renameio). The target is never opened for writing.
 *
 * Memory: only the header and tables are built in memory; blobs are written
 * from the writer's own copies, so the peak is the adapter once.
 *
 * Mode. With no target and no opts->mode, the temp file is created 0644 and
 * the kernel applies the umask (and any default ACL) at creation: nothing
 * reads or changes the process-global umask, which would race with other
 * threads. The file is then no more visible while being written than it
 * will be when finished. In every other case it is created 0600 and given
 * its final mode (the existing target's, or opts->mode as given, without
 * umask) by fchmod after verification, so a stricter final mode is never
 * preceded by a looser temp file. (A umask that removes owner read would
 * make step 4 fail with EACCES; such a file could not be read back anyway.)
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "file_write.h"

#define STAGE_SIZE ((size_t)64 << 10)
#define TEMP_BASE_MAX 200  /* keeps ".<base>.XXXXXX.tmp" under NAME_MAX (255) */
#define TEMP_ATTEMPTS 100

typedef struct {
    lora_writer *w;
    const lora_io *io;
    lora_wtarget target;
    lora_wlayout lay;
    uint8_t *tables;      /* [0, data_offset) of the file */
    uint8_t *stage;       /* write-combining buffer */
    char *tmp_path;       /* "<dir>/<tmp_name>", for the verifying reader */
    char *tmp_name;       /* inside tmp_path */
    int dirfd, fd;
    int temp_exists;      /* ours to unlink on failure */
    unsigned final_mode;  /* 0: keep the mode given at creation */
} write_job;

static lora_status check_args(const lora_writer *w, const char *path, const lora_write_options *opts,
                              lora_error *err)
{
    if (!w || !path || !*path)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "writer or path is NULL or empty");
    if (!opts) return LORA_OK;
    int reserved = opts->reserved0 != 0;
    for (int i = 0; i < 4; i++) reserved |= opts->reserved[i] != 0;
    if (reserved)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "write options: reserved field not zero");
    if (opts->mode & ~07777u)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "write options: mode %#o has non-permission bits",
                              opts->mode);
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
static lora_status temp_path_alloc(write_job *j, lora_error *err)
{
    size_t dir_len = strlen(j->target.dir), base_len = strlen(j->target.base);
    if (base_len > TEMP_BASE_MAX) base_len = TEMP_BASE_MAX;
    int sep = dir_len > 0 && j->target.dir[dir_len - 1] != '/';
    char *p = lora_mem_alloc(&j->w->alloc, dir_len + (size_t)sep + 1 + base_len + 1 + 6 + 4 + 1);
    if (!p) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    memcpy(p, j->target.dir, dir_len);
    if (sep) p[dir_len] = '/';
    char *name = p + dir_len + (size_t)sep;
    name[0] = '.';
    memcpy(name + 1, j->target.base, base_len);
    memcpy(name + 1 + base_len, ".XXXXXX.tmp", 12);
    j->tmp_path = p;
    j->tmp_name = name;
    return LORA_OK;
}

/* Step 2. O_EXCL|O_NOFOLLOW: never reuse or follow anything already there. */
static lora_status create_temp(write_job *j, const lora_write_options *opts, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(temp_path_alloc(j, err));
    if (j->target.exists) j->final_mode = j->target.mode;
    else if (opts && opts->mode) j->final_mode = opts->mode;
    unsigned create_mode = j->final_mode ? 0600u : 0644u;
    char *suffix = j->tmp_name + strlen(j->tmp_name) - 10;
    for (unsigned attempt = 0; attempt < TEMP_ATTEMPTS; attempt++) {
        temp_suffix(suffix, attempt);
        int e = lora_x_openat(j->io, j->dirfd, j->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                              create_mode, &j->fd);
        if (e == 0) {
            j->temp_exists = 1;
            return LORA_OK;
        }
        if (e != EEXIST) return lora_errno_error(err, e, "cannot create a temporary file in", j->target.dir);
    }
    return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "no unused temporary file name in '%s'", j->target.dir);
}

/* Step 3: tables from memory, then each blob from the writer's copy. */
static lora_status stream(write_job *j, lora_error *err)
{
    const lora_writer *w = j->w;
    int e = lora_x_write_all(j->io, j->fd, j->tables, j->lay.data_offset);
    lora_wout out = {j->io, j->fd, j->stage, STAGE_SIZE, 0};
    for (uint32_t i = 0; i < w->blob_count && !e; i++) {
        const lora_fmt_blob *b = &w->blobs[i].rec;
        e = lora_wout_put(&out, w->blobs[i].stored, b->stored_size);
        if (!e && i + 1 < w->blob_count) e = lora_wout_zeros(&out, w->blobs[i + 1].rec.offset - b->offset - b->stored_size);
    }
    if (!e) e = lora_wout_flush(&out);
    return e ? lora_errno_error(err, e, "cannot write", j->tmp_path) : LORA_OK;
}

/* Steps 5-6. After close the descriptor is gone whatever close says. */
static lora_status seal(write_job *j, lora_error *err)
{
    int e = j->final_mode ? lora_x_fchmod(j->io, j->fd, j->final_mode) : 0;
    if (e) return lora_errno_error(err, e, "cannot set the mode of", j->tmp_path);
    e = lora_x_fsync(j->io, j->fd);
    if (e) return lora_errno_error(err, e, "cannot fsync", j->tmp_path);
    int fd = j->fd;
    j->fd = -1;
    e = lora_x_close(j->io, fd);
    if (e) return lora_errno_error(err, e, "cannot close", j->tmp_path);
    return LORA_OK;
}

/* Steps 7-8. A failed directory fsync is reported, but the rename has
 * happened: the target holds the new file and the temp name is not ours. */
static lora_status publish(write_job *j, const char *path, lora_error *err)
{
    int e = lora_x_renameat(j->io, j->dirfd, j->tmp_name, j->target.base);
    if (e) return lora_errno_error(err, e, "cannot rename the temporary file over", path);
    j->temp_exists = 0;
    e = lora_x_fsync(j->io, j->dirfd);
    /* Some file systems cannot sync a directory at all; that is not a
     * failure of this write. */
    if (e && e != EINVAL && e != ENOTSUP)
        return lora_errno_error(err, e, "written, but cannot fsync the directory", j->target.dir);
    return LORA_OK;
}

static lora_status prepare(write_job *j, const char *path, const lora_write_options *opts, lora_error *err)
{
    const lora_allocator *a = &j->w->alloc;
    LORA_FORWARD_IF_ERROR(lora_wlayout_compute(j->w, &j->lay, err));
    if (j->lay.data_offset > SIZE_MAX)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "tables too large for memory");
    j->tables = lora_mem_alloc(a, (size_t)j->lay.data_offset);
    j->stage = lora_mem_alloc(a, STAGE_SIZE);
    if (!j->tables || !j->stage) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_wlayout_encode(j->w, &j->lay, j->tables);
    LORA_FORWARD_IF_ERROR(lora_wtarget_resolve(a, path, opts, &j->target, err));
    int e = lora_x_openat(j->io, AT_FDCWD, j->target.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, &j->dirfd);
    if (e) return lora_errno_error(err, e, "cannot open the directory", j->target.dir);
    return LORA_OK;
}

/* Undo whatever is still ours. Failures here change nothing for the
 * caller: the status already says the write failed (or it succeeded and
 * only the directory descriptor is left, which needs no flush). */
static void cleanup(write_job *j)
{
    const lora_allocator *a = &j->w->alloc;
    if (j->fd >= 0) (void)lora_x_close(j->io, j->fd);
    if (j->temp_exists) (void)lora_x_unlinkat(j->io, j->dirfd, j->tmp_name);
    if (j->dirfd >= 0) (void)lora_x_close(j->io, j->dirfd);
    lora_mem_free(a, j->tmp_path);
    lora_mem_free(a, j->stage);
    lora_mem_free(a, j->tables);
    lora_wtarget_free(a, &j->target);
}

lora_status lora_writer_write_file(lora_writer *w, const char *path, const lora_write_options *opts,
                                   lora_error *err)
{
    lora_error_clear(err);
    LORA_FORWARD_IF_ERROR(check_args(w, path, opts, err));
    write_job j;
    memset(&j, 0, sizeof j);
    j.w = w;
    j.io = w->io;
    j.dirfd = j.fd = -1;
    lora_status st = prepare(&j, path, opts, err);
    if (st == LORA_OK) st = create_temp(&j, opts, err);
    if (st == LORA_OK) st = stream(&j, err);
    if (st == LORA_OK) st = lora_writer_validate_file(w, j.tmp_path, err); /* step 4 */
    if (st == LORA_OK) st = seal(&j, err);
    if (st == LORA_OK) st = publish(&j, path, err);
    cleanup(&j);
    return st;
}

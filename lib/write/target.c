/*
 * target.c - step 1 of the crash-safe write: what is at the target path,
 * and may we replace it?
 *
 * Nothing here opens the target for writing. The checks are made once, up
 * front; a target swapped for something else afterwards is still only
 * replaced by rename, never written through.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "file_write.h"

/* Split `path` into a directory and a last component, in one allocation. */
static lora_status split_path(const lora_allocator *a, const char *path, lora_wtarget *t, lora_error *err)
{
    size_t len = strlen(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (*base == '\0')
        return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET, "'%s' names a directory", path);
    size_t dir_len = slash ? (size_t)(slash - path) : 1;
    if (slash && dir_len == 0) dir_len = 1; /* "/name": the root */
    char *mem = lora_mem_alloc(a, dir_len + 1 + (len - (size_t)(base - path)) + 1);
    if (!mem) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    memcpy(mem, slash ? path : ".", dir_len);
    mem[dir_len] = '\0';
    strcpy(mem + dir_len + 1, base);
    t->dir = mem;
    t->base = mem + dir_len + 1;
    return LORA_OK;
}

/* Writing into a symlink replaces the file it names, as git and most
 * editors do; replacing the link itself would silently turn a shared file
 * into a private copy. A dangling link is refused: creating its target
 * would write somewhere the caller did not name. */
static lora_status follow_link(const char *path, char *resolved, struct stat *st, lora_error *err)
{
    if (!realpath(path, resolved)) {
        int e = errno;
        if (e == ENOENT)
            return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET,
                                  "'%s' is a symbolic link to nothing", path);
        return lora_errno_error(err, e, "cannot resolve", path);
    }
    if (lstat(resolved, st) != 0) return lora_errno_error(err, errno, "cannot stat", resolved);
    return LORA_OK;
}

static lora_status check_inputs(const char *path, const struct stat *target, const lora_write_options *opts,
                                lora_error *err)
{
    if (!opts || !opts->inputs) return LORA_OK;
    for (size_t i = 0; i < opts->input_count; i++) {
        struct stat st;
        /* stat, not lstat: an input reached through a symlink or a hard
         * link is the same file. An input that cannot be stat'ed cannot be
         * the target either. */
        if (!opts->inputs[i] || stat(opts->inputs[i], &st) != 0) continue;
        if (st.st_dev == target->st_dev && st.st_ino == target->st_ino)
            return lora_error_set(err, LORA_E_SAME_FILE, LORA_NO_OFFSET,
                                  "output '%s' is the input '%s'", path, opts->inputs[i]);
    }
    return LORA_OK;
}

lora_status lora_wtarget_resolve(const lora_allocator *a, const char *path, const lora_write_options *opts,
                                 lora_wtarget *t, lora_error *err)
{
    memset(t, 0, sizeof *t);
    char resolved[PATH_MAX];
    const char *real = path;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) return lora_errno_error(err, errno, "cannot stat", path);
    } else {
        if (S_ISLNK(st.st_mode)) {
            LORA_FORWARD_IF_ERROR(follow_link(path, resolved, &st, err));
            real = resolved;
        }
        if (!S_ISREG(st.st_mode))
            return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET,
                                  "'%s' exists and is not a regular file", path);
        LORA_FORWARD_IF_ERROR(check_inputs(path, &st, opts, err));
        t->exists = 1;
        t->mode = (unsigned)(st.st_mode & 07777);
    }
    return split_path(a, real, t, err);
}

void lora_wtarget_free(const lora_allocator *a, lora_wtarget *t)
{
    lora_mem_free(a, t->dir);
    memset(t, 0, sizeof *t);
}

/* Opening: options and limits, the file mapping or borrowed buffer, and
 * the reader's lifetime. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "reader.h"

static const lora_limits default_limits = {
    .max_file_size = (uint64_t)1 << 40,
    .max_modules = 1u << 20,
    .max_tensors = 1u << 16,
    .max_blobs = 1u << 22,
    .max_metadata = 1u << 16,
    .max_name_length = 4096,
    .max_rank = 65536,
    .max_string_bytes = (uint64_t)64 << 20,
    .max_blob_raw_size = (uint64_t)16 << 30,
};

#define PICK_(field) (in->field ? in->field : default_limits.field)

static void resolve_limits(const lora_limits *in, lora_limits *out)
{
    out->max_file_size = PICK_(max_file_size);
    out->max_modules = PICK_(max_modules);
    out->max_tensors = PICK_(max_tensors);
    out->max_blobs = PICK_(max_blobs);
    out->max_metadata = PICK_(max_metadata);
    out->max_name_length = PICK_(max_name_length);
    out->max_rank = PICK_(max_rank);
    out->max_string_bytes = PICK_(max_string_bytes);
    out->max_blob_raw_size = PICK_(max_blob_raw_size);
}
#undef PICK_

static lora_status check_options(const lora_read_options *o, lora_error *err)
{
    if (!o) return LORA_OK;
    if (o->flags & ~(uint32_t)LORA_READ_VERIFY_CHECKSUMS)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "unknown read flags 0x%x", o->flags);
    if (o->reserved0 || o->reserved[0] || o->reserved[1] || o->reserved[2] || o->reserved[3])
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "reserved option fields must be zero");
    /* Half a hook would free with the wrong allocator. */
    if (!o->allocator.alloc != !o->allocator.free)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "allocator needs both alloc and free, or neither");
    return LORA_OK;
}

static void release(lora_reader *r)
{
    const lora_allocator *a = &r->alloc;
    lora_mem_free(a, r->meta);
    lora_mem_free(a, r->modules);
    lora_mem_free(a, r->tensors);
    lora_mem_free(a, r->blobs);
    lora_mem_free(a, r->strings);
    lora_mem_free(a, r->meta_by_key);
    lora_mem_free(a, r->module_by_name);
}

/* Validate `data` and build a reader over it. The mapping, if any, stays
 * the caller's until this succeeds. */
static lora_status open_common(const uint8_t *data, size_t size, const lora_read_options *opts, lora_reader **out,
                               lora_error *err)
{
    static const lora_read_options defaults = LORA_READ_OPTIONS_INIT;
    if (!opts) opts = &defaults;
    lora_limits lim;
    resolve_limits(&opts->limits, &lim);
    lora_fmt_header h;
    LORA_FORWARD_IF_ERROR(lora_read_check_header(data, size, &lim, &h, err));
    lora_reader *r = lora_mem_alloc(&opts->allocator, sizeof *r);
    if (!r) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "cannot allocate the reader");
    memset(r, 0, sizeof *r);
    r->alloc = opts->allocator;
    r->limits = lim;
    r->flags = opts->flags;
    r->data = data;
    r->size = size;
    r->h = h;
    lora_status st = lora_read_validate(r, err);
    if (st == LORA_OK && (r->flags & LORA_READ_VERIFY_CHECKSUMS)) st = lora_reader_verify(r, err);
    if (st != LORA_OK) {
        lora_allocator a = r->alloc;
        release(r);
        lora_mem_free(&a, r);
        return st;
    }
    *out = r;
    return LORA_OK;
}

lora_status lora_reader_open_buffer(const void *data, size_t size, const lora_read_options *opts, lora_reader **out,
                                    lora_error *err)
{
    lora_error_clear(err);
    if (!out || (!data && size)) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    *out = NULL;
    LORA_FORWARD_IF_ERROR(check_options(opts, err));
    return open_common(data, size, opts, out, err);
}

static lora_status io_error(lora_error *err, const char *what, const char *path, int e)
{
    char buf[128];
    const char *msg = strerror_r(e, buf, sizeof buf); /* GNU form: may return a static string */
    return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "%s '%s': %s", what, path, msg);
}

/* Open read-only without blocking (a FIFO would otherwise wait for a
 * writer before we could refuse it) and map the whole file. */
static lora_status map_file(const char *path, void **map, size_t *size, lora_error *err)
{
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return io_error(err, "cannot open", path, errno);
    struct stat st;
    lora_status rc = LORA_OK;
    if (fstat(fd, &st) != 0) {
        rc = io_error(err, "cannot stat", path, errno);
    } else if (!S_ISREG(st.st_mode)) {
        rc = lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET, "'%s' is not a regular file", path);
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "'%s' is too large to map", path);
    } else if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = io_error(err, "cannot map", path, errno);
        } else {
            *map = p;
            *size = (size_t)st.st_size;
        }
    }
    /* The mapping keeps its own reference to the file. */
    close(fd);
    return rc;
}

lora_status lora_reader_open_file(const char *path, const lora_read_options *opts, lora_reader **out,
                                  lora_error *err)
{
    lora_error_clear(err);
    if (!out || !path) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "NULL argument");
    *out = NULL;
    LORA_FORWARD_IF_ERROR(check_options(opts, err));
    void *map = NULL;
    size_t size = 0;
    LORA_FORWARD_IF_ERROR(map_file(path, &map, &size, err));
    /* An empty file is not mappable; it is validated as an empty buffer
     * (and rejected as truncated). */
    lora_status st = open_common(map, size, opts, out, err);
    if (st != LORA_OK) {
        if (map) munmap(map, size);
        return st;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return LORA_OK;
}

void lora_reader_free(lora_reader *r)
{
    if (!r) return;
    if (r->map) munmap(r->map, r->map_size);
    release(r);
    lora_allocator a = r->alloc;
    lora_mem_free(&a, r);
}

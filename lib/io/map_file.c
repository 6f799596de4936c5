/* Whole-file read-only mapping. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "map_file.h"

static lora_status sys_error(lora_error *err, const char *what, const char *path, int e)
{
    char buf[128];
    const char *msg = strerror_r(e, buf, sizeof buf); /* GNU form: may return a static string */
    return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "%s '%s': %s", what, path, msg);
}

static lora_status map_fd(int fd, const char *path, void **map, size_t *size, lora_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return sys_error(err, "cannot stat", path, errno);
    if (!S_ISREG(st.st_mode))
        return lora_error_set(err, LORA_E_NOT_REGULAR_FILE, LORA_NO_OFFSET, "'%s' is not a regular file", path);
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "'%s' is too large to map", path);
    if (st.st_size == 0) return LORA_OK; /* mmap of length 0 fails; an empty buffer is the answer */
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return sys_error(err, "cannot map", path, errno);
    *map = p;
    *size = (size_t)st.st_size;
    return LORA_OK;
}

lora_status lora_io_map_file(const char *path, void **map, size_t *size, lora_error *err)
{
    *map = NULL;
    *size = 0;
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return sys_error(err, "cannot open", path, errno);
    lora_status st = map_fd(fd, path, map, size, err);
    close(fd); /* the mapping holds its own reference */
    return st;
}

void lora_io_unmap_file(void *map, size_t size)
{
    if (map) munmap(map, size);
}

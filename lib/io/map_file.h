/*
 * map_file.h - read-only private mapping of a whole regular file, for the
 * foreign-format readers of liblora-ops. (lib/read keeps its own static
 * copy; this one is shared by lib/io.) Internal.
 */
#ifndef LORA_IO_MAP_FILE_H
#define LORA_IO_MAP_FILE_H

#include <stddef.h>
#include "../common/internal.h"

/* On success *map is the mapping (NULL for an empty file, which has none)
 * and *size its length. Opened O_NONBLOCK so a FIFO is refused instead of
 * waited on: LORA_E_NOT_REGULAR_FILE for anything but a regular file,
 * LORA_E_IO (detail "<what> '<path>': <strerror>") for system errors. */
lora_status lora_io_map_file(const char *path, void **map, size_t *size, lora_error *err);
void lora_io_unmap_file(void *map, size_t size);

#endif /* LORA_IO_MAP_FILE_H */

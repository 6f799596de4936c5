/*
 * afile.h - a crash-safe output file: the write recipe of
 * /work/shared/docs/robustness.md section 4 as a small internal API, shared
 * by lora_writer_write_file and every exporter of liblora-ops (safetensors,
 * GGUF, JSON configs). Not installed.
 *
 *   lora_afile_open    1. check the target   2. temp file beside it, O_EXCL
 *   lora_afile_write   3. stream the bytes (write-combined, short writes and EINTR handled)
 *   (caller)           4. optionally verify the temp file by lora_afile_temp_path()
 *   lora_afile_seal    5. mode  6. fsync, close (optional: commit does it when not done)
 *   lora_afile_commit  7. rename over the target  8. fsync the directory
 *   lora_afile_abort   unlink the temp file: the target is as it was
 *
 * The target is never opened for writing or truncated. Before step 7 every
 * failure leaves it untouched; after step 7 the temp name may belong to
 * someone else, so nothing is unlinked (renameio).
 *
 * Mode. With no target and no opts->mode, the temp file is created 0644 and
 * the kernel applies the umask at creation, so nothing reads or changes the
 * process-global umask (which would race with other threads). Otherwise it
 * is created 0600 and given its final mode (the existing target's, or
 * opts->mode as given) by fchmod before fsync, so a stricter final mode is
 * never preceded by a looser temp file.
 */
#ifndef LORA_WRITE_AFILE_H
#define LORA_WRITE_AFILE_H

#include <stdint.h>
#include "../common/internal.h"
#include "io.h"

typedef struct lora_afile lora_afile;

/* LORA_E_INVALID_ARGUMENT for reserved fields, a mode with non-permission
 * bits or inputs == NULL with input_count > 0. `opts` may be NULL. */
lora_status lora_write_options_check(const lora_write_options *opts, lora_error *err);

/* Steps 1-2. `io` NULL = libc. On failure nothing is left behind. */
lora_status lora_afile_open(const lora_allocator *a, const lora_io *io, const char *path,
                            const lora_write_options *opts, lora_afile **out, lora_error *err);
/* Step 3: append bytes / zero bytes. */
lora_status lora_afile_write(lora_afile *f, const void *data, uint64_t size, lora_error *err);
lora_status lora_afile_zeros(lora_afile *f, uint64_t size, lora_error *err);
/* Push staged bytes to the temp file (before reading it back). */
lora_status lora_afile_flush(lora_afile *f, lora_error *err);
/* A hint for big outputs: push the staged bytes and ask the kernel to
 * start writing back what is already in the temp file (sync_file_range
 * SYNC_FILE_RANGE_WRITE, which does not wait), so the fsync of commit finds
 * most of it on disk and the page cache does not fill with dirty pages.
 * Only the flush can fail; the hint's own errors are left to fsync. */
lora_status lora_afile_start_writeback(lora_afile *f, lora_error *err);
/* Positional output, for a file whose layout is known before its bytes
 * exist (lora-merge fills its blocks from several threads): `n` bytes at
 * `offset` of the temp file, short writes and EINTR handled. Calls on
 * disjoint ranges may run concurrently; they do not use the staging of
 * lora_afile_write, so do not mix the two on one range. Both go through
 * the lora_io table's pwrite / copy_file_range (libc when NULL). */
lora_status lora_afile_pwrite(lora_afile *f, const void *data, size_t n, uint64_t offset, lora_error *err);
/* `n` bytes of `in_fd` from `in_offset` to `offset` of the temp file:
 * copy_file_range where the kernel can (no copy through user memory),
 * else read and written through a buffer. An input that ends early is
 * LORA_E_IO. Concurrent calls as for lora_afile_pwrite. */
lora_status lora_afile_copy_range(lora_afile *f, int in_fd, uint64_t in_offset, uint64_t n, uint64_t offset,
                                  lora_error *err);
/* "<dir>/.<base>.XXXXXX.tmp": where the bytes are until commit. */
const char *lora_afile_temp_path(const lora_afile *f);
/* Steps 5-6 alone: flush, mode, fsync, close. Afterwards only commit or
 * abort; on failure the caller aborts. */
lora_status lora_afile_seal(lora_afile *f, lora_error *err);
/* Steps 5-8 (7-8 after lora_afile_seal). Frees `f` whatever happens; on
 * failure before the rename the temp file is removed. */
lora_status lora_afile_commit(lora_afile *f, lora_error *err);
/* An output of several files (a PEFT directory, a sharded merge) committed
 * as one, as far as renames allow: every file sealed before the first
 * rename, so a full disk or a failing fsync leaves all of them as they
 * were; then each renamed in order. A rename cannot be taken back: a
 * failing rename aborts the files after it (those before stay new: a mix,
 * reported by the status), and a failing directory fsync does not stop
 * the renames (every file is new; the first error is returned). Every
 * entry is consumed (set to NULL), also on failure. */
lora_status lora_afile_commit_all(lora_afile **files, size_t n, lora_error *err);
/* Remove the temp file and free `f`. NULL is a no-op. */
void lora_afile_abort(lora_afile *f);

#endif /* LORA_WRITE_AFILE_H */

/*
 * lfs_pointer.h - recognise a Git LFS pointer file in place of the real
 * file. A clone without git-lfs leaves ~130-byte text files such as
 *   version https://git-lfs.github.com/spec/v1
 *   oid sha256:4d7a2146...
 *   size 3253104
 * which every binary parser would otherwise report as some baffling
 * corruption (the reference safetensors reader says "HeaderTooLarge").
 * Internal to liblora-ops.
 */
#ifndef LORA_IO_LFS_POINTER_H
#define LORA_IO_LFS_POINTER_H

#include <stddef.h>
#include <stdint.h>
#include "../common/internal.h"

/* LORA_OK if `data` is not an LFS pointer. Otherwise LORA_E_LFS_POINTER at
 * offset 0 with the detail "<what>: this is a Git LFS pointer (oid
 * sha256:<hex>, size <N>); fetch the real file" ("unknown" for a field
 * the pointer lacks). */
lora_status lora_lfs_pointer_check(const uint8_t *data, size_t size, const char *what, lora_error *err);

#endif /* LORA_IO_LFS_POINTER_H */

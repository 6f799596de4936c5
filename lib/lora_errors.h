/*
 * lora_errors.h - pinned status codes of liblora.
 *
 * Every fallible call returns a lora_status. LORA_OK is 0; everything else is
 * an error. Numbers are pinned and grouped with gaps so that new codes can be
 * added in their group; a number is never reused once published.
 *
 *   10..19  not a .lora file / unknown format / version / unsupported features
 *   20..29  corruption: truncation, checksums, damaged compressed data
 *   30..59  malformed: the bytes are intact but the structure breaks the spec
 *   60..69  limits set by the caller were exceeded
 *   70..79  bad parameters and state (caller mistakes)
 *   80..89  memory
 *   90..99  I/O and the environment
 *
 * The names (lora_status_name) are part of the API: tools print them and the
 * spec's test vectors list them as expected results.
 */
#ifndef LORA_ERRORS_H
#define LORA_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, message). The single source of names, numbers and messages. */
#define LORA_STATUS_LIST(X)                                                              \
    X(LORA_OK,                        0, "no error")                                     \
    X(LORA_E_BAD_MAGIC,              10, "not a .lora file (bad magic)")                 \
    X(LORA_E_TEXT_MODE_DAMAGE,       11, "file damaged by a text-mode transfer (CR/LF bytes changed)") \
    X(LORA_E_UNSUPPORTED_VERSION,    12, "unsupported format version")                   \
    X(LORA_E_UNSUPPORTED_FEATURE,    13, "unsupported required feature flag")            \
    X(LORA_E_UNSUPPORTED_DTYPE,      14, "unsupported blob dtype")                       \
    X(LORA_E_UNSUPPORTED_COMPRESSION,15, "unsupported blob compression")                 \
    X(LORA_E_UNKNOWN_FORMAT,         16, "input format not recognised")                  \
    X(LORA_E_UNSUPPORTED_ADAPTER,    17, "adapter feature not supported (it would change the math)") \
    X(LORA_E_LFS_POINTER,            18, "file is a Git LFS pointer, not the real file; fetch it") \
    X(LORA_E_TRUNCATED,              20, "file is truncated")                            \
    X(LORA_E_TRAILING_BYTES,         21, "unexpected bytes after the end of the file")   \
    X(LORA_E_HEADER_CHECKSUM,        22, "header/table checksum mismatch")               \
    X(LORA_E_BLOB_CHECKSUM,          23, "blob checksum mismatch")                       \
    X(LORA_E_BAD_COMPRESSED_DATA,    24, "compressed blob data is damaged")              \
    X(LORA_E_NONZERO_PADDING,        25, "padding bytes are not zero")                   \
    X(LORA_E_BAD_HEADER,             30, "malformed header")                             \
    X(LORA_E_RESERVED_NONZERO,       31, "reserved field is not zero")                   \
    X(LORA_E_BAD_OFFSET,             32, "offset or size out of range")                  \
    X(LORA_E_MISALIGNED,             33, "offset is not aligned")                        \
    X(LORA_E_OVERLAP,                34, "regions overlap or leave a gap")               \
    X(LORA_E_BAD_STRING,             35, "malformed string (range, empty, NUL or UTF-8)") \
    X(LORA_E_DUPLICATE_NAME,         36, "duplicate name")                               \
    X(LORA_E_BAD_ENUM,               37, "enumerated value out of range")                \
    X(LORA_E_BAD_SHAPE,              38, "invalid or inconsistent shape")                \
    X(LORA_E_BAD_RANK,               39, "invalid rank")                                 \
    X(LORA_E_BAD_ALPHA,              40, "invalid alpha")                                \
    X(LORA_E_BAD_SCALE,              41, "scale does not match the scaling rule")        \
    X(LORA_E_BAD_BLOB_REF,           42, "invalid blob reference")                       \
    X(LORA_E_BAD_SIZE,               43, "stored or raw size disagrees with dtype and shape") \
    X(LORA_E_BAD_METADATA,           44, "malformed metadata entry")                     \
    X(LORA_E_NONFINITE,              45, "NaN or infinity in a float blob")              \
    X(LORA_E_BAD_JSON,               46, "malformed JSON")                               \
    X(LORA_E_LIMIT_EXCEEDED,         60, "a configured limit was exceeded")              \
    X(LORA_E_INVALID_ARGUMENT,       70, "invalid argument")                             \
    X(LORA_E_BUFFER_TOO_SMALL,       71, "destination buffer too small")                 \
    X(LORA_E_NOT_FOUND,              72, "no such entry")                                \
    X(LORA_E_NOT_VIEWABLE,           73, "blob is compressed: no zero-copy view")        \
    X(LORA_E_OUT_OF_MEMORY,          80, "out of memory")                                \
    X(LORA_E_IO,                     90, "I/O error")                                    \
    X(LORA_E_NO_SPACE,               91, "no space left on device")                      \
    X(LORA_E_SAME_FILE,              92, "output would overwrite an input")              \
    X(LORA_E_NOT_REGULAR_FILE,       93, "not a regular file")

typedef enum {
#define LORA_STATUS_ENUM_(name, value, msg) name = value,
    LORA_STATUS_LIST(LORA_STATUS_ENUM_)
#undef LORA_STATUS_ENUM_
    LORA_STATUS_MAX_ = 1000 /* not a status; keeps the enum wide enough */
} lora_status;

#ifdef __cplusplus
}
#endif
#endif /* LORA_ERRORS_H */

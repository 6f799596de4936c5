/*
 * convert.h - the importers and exporters behind lora_convert. Internal to
 * liblora-ops.
 *
 * Every conversion goes through the .lora model: an importer adds what it
 * reads to a lora_writer (metadata, blobs, modules, tensors); an exporter
 * reads a lora_reader and writes the foreign files crash-safely through
 * lib/write/afile.h. X -> Y is import(X) into memory, then export(Y).
 *
 * Importers never write files; exporters never modify inputs. Both report
 * problems with generic statuses and details "peft: tensor 'x': ...".
 */
#ifndef LORA_OPS_CONVERT_H
#define LORA_OPS_CONVERT_H

#include "../common/internal.h"
#include "../lora_ops.h"
#include "../write/afile.h"

/* `input` is the path the user gave (file or directory). */
typedef lora_status (*lora_importer_fn)(const char *input, const lora_convert_options *o, lora_writer *w,
                                        lora_error *err);
/* `output` is the path the user gave; `wopts` carries the inputs the output
 * must not overwrite and `io` the system calls of the output files (NULL:
 * libc; tests fail them one by one): pass both to lora_afile_open. Each
 * exporter below is also declared without `io` (libc). */
typedef lora_status (*lora_exporter_fn)(const lora_reader *r, const char *output, const lora_convert_options *o,
                                        const lora_write_options *wopts, const lora_io *io, lora_error *err);

/* lora_convert with the output files' system calls through `io` (tests;
 * NULL: libc, which is lora_convert). */
lora_status lora_convert_io(const char *input, const char *output, const lora_convert_options *opts,
                            const lora_io *io, lora_error *err);

/* PEFT: a directory with adapter_model.safetensors + adapter_config.json, or
 * the .safetensors path with the config beside it. Exports a directory. */
lora_status lora_import_peft(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err);
lora_status lora_export_peft(const lora_reader *r, const char *output, const lora_convert_options *o,
                             const lora_write_options *wopts, lora_error *err);
lora_status lora_export_peft_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                const lora_write_options *wopts, const lora_io *io, lora_error *err);
/* diffusers: PEFT keys without the base_model.model. prefix; the PEFT config
 * may sit in __metadata__["lora_adapter_metadata"]. Import only. */
lora_status lora_import_diffusers(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err);
/* MLX LM: adapters.safetensors (lora_a [in,r], lora_b [r,out]) + adapter_config.json (scale). */
lora_status lora_import_mlx(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err);
lora_status lora_export_mlx(const lora_reader *r, const char *output, const lora_convert_options *o,
                            const lora_write_options *wopts, lora_error *err);
lora_status lora_export_mlx_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                               const lora_write_options *wopts, const lora_io *io, lora_error *err);
/* kohya sd-scripts: lora_unet_* / lora_te*_ with lora_down/lora_up/alpha. */
lora_status lora_import_kohya(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err);
lora_status lora_export_kohya(const lora_reader *r, const char *output, const lora_convert_options *o,
                              const lora_write_options *wopts, lora_error *err);
lora_status lora_export_kohya_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                 const lora_write_options *wopts, const lora_io *io, lora_error *err);
/* llama.cpp GGUF adapters. */
lora_status lora_import_gguf(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err);
lora_status lora_export_gguf(const lora_reader *r, const char *output, const lora_convert_options *o,
                             const lora_write_options *wopts, lora_error *err);
lora_status lora_export_gguf_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                const lora_write_options *wopts, const lora_io *io, lora_error *err);

/* ---- helpers shared by importers and exporters (lib/ops/ops_util.c) ---- */

/* Send a formatted warning to o->warn (if set). */
void lora_ops_warn(const lora_convert_options *o, const char *fmt, ...) LORA_PRINTF(2, 3);

/* Add a float tensor as a blob. `src_dtype` is the source's element type
 * (LORA_DTYPE_F32/F16/BF16); `data` may be unaligned. With o->dtype == -1 the
 * bytes are copied as they are (bit exact); otherwise they are converted to
 * o->dtype (round to nearest even). `transpose` swaps a 2-D tensor's axes
 * (shape is the SOURCE shape; the blob gets the transposed shape). */
lora_status lora_ops_add_blob(lora_writer *w, const lora_convert_options *o, lora_dtype src_dtype, uint32_t ndim,
                              const uint64_t *shape, const void *data, size_t size, int transpose, uint32_t *index,
                              lora_error *err);

/* Decode blob `index` of r to a newly allocated f32 array (numel floats),
 * optionally transposed (2-D only). Free with lora_mem_free(&alloc, p). */
lora_status lora_ops_blob_f32(const lora_reader *r, const lora_allocator *alloc, uint32_t index, int transpose,
                              float **out, uint64_t *numel, lora_error *err);

#endif /* LORA_OPS_CONVERT_H */

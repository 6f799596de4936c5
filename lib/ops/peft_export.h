/*
 * peft_export.h - the adapter_config.json of a PEFT export
 * (peft_config_out.c). Internal to liblora-ops.
 */
#ifndef LORA_OPS_PEFT_EXPORT_H
#define LORA_OPS_PEFT_EXPORT_H

#include "convert.h"

/* 1 if the config text parses and gives every module of `r` its rank,
 * alpha, scaling rule, fan_in_fan_out, DoRA and bias; else 0 with the
 * first disagreement in `why`. */
int lora_peft_config_describes(const lora_reader *r, const lora_allocator *a, const char *text, size_t size,
                               char *why, size_t cap);
/* A new config for the modules and tensors of `r` (see peft_config_out.c):
 * LORA_E_UNSUPPORTED_ADAPTER when PEFT cannot express them (mixed
 * fan_in_fan_out, DoRA on some modules only, a scale no binary32 alpha
 * reproduces). *out (NUL-terminated, *size bytes without the NUL) comes
 * from `a`. */
lora_status lora_peft_config_synthesize(const lora_reader *r, const lora_allocator *a, char **out, size_t *size,
                                        lora_error *err);

#endif /* LORA_OPS_PEFT_EXPORT_H */

/*
 * optval.h - options that take a value ("--type q8_0", "--type=q8_0") and
 * strict number parsing, for tools with several such options.
 */
#ifndef TOOLS_OPTVAL_H
#define TOOLS_OPTVAL_H

#include <stdint.h>
#include "cli.h"

/* 1 if `arg` is the long option `name` ("--type"), written either as
 * "--type VALUE" or "--type=VALUE"; *value is then the value, or NULL when
 * the command line ends first. 0 (and *value untouched) otherwise. */
int optval_long(cli_args *a, const cli_arg *arg, const char *name, const char **value);

/* Whole-string parses: decimal digits only (no sign, no blanks, no
 * overflow) / a finite decimal number. 1 on success. */
int optval_u64(const char *s, uint64_t *out);
int optval_real(const char *s, double *out);

#endif /* TOOLS_OPTVAL_H */

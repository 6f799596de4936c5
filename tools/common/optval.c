#include "optval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int optval_long(cli_args *a, const cli_arg *arg, const char *name, const char **value)
{
    if (arg->kind != CLI_LONG) return 0;
    if (cli_long_value(arg->text, name, value)) return 1;
    if (strcmp(arg->text, name) != 0) return 0;
    *value = cli_value(a);
    return 1;
}

int optval_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return 0;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int optval_real(const char *s, double *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t') return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* Status names and messages, and the lora_error detail helper. */
#include <stdio.h>
#include <string.h>
#include "internal.h"

const char *lora_status_name(lora_status s)
{
    switch ((int)s) {
#define LORA_STATUS_NAME_(name, value, msg) case value: return #name;
        LORA_STATUS_LIST(LORA_STATUS_NAME_)
#undef LORA_STATUS_NAME_
    default: return "LORA_E_UNKNOWN";
    }
}

const char *lora_status_message(lora_status s)
{
    switch ((int)s) {
#define LORA_STATUS_MSG_(name, value, msg) case value: return msg;
        LORA_STATUS_LIST(LORA_STATUS_MSG_)
#undef LORA_STATUS_MSG_
    default: return "unknown status";
    }
}

void lora_error_clear(lora_error *err)
{
    if (!err) return;
    err->status = LORA_OK;
    err->offset = LORA_NO_OFFSET;
    err->detail[0] = '\0';
}

lora_status lora_error_set(lora_error *err, lora_status status, uint64_t offset, const char *fmt, ...)
{
    if (!err) return status;
    err->status = status;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    /* Truncation is acceptable: the status and offset carry the essentials. */
    (void)vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return status;
}

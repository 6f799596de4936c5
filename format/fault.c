/* Where a decode failed: shared by every decoder of the format layer. */
#include "lora_format.h"

lora_status lora_fmt_fail(lora_fmt_fault *fault, lora_status status, uint64_t offset, const char *field)
{
    if (fault) {
        fault->status = status;
        fault->offset = offset;
        fault->field = field;
    }
    return status;
}

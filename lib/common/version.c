#include "internal.h"

unsigned lora_version_number(void) { return LORA_VERSION_NUMBER; }
const char *lora_version_string(void) { return LORA_VERSION_STRING; }

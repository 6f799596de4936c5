/* The smallest liblora program: open an adapter, print its module count.
 *   cc count_modules.c $(pkg-config --cflags --libs liblora) -o count_modules */
#include <stdio.h>
#include <lora.h>

int main(int argc, char **argv)
{
    lora_reader *r;
    lora_error err;
    lora_file_info info;
    if (argc != 2) return 2;
    if (lora_reader_open_file(argv[1], NULL, &r, &err) != LORA_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[1], lora_status_name(err.status), err.detail);
        return 1;
    }
    lora_reader_file_info(r, &info);
    printf("%u modules\n", (unsigned)info.module_count);
    lora_reader_free(r);
    return 0;
}

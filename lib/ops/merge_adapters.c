/*
 * merge_adapters.c - the adapters of a merge. A .lora file is mapped as it
 * is; any other format goes through lora_import into a .lora image in
 * memory, so the rest of the merge sees one model. Every blob checksum is
 * verified before anything is planned: a damaged adapter must stop the
 * merge before a byte of output exists, not halfway through.
 */
#include <string.h>
#include "merge.h"

static lora_status open_one(const lora_merge_options *o, madapter *ad, lora_error *err)
{
    lora_format f = LORA_FORMAT_AUTO;
    LORA_FORWARD_IF_ERROR(lora_detect_format(ad->path, &f, err));
    lora_read_options ro = LORA_READ_OPTIONS_INIT;
    ro.allocator = o->allocator;
    if (f == LORA_FORMAT_LORA) {
        LORA_FORWARD_IF_ERROR(lora_reader_open_file(ad->path, &ro, &ad->r, err));
    } else {
        lora_convert_options co = LORA_CONVERT_OPTIONS_INIT;
        if (o->convert) co = *o->convert;
        co.allocator = o->allocator;
        co.dtype = -1; /* the adapter's own values, bit for bit */
        size_t size = 0;
        LORA_FORWARD_IF_ERROR(lora_import(ad->path, &co, &ad->image, &size, err));
        lora_status st = lora_reader_open_buffer(ad->image, size, &ro, &ad->r, err);
        if (st != LORA_OK) return st;
    }
    lora_reader_file_info(ad->r, &ad->info);
    return lora_reader_verify(ad->r, err);
}

lora_status madapters_open(const lora_merge_options *o, madapter *ads, size_t *failed, lora_error *err)
{
    for (size_t i = 0; i < o->adapter_count; i++) {
        memset(&ads[i], 0, sizeof ads[i]);
        ads[i].path = o->adapters[i].path;
        ads[i].weight = o->adapters[i].weight;
    }
    for (size_t i = 0; i < o->adapter_count; i++) {
        lora_status st = open_one(o, &ads[i], err);
        if (st != LORA_OK) {
            *failed = i;
            return st;
        }
    }
    return LORA_OK;
}

void madapters_close(const lora_merge_options *o, madapter *ads, size_t count)
{
    if (!ads) return;
    for (size_t i = 0; i < count; i++) {
        lora_reader_free(ads[i].r);
        if (ads[i].image) lora_mem_free(&o->allocator, ads[i].image);
        ads[i].r = NULL;
        ads[i].image = NULL;
    }
}

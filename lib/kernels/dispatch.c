/*
 * dispatch.c - pick the kernel table once, from what the CPU and the OS
 * support. Compiled at baseline flags: nothing here may execute an AVX
 * instruction before the checks say it is safe.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "lora.h"
#include "x86/x86_tables.h"

#if defined(__x86_64__) || defined(__i386__)
#  include <cpuid.h>
#  define LORA_HAVE_X86 1
#else
#  define LORA_HAVE_X86 0
#endif

/* Written once under pthread_once, read-only afterwards: the only mutable
 * global state the library has. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static lora_kernels g_tables[LORA_ISA_COUNT_];
static int g_supported[LORA_ISA_COUNT_];
static lora_isa g_selected = LORA_ISA_REF;

#if LORA_HAVE_X86
/* XCR0 says which register state the OS saves on a context switch; a CPU
 * with AVX whose OS does not save YMM would corrupt registers between
 * threads. The xgetbv mnemonic needs no -mxsave. */
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(int supported[LORA_ISA_COUNT_])
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = read_xcr0();
    int os_ymm = (xcr0 & 0x6) == 0x6;            /* XMM | YMM */
    int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask | ZMM_Hi256 | Hi16_ZMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    int avx2 = (b >> 5) & 1;
    int f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    supported[LORA_ISA_AVX2] = avx2 && fma && f16c && os_ymm;
    /* The AVX-512 file is also compiled with -mavx2 -mfma -mf16c. */
    supported[LORA_ISA_AVX512] = supported[LORA_ISA_AVX2] && f512 && dq && bw && vl && os_zmm;
}
#endif

/* Copy an ISA table and fill its gaps from ref, so callers never see NULL. */
static lora_kernels fill_from_ref(const lora_kernels *t)
{
    const lora_kernels *r = &lora_kernels_ref;
    lora_kernels k = *t;
#define LORA_FILL_(f) if (!k.f) k.f = r->f
    LORA_FILL_(f16_to_f32);
    LORA_FILL_(bf16_to_f32);
    LORA_FILL_(f32_to_f16);
    LORA_FILL_(f32_to_bf16);
    LORA_FILL_(q8_0_to_f32);
    LORA_FILL_(q4_0_to_f32);
    LORA_FILL_(nf4_to_f32);
    LORA_FILL_(f32_to_q8_0);
    LORA_FILL_(f32_to_q4_0);
    LORA_FILL_(f32_to_nf4);
    LORA_FILL_(count_nonfinite_f32);
#undef LORA_FILL_
    return k;
}

static lora_isa isa_from_env(lora_isa best)
{
    static const char *const names[LORA_ISA_COUNT_] = {"ref", "avx2", "avx512"};
    const char *v = getenv("LORA_ISA");
    if (!v) return best;
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (strcmp(v, names[i]) == 0 && (lora_isa)i <= best) return (lora_isa)i;
    return best; /* unknown, or more than this machine can do */
}

static void init_once(void)
{
    g_tables[LORA_ISA_REF] = lora_kernels_ref;
    g_supported[LORA_ISA_REF] = 1;
#if LORA_HAVE_X86
    detect_x86(g_supported);
    g_tables[LORA_ISA_AVX2] = fill_from_ref(&lora_kernels_avx2);
    g_tables[LORA_ISA_AVX512] = fill_from_ref(&lora_kernels_avx512);
#endif
    lora_isa best = LORA_ISA_REF;
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (g_supported[i]) best = (lora_isa)i;
    g_selected = isa_from_env(best);
}

const lora_kernels *lora_kernels_for_isa(lora_isa isa)
{
    pthread_once(&g_once, init_once);
    if ((int)isa < 0 || isa >= LORA_ISA_COUNT_ || !g_supported[isa]) return NULL;
    return &g_tables[isa];
}

const lora_kernels *lora_kernels_get(void)
{
    pthread_once(&g_once, init_once);
    return &g_tables[g_selected];
}

lora_isa lora_kernels_selected_isa(void)
{
    pthread_once(&g_once, init_once);
    return g_selected;
}

LORA_API const char *lora_isa_name(void) { return lora_kernels_get()->name; }

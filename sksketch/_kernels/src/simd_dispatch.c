/*
 * Run-time choice of the SIMD variant. A variant is usable when the CPU reports
 * its instructions (CPUID) *and* the OS saves the registers it uses (XCR0, read
 * with XGETBV): a CPU with AVX-512 under an OS or hypervisor that does not
 * enable the ZMM state must take the AVX2 or scalar path.
 */
#include <string.h>

#include "simd.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SKS_X86 1
#include <cpuid.h>
#if (defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10)
#define SKS_HAVE_BF16_VARIANT 1
#endif
#endif

extern const sks_kernels sks_kernels_scalar;
#ifdef SKS_X86
extern const sks_kernels sks_kernels_avx2;
extern const sks_kernels sks_kernels_avx512;
#ifdef SKS_HAVE_BF16_VARIANT
extern const sks_kernels sks_kernels_avx512_bf16;
#endif

static unsigned long long sks_xgetbv0(void)
{
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

void sks_detect_cpu(sks_cpu_features *f)
{
    memset(f, 0, sizeof(*f));
#ifdef SKS_X86
    {
        unsigned int a, b, c, d, max_leaf;
        unsigned long long xcr0 = 0;
        if (!__get_cpuid(1, &a, &b, &c, &d))
            return;
        f->sse2 = (d >> 26) & 1;
        f->fma = (c >> 12) & 1;
        f->avx = (c >> 28) & 1;
        if ((c >> 27) & 1) /* OSXSAVE: XGETBV is available */
            xcr0 = sks_xgetbv0();
        /* bits 1-2: SSE and AVX state; 5-7: opmask, ZMM_Hi256, Hi16_ZMM */
        f->os_avx = (xcr0 & 0x6) == 0x6;
        f->os_avx512 = (xcr0 & 0xE6) == 0xE6;
        max_leaf = __get_cpuid_max(0, 0);
        if (max_leaf >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            f->avx2 = (b >> 5) & 1;
            f->avx512f = (b >> 16) & 1;
            f->avx512dq = (b >> 17) & 1;
            f->avx512bw = (b >> 30) & 1;
            f->avx512vl = (b >> 31) & 1;
            if (a >= 1) { /* leaf 7 reports its highest sub-leaf in EAX */
                __cpuid_count(7, 1, a, b, c, d);
                f->avx512_bf16 = (a >> 5) & 1;
            }
        }
    }
#endif
}

int sks_isa_compiled(int isa)
{
    return sks_kernels_for(isa) != NULL;
}

int sks_isa_supported(const sks_cpu_features *f, int isa)
{
    int avx2 = f->avx && f->avx2 && f->fma && f->os_avx;
    int avx512 = avx2 && f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->os_avx512;
    int ok;
    switch (isa) {
    case SKS_ISA_SCALAR: ok = 1; break;
    case SKS_ISA_AVX2: ok = avx2; break;
    case SKS_ISA_AVX512: ok = avx512; break;
    case SKS_ISA_AVX512_BF16: ok = avx512 && f->avx512_bf16; break;
    default: ok = 0;
    }
    return ok && sks_isa_compiled(isa);
}

const sks_kernels *sks_kernels_for(int isa)
{
    switch (isa) {
    case SKS_ISA_SCALAR: return &sks_kernels_scalar;
#ifdef SKS_X86
    case SKS_ISA_AVX2: return &sks_kernels_avx2;
    case SKS_ISA_AVX512: return &sks_kernels_avx512;
#ifdef SKS_HAVE_BF16_VARIANT
    case SKS_ISA_AVX512_BF16: return &sks_kernels_avx512_bf16;
#endif
#endif
    default: return NULL;
    }
}

// glibc and CPU-control declarations that the Swift Glibc module does not export.
#include <malloc.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

/// Treats denormal floats as zero on the calling thread (x86: MXCSR FTZ and DAZ;
/// AArch64: FPCR FZ). Denormals are 10–100× slower to compute with and carry no
/// information a network needs; every deep-learning engine flushes them.
static inline void prunekit_flush_denormals(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(_mm_getcsr() | 0x8040);
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (1UL << 24)));
#endif
}

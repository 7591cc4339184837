/* OpenMP queries that also compile when the build has no OpenMP. */
#ifndef SKS_OPENMP_H
#define SKS_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int sks_openmp_enabled(void) { return 1; }
static inline int sks_openmp_version(void) { return _OPENMP; }
static inline int sks_omp_get_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int sks_openmp_enabled(void) { return 0; }
static inline int sks_openmp_version(void) { return 0; }
static inline int sks_omp_get_max_threads(void) { return 1; }
#endif

/* The compiler that built the extension, as its own version string. */
#if defined(__clang__)
#define SKS_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define SKS_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define SKS_STR2(x) #x
#define SKS_STR(x) SKS_STR2(x)
#define SKS_COMPILER "msvc " SKS_STR(_MSC_FULL_VER)
#else
#define SKS_COMPILER "unknown"
#endif

#ifndef SKS_BUILD_FLAGS
#define SKS_BUILD_FLAGS ""
#endif
#ifndef SKS_BUILD_DEBUG
#define SKS_BUILD_DEBUG 0
#endif

#endif

// The CPU kernels' inner loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time, since
// the extension is built without -march flags to run on any machine.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define PRROI_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PRROI_VECTOR_CLONES
#endif

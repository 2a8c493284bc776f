// Launch helpers of the CUDA kernels. tests/layers/cuda_host_shim.h defines PRROI_LAUNCH (kernel launches run as
// host threads) and may lower PRROI_MAX_BLOCKS before the .cu files include this, so that threads also take the
// grid-stride loops.
#pragma once

#include <algorithm>
#include <cstdint>

#ifndef PRROI_LAUNCH
#define PRROI_LAUNCH(kernel, blocks, threads, stream, ...) kernel<<<blocks, threads, 0, stream>>>(__VA_ARGS__)
#endif
// Cap on the grid of the grid-stride kernels.
#ifndef PRROI_MAX_BLOCKS
#define PRROI_MAX_BLOCKS 65535
#endif

namespace maskrcnn_benchmark {
namespace cuda_launch {

constexpr int kThreads = 256;

// Blocks of kThreads for `total` grid-stride iterations.
inline int blocks_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, PRROI_MAX_BLOCKS));
}

}  // namespace cuda_launch
}  // namespace maskrcnn_benchmark

// The element rule of level_max, shared by the CPU and the CUDA kernel: the value and source level of the
// element-wise maximum over the FPN levels, as a chain of torch.maximum computes it (level 0 first).
//   - the larger value wins; at a tie the earlier level keeps it (so the source is the first level holding the
//     maximum, and the gradient is not split);
//   - NaN propagates, and once the running maximum is NaN every later level counts as its source (the chain's
//     `maximum(a, b) != a` test is true for NaN), so a NaN element points at the last level.
#pragma once

#include <c10/macros/Macros.h>

namespace maskrcnn_benchmark {
namespace level_max {

// Folds level `index`'s value x into the running (value, source).
template <typename scalar_t>
C10_HOST_DEVICE inline void fold(scalar_t x, scalar_t& value, unsigned char& source, unsigned char index) {
  const bool not_a_number = (x != x) || (value != value);
  const bool take = not_a_number || x > value;
  value = take ? (not_a_number ? x + value : x) : value;
  source = take ? index : source;
}

}  // namespace level_max
}  // namespace maskrcnn_benchmark
